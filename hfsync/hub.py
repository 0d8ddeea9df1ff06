"""Hub API client: resolve a revision to a commit, list a commit's files, build resolve URLs.

One pooled `requests.Session` serves every call (API and downloads), so keep-alive connections
are reused. The token is sent only to the Hub endpoint's own origin: redirects to the CDN (or
anywhere else) never carry it (docs/architecture.md, "Hub protocol").
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from . import env
from .auth import redact, resolve_token
from .defaults import CONNECT_TIMEOUT, READ_TIMEOUT, origin
from .errors import (
    AuthError,
    EntryNotFoundError,
    GatedRepoError,
    HfsyncError,
    NetworkError,
    NotFoundError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UsageError,
)
from .files import RemoteFile
from .retry import RETRYABLE_STATUS, RetryPolicy, describe, server_wait
from .version import __version__

_SHA40 = re.compile(r"^[0-9a-f]{40}$")
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class _NoCookies(requests.cookies.RequestsCookieJar):
    """The Hub's API and CDN need no cookies; not parsing them saves time on every request."""

    def extract_cookies(self, response, request) -> None:  # noqa: ANN001 - cookiejar API
        return None

    def set_cookie(self, cookie, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        return None


class _HubSession(requests.Session):
    """A session that only ever sends Authorization to the Hub endpoint's origin."""

    def __init__(self, endpoint: str, token: str | None) -> None:
        super().__init__()
        self.cookies = _NoCookies()
        self._hub_origin = origin(endpoint)
        self._token = token

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        prepared = super().prepare_request(request)
        self._apply_auth(prepared)
        return prepared

    def rebuild_auth(self, prepared_request, response) -> None:  # noqa: ANN001 - requests API
        self._apply_auth(prepared_request)

    def _apply_auth(self, prepared: requests.PreparedRequest) -> None:
        prepared.headers.pop("Authorization", None)
        if self._token and origin(prepared.url or "") == self._hub_origin:
            prepared.headers["Authorization"] = f"Bearer {self._token}"


class HubClient:
    """Talks to one Hub endpoint with one token. Thread-safe for concurrent downloads."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        pool_size: int = 32,
        retry: RetryPolicy | None = None,
        offline: bool | None = None,
    ) -> None:
        self.endpoint = env.endpoint(endpoint)
        self.token = resolve_token(token)
        self.retry = retry or RetryPolicy()
        self.offline = env.offline() if offline is None else offline
        self.session = _HubSession(self.endpoint, self.token)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(
            {"User-Agent": f"hfsync/{__version__}", "Accept-Encoding": "identity"}
        )
        _configure_environment(self.session)
        self.api_calls = 0

    # -- URLs -------------------------------------------------------------------------------

    def api_url(self, repo_id: str, repo_type: str, *parts: str) -> str:
        return "/".join([f"{self.endpoint}/api/{repo_type}s/{repo_id}", *parts])

    def resolve_url(self, repo_id: str, repo_type: str, commit: str, path: str) -> str:
        """The `/resolve` URL of a file, pinned to a commit so a concurrent push cannot mix."""
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.endpoint}/{prefix}{repo_id}/resolve/{commit}/{quote(path)}"

    # -- API calls --------------------------------------------------------------------------

    def resolve_revision(self, repo_id: str, repo_type: str, revision: str) -> str:
        """The 40-hex commit a branch, tag or sha names right now."""
        url = self.api_url(repo_id, repo_type, "revision", quote(revision, safe=""))
        data = self.request("GET", url, what=f"{repo_type} {repo_id}@{revision}").json()
        sha = data.get("sha") if isinstance(data, dict) else None
        if not isinstance(sha, str) or not _SHA40.match(sha):
            raise HfsyncError(f"{self.endpoint} returned no commit for {repo_id}@{revision}")
        return sha

    def list_files(self, repo_id: str, repo_type: str, commit: str) -> list[RemoteFile]:
        """Every file of the commit, following the `Link: rel="next"` pagination to the end."""
        return list(self.iter_files(repo_id, repo_type, commit))

    def iter_files(self, repo_id: str, repo_type: str, commit: str) -> Iterator[RemoteFile]:
        url: str | None = self.api_url(repo_id, repo_type, "tree", commit)
        params: dict | None = {"recursive": "true", "expand": "false"}
        while url:
            response = self.request(
                "GET", url, params=params, what=f"{repo_type} {repo_id}@{commit}"
            )
            entries = response.json()
            if not isinstance(entries, list):
                raise HfsyncError(f"unexpected tree listing from {self.endpoint}")
            for entry in entries:
                if isinstance(entry, dict) and entry.get("type") == "file":
                    yield _remote_file(entry)
            url = _next_link(response.headers.get("Link"))
            params = None

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: dict | None = None,
        headers: dict | None = None,
        allow_redirects: bool = True,
    ) -> requests.Response:
        """One API request with bounded retries on connection errors, 429 and 5xx."""
        if self.offline:
            raise NetworkError("HF_HUB_OFFLINE is set: refusing to contact the Hub")
        last_error = ""
        for attempt in range(self.retry.tries):
            self.api_calls += 1
            try:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    headers=headers,
                    allow_redirects=allow_redirects,
                    timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                )
            except requests.RequestException as exc:
                last_error = describe(exc)
                self._sleep(attempt, None)
                continue
            if response.status_code in RETRYABLE_STATUS:
                last_error = f"HTTP {response.status_code}"
                self._sleep(attempt, server_wait(response.headers))
                continue
            if response.status_code >= 400:
                raise hub_error(response, what)
            return response
        raise NetworkError(
            redact(
                f"{what}: giving up after {self.retry.tries} tries at {self.endpoint} "
                f"({last_error})",
                self.token,
            )
        )

    def _sleep(self, attempt: int, wait: float | None) -> None:
        if attempt + 1 >= self.retry.tries:
            return
        delay = self.retry.delay(attempt) if wait is None else wait
        time.sleep(min(delay, self.retry.max_server_wait))

    def close(self) -> None:
        self.session.close()


def _configure_environment(session: requests.Session) -> None:
    """Skip requests' per-request scan of proxy variables and ~/.netrc when no proxy is set.

    That scan costs about a fifth of the client time of a small-file request, and ~/.netrc
    credentials have no business on Hub or CDN requests. A custom CA bundle still applies.
    """
    if env.proxy_configured():
        return
    session.trust_env = False
    bundle = env.ca_bundle()
    if bundle:
        session.verify = bundle


def _remote_file(entry: dict) -> RemoteFile:
    lfs = entry.get("lfs") or None
    return RemoteFile(
        path=str(entry.get("path", "")),
        size=int(lfs["size"] if lfs and "size" in lfs else entry.get("size", 0)),
        blob_id=str(entry.get("oid", "")),
        lfs_sha256=str(lfs["oid"]) if lfs and lfs.get("oid") else None,
        xet_hash=entry.get("xetHash") or None,
    )


def _next_link(header: str | None) -> str | None:
    if not header:
        return None
    match = _LINK_NEXT.search(header)
    return match.group(1) if match else None


def hub_error(response: requests.Response, what: str) -> HfsyncError:
    """Map an error response to a typed error, branching on `X-Error-Code` like the Hub client."""
    code = response.headers.get("X-Error-Code", "")
    message = response.headers.get("X-Error-Message", "")
    status = response.status_code
    if code == "RevisionNotFound":
        return RevisionNotFoundError(f"{what}: revision not found")
    if code == "EntryNotFound":
        return EntryNotFoundError(f"{what}: file not found")
    if code == "GatedRepo":
        return GatedRepoError(
            f"{what}: this repo is gated; accept its conditions on the Hub with the account "
            "whose token you use"
        )
    if status == 401 and "Invalid credentials" in message:
        return AuthError(f"{what}: the token was rejected (invalid credentials)")
    if code == "RepoNotFound" or status == 401:
        return RepoNotFoundError(
            f"{what}: repository not found (if it is private, pass a token with access: "
            "--token, HF_TOKEN or `hf auth login`)"
        )
    if status == 403:
        return AuthError(f"{what}: access denied (check your token's permissions)")
    if status == 404:
        return NotFoundError(f"{what}: not found (HTTP 404)")
    if status == 400:
        return UsageError(f"{what}: bad request ({message or 'HTTP 400'})")
    return HfsyncError(f"{what}: unexpected HTTP {status}")
