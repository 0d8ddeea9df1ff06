"""One GET of a byte range, and where a file's bytes come from.

A file is resolved once: its `/resolve` URL either redirects to another origin (the CDN, a signed
URL) -- which is then cached and used for every chunk of the file, because the Hub rate-limits
`/resolve` -- or redirects within the Hub (followed, with auth) or answers with the body itself
(private files, mirrors). A 403 from the cached CDN URL means the signature expired: the caller
invalidates it and the next chunk resolves again, once for the whole file. A small file whose
`/resolve` would only redirect to its predictable `/api/resolve-cache` URL is asked for there
directly once the Hub confirmed that prediction for its commit (`resolve_cache.py`).

Errors are classified here so the engine only sees: a response with 200/206, `Retryable`
(back off and try again), `Expired` (re-resolve), or a typed HfsyncError (give up on the file).
"""

from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass
from urllib.parse import urljoin

from ..defaults import origin
from ..errors import HfsyncError, IntegrityError
from ..gate import OriginGate
from ..hub import SERVER_PACED, hub_error, not_retryable
from ..retry import RETRYABLE_STATUS, server_wait
from .wire import BodyReader, DataClient, Response, WireError

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_HOPS = 10
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")

# What a failing socket read can raise, through http.client or urllib3.
__all__ = ["READ_ERRORS", "BodyReader", "Expired", "Retryable", "Source", "Timeouts"]

READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # requests.RequestException is one; BodyReader turns urllib3's into ConnectionError
    http.client.HTTPException,
    ValueError,  # read on a response closed under us (stop/abort)
)


class Retryable(Exception):
    """A transient failure: back off and retry.

    `wait` is set when the server asked for a pause (429/503 with `Retry-After`/`RateLimit`):
    the origin's gate already holds every request to it off, and such a try is not counted.
    """

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


class Expired(Exception):
    """The cached signed URL was refused (403): resolve the file again."""

    def __init__(self, url: str) -> None:
        super().__init__("signed URL expired")
        self.url = url


@dataclass(frozen=True)
class Timeouts:
    connect: float
    read: float


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """`bytes a-b/total` -> (a, b inclusive, total or None)."""
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total


