"""HTTP plumbing of the Hub emulator: servers, request log records, body sending, URL signing.

Routes live in :mod:`hfsync.testing.hub_routes`; this module knows nothing about repos. It sends
file bodies with ``sendfile`` when no fault is active (loopback GB/s) and piece by piece through a
per-connection pacer otherwise, and it never prints tracebacks: client disconnects are normal
events for a download server, anything else is kept in ``hub.errors`` for tests to assert on.

Servers and handlers reach the emulator only through :class:`EmulatorContext`, which
``HubEmulator`` provides, so this module does not import :mod:`hfsync.testing.hub`.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import hmac
import itertools
import json
import secrets
import select
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .hub_faults import BodyPlan, Faults, InjectedStatus, Pacer

if TYPE_CHECKING:
    from .hub_store import Store

PIECE = 64 * 1024
# Paced bodies go out in bigger pieces: 512 KiB is 21 ms at a CDN-like 25 MB/s, inside the
# pacer's 50 ms burst allowance. Each piece costs a sleep and a wake-up (~0.2 ms of CPU in a VM),
# so 64 KiB pieces made the emulator burn ~1.8 s of CPU per GiB on the cores the tools need.
PACED_PIECE = 512 * 1024
SENDFILE_CHUNK = 8 * 1024 * 1024
STALL_MAX_SECONDS = 600.0
_conn_ids = itertools.count(1)


@dataclass
class Request:
    """One logged request, as tests see it (``hub.log``). The token itself is never kept."""

    server: str  # "api" | "cdn"
    method: str
    path: str  # percent-decoded, no query
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names; authorization masked as "Bearer ***"
    range: str | None
    had_auth: bool
    conn_id: int  # same value = same TCP connection (keep-alive reuse)
    time: float
    status: int | None = None
    body_bytes: int = 0  # response body bytes actually written to the socket
    repo_id: str | None = None
    repo_type: str | None = None
    revision: str | None = None
    file_path: str | None = None
    fault: str | None = None  # which fault shaped the response, if any

    @property
    def authorized(self) -> bool:
        return self.had_auth


class HttpError(Exception):
    """An error answer: status, ``X-Error-Code``, ``X-Error-Message`` and a JSON body."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = list(headers)


class UrlSigner:
    """HMAC-signed, expiring CDN URLs in the shape of S3 presigned URLs.

    The epoch is part of the signed string but not of the URL, so bumping it invalidates every URL
    issued before (``expire_all_urls``) without waiting for expiry.
    """

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self.epoch = 0
        self.issued: dict[str, tuple[str, str, str]] = {}  # signature -> (type, repo, path)

    def _sig(self, path: str, date: str, expires: str) -> str:
        msg = f"{self.epoch}\n{path}\n{date}\n{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def sign(self, cdn_url: str, path: str, filename: str, ttl: float) -> tuple[str, str]:
        """Absolute signed URL for ``path`` on the CDN, and its signature."""
        now = _dt.datetime.now(_dt.timezone.utc)
        date = now.strftime("%Y%m%dT%H%M%SZ")
        expires = str(max(0, int(ttl)))
        sig = self._sig(path, date, expires)
        disp = f"inline; filename*=UTF-8''{quote(filename)}; filename=\"{filename}\";"
        query = [
            ("response-content-disposition", disp),
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"),
            ("X-Amz-Credential", f"EMULATOR/{date[:8]}/us-east-1/s3/aws4_request"),
            ("X-Amz-Date", date),
            ("X-Amz-Expires", expires),
            ("X-Amz-Signature", sig),
            ("X-Amz-SignedHeaders", "host"),
            ("x-id", "GetObject"),
        ]
        qs = "&".join(f"{k}={quote(v, safe='')}" for k, v in query)
        return f"{cdn_url}{path}?{qs}", sig

    def check(self, path: str, query: dict[str, str]) -> str | None:
        """None when the URL is valid, else the S3-style reason it is refused."""
        try:
            date, expires, sig = (
                query["X-Amz-Date"],
                query["X-Amz-Expires"],
                query["X-Amz-Signature"],
            )
            issued = _dt.datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc)
            ttl = int(expires)
        except (KeyError, ValueError):
            return "Query-string authentication requires the Signature, Expires and Credential"
        if not hmac.compare_digest(sig, self._sig(path, date, expires)):
            return "The request signature we calculated does not match the signature you provided."
        if time.time() > issued.timestamp() + ttl:
            return "Request has expired"
        return None


