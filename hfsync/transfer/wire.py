"""The data path's HTTP/1.1: each worker keeps its own keep-alive connection per origin.

Why not `requests` here: on this kind of machine a streamed `requests` GET costs ~1.7 ms of CPU
(session merging, header dicts, cookie and proxy machinery, urllib3's pool) against ~0.3 ms for
`http.client` on a kept-alive socket, and a small file takes two GETs (`/resolve` and its 307 to
`/api/resolve-cache`). A connection owned by one worker also needs no pool lock.

The rules stay those of the API session (`hub._HubSession`): `Authorization` only to the Hub
endpoint's own origin (never to the CDN, whatever redirects say), `Accept-Encoding: identity`,
the same User-Agent, certificates checked as `requests` checks them (hfsync/tls.py), connect
and read timeouts. An origin that a proxy variable applies to is fetched
through the `requests` session instead (its proxy, `no_proxy` and tunnel handling, unchanged):
speed is not the point behind a proxy, being right is.

`on_response(method, url, status, nbytes, seconds)` is called once per response when it is
finished (body bytes read, seconds from sending to finishing): the `--debug` log attaches here.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

from .. import env, tls

if TYPE_CHECKING:
    import requests

OnResponse = Callable[[str, str, int, int, float], None]
# Errors of a request on a kept-alive connection the server may have closed meanwhile: sent
# again once on a fresh connection (GET is idempotent), as urllib3's pool does.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_DRAIN_LIMIT = 64 * 1024
_MAX_LINE = 65536  # http.client's limits for a header line and the number of headers
_MAX_HEADERS = 100


class WireError(Exception):
    """A request that failed on the network (connect, send, headers); the engine retries it."""


class _Headers(dict):  # type: ignore[type-arg]
    """Response headers by lower-cased name, first occurrence wins (as `HTTPMessage.get`)."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


def _read_headers(fp: object) -> _Headers:
    """The header block of a response, read line by line as http.client reads it (same line
    length and header count limits), without the `email` package."""
    headers = _Headers()
    readline = fp.readline  # type: ignore[attr-defined]
    last = ""
    for _ in range(_MAX_HEADERS):
        line = readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return headers
        text = line.decode("iso-8859-1")
        if text[:1] in (" ", "\t"):  # obsolete line folding: continues the previous value
            if last:
                headers[last] = f"{dict.__getitem__(headers, last)} {text.strip()}"
            continue
        name, sep, value = text.partition(":")
        if sep:
            last = name.strip().lower()
            if not dict.__contains__(headers, last):
                dict.__setitem__(headers, last, value.strip())
            else:
                last = ""  # a repeated header: the first one counts, so its folds are dropped
    raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")


class _LeanResponse(http.client.HTTPResponse):
    """`http.client`'s response with a lean header parser; the body reading is untouched.

    Why: `HTTPResponse.begin` parses headers through the `email` package (feed parser, policy
    objects, content-type checks): profiled as the largest CPU cost of a small file's two
    GETs, more than sending the request. This `begin` is the stdlib's (3.10-3.13) with
    `_read_headers` for `parse_headers`; the framing rules (chunked, Content-Length, close)
    are the same lines.
    """

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()  # type: ignore[attr-defined]
            if status != http.client.CONTINUE:
                break
            _read_headers(self.fp)  # an interim 100 response: its headers are skipped
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        headers = _read_headers(self.fp)
        self.headers = self.msg = headers  # type: ignore[assignment]
        encoding = headers.get("transfer-encoding")
        self.chunked = bool(encoding) and encoding.lower() == "chunked"  # type: ignore[union-attr]
        self.chunk_left = None
        self.will_close = self._check_close()  # type: ignore[attr-defined]
        self.length = None
        length = headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":  # type: ignore[attr-defined]
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class _Finishing:
    """What both kinds of response share: `finish` releases the connection once, then tells
    the `--debug` hook (httplog) what the request moved; `close` is an unfinished finish."""

    url: str
    status_code: int
    _hook: OnResponse | None
    _started: float
    _read: int
    _done: bool

    def finish(self, complete: bool) -> None:
        if self._done:
            return
        self._done = True
        self._release(complete)
        if self._hook is not None:
            self._hook(
                "GET", self.url, self.status_code, self._read, time.monotonic() - self._started
            )

    def close(self) -> None:
        self.finish(False)

    def _release(self, complete: bool) -> None:
        raise NotImplementedError


