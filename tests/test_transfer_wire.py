"""The data path's own HTTP client (`transfer/wire.py`): keep-alive, auth rule, proxies, abort."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from hfsync.transfer.wire import DataClient, WireError

TIMEOUTS = (5.0, 30.0)


class OneShotServer:
    """Answers every request with `body` under HTTP/1.1 keep-alive framing, then closes the
    connection anyway (what a server does to an idle keep-alive connection); counts accepts
    and records each request's header block."""

    def __init__(self, body: bytes, stall: bool = False) -> None:
        self.body = body
        self.stall = stall
        self.accepted = 0
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(self.body)
                if self.stall:
                    conn.sendall(head + self.body[:10])
                    self._stop.wait(60)
                    continue
                conn.sendall(head + self.body)
                time.sleep(0.05)  # the client reads the response before the close arrives

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture
def client() -> Iterator[DataClient]:
    session = requests.Session()
    session.trust_env = False
    data = DataClient(lambda: session, ("http", "hub.example", 80), "hf_secret")
    yield data
    data.close()


def read_all(response) -> bytes:  # noqa: ANN001 - wire.Response
    buf = memoryview(bytearray(1 << 16))
    out = bytearray()
    while n := response.readinto(buf):
        out += buf[:n]
    response.finish(True)
    return bytes(out)


def test_a_kept_alive_connection_the_server_closed_is_replaced_once(client: DataClient) -> None:
    server = OneShotServer(b"x" * 1000)
    try:
        url = f"http://127.0.0.1:{server.port}/file"
        assert read_all(client.get(url, {}, TIMEOUTS)) == b"x" * 1000
        # the connection was kept for reuse; the server closed it: sent again, not an error
        assert read_all(client.get(url, {"Range": "bytes=0-9"}, TIMEOUTS)) == b"x" * 1000
        assert server.accepted == 2
    finally:
        server.close()


def test_the_token_goes_only_to_the_hub_origin(client: DataClient) -> None:
    server = OneShotServer(b"ok")
    try:
        read_all(client.get(f"http://127.0.0.1:{server.port}/cdn", {}, TIMEOUTS))
        [request] = server.requests
        assert b"authorization" not in request.lower()
        assert b"accept-encoding: identity" in request.lower()
    finally:
        server.close()
    hub = DataClient(
        requests.Session, ("http", "127.0.0.1", None), "hf_secret"
    )  # origin() of a URL without a port: (scheme, host, default port)
    server = OneShotServer(b"ok")
    try:
        hub.hub_origin = ("http", "127.0.0.1", server.port)
        read_all(hub.get(f"http://127.0.0.1:{server.port}/api", {}, TIMEOUTS))
        assert b"authorization: bearer hf_secret" in server.requests[0].lower()
    finally:
        hub.close()
        server.close()


def test_abort_unblocks_a_read_on_a_stalled_server(client: DataClient) -> None:
    server = OneShotServer(b"y" * 100_000, stall=True)
    try:
        response = client.get(f"http://127.0.0.1:{server.port}/big", {}, TIMEOUTS)
        outcome: list[object] = []

        def reader() -> None:
            try:
                read_all(response)
                outcome.append("eof")
            except Exception as exc:  # noqa: BLE001 - any unblocking is fine
                outcome.append(exc)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the read is blocked on the stalled server"
        response.abort()
        thread.join(10)  # far below the 30 s read timeout
        assert not thread.is_alive()
        response.finish(False)
    finally:
        server.close()


def test_an_origin_a_proxy_applies_to_goes_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens: a request through this proxy cannot succeed
    server = OneShotServer(b"direct")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    session = requests.Session()  # trust_env: what the Hub client keeps when a proxy is set
    data = DataClient(lambda: session, ("http", "hub.example", 80), None)
    try:
        with pytest.raises(WireError):
            data.get(f"http://127.0.0.1:{server.port}/f", {}, (2.0, 5.0))
        assert server.accepted == 0, "the proxy was bypassed"
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        direct = DataClient(lambda: session, ("http", "hub.example", 80), None)
        assert read_all(direct.get(f"http://127.0.0.1:{server.port}/f", {}, TIMEOUTS)) == (
            b"direct"
        )
        direct.close()
    finally:
        data.close()
        server.close()