class EmulatorContext(Protocol):
    """What the servers and request handlers use of the emulator (``HubEmulator`` provides it).

    Handlers read these per request rather than keeping copies: tests replace ``faults``
    (``reset_faults``) and flip its fields while the servers run.
    """

    store: Store  # repos, commits, blobs, tokens
    faults: Faults  # the current fault switches
    page_size: int  # entries per page of paginated listings
    signer: UrlSigner  # signs and checks CDN URLs; ``signer.issued`` maps signatures to files
    total_pacer: Pacer  # shared by all connections: enforces ``faults.rate_total``
    stopping: threading.Event  # set when the emulator stops: stalled responses end

    @property
    def endpoint(self) -> str:
        """Base URL of the API server (``http://127.0.0.1:<port>``)."""
        ...

    def sign_url(self, repo_type: str, repo_id: str, path: str, sha256: str) -> str:
        """A signed, expiring CDN URL for a blob (the Location of a 302 from /resolve)."""
        ...

    def expire_all_urls(self) -> None:
        """Make every CDN URL issued so far invalid."""
        ...

    def record(self, req: Request) -> None:
        """Append a request to the log (``hub.log``)."""
        ...

    def record_error(self, text: str) -> None:
        """Keep the traceback of an unexpected server-side exception (``hub.errors``)."""
        ...


class HubServer(ThreadingHTTPServer):
    """Threaded HTTP/1.1 server on 127.0.0.1 with quiet error handling."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 512

    def __init__(self, ctx: EmulatorContext, kind: str, port: int, handler: type) -> None:
        self.ctx, self.kind = ctx, kind
        super().__init__(("127.0.0.1", port), handler)

    def server_bind(self) -> None:
        """Skip HTTPServer's getfqdn(), which can stall on hosts without DNS."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # resets, broken pipes, timeouts: clients do that
            return
        self.ctx.record_error(traceback.format_exc())


