"""Content ids and the prefix hasher that verifies a file while it downloads.

The Hub's content id is the sha256 of the bytes for LFS files (64 hex) and the git blob sha1
(`sha1(b"blob <size>\\0" + bytes)`, 40 hex) for regular files. Hashing the contiguous prefix as
chunks land overlaps verification with the transfer, so little is left to hash at the end.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from ..errors import IntegrityError
from ..hashing import new_hasher


class PrefixHasher:
    """Hashes a file's bytes in order; `offset` is how far it got.

    With `enabled=False` (`TransferConfig.verify=False`) it only tracks the offset, so the
    engine's bookkeeping is the same either way. An etag that is not a content id cannot be
    verified against: that is an IntegrityError, never a silent fall back to a size check
    (the listing validator refuses such ids first; this is the second line of defence).
    """

    def __init__(self, etag: str, size: int, enabled: bool = True) -> None:
        self.etag = etag.lower()
        self.size = size
        self._hash = new_hasher(etag, size) if enabled else None
        if enabled and self._hash is None:
            raise IntegrityError(
                f"cannot verify against {etag[:80]!r}: not a content id (40 or 64 hex "
                "digits); nothing was downloaded"
            )
        self.offset = 0

    @property
    def enabled(self) -> bool:
        return self._hash is not None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(data)
        self.offset += len(data)

    def skip_to(self, offset: int) -> None:
        """Advance without hashing (only when disabled)."""
        assert self._hash is None
        self.offset = offset

    def matches(self) -> bool:
        """True when everything was hashed and the digest is the expected id (or hashing is off)."""
        if self.offset != self.size:
            return False
        return self._hash is None or self._hash.hexdigest() == self.etag


class Ticket:
    """A job handed to a HashThread: `wait` returns once it ran (re-raising what it raised)."""

    __slots__ = ("_done", "_error")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._error: BaseException | None = None

    def wait(self) -> None:
        self._done.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class HashThread:
    """One background thread that runs hashing jobs in the order they were submitted.

    Why: a worker that hashes its own receive buffer does receive, write and hash one after
    the other on one core. hashlib releases the GIL for big buffers, so handing the buffer to
    this thread and receiving the next one into a second buffer puts the hash on the other core
    (measured: CPU time about the same, wall time of an unthrottled download close to the
    receive alone). FIFO order is what keeps a file's hash sequential.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], Ticket] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> Ticket:
        ticket = Ticket()
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name="hfsync-hasher", daemon=True
                    )
                    self._thread.start()
        self._jobs.put((job, ticket))
        return ticket

    def close(self) -> None:
        """Let the thread exit once the jobs queued so far ran."""
        with self._lock:
            if self._thread is not None:
                self._jobs.put(None)
                self._thread = None

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, ticket = item
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on it
                ticket._error = exc  # noqa: SLF001 - the ticket's own producer
            ticket._done.set()  # noqa: SLF001


class HashPipe:
    """A worker's two receive buffers, each possibly lent to the HashThread.

    The worker reads into `buffer()`, which alternates between the halves and first waits
    until the thread is done with the half it hands out; so at most one hash per worker is
    in flight and no byte is overwritten before it was hashed. `drain()` waits for all.
    """

    def __init__(self, memory: memoryview, thread: HashThread) -> None:
        half = len(memory) // 2
        self._halves = (memory[:half], memory[half:])
        self._tickets: list[Ticket | None] = [None, None]
        self._turn = 1
        self.thread = thread

    def buffer(self) -> memoryview:
        turn = self._turn = 1 - self._turn
        ticket = self._tickets[turn]
        if ticket is not None:
            self._tickets[turn] = None
            ticket.wait()
        return self._halves[turn]

    def submit(self, job: Callable[[], None]) -> None:
        """Hash (run `job` on) the buffer last returned by `buffer()`, in the background."""
        self._tickets[self._turn] = self.thread.submit(job)

    def drain(self) -> None:
        for turn in (0, 1):
            ticket = self._tickets[turn]
            if ticket is not None:
                self._tickets[turn] = None
                ticket.wait()