def test_bytes_that_arrive_in_order_are_hashed_without_reading_them_back(
    hub,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001 - fixtures
) -> None:
    """One connection fetches a file's chunks in order: every byte is hashed from the receive
    buffer (and still verified: the file lands only if its sha256 matches)."""
    from hfsync.hub import HubClient
    from hfsync.transfer import FileJob, TransferConfig, partfile, run_transfers

    content = bytes(range(256)) * (12 * 1024 + 7)  # ~3 MiB: LFS, several chunks
    commit = hub.commit("org/m", {"w.bin": content, "c.json": b'{"a": 1}'})
    client = HubClient(hub.endpoint, None)
    reads: list[int] = []
    real = partfile.PartFile.read_into
    monkeypatch.setattr(
        partfile.PartFile, "read_into", lambda self, b, o: reads.append(o) or real(self, b, o)
    )
    placed: dict[str, bytes] = {}
    jobs = []
    for path, info in hub.files("org/m", commit).items():

        def finalize(part, path=path) -> None:  # noqa: ANN001
            placed[path] = part.read_bytes()

        jobs.append(
            FileJob(
                path,
                info.size,
                info.lfs_sha256 or info.blob_sha1,
                client.resolve_url("org/m", "model", commit, path),
                tmp_path / f"{path}.part",
                finalize,
            )
        )
    report = run_transfers(jobs, client, TransferConfig(connections=1, chunk_size=1 << 20))
    assert all(o.ok for o in report.outcomes), [o.error for o in report.outcomes]
    assert placed["w.bin"] == content and placed["c.json"] == b'{"a": 1}'
    assert reads == [], "bytes that arrived in order were read back to be hashed"


class RawServer:
    """Answers each request on a connection with `reply` (raw bytes), keeping the connection."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.accepted = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
                while b"\r\n\r\n" in data:
                    _, data = data.split(b"\r\n\r\n", 1)
                    conn.sendall(self.reply)

    def close(self) -> None:
        self.sock.close()


def test_response_headers_are_read_as_http_client_reads_them(client: DataClient) -> None:
    """Names case-insensitive, the first of repeated headers, folded lines joined, chunked
    framing honoured, and the connection kept for the next request."""
    server = RawServer(
        b"HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 0-4/10\r\n"
        b"X-Linked-Size: 10\r\nX-Linked-Size: 99\r\nX-Note: a\r\n b\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    try:
        url = f"http://127.0.0.1:{server.port}/file"
        for _ in range(2):
            response = client.get(url, {"Range": "bytes=0-4"}, TIMEOUTS)
            assert response.status_code == 206
            assert response.headers.get("Content-Range") == "bytes 0-4/10"
            assert response.headers.get("x-linked-size") == "10"
            assert response.headers.get("X-Note") == "a b"
            assert response.headers.get("Location") is None
            assert read_all(response) == b"hello"
        assert server.accepted == 1
    finally:
        server.close()


def test_a_response_with_too_many_headers_is_a_network_error(client: DataClient) -> None:
    server = RawServer(b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"Content-Length: 0\r\n\r\n")
    try:
        with pytest.raises(WireError, match="more than 100 headers"):
            client.get(f"http://127.0.0.1:{server.port}/file", {}, TIMEOUTS)
    finally:
        server.close()


def test_without_a_proxy_variable_the_session_is_never_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The `requests` session exists for proxied origins only; building it imports `requests`,
    which a run without a proxy must not pay for (the factory here refuses to be called)."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)

    def no_session() -> requests.Session:
        raise AssertionError("the requests session was built without a proxy")

    data = DataClient(no_session, ("http", "hub.example", 80), None, user_agent="hfsync/test")
    server = OneShotServer(b"plain")
    try:
        assert read_all(data.get(f"http://127.0.0.1:{server.port}/f", {}, TIMEOUTS)) == b"plain"
        assert b"user-agent: hfsync/test" in server.requests[0].lower()
    finally:
        data.close()
        server.close()