class BaseHandler(BaseHTTPRequestHandler):
    """Common request cycle: parse, log, latency, injected statuses, route, record."""

    protocol_version = "HTTP/1.1"
    server_version = "hub-emulator"
    sys_version = ""
    timeout = 300
    disable_nagle_algorithm = True
    server: HubServer

    def setup(self) -> None:
        super().setup()
        self.conn_id = next(_conn_ids)
        self.pacer = Pacer()

    def version_string(self) -> str:
        return self.server_version

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header, off by ``faults.clock_skew`` (doctor's clock check)."""
        skew = self.ctx.faults.clock_skew
        return super().date_time_string((time.time() if timestamp is None else timestamp) + skew)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the stdlib access log: tests read ``hub.log`` instead."""

    @property
    def ctx(self) -> EmulatorContext:
        """The emulator this request is served for (see :class:`EmulatorContext`)."""
        return self.server.ctx

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def route(self, path: str, segs: list[str]) -> None:  # pragma: no cover - overridden
        raise HttpError(404, None, "Not Found")

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        had_auth = "authorization" in headers
        if had_auth:
            headers["authorization"] = "Bearer ***"
        self.rec = Request(
            server=self.server.kind,
            method=self.command,
            path=unquote(url.path),
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=headers,
            range=headers.get("range"),
            had_auth=had_auth,
            conn_id=self.conn_id,
            time=time.time(),
        )
        self.headers_sent = False
        # Logged on arrival and filled in before each byte leaves, so once a client has its
        # answer the record is final and a later clear_log() cannot be polluted by it.
        self.ctx.record(self.rec)
        try:
            self.request_body = self._read_request_body()
            faults = self.ctx.faults
            if faults.latency:
                time.sleep(faults.latency)
            injected = faults.take_status(self.server.kind, self.rec.path, self.command)
            if injected is not None:
                self._send_injected(injected)
            else:
                segs = [unquote(s) for s in url.path.split("/")[1:]]
                self.route(url.path, segs)
        except HttpError as err:
            self.send_error_response(err)
        except OSError:
            self.close_connection = True
        except Exception:
            self.ctx.record_error(traceback.format_exc())
            self.close_connection = True
            if not self.headers_sent:
                self.send_error_response(HttpError(500, None, "Internal Error"))

    def _read_request_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # ---- token ------------------------------------------------------------------------------

    def bearer(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else (auth or None)

    # ---- response helpers -------------------------------------------------------------------

    def start(
        self,
        status: int,
        headers: Iterable[tuple[str, str]] = (),
        *,
        length: int | None = None,
        chunked: bool = False,
    ) -> None:
        """Status line and headers; Content-Length or chunked framing as asked."""
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif length is not None:
            self.send_header("Content-Length", str(length))
        self.rec.status = status
        self.headers_sent = True
        self.end_headers()

    def send_bytes(self, status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> None:
        """A small in-memory answer (JSON, redirects, errors): no body faults apply."""
        self.start(status, headers, length=len(body))
        if self.command != "HEAD" and body:
            self._write(body, len(body))

    def send_json(
        self, obj: Any, headers: Iterable[tuple[str, str]] = (), status: int = 200
    ) -> None:
        body = json.dumps(obj).encode()
        self.send_bytes(
            status, body, [("Content-Type", "application/json; charset=utf-8"), *headers]
        )

    def send_error_response(self, err: HttpError) -> None:
        headers = list(err.headers)
        if err.code:
            headers.append(("X-Error-Code", err.code))
        if err.message:
            headers.append(("X-Error-Message", err.message.encode("ascii", "replace").decode()))
        self.send_json({"error": err.message}, headers, status=err.status)

    def _send_injected(self, item: InjectedStatus) -> None:
        self.rec.fault = f"status {item.status}"
        headers: list[tuple[str, str]] = []
        if item.retry_after is not None:
            headers.append(("Retry-After", str(item.retry_after)))
        if isinstance(item.ratelimit_header, int):
            headers.append(("RateLimit", f'"api";r=0;t={item.ratelimit_header}'))
            headers.append(("RateLimit-Policy", '"fixed window";"api";q=500;w=300'))
        elif isinstance(item.ratelimit_header, str):
            headers.append(("RateLimit", item.ratelimit_header))
        message = "Too Many Requests" if item.status == 429 else f"Injected error {item.status}"
        self.send_error_response(HttpError(item.status, None, message, headers))

    # ---- file bodies ------------------------------------------------------------------------

    def serve_ranged(
        self, headers: list[tuple[str, str]], source: Path | bytes, size: int, *, allow_gzip: bool
    ) -> None:
        """200/206/416 for a file body, honouring Range (unless ignored) and gzip when asked."""
        range_header = self.headers.get("Range")
        rng = None if self.ctx.faults.ignore_range else parse_range(range_header, size)
        if rng == "unsatisfiable":
            extra = [("Content-Range", f"bytes */{size}")]
            raise HttpError(416, None, "Requested Range Not Satisfiable", extra)
        if rng is None:
            gz = (
                allow_gzip
                and not range_header
                and accepts_gzip(self.headers.get("Accept-Encoding"))
            )
            self.send_file(200, headers, source, 0, size, gzip_body=gz)
            return
        start, length = rng  # type: ignore[misc]
        content_range = ("Content-Range", f"bytes {start}-{start + length - 1}/{size}")
        self.send_file(206, [*headers, content_range], source, start, length)

    def send_file(
        self,
        status: int,
        headers: list[tuple[str, str]],
        source: Path | bytes,
        start: int,
        length: int,
        *,
        chunked: bool = False,
        gzip_body: bool = False,
    ) -> None:
        """Send ``length`` bytes of a file (or in-memory bytes) from ``start``, with body faults."""
        if gzip_body:
            raw = source if isinstance(source, bytes) else _read_all(source)
            source, start, length, chunked = (
                gzip.compress(raw[start : start + length], mtime=0),
                0,
                0,
                True,
            )
            length = len(source)
            headers = [*headers, ("Content-Encoding", "gzip")]
        if self.command == "HEAD":
            self.start(status, headers, length=None if chunked else length, chunked=chunked)
            return
        plan = self.ctx.faults.plan_body(self.server.kind, start, length)
        self.rec.fault = _describe(plan)
        self.start(status, headers, length=None if chunked else length, chunked=chunked)
        if plan.clean and not chunked and isinstance(source, Path):
            self._sendfile(source, start, length)
        else:
            self._send_pieces(source, start, length, plan, chunked)

    def _sendfile(self, path: Path, start: int, length: int) -> None:
        with open(path, "rb") as fh:
            offset, remaining = start, length
            while remaining:
                want = min(remaining, SENDFILE_CHUNK)
                self.rec.body_bytes += want  # counted first: see _write
                n = self.connection.sendfile(fh, offset, want)
                self.rec.body_bytes -= want - n
                if not n:
                    raise ConnectionError("sendfile sent nothing")
                offset, remaining = offset + n, remaining - n

    def _write(self, data: bytes, payload: int) -> None:
        """Write and count ``payload`` body bytes, counted before they leave so the log is final
        by the time the client has them (uncounted again if the write fails)."""
        self.rec.body_bytes += payload
        try:
            self.wfile.write(data)
        except OSError:
            self.rec.body_bytes -= payload
            raise

    def _send_pieces(
        self, source: Path | bytes, start: int, length: int, plan: BodyPlan, chunked: bool
    ) -> None:
        """Slow path: pieces through the pacers, cut short or corrupted as the plan says."""
        faults = self.ctx.faults
        fh = open(source, "rb") if isinstance(source, Path) else None  # noqa: SIM115
        try:
            if fh is not None:
                fh.seek(start)
            sent = 0
            while sent < length:
                for limit, action in ((plan.drop_at, self._drop), (plan.stall_at, self._stall)):
                    if limit is not None and sent >= limit:
                        action()
                        return
                rate = faults.rate_per_conn
                n = min(length - sent, _piece_size(rate))
                for limit in (plan.drop_at, plan.stall_at):
                    if limit is not None:
                        n = min(n, limit - sent)
                if fh is not None and not chunked and plan.corrupt_at is None:
                    # nothing to alter: the kernel copies file to socket (no read, no bytes
                    # object), so the emulator's CPU stays out of the tools' measurements
                    self.pacer.wait(n, rate)
                    self.ctx.total_pacer.wait(n, faults.rate_total)
                    self.rec.body_bytes += n  # counted first: see _write
                    done = self.connection.sendfile(fh, start + sent, n)
                    self.rec.body_bytes -= n - done
                    if not done:
                        raise ConnectionError("source shorter than announced")
                    sent += done
                    continue
                data = fh.read(n) if fh is not None else source[start + sent : start + sent + n]  # type: ignore[index]
                if not data:
                    raise ConnectionError("source shorter than announced")
                n = len(data)
                if plan.corrupt_at is not None and sent <= plan.corrupt_at < sent + n:
                    buf = bytearray(data)
                    buf[plan.corrupt_at - sent] ^= 0xFF
                    data = bytes(buf)
                self.pacer.wait(n, rate)
                self.ctx.total_pacer.wait(n, faults.rate_total)
                self._write(b"%x\r\n%s\r\n" % (n, data) if chunked else data, n)
                sent += n
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            if fh is not None:
                fh.close()

    def _drop(self) -> None:
        """Close the connection after the bytes sent so far (FIN, so they all arrive)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _stall(self) -> None:
        """Send nothing more but keep the connection until the client gives up or we stop."""
        self.close_connection = True
        deadline = time.monotonic() + STALL_MAX_SECONDS
        while time.monotonic() < deadline and not self.ctx.stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.1)
            if readable:
                break