class Response(_Finishing):
    """One response whose body the caller reads with `readinto`; then `finish` it.

    `finish(complete=True)` after the body was read to its end keeps the connection for the
    worker's next request; anything else closes it (an unread body cannot be skipped cheaply).
    """

    def __init__(
        self,
        raw: http.client.HTTPResponse,
        url: str,
        owner: _Connections | None,
        key: tuple[str, str],
        conn: http.client.HTTPConnection,
        hook: OnResponse | None,
        started: float,
    ) -> None:
        self.raw = raw
        self.status_code = raw.status
        self.headers = raw.headers  # http.client's message: case-insensitive `get`
        self.url = url
        self._owner = owner
        self._key = key
        self._conn = conn
        self._sock = conn.sock
        self._hook = hook
        self._started = started
        self._read = 0
        self._done = False

    def readinto(self, buf: memoryview) -> int:
        n = self.raw.readinto(buf)
        self._read += n
        return n

    def drain(self) -> None:
        """Read a small unwanted body (an error page, a redirect) so the connection is kept."""
        try:
            length = int(self.headers.get("Content-Length", "-1"))
            if 0 <= length <= _DRAIN_LIMIT:
                self._read += len(self.raw.read())
                self.finish(True)
                return
        except (OSError, http.client.HTTPException, ValueError):
            pass
        self.finish(False)

    def _release(self, complete: bool) -> None:
        reusable = complete and self.raw.isclosed() and not self.raw.will_close
        if self._owner is not None:
            self._owner.release(self._key, self._conn, reusable)

    def abort(self) -> None:
        """Unblock a read in another thread (stop, or the file switched mode)."""
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed: nothing to unblock


class _ProxiedResponse(_Finishing):
    """A `requests` streaming response (proxied origins) behind the same interface."""

    def __init__(self, response: requests.Response, hook: OnResponse | None, started: float):
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self.url = response.url
        raw = response.raw
        fp = getattr(raw, "_fp", None)
        self._fp = fp if fp is not None and hasattr(fp, "readinto") else None
        self._hook = hook
        self._started = started
        self._read = 0
        self._done = False

    def readinto(self, buf: memoryview) -> int:
        if self._fp is not None:
            n = self._fp.readinto(buf)
        else:
            data = self.response.raw.read(len(buf))
            n = len(data)
            buf[:n] = data
        self._read += n
        return n

    def drain(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "-1"))
            if 0 <= length <= _DRAIN_LIMIT:
                self._read += len(self.response.content)
        except Exception:  # noqa: BLE001 - a broken error body must not mask the status
            pass
        self.finish(False)

    def _release(self, complete: bool) -> None:
        fp = self._fp
        if complete and fp is not None and fp.isclosed():
            self.response.raw.release_conn()
            self.response._content_consumed = True  # noqa: SLF001 - so close() keeps the conn
        self.response.close()

    def abort(self) -> None:
        BodyReader(self.response).abort()


