"""One GET of a byte range, and where a file's bytes come from.

A file is resolved once: its `/resolve` URL either redirects to another origin (the CDN, a signed
URL) -- which is then cached and used for every chunk of the file, because the Hub rate-limits
`/resolve` -- or redirects within the Hub (followed, with auth) or answers with the body itself
(private files, mirrors). A 403 from the cached CDN URL means the signature expired: the caller
invalidates it and the next chunk resolves again, once for the whole file.

Errors are classified here so the engine only sees: a response with 200/206, `Retryable`
(back off and try again), `Expired` (re-resolve), or a typed HfsyncError (give up on the file).
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
from dataclasses import dataclass
from urllib.parse import urljoin

import requests
import urllib3.exceptions

from ..defaults import origin
from ..errors import HfsyncError, IntegrityError
from ..gate import OriginGate
from ..hub import NOT_RETRYABLE, SERVER_PACED, hub_error, not_retryable
from ..retry import RETRYABLE_STATUS, describe, server_wait

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_HOPS = 10
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")

# What a failing socket read can raise, through http.client or urllib3.
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    http.client.HTTPException,
    urllib3.exceptions.HTTPError,
    requests.RequestException,
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
        session: requests.Session,
        url: str,
        what: str,
        size: int,
        gate: OriginGate | None = None,
        stop: threading.Event | None = None,
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
        self._lock = threading.Lock()

    def open(self, start: int, end: int | None, timeouts: Timeouts) -> requests.Response:
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
        response = self._get(url, headers, timeouts, allow_redirects=True)
        if response.status_code == 403 and expirable:
            _discard(response)
            raise Expired(url)
        return self._check(response)

    def invalidate(self, url: str) -> None:
        """Forget the cached URL if it is still `url` (only the first of many 403s re-resolves)."""
        with self._lock:
            if self._cached is not None and self._cached[0] == url:
                self._cached = None

    def _resolve(self, headers: dict, timeouts: Timeouts) -> requests.Response | None:
        """GET the /resolve URL without following foreign redirects; caller holds the lock.

        Returns the response when it carries the body, None when a CDN URL was cached instead.
        """
        with self.gate.resolve_slot(self.url):
            return self._resolve_hops(headers, timeouts)

    def _resolve_hops(self, headers: dict, timeouts: Timeouts) -> requests.Response | None:
        url = self.url
        for _ in range(_MAX_HOPS):
            self.resolves += 1
            response = self._get(url, headers, timeouts, allow_redirects=False)
            location = response.headers.get("Location")
            if response.status_code in _REDIRECTS and location:
                _discard(response)
                target = urljoin(url, location)
                linked = response.headers.get("X-Linked-Size")
                if linked and linked.isdigit() and int(linked) != self.size:
                    raise IntegrityError(
                        f"{self.what}: the server reports {linked} bytes, expected {self.size}"
                    )
                if origin(target) == origin(self.url):
                    url = target  # within the Hub (e.g. /api/resolve-cache): keep auth, follow
                    continue
                self._cached = (target, True)
                return None
            response = self._check(response)
            self._cached = (url, False)
            return response
        raise HfsyncError(f"{self.what}: too many redirects from {self.url}")

    def _get(
        self, url: str, headers: dict, timeouts: Timeouts, *, allow_redirects: bool
    ) -> requests.Response:
        if not self.gate.wait(url, self.stop):
            raise Retryable("stopping")
        try:
            return self.session.get(
                url,
                headers=headers,
                stream=True,
                allow_redirects=allow_redirects,
                timeout=(timeouts.connect, timeouts.read),
            )
        except NOT_RETRYABLE as exc:
            raise not_retryable(exc, self.what, None) from None
        except requests.RequestException as exc:
            raise Retryable(describe(exc)) from exc

    def _check(self, response: requests.Response) -> requests.Response:
        status = response.status_code
        if status in (200, 206):
            return response
        _discard(response)
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


def _discard(response: requests.Response) -> None:
    """Drop a response whose body we do not want (small bodies are drained to keep the conn)."""
    try:
        length = int(response.headers.get("Content-Length", "-1"))
        if 0 <= length <= 64 * 1024:
            response.content  # noqa: B018 - drain so the connection returns to the pool
    except Exception:  # noqa: BLE001 - a broken error body must not mask the status
        pass
    response.close()


class BodyReader:
    """Reads a streaming response body into a caller's buffer with one copy, no allocations.

    `http.client.HTTPResponse.readinto` fills the buffer straight from the socket; urllib3's own
    `read()` would allocate and copy each MiB several times.
    """

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        raw = response.raw
        fp = getattr(raw, "_fp", None)
        self._fp = fp if fp is not None and hasattr(fp, "readinto") else None

    def readinto(self, buf: memoryview) -> int:
        if self._fp is not None:
            return self._fp.readinto(buf)
        data = self.response.raw.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def finish(self, complete: bool) -> None:
        """Return the connection to the pool when the body was read to its end, else close it."""
        fp = self._fp
        if complete and fp is not None and fp.isclosed():
            self.response.raw.release_conn()
            self.response._content_consumed = True  # noqa: SLF001 - so close() keeps the conn
        self.response.close()

    def abort(self) -> None:
        """Unblock a read in another thread (stop, or the file switched mode).

        `HTTPResponse.shutdown()` exists only from urllib3 2.3; with an older urllib3 the
        socket under the response is shut down directly, so a stop never waits out a read
        timeout whichever urllib3 is installed.
        """
        raw = self.response.raw
        shutdown = getattr(raw, "shutdown", None)
        if shutdown is not None:
            try:
                shutdown()
                return
            except Exception:  # noqa: BLE001 - released/closed, or not implemented: fall back
                pass
        sock = _socket_of(raw)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass  # already closed: nothing to unblock


def _socket_of(raw: object) -> socket.socket | None:
    """The socket a urllib3 response reads from: its connection's, or its http.client file's."""
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    if isinstance(sock, socket.socket):
        return sock
    fp = getattr(getattr(raw, "_fp", None), "fp", None)  # http.client's socket file
    sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None