def _describe(plan: BodyPlan) -> str | None:
    parts = []
    if plan.drop_at is not None:
        parts.append(f"drop@{plan.drop_at}")
    if plan.stall_at is not None:
        parts.append(f"stall@{plan.stall_at}")
    if plan.corrupt_at is not None:
        parts.append(f"corrupt@{plan.corrupt_at}")
    if plan.paced:
        parts.append("paced")
    return ",".join(parts) or None


def _piece_size(rate: float | None) -> int:
    """64 KiB unpaced; paced 512 KiB, smaller at low rates so pacing stays smooth (about 20
    pieces a second)."""
    if not rate:
        return PIECE
    return int(min(PACED_PIECE, max(1024, rate / 20)))


def _read_all(path: Path) -> bytes:
    """Whole file; only used for gzip, which only applies to small text files."""
    with open(path, "rb") as fh:
        return fh.read()


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """A single ``bytes=`` range -> (start, length); "unsatisfiable"; None to send everything."""
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.split("=", 1)[1].strip()
    if "," in spec or "-" not in spec:
        return None
    first, last = (s.strip() for s in spec.split("-", 1))
    try:
        if not first:
            n = int(last)
            if n <= 0 or size == 0:
                return "unsatisfiable"
            return max(0, size - n), min(n, size)
        a = int(first)
        b = int(last) if last else size - 1
    except ValueError:
        return None
    if a >= size:
        return "unsatisfiable"
    if b < a:
        return None
    b = min(b, size - 1)
    return a, b - a + 1


def accepts_gzip(header: str | None) -> bool:
    """True when Accept-Encoding lists gzip without q=0."""
    for token in (header or "").split(","):
        name, _, params = token.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


@dataclass
class ServerPair:
    """The two listening servers and their threads."""

    api: HubServer
    cdn: HubServer
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for srv in (self.api, self.cdn):
            t = threading.Thread(
                target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True,
                name=f"hub-{srv.kind}",
            )  # fmt: skip
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        """Shut both down in parallel: each waits up to one poll interval."""
        stoppers = [threading.Thread(target=srv.shutdown) for srv in (self.api, self.cdn)]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        for srv in (self.api, self.cdn):
            srv.server_close()
        for t in self.threads:
            t.join(timeout=5)
