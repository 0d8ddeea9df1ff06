"""`hfsync doctor`: the environment checks a failed cron sync would otherwise leave you to guess.

Each check is one line: the endpoint answers (and how: the Hub redirects big files to a CDN
and honours Range; many mirrors do neither), the token is accepted (`/api/whoami-v2`), the
clock agrees with the server's `Date` (signed CDN URLs are refused with a skewed clock), the
destination has free space and is writable, and which proxy settings are in effect. A failed
check carries the exit code the same problem would give a sync (docs/architecture.md, "Exit
codes"), so `hfsync doctor` exits with the most severe of them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

from . import env, httplog
from .auth import redact, resolve_token
from .defaults import DEFAULT_ENDPOINT, origin
from .errors import HfsyncError, most_severe_code
from .retry import describe
from .units import human_size

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
SKEW_WARN = 30.0  # seconds
SKEW_FAIL = 300.0  # S3-style signatures allow minutes at most
DEFAULT_MIN_FREE = 1024**3
TIMEOUT = (5.0, 15.0)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    exit_code: int = 0  # for a failed check: what a sync would exit with

    def to_json(self) -> dict:
        return {"check": self.name, "status": self.status, "detail": self.detail,
                "exit_code": self.exit_code}  # fmt: skip


def exit_code(checks: Iterable[Check]) -> int:
    return most_severe_code(c.exit_code or 1 for c in checks if c.status == FAIL)


def run_checks(
    *,
    endpoint: str | None = None,
    token: str | None = None,
    dests: Iterable[Path] = (),
    repo: str | None = None,
    repo_type: str = "model",
    min_free: int = DEFAULT_MIN_FREE,
) -> list[Check]:
    """Every check, in the order a person debugging would want them."""
    url = env.endpoint(endpoint)
    checks = [proxy_check(url), offline_check()]
    session = requests.Session()
    session.headers["Accept-Encoding"] = "identity"
    httplog.install(session)
    reach, response = endpoint_check(session, url)
    checks.append(reach)
    checks.append(clock_check(response))
    checks.append(token_check(session, url, token, reachable=response is not None))
    if repo is not None:
        checks.append(download_check(url, token, repo, repo_type, reachable=response is not None))
    for dest in list(dests) or [env.hub_cache()]:
        checks.append(disk_check(Path(dest), min_free))
    return checks


def proxy_check(url: str) -> Check:
    """The proxy variables in effect (passwords hidden) and whether they apply to `url`."""
    settings = []
    for name in ("https_proxy", "http_proxy", "all_proxy", "no_proxy"):
        for variant in (name.upper(), name):
            value = os.environ.get(variant)
            if value:
                settings.append(f"{variant}={_hide_password(value)}")
                break
    bundle = env.ca_bundle()
    if bundle:
        settings.append(f"CA bundle {bundle}")
    proxy = requests.utils.get_environ_proxies(url).get(urlsplit(url).scheme)
    if proxy:
        route = f"{url} goes through {_hide_password(proxy)}"
    elif env.proxy_configured():
        route = f"{url} is reached directly (no_proxy)"
    else:
        route = "no proxy: direct connections"
    return Check("proxy", OK, "; ".join([route, *settings]))


def offline_check() -> Check:
    if env.offline():
        return Check("offline", FAIL, "HF_HUB_OFFLINE is set: every sync refuses to contact "
                     "the Hub", 4)  # fmt: skip
    return Check("offline", OK, "HF_HUB_OFFLINE is not set")


def endpoint_check(session: requests.Session, url: str) -> tuple[Check, requests.Response | None]:
    """Anonymous GET of `/api/whoami-v2`: the Hub answers 401 JSON, which proves it is there."""
    started = time.monotonic()
    try:
        response = session.get(f"{url}/api/whoami-v2", timeout=TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        return Check("endpoint", FAIL, f"cannot reach {url}: {describe(exc)}", 4), None
    ms = (time.monotonic() - started) * 1000
    kind = "the Hugging Face Hub" if url == DEFAULT_ENDPOINT else "a Hub mirror or proxy"
    ctype = response.headers.get("Content-Type", "")
    if response.status_code >= 500:
        detail = f"{url} answers HTTP {response.status_code} ({ms:.0f} ms): the server is failing"
        return Check("endpoint", FAIL, detail, 4), response
    if "json" not in ctype:
        detail = (f"{url} answers HTTP {response.status_code} with {ctype or 'no content type'}, "
                  "not the Hub API (a captive portal or a wrong URL?)")  # fmt: skip
        return Check("endpoint", FAIL, detail, 4), response
    return Check("endpoint", OK, f"{url} reachable ({kind}; {ms:.0f} ms)"), response


def clock_check(response: requests.Response | None) -> Check:
    if response is None:
        return Check("clock", SKIP, "no server answer to compare with")
    date = response.headers.get("Date")
    try:
        server = parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError):
        server = None
    if server is None:
        return Check("clock", WARN, "the server sent no usable Date header")
    skew = time.time() - server
    where = f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the server"
    if abs(skew) > SKEW_FAIL:
        detail = f"local clock is {where}: signed download URLs will be refused; sync it (NTP)"
        return Check("clock", FAIL, detail, 1)
    if abs(skew) > SKEW_WARN:
        return Check("clock", WARN, f"local clock is {where}")
    return Check("clock", OK, f"in step with the server (skew {abs(skew):.0f} s)")


def token_check(
    session: requests.Session, url: str, explicit: str | None, *, reachable: bool
) -> Check:
    token, source = _token_and_source(explicit)
    if token is None:
        return Check("token", OK, "none (anonymous: public repos only)")
    if not reachable:
        return Check("token", SKIP, f"from {source}; not checked (endpoint unreachable)")
    try:
        response = session.get(
            f"{url}/api/whoami-v2",
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return Check("token", FAIL, redact(f"from {source}; whoami failed: {describe(exc)}",
                                           token), 4)  # fmt: skip
    if response.status_code in (401, 403):
        detail = f"from {source}: rejected by {url} (invalid, expired or revoked)"
        return Check("token", FAIL, detail, 3)
    if response.status_code != 200:
        return Check("token", WARN, f"from {source}: whoami answered HTTP {response.status_code}")
    try:
        data = response.json()
    except ValueError:
        data = {}
    name = data.get("name", "?") if isinstance(data, dict) else "?"
    auth = data.get("auth", {}) if isinstance(data, dict) else {}
    role = (auth.get("accessToken") or {}).get("role") if isinstance(auth, dict) else None
    return Check("token", OK, redact(f"from {source}: valid, user {name}"
                                     + (f" ({role})" if role else ""), token))  # fmt: skip


def download_check(
    url: str, token: str | None, repo: str, repo_type: str, *, reachable: bool
) -> Check:
    """Resolve one file of `repo` with a one-byte Range: redirect target and Range support."""
    if not reachable:
        return Check("download", SKIP, "endpoint unreachable")
    from .hub import HubClient
    from .retry import RetryPolicy

    client = HubClient(url, token, retry=RetryPolicy(tries=1))
    try:
        commit = client.resolve_revision(repo, repo_type, "main")
        files = client.list_files(repo, repo_type, commit)
        if not files:
            return Check("download", WARN, f"{repo} has no files to probe")
        probe = max(files, key=lambda f: f.size)
        resolve = client.resolve_url(repo, repo_type, commit, probe.path)
        headers = {"Range": "bytes=0-0"}
        first = client.session.get(resolve, headers=headers, allow_redirects=False,
                                   timeout=TIMEOUT, stream=True)  # fmt: skip
        first.close()
        notes = []
        final = first
        if first.is_redirect:
            location = requests.compat.urljoin(resolve, first.headers.get("Location", ""))
            where = "another host (a CDN)" if origin(location) != origin(url) else "itself"
            notes.append(f"redirects to {where}")
            final = client.session.get(location, headers=headers, timeout=TIMEOUT, stream=True)
            final.close()
        else:
            notes.append("serves the file itself (no CDN redirect: a mirror?)")
        if final.status_code >= 400:
            return Check("download", FAIL, f"{probe.path}: HTTP {final.status_code}", 3)
        if final.status_code == 206:
            notes.append("Range honoured")
            status = OK
        else:
            notes.append("Range ignored: big files come in one stream and cannot resume")
            status = WARN
        return Check("download", status, f"{repo}/{probe.path}: " + ", ".join(notes))
    except HfsyncError as exc:
        return Check("download", FAIL, redact(str(exc), client.token), exc.exit_code)
    except requests.RequestException as exc:
        return Check("download", FAIL, f"{repo}: {describe(exc)}", 4)
    finally:
        client.close()


def disk_check(dest: Path, min_free: int) -> Check:
    """Free space where `dest` is (or would be created) and whether we may write there."""
    dest = dest.expanduser().absolute()
    existing = dest
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        usage = shutil.disk_usage(existing)
    except OSError as exc:
        return Check("disk", FAIL, f"{dest}: {exc.strerror or exc}", 6)
    free = f"{human_size(usage.free)} free of {human_size(usage.total)}"
    if not os.access(existing, os.W_OK):
        return Check("disk", FAIL, f"{dest}: {existing} is not writable ({free})", 6)
    if usage.free < min_free:
        detail = f"{dest}: only {free} (want at least {human_size(min_free)})"
        return Check("disk", FAIL, detail, 6)
    return Check("disk", OK, f"{dest}: {free}")


def _token_and_source(explicit: str | None) -> tuple[str | None, str]:
    if explicit:
        return explicit.strip(), "--token"
    if env.token_from_env():
        return resolve_token(None), "HF_TOKEN"
    token = resolve_token(None)
    return token, f"the token file {env.token_path()}"


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
