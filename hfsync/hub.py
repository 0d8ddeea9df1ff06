"""Hub API client: resolve a revision to a commit, list a commit's files, build resolve URLs.

One pooled `requests.Session` (`hub_session`, built on first use) serves the downloads and
every API call that needs it, so keep-alive connections are reused; plain API GETs take one
`http.client` connection instead (`hub_direct`), so a no-op re-sync never imports `requests`.
The token is sent only to the Hub endpoint's own origin: redirects to the CDN (or anywhere
else) never carry it (docs/architecture.md, "Hub protocol").
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin, urlsplit

from . import env, hub_direct
from .auth import redact, resolve_token
from .defaults import CONNECT_TIMEOUT, READ_TIMEOUT, origin
from .errors import (
    AuthError,
    EntryNotFoundError,
    GatedRepoError,
    HfsyncError,
    NetworkError,
    NotFoundError,
    RemotePathError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UsageError,
)
from .files import RemoteFile, ValidatedListing, validate_listing
from .gate import OriginGate
from .retry import RETRYABLE_STATUS, RetryPolicy, describe, server_wait
from .version import __version__

if TYPE_CHECKING:
    import requests

    from .hub_direct import DirectResponse
    from .hub_session import HubSession

_SHA40 = re.compile(r"^[0-9a-f]{40}$")
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
MAX_PAGES = 100_000  # 1000 entries a page: far beyond any real repo
SERVER_PACED = frozenset({429, 503})  # statuses whose Retry-After paces the whole origin


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
        self.endpoint = check_endpoint(env.endpoint(endpoint), "--endpoint" if endpoint else None)
        scheme, netloc = urlsplit(self.endpoint)[:2]
        self._origin_root = f"{scheme}://{netloc}"  # where path-only Locations resolve to
        self.token = resolve_token(token)
        self.retry = retry or RetryPolicy()
        # one gate for the API client and every transfer worker (the engine gets this client)
        self.gate = OriginGate(self.retry.server_wait_budget, self.retry.max_server_wait)
        self.offline = env.offline() if offline is None else offline
        self._pool_size = pool_size
        self._session: HubSession | None = None
        self._session_lock = threading.Lock()
        self.user_agent = user_agent = f"hfsync/{__version__}"
        self._direct = hub_direct.DirectApi(self.endpoint, self.token, user_agent)
        self.api_calls = 0

    @property
    def session(self) -> HubSession:
        """The pooled `requests` session, created (and `requests` imported) on first use."""
        if self._session is None:
            with self._session_lock:
                if self._session is None:
                    from .httplog import install as log_http
                    from .hub_session import new_session

                    session = new_session(
                        self.endpoint, self.token, self._pool_size, self.user_agent
                    )
                    log_http(session)  # --debug / HFSYNC_DEBUG: one stderr line per request
                    self._session = session
        return self._session

    # -- URLs -------------------------------------------------------------------------------

    def api_url(self, repo_id: str, repo_type: str, *parts: str) -> str:
        return "/".join([f"{self.endpoint}/api/{repo_type}s/{repo_id}", *parts])

    def resolve_url(self, repo_id: str, repo_type: str, commit: str, path: str) -> str:
        """The `/resolve` URL of a file, pinned to a commit so a concurrent push cannot mix."""
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.endpoint}/{prefix}{repo_id}/resolve/{commit}/{quote(path)}"

    def resolve_cache_url(self, repo_id: str, repo_type: str, commit: str, path: str) -> str:
        """Where `/resolve` redirects a small file of a public repo: the path-only, commit-pinned
        `/api/resolve-cache/…` Location (DESIGN.md section 4), joined to the endpoint's origin
        as any path-only Location is. A prediction (resolve_cache.py): used only once the Hub
        redirected one file of the commit to exactly this URL."""
        where = f"{repo_type}s/{repo_id}/{commit}/{quote(path)}"
        return f"{self._origin_root}/api/resolve-cache/{where}"

    def resolve_location(self, url: str, size: int | None = None) -> str | None:
        """Where a `/resolve` URL's bytes are, without fetching them (the fleet's driver
        resolves each file once for every host, docs/scale-out.md).

        HEAD without following redirects, as `huggingface_hub` asks for file metadata: hops
        within the endpoint's origin (`/api/resolve-cache/…`) are followed, a Location on
        another origin (the CDN's signed URL) is the answer. None when the `/resolve` URL
        serves the body itself (private small files, mirrors: nothing to hand over), when
        the redirect is not http(s), or when its X-Linked-Size contradicts the listing. Goes
        through `request`, so the origin's gate turns a 429 into a wait; Hub errors raise.
        """
        first, hub = url, origin(url)
        for _ in range(10):
            with self.gate.resolve_slot(url):
                response = self.request("HEAD", url, what=f"resolve {url}", allow_redirects=False)
            response.close()
            location = response.headers.get("Location")
            if response.status_code not in (301, 302, 303, 307, 308) or not location:
                return url if url != first else None
            linked = response.headers.get("X-Linked-Size")
            if size is not None and linked and linked.isdigit() and int(linked) != size:
                return None
            target = urljoin(url, location)
            if urlsplit(target).scheme not in ("http", "https"):
                return None
            if origin(target) != hub:
                return target
            url = target
        return None

    # -- API calls --------------------------------------------------------------------------

    def resolve_revision(self, repo_id: str, repo_type: str, revision: str) -> str:
        """The 40-hex commit a branch, tag or sha names right now."""
        url = self.api_url(repo_id, repo_type, "revision", quote(revision, safe=""))
        what = f"{repo_type} {repo_id}@{revision}"
        data = self._json(self.request("GET", url, what=what, direct=True))
        sha = data.get("sha") if isinstance(data, dict) else None
        if not isinstance(sha, str) or not _SHA40.match(sha):
            raise HfsyncError(f"{self.endpoint} returned no commit for {repo_id}@{revision}")
        return sha

    def list_files(self, repo_id: str, repo_type: str, commit: str) -> ValidatedListing:
        """Every file of the commit, following the `Link: rel="next"` pagination to the end.

        The listing is validated here, where it enters (`files.validate_listing`): a hostile
        or broken one is refused with exit 5 before any caller can act on it, and the
        `ValidatedListing` it returns is not checked again by the planner.
        """
        return validate_listing(self.iter_files(repo_id, repo_type, commit))

    def iter_files(self, repo_id: str, repo_type: str, commit: str) -> Iterator[RemoteFile]:
        url: str | None = self.api_url(repo_id, repo_type, "tree", commit)
        params: dict | None = {"recursive": "true", "expand": "false"}
        what = f"{repo_type} {repo_id}@{commit}"
        seen: set[str] = set()
        while url:
            response = self.request("GET", url, params=params, what=what, direct=True)
            entries = self._json(response)
            if not isinstance(entries, list):
                raise HfsyncError(f"unexpected tree listing from {self.endpoint}")
            for entry in entries:
                if isinstance(entry, dict) and entry.get("type") == "file":
                    yield _remote_file(entry)
            url = _next_link(response.headers.get("Link"))
            params = None
            if url is not None:
                # a `rel="next"` that repeats (or never ends) would page forever: the listing
                # cannot be completed, so it cannot be trusted (exit 5, as for a hostile one)
                if url in seen or len(seen) + 1 >= MAX_PAGES:  # len(seen) + 1 pages read
                    problem = "links to a page already read" if url in seen else "never ends"
                    raise RemotePathError(
                        f"{what}: refusing unverifiable listing: its pagination {problem} "
                        f"(after {len(seen) + 1} pages); nothing was written"
                    )
                seen.add(url)

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: dict | None = None,
        headers: dict | None = None,
        allow_redirects: bool = True,
        direct: bool = False,
    ) -> requests.Response | DirectResponse:
        """One API request with bounded retries on connection errors, 429 and 5xx.

        A 429/503 that says how long to wait holds off the whole origin (`self.gate`) and does
        not use up a try; the gate's time budget bounds those. Failures no retry can fix (an
        unsupported redirect scheme, an invalid URL or header) raise at once. `direct`: a plain
        GET whose JSON body is all the caller reads, which `hub_direct` may send (see there).
        """
        if self.offline:
            raise NetworkError("HF_HUB_OFFLINE is set: refusing to contact the Hub")
        last_error = ""
        failures = 0
        while failures < self.retry.tries:
            self.gate.wait(url)
            self.api_calls += 1
            try:
                response = self._send(method, url, what, params, headers, allow_redirects, direct)
            except _TryFailed as failed:
                last_error = str(failed)
                failures += 1
                self._backoff(failures)
                continue
            status = response.status_code
            if status in RETRYABLE_STATUS:
                last_error = f"HTTP {status}"
                wait = server_wait(response.headers) if status in SERVER_PACED else None
                response.close()
                if wait is not None:
                    self.gate.hold_off(response.url or url, wait)
                    continue
                failures += 1
                self._backoff(failures)
                continue
            if status >= 400:
                raise hub_error(response, what)
            return response
        raise NetworkError(
            redact(
                f"{what}: giving up after {self.retry.tries} tries at {self.endpoint} "
                f"({last_error})",
                self.token,
            )
        )

    def _send(
        self,
        method: str,
        url: str,
        what: str,
        params: dict | None,
        headers: dict | None,
        allow_redirects: bool,
        direct: bool,
    ) -> requests.Response | DirectResponse:
        """One try: over the direct connection when it takes the request, else the session.

        Raises _TryFailed (its text: the cause) for a failure another try may not meet, and
        the one-line error at once for one that no retry can fix.
        """
        plain = method == "GET" and headers is None and allow_redirects
        if direct and plain and hub_direct.usable():  # asked each time: --debug may come later
            try:
                answer = self._direct.get(url, params)
            except http.client.InvalidURL as exc:
                raise not_retryable(exc, what, self.token) from None
            except hub_direct.FAILURES as exc:
                raise _TryFailed(describe(exc)) from exc
            if answer is not None:
                return answer
        from .hub_session import NOT_RETRYABLE, RETRYABLE

        try:
            return self.session.request(
                method,
                url,
                params=params,
                headers=headers,
                allow_redirects=allow_redirects,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
        except NOT_RETRYABLE as exc:
            raise not_retryable(exc, what, self.token) from None
        except RETRYABLE as exc:
            raise _TryFailed(describe(exc)) from exc

    def _backoff(self, failures: int) -> None:
        if failures < self.retry.tries:
            time.sleep(self.retry.delay(failures - 1))

    def _json(self, response: requests.Response | DirectResponse) -> object:
        """The body as JSON; a page that is not JSON (a captive portal's login form, a proxy's
        error page) is a network problem, named as one, not an unexpected crash."""
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise NetworkError(
                f"{self.endpoint} answered {response.url or ''} with {kind}, not the Hub's JSON: "
                "a captive portal or proxy login page, or not a Hub endpoint? Check the network, "
                "--endpoint and HF_ENDPOINT"
            ) from None

    def close(self) -> None:
        self._direct.close()
        if self._session is not None:
            self._session.close()


class _TryFailed(Exception):
    """One try of `HubClient.request` failed in a way the next one may not (the text: why)."""


def not_retryable(exc: BaseException, what: str, token: str | None) -> HfsyncError:
    """The error for a request that no retry can fix (e.g. a redirect to `ftp://`)."""
    return NetworkError(redact(f"{what}: {describe(exc)} (not retried)", token))


def check_endpoint(endpoint: str, source: str | None) -> str:
    """Refuse an endpoint that is not an http(s) URL with a host, before any request.

    `127.0.0.1:9` parses as scheme "127.0.0.1": without this it would be retried six times
    and reported as a network failure, when it is a typo to fix.
    """
    parts = urlsplit(endpoint)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
        bad_port = False
    except ValueError:
        bad_port = True
    if parts.scheme not in ("http", "https") or not parts.hostname or bad_port:
        where = source or "HF_ENDPOINT"
        raise UsageError(
            f"{where}: {endpoint!r} is not a Hub URL; expected http(s)://host[:port], "
            "e.g. https://huggingface.co"
        )
    return endpoint


def _remote_file(entry: dict) -> RemoteFile:
    """One tree entry as the Hub sent it, values unconverted: `int("abc")` or `str(None)` here
    would turn a hostile entry into an unexpected crash or, worse, a plausible-looking one;
    `files.validate_listing` judges the raw values instead."""
    lfs = entry.get("lfs") or None
    if lfs is not None and not isinstance(lfs, dict):
        lfs = {}  # an `lfs` that is not an object: unverifiable, refused as an empty sha256
    return RemoteFile(
        path=entry.get("path"),  # type: ignore[arg-type] - validated by validate_listing
        size=lfs["size"] if lfs and "size" in lfs else entry.get("size"),  # type: ignore[arg-type]
        blob_id=entry.get("oid"),  # type: ignore[arg-type]
        lfs_sha256=lfs.get("oid") or "" if lfs is not None else None,
        xet_hash=entry.get("xetHash") or None,
    )


def _next_link(header: str | None) -> str | None:
    if not header:
        return None
    match = _LINK_NEXT.search(header)
    return match.group(1) if match else None


def hub_error(response: requests.Response | DirectResponse, what: str) -> HfsyncError:
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
