"""The Hub API's plain JSON GETs over one kept-alive `http.client` connection, without `requests`.

Why: a no-op re-sync makes one API call (revision -> commit), and importing `requests` for it
costs more CPU than the rest of that run (tests/test_startup.py keeps it out). `HubClient`
sends an API GET here only when nothing about it needs `requests`; everything else (downloads,
HEAD, a proxy, `--debug`'s request log) goes through the session as before. The rules stay the
session's:

- only URLs on the endpoint's own origin are sent here, so Authorization goes exactly where
  `hub_session.HubSession` would send it, and nowhere else;
- a redirect is not followed: the 3xx is drained and `get` answers None ("not mine"), and the
  client repeats the request through the session, whose redirect and auth-stripping rules then
  apply (and sends every later API call there too);
- TLS as `requests` verifies it (hfsync/tls.py);
- statuses, retries, Retry-After and error texts are `HubClient.request`'s: this only moves
  bytes, and raises `OSError` / `http.client.HTTPException` for a failed try, as the session
  raises `requests.RequestException`.
"""

from __future__ import annotations

import codecs
import http.client
import json
import threading
from urllib.parse import urlencode, urlsplit

from . import env, tls
from .defaults import CONNECT_TIMEOUT, READ_TIMEOUT, origin

# What a failed try raises (the client retries these like the session's RequestException).
FAILURES: tuple[type[BaseException], ...] = (OSError, http.client.HTTPException)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# A kept-alive connection the server closed while idle fails like this on its next request:
# reconnected once at once, as urllib3 replaces a dropped pooled connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class DirectResponse:
    """The part of `requests.Response` that `HubClient` reads from an API answer."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, url: str, body: bytes):
        self.status_code = status
        self.headers = headers  # case-insensitive `.get`, as requests' headers
        self.url = url
        self.content = body

    def json(self) -> object:
        """The body as JSON (ValueError if it is not), as `requests.Response.json` reads it."""
        return json.loads(self.content.removeprefix(codecs.BOM_UTF8))

    def close(self) -> None:
        return None  # the body is read in full; the connection stays with the transport


def usable() -> bool:
    """Whether API GETs may bypass the session in this environment (no proxy, no request log)."""
    if env.proxy_configured():
        return False
    from .httplog import enabled as request_log_enabled

    return not request_log_enabled()


class DirectApi:
    """API GETs to one endpoint, over one connection at a time; thread-safe (a call made while
    another thread holds the connection answers None and takes the session instead)."""

    def __init__(self, endpoint: str, token: str | None, user_agent: str) -> None:
        self._origin = origin(endpoint)
        parts = urlsplit(endpoint)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._headers = {"User-Agent": user_agent, "Accept-Encoding": "identity", "Accept": "*/*"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self.enabled = True

    def get(self, url: str, params: dict | None = None) -> DirectResponse | None:
        """The answer to `GET url`, or None when the session must send it (see the module)."""
        if not self.enabled or origin(url) != self._origin:
            return None
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        if not self._lock.acquire(blocking=False):
            return None
        try:
            response = self._exchange(url)
        finally:
            self._lock.release()
        if response.status_code in _REDIRECTS:
            self.enabled = False  # a moved repo: its later pages redirect too
            self.close()
            return None
        return response

    def _exchange(self, url: str) -> DirectResponse:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        reused = self._conn is not None
        try:
            try:
                return self._send(target, url)
            except _STALE:
                if not reused:
                    raise
                self.close()
                return self._send(target, url)
        except BaseException:
            self.close()
            raise

    def _send(self, target: str, url: str) -> DirectResponse:
        conn = self._conn or self._connect()
        conn.request("GET", target, headers=self._headers)
        answer = conn.getresponse()
        body = answer.read()
        if answer.will_close:
            self.close()
        return DirectResponse(answer.status, answer.headers, url, body)

    def _connect(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=CONNECT_TIMEOUT, context=tls.client_context()
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=CONNECT_TIMEOUT)
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(READ_TIMEOUT)  # (connect, read) timeouts, as the session's
        self._conn = conn
        return conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