class DataClient:
    """Shared by all workers of one run; each worker thread gets its own connections."""

    def __init__(
        self,
        session: Callable[[], requests.Session],
        hub_origin: tuple[str, str, int | None],
        token: str | None,
        on_response: OnResponse | None = None,
        user_agent: str = "hfsync",
    ) -> None:
        # Proxied origins only, and asked for only then: building the session imports
        # `requests` (~0.14 s of CPU before the first byte of a run that never uses it).
        self._session_factory = session
        self.hub_origin = hub_origin
        self.token = token
        self.on_response = on_response
        self._base = {"User-Agent": user_agent, "Accept-Encoding": "identity", "Accept": "*/*"}
        self._local = threading.local()
        self._all: list[_Connections] = []
        self._lock = threading.Lock()
        self._proxied: dict[tuple[str, str], bool] = {}

    def get(
        self, url: str, headers: dict[str, str], timeouts: tuple[float, float]
    ) -> Response | _ProxiedResponse:
        """GET `url` without following redirects; raises WireError on a network failure."""
        parts = urlsplit(url)
        scheme = parts.scheme
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url[:200]!r}")
        key = (scheme, parts.netloc)
        sent = dict(self._base)
        sent.update(headers)
        if self.token and _origin(parts) == self.hub_origin:
            sent["Authorization"] = f"Bearer {self.token}"
        if self._is_proxied(key, url):
            return self._via_session(url, headers, timeouts)
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = _Connections(self)
            with self._lock:
                self._all.append(conns)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return conns.get(key, parts, url, target, sent, timeouts)

    def close(self) -> None:
        """Close every worker's connections (end of the run)."""
        with self._lock:
            everyone, self._all = self._all, []
        for conns in everyone:
            conns.close()
        self._local = threading.local()

    def _is_proxied(self, key: tuple[str, str], url: str) -> bool:
        known = self._proxied.get(key)
        if known is None:
            known = False
            # The session trusts the environment exactly when a proxy variable is set
            # (hub_session._configure_environment): without one, nothing is proxied.
            if env.proxy_configured() and self._session_factory().trust_env:
                import requests

                proxies = requests.utils.get_environ_proxies(url)
                known = bool(requests.utils.select_proxy(url, proxies))
            self._proxied[key] = known
        return known

    def _via_session(
        self, url: str, headers: dict[str, str], timeouts: tuple[float, float]
    ) -> _ProxiedResponse:
        import requests

        started = time.monotonic()
        try:
            response = self._session_factory().get(
                url, headers=headers, stream=True, allow_redirects=False, timeout=timeouts
            )
        except requests.RequestException as exc:
            raise WireError(str(exc)) from exc
        return _ProxiedResponse(response, self.on_response, started)


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    """`defaults.origin` of an already split URL (one split per request, not two)."""
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, (parts.hostname or "").lower(), port)


class _Connections:
    """One worker's keep-alive connections, one per origin; used by that thread only."""

    def __init__(self, client: DataClient) -> None:
        self.client = client
        self._conns: dict[tuple[str, str], http.client.HTTPConnection] = {}
        self._busy: set[http.client.HTTPConnection] = set()  # a response is being read

    def get(
        self,
        key: tuple[str, str],
        parts: SplitResult,
        url: str,
        target: str,
        headers: dict[str, str],
        timeouts: tuple[float, float],
    ) -> Response:
        for attempt in (0, 1):
            conn = self._conns.pop(key, None)
            reused = conn is not None
            if conn is None:
                conn = self._connect(key, parts, timeouts)
            started = time.monotonic()
            try:
                conn.request("GET", target, headers=headers)
                raw = conn.getresponse()
            except _STALE as exc:
                conn.close()
                if reused and attempt == 0:
                    continue  # the server closed an idle keep-alive connection: once more
                raise WireError(f"{type(exc).__name__}: {exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise WireError(f"{type(exc).__name__}: {exc}") from exc
            self._busy.add(conn)
            return Response(raw, url, self, key, conn, self.client.on_response, started)
        raise AssertionError("unreachable")

    def release(
        self, key: tuple[str, str], conn: http.client.HTTPConnection, reusable: bool
    ) -> None:
        if conn not in self._busy:
            return
        self._busy.discard(conn)
        if reusable and key not in self._conns:
            self._conns[key] = conn
        else:
            conn.close()

    def close(self) -> None:
        for conn in [*self._conns.values(), *self._busy]:
            conn.close()
        self._conns.clear()
        self._busy.clear()

    def _connect(
        self, key: tuple[str, str], parts: SplitResult, timeouts: tuple[float, float]
    ) -> http.client.HTTPConnection:
        host = parts.hostname
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in {key[1]!r}") from exc
        connect, read = timeouts
        conn: http.client.HTTPConnection
        if key[0] == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=connect, context=tls.client_context()
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=connect)
        conn.response_class = _LeanResponse
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise WireError(f"cannot connect to {key[1]}: {exc}") from exc
        sock = conn.sock
        if sock is not None:
            sock.settimeout(read)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        return conn


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
        import urllib3.exceptions  # loaded with requests: this is the proxied path

        try:
            data = self.response.raw.read(len(buf))
        except urllib3.exceptions.HTTPError as exc:  # a cut or stalled body: an OSError
            raise ConnectionError(str(exc)[:200]) from exc
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