class Source:
    """Where one file's bytes come from; thread-safe, shared by all chunks of the file."""

    def __init__(
        self,
        session: DataClient,
        url: str,
        what: str,
        size: int,
        gate: OriginGate | None = None,
        stop: threading.Event | None = None,
        cached_url: str | None = None,
    ) -> None:
        self.session = session
        self.gate = gate or OriginGate()
        self.stop = stop
        self.url = url
        self.what = what
        self.size = size
        self.resolves = 0
        # (data URL, whether a 403 from it means "signature expired"), set once resolved
        self._cached: tuple[str, bool] | None = None
        if cached_url:  # resolved by someone else (a fleet's driver): a 403 re-resolves
            self._cached = (cached_url, True)
        self._lock = threading.Lock()

    def open(self, start: int, end: int | None, timeouts: Timeouts) -> Response:
        """GET bytes `[start, end)` (no Range header when `end` is None and `start` is 0).

        Returns a streaming response with status 200 or 206; the caller checks which.
        """
        headers = {} if end is None and start == 0 else {"Range": _range(start, end)}
        cached = self._cached
        if cached is None:
            with self._lock:
                if self._cached is None:
                    response = self._resolve(headers, timeouts)
                    if response is not None:
                        return response
                cached = self._cached
                assert cached is not None
        url, expirable = cached
        response = self._follow(url, headers, timeouts)
        if response.status_code == 403 and expirable:
            response.drain()
            raise Expired(url)
        return self._check(response)

    def invalidate(self, url: str) -> None:
        """Forget the cached URL if it is still `url` (only the first of many 403s re-resolves)."""
        with self._lock:
            if self._cached is not None and self._cached[0] == url:
                self._cached = None

    def _resolve(self, headers: dict, timeouts: Timeouts) -> Response | None:
        """GET the /resolve URL without following foreign redirects; caller holds the lock.

        Returns the response when it carries the body, None when a CDN URL was cached instead.
        A small file whose resolve-cache URL is predictable (resolve_cache.py) is asked for
        there first, without a `/resolve` slot: it is no `/resolve` call. The prediction is
        looked up again once a slot is ours, since the file ahead of us may have confirmed it.
        """
        shortcuts = self.gate.shortcuts
        predicted = shortcuts.predict(self.url)
        if predicted is None:
            with self.gate.resolve_slot(self.url):
                predicted = shortcuts.predict(self.url)
                if predicted is None:
                    return self._resolve_hops(headers, timeouts)
        response = self._get(predicted, headers, timeouts)
        if response.status_code in (200, 206):
            self._cached = (predicted, False)
            return response
        response.drain()  # any other answer: this file takes /resolve, the run stops guessing
        shortcuts.surprise()
        with self.gate.resolve_slot(self.url):
            return self._resolve_hops(headers, timeouts)

    def _resolve_hops(self, headers: dict, timeouts: Timeouts) -> Response | None:
        url = self.url
        for _ in range(_MAX_HOPS):
            self.resolves += 1
            response = self._get(url, headers, timeouts)
            location = response.headers.get("Location")
            if response.status_code in _REDIRECTS and location:
                response.drain()
                target = urljoin(url, location)
                if url == self.url:  # the Hub's answer for this file: may confirm predictions
                    self.gate.shortcuts.learn(url, target)
                linked = response.headers.get("X-Linked-Size")
                if linked and linked.isdigit() and int(linked) != self.size:
                    raise IntegrityError(
                        f"{self.what}: the server reports {linked} bytes, expected {self.size}"
                    )
                # A path-only Location (the Hub's 307 to /api/resolve-cache) stays on the
                # origin of `url`, which is the Hub's until a hop left it (then it is cached).
                relative = location.startswith("/") and not location.startswith("//")
                if relative or origin(target) == origin(self.url):
                    url = target  # within the Hub (e.g. /api/resolve-cache): keep auth, follow
                    continue
                self._cached = (target, True)
                return None
            response = self._check(response)
            self._cached = (url, False)
            return response
        raise HfsyncError(f"{self.what}: too many redirects from {self.url}")

    def _follow(self, url: str, headers: dict, timeouts: Timeouts) -> Response:
        """GET `url`, following redirects (a CDN may redirect again); auth never leaves the
        Hub's origin (`wire.DataClient` decides per request)."""
        for _ in range(_MAX_HOPS):
            response = self._get(url, headers, timeouts)
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            response.drain()
            url = urljoin(url, location)
        raise HfsyncError(f"{self.what}: too many redirects from {self.url}")

    def _get(self, url: str, headers: dict, timeouts: Timeouts) -> Response:
        if not self.gate.wait(url, self.stop):
            raise Retryable("stopping")
        try:
            return self.session.get(url, headers, (timeouts.connect, timeouts.read))
        except ValueError as exc:  # a redirect to ftp://, a bad port: no retry fixes it
            raise not_retryable(exc, self.what, None) from None
        except WireError as exc:
            raise Retryable(str(exc)[:200]) from exc

    def _check(self, response: Response) -> Response:
        status = response.status_code
        if status in (200, 206):
            return response
        response.drain()
        if status in RETRYABLE_STATUS:
            wait = server_wait(response.headers) if status in SERVER_PACED else None
            if wait is not None:
                self.gate.hold_off(response.url or self.url, wait)
            raise Retryable(f"HTTP {status}", wait)
        if status == 416:
            raise IntegrityError(
                f"{self.what}: the server has fewer bytes than the expected {self.size}"
            )
        if status >= 500:
            raise Retryable(f"HTTP {status}")
        raise hub_error(response, self.what)


def _range(start: int, end: int | None) -> str:
    return f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"
