"""A byte-counting TCP proxy on 127.0.0.1, to prove what crossed an SSH connection and to cut it.

``with TCPProxy(host, port) as proxy:`` listens on ``proxy.port`` and forwards every connection
to ``host:port``. ``bytes_up`` (client -> server) and ``bytes_down`` count payload bytes over all
connections. ``cut()`` resets every current connection now; ``cut_after(n)`` resets them once
``n`` more bytes went upstream (exactly ``n`` are forwarded), simulating a link that dies
mid-push. ``rate`` (bytes/s, upstream) slows the link, so a test can act on a push that is
still in flight. The proxy stops by itself after ``lifetime`` seconds so a stuck test cannot
leave it running, and all its threads are daemons.
"""

from __future__ import annotations

import socket
import struct
import threading
import time


class TCPProxy:
    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        lifetime: float = 300.0,
        rate: float | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        self.rate = rate
        self._started = time.monotonic()
        self.lifetime = lifetime
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._cut_at: int | None = None  # absolute bytes_up at which to cut
        self._stop = threading.Event()
        self._flowing = threading.Event()  # cleared by pause(): upstream bytes are held back
        self._flowing.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.host, self.port = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    # -- control -------------------------------------------------------------------------

    def start(self) -> TCPProxy:
        self._thread.start()
        return self

    def cut(self) -> None:
        """Reset (RST) every current connection, both sides."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            self.cuts += 1
            self._cut_at = None
        for a, b in pairs:
            _reset(a)
            _reset(b)

    def cut_after(self, n: int) -> None:
        """Cut all connections once ``n`` more bytes have gone upstream."""
        with self._lock:
            self._cut_at = self.bytes_up + n

    def pause(self) -> None:
        """Hold every upstream byte until resume(): a run stays mid-transfer (and keeps its
        locks) for as long as the test needs, however slow the machine is."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def stop(self) -> None:
        self._stop.set()
        self._flowing.set()
        self.cut()
        self._listener.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2)

    def __enter__(self) -> TCPProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- forwarding ----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        deadline = time.monotonic() + self.lifetime
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
                self.connections += 1
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, up), daemon=True).start()
        if not self._stop.is_set():
            self.stop()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                cut_now = False
                with self._lock:
                    if up:
                        if self._cut_at is not None and self.bytes_up + len(data) >= self._cut_at:
                            data = data[: self._cut_at - self.bytes_up]
                            cut_now = True
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
                if data:
                    if up:
                        self._flowing.wait()
                    if up and self.rate:
                        self._throttle()
                    dst.sendall(data)
                if cut_now:
                    self.cut()
                    return
        except OSError:
            return

    def _throttle(self) -> None:
        """Hold upstream bytes back until the average since start is under ``rate`` (a
        pacing wait, not a timing assumption: the test never depends on how long it takes)."""
        ahead = self.bytes_up / self.rate - (time.monotonic() - self._started)
        if ahead > 0:
            time.sleep(min(ahead, 0.5))


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0, so the peer sees a reset like a dropped link, not a clean EOF."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)  # wakes a pump thread blocked in recv(); sends nothing
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
