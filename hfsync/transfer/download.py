"""The state of one file while its chunks are in flight.

Many workers touch one file at once: they write disjoint ranges, report finished ranges, and
take turns driving the hasher over the contiguous prefix. Everything they share lives here,
behind one condition variable; the engine decides what to do, this class keeps it consistent.

`generation` changes when the file starts over (the server ignored Range, or a refetch after a
hash mismatch); a task of an older generation must stop and its ranges no longer count.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import DiskError
from ..gate import OriginGate
from .fetch import Source
from .jobs import FileJob
from .journal import Journal
from .partfile import PartFile, disk_error
from .ranges import RangeSet, split
from .verify import HashPipe, PrefixHasher
from .wire import DataClient

WRITEBACK_STEP = 16 * 1024 * 1024  # verified bytes handed to the disk at a time (one stream)
# Ranged writes start the write-out of every aligned block of this size they complete: what is
# left dirty for the fsync is then at most about one block per stream (see `write`).
WRITEOUT_BLOCK = 2 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2  # start write-out of dirty pages, do not wait for it
# Verified bytes further than DROP_LAG behind the hasher leave the page cache, DROP_STEP at a
# time (`drop_behind`): by then their write-out (started per WRITEOUT_BLOCK) is long done.
DROP_STEP = 16 * 1024 * 1024
DROP_LAG = 64 * 1024 * 1024


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    """libc's `sync_file_range` (Linux), or None where it does not exist.

    Python's `os` has no binding. Without early write-out the kernel keeps a whole multi-GiB
    file dirty (below `dirty_background_ratio`), and the fsync before the rename then writes
    all of it while the transfer is already over: measured 0.57 s of a 4.3 s 1 GiB download.
    """
    if not hasattr(os, "posix_fadvise"):  # not Linux-like: no sync_file_range either
        return None
    import ctypes  # only for downloads big enough to need it

    try:
        # The process's own symbols (libc's among them), as syncfs.py and the agent look them
        # up: `ctypes.util.find_library("c")` forks `/sbin/ldconfig -p`, mid-download.
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint)
    func.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        func(fd, offset, length, _SYNC_FILE_RANGE_WRITE)  # a hint: errors (EINVAL...) ignored

    return start


_writeback: Callable[[int, int, int], None] | None = None
_writeback_loaded = False
_writeback_lock = threading.Lock()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing `[offset, offset+length)` of `fd` to disk, now.

    Only ever a head start for the fsync that still precedes every rename into place: the
    bytes stay in the page cache and durability is exactly as before.
    """
    global _writeback, _writeback_loaded
    if not _writeback_loaded:
        with _writeback_lock:
            if not _writeback_loaded:
                _writeback = _load_sync_file_range()
                _writeback_loaded = True
    if _writeback is not None:
        _writeback(fd, offset, length)


class Abandon(Exception):
    """Internal: this task must stop quietly (run stopped, file ended, or task went stale)."""


@dataclass
class Task:
    """A byte range of one file for one worker; `start == end` means "just drive the hasher"."""

    file: FileDownload
    start: int
    end: int
    generation: int
    pos: int = 0  # bytes before this offset are written (set while the task runs)


class FileDownload:
    """Shared per-file state: part file, journal, finished ranges, hasher, mode."""

    def __init__(
        self,
        job: FileJob,
        index: int,
        session: DataClient,
        verify: bool,
        chunk_size: int,
        gate: OriginGate | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.job = job
        self.index = index
        self.size = job.size
        self.verify = verify
        self.source = Source(
            session, job.url, job.path, job.size, gate, stop, cached_url=job.cached_url
        )
        self.part = PartFile(job.part_path, job.size)
        self.journal = Journal(job.part_path, job.size, job.etag, enabled=job.size > chunk_size)
        self.cond = threading.Condition()
        # One pwrite into this file at a time: ext4 (and most filesystems) take the inode's
        # write lock for a buffered write anyway, and kernel waiters spin on it while its owner
        # copies -- on two cores that spinning took ~10% of a capped download's CPU. Waiting
        # here sleeps instead. Never held together with `cond`.
        self.write_lock = threading.Lock()
        self.done = RangeSet()
        self.hasher = PrefixHasher(job.etag, job.size, verify)
        self.generation = 0
        self.streaming = False  # the server ignores Range: one stream from byte 0
        self.ranged_writes = False  # some 206 body was written in this run
        self.hashing = False  # someone drives the hasher, or has buffers queued for it
        self._inline_pending = 0
        self._queued_to = 0  # where the queued buffers end
        self._queued_hasher: PrefixHasher | None = None  # ... in this hasher (a restart swaps it)
        self._placing = False  # drive_hasher handed the hashed file to one caller
        self.refetched = False
        self.ended = False
        self.resumed = 0  # bytes found on disk from an earlier run
        self.received = 0  # bytes that came over the network
        self.counted = 0  # bytes reported to the progress sink (never above size)
        self._fresh = True
        self._written_back = 0  # bytes before this offset were handed to start_writeback
        self._dropped = 0  # bytes before this offset were dropped from the page cache
        self._refs = 0
        self._writers = 0

    # -- setup ------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Load a matching journal (resume) if the part file it describes is still there."""
        ranges = self.journal.load()
        try:
            part_size = self.part.path.stat().st_size
        except OSError:
            part_size = -1
        if ranges is not None and part_size == self.size:
            self.done = ranges
            self._fresh = False
            self.resumed = self.counted = ranges.total()

    def tasks(self, chunk_size: int) -> list[Task]:
        """Tasks for everything missing; a hasher task first when a resumed prefix waits."""
        with self.cond:
            gen = self.generation
            missing = split(self.done.missing(self.size), chunk_size)
            tasks = [Task(self, s, e, gen) for s, e in missing]
            if self.done.prefix_end() > 0 or not tasks:
                tasks.insert(0, Task(self, self.done.prefix_end(), self.done.prefix_end(), gen))
            return tasks

    # -- leases: the part file stays open while any worker uses it --------------------------

    @contextmanager
    def lease(self) -> Iterator[None]:
        with self.cond:
            if self.ended:
                raise Abandon
            if self._refs == 0:
                self.part.open(fresh=self._fresh)
                try:
                    self.journal.open(fresh=self._fresh)
                except OSError as exc:
                    self.part.close()
                    raise disk_error(exc, self.journal.path, "write the resume journal") from exc
                self._fresh = False
            self._refs += 1
        try:
            yield
        finally:
            with self.cond:
                self._refs -= 1
                if self._refs == 0:
                    self.part.close()
                    self.journal.close()
                self.cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Brackets a body being written, so a stream switch can wait for stale writers."""
        with self.cond:
            self._writers += 1
        try:
            yield
        finally:
            with self.cond:
                self._writers -= 1
                self.cond.notify_all()

    def write(self, data: memoryview, offset: int) -> None:
        """`pwrite` received bytes at `offset`, one writer of this file at a time.

        A ranged write that completes aligned `WRITEOUT_BLOCK`s starts their disk write-out.
        Why here and not behind the hasher: with many streams the verified prefix trails the
        written bytes by up to a chunk per stream and reaches the end all at once when the last
        chunk lands, so the fsync before the rename had all that left to write (measured during
        a capped 2 GiB download: 150-280 MiB dirty behind the hasher, ~12 MiB this way). Each
        stream writes its range front to back, so a block is complete once a write passes its
        end; the last partial block of a range is started by `complete`.
        """
        with self.write_lock:
            self.part.write(data, offset)
        if self.streaming or self.size <= WRITEBACK_STEP:
            return  # one stream: `write_back` follows the hasher; small files: fsync alone
        end = offset + len(data)
        block_end = end - end % WRITEOUT_BLOCK
        if block_end > offset:
            _write_out(self.part, offset - offset % WRITEOUT_BLOCK, block_end)

    def write_back(self, verified: int) -> None:
        """Start disk write-out of the verified prefix up to `verified`, 16 MiB at a time.

        Single-stream mode only (the server ignored Range): there the bytes are hashed as
        they are written, so the verified prefix is the written one. Ranged writes start
        their own write-out (`write`). Either way the pages stay cached for the hasher.
        """
        start = self._written_back
        if self.size <= WRITEBACK_STEP:
            return  # small files: the fsync alone is cheaper than the extra call
        if verified - start < WRITEBACK_STEP and verified < self.size:
            return
        _write_out(self.part, start, verified)
        self._written_back = verified
        self.drop_behind(verified)

    def drop_behind(self, verified: int) -> None:
        """Drop verified bytes more than DROP_LAG behind `verified` from the page cache.

        Why: a big download otherwise fills the page cache with pages nobody reads again, each
        a page the kernel must find first. In a VM that hands freed memory back to its host
        (virtio free page reporting) every such page is a host page fault too: measured on the
        bench VM, touching 2 GiB of fresh memory took 0.9-4.2 s of system time, more than the
        whole download's user time. Dropping the pages behind the hasher recycles a working set
        of ~DROP_LAG. Only a hint: the kernel keeps dirty pages and those still being written
        (the fsync before the rename writes them), and nothing ahead of the hasher is touched,
        so no byte is read back from disk to be hashed.
        """
        end = verified - DROP_LAG
        end -= end % DROP_STEP
        if end - self._dropped < DROP_STEP:
            return  # the common case, per received buffer: no lock (a pwrite may hold it)
        with self.write_lock:  # concurrent writers: each range is dropped once
            start = self._dropped
            if end - start < DROP_STEP:
                return
            self._dropped = end
        _drop(self.part, start, end)

    def wait_for_writers(self, timeout: float) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self._writers == 0, timeout)

    # -- progress bookkeeping ---------------------------------------------------------------

    def count(self, nbytes: int) -> int:
        """Account received bytes; return how many are new for the progress bar."""
        with self.cond:
            self.received += nbytes
            new = max(0, min(nbytes, self.size - self.counted))
            self.counted += new
            return new

    def is_stale(self, task: Task) -> bool:
        return self.ended or task.generation != self.generation

    # -- ranges and hashing -----------------------------------------------------------------

    def record(self, start: int, end: int, generation: int) -> None:
        """Journal a range whose bytes are written (also partial chunks, for resume)."""
        with self.cond:
            if generation != self.generation or self.streaming or end <= start:
                return
            self.done.add(start, end)
            self._journal(start, end)

    def complete(self, task: Task) -> bool:
        """Record a finished task; True when the caller must now drive the hasher."""
        with self.cond:
            if self.ended or task.generation != self.generation or self.streaming:
                return False
            if task.end > task.start:
                self.done.add(task.start, task.end)
                self._journal(task.start, task.end)
                if self.size > WRITEBACK_STEP:  # the range's last partial block (`write`)
                    _write_out(
                        self.part, max(task.start, task.end - task.end % WRITEOUT_BLOCK), task.end
                    )
            if self.hashing:
                return False  # the thread hashing now will see the new range
            self.hashing = True
            return True

    def _journal(self, start: int, end: int) -> None:
        try:
            self.journal.record(start, end)
        except OSError as exc:
            raise disk_error(exc, self.journal.path, "write the resume journal") from exc

    def hash_inline(self, data: memoryview, offset: int, pipe: HashPipe | None = None) -> None:
        """Hash `data`, just written at `offset`, from the worker's own buffer when it is exactly
        where the hasher stands and nobody drives the hasher: those bytes are never read back
        from disk (one copy and a pass over memory saved; hashlib releases the GIL meanwhile).

        With a `pipe` the hash runs on the pipe's HashThread while the worker receives the next
        buffer; the hasher stays claimed (`hashing`) while buffers are queued, and any worker
        may queue a buffer that continues exactly where the queued ones end (the one thread
        runs them in order: the worker that takes over the next chunk goes on inline).

        Bytes hashed here may lie past the recorded prefix; `drive_hasher` starts from
        `hasher.offset`, so they are hashed exactly once, and every byte is still hashed
        before the file is placed. The caller will call `complete` (after `pipe.drain()`,
        which drives the hasher over whatever others finished meanwhile) when its task ends.
        """
        with self.cond:
            hasher = self.hasher
            if not hasher.enabled or self.streaming or self.ended:
                return
            if self.hashing:
                # drive_hasher runs (nothing queued), or this buffer does not continue the queue
                if (
                    pipe is None
                    or not self._inline_pending
                    or self._queued_hasher is not hasher
                    or self._queued_to != offset
                ):
                    return
            elif hasher.offset != offset:
                return
            self.hashing = True
            if pipe is not None:
                self._queued_hasher = hasher
                self._queued_to = offset + len(data)
                self._inline_pending += 1
        if pipe is not None:
            pipe.submit(lambda: self._hash_queued(hasher, data))
            return
        try:
            hasher.update(data)
        finally:
            with self.cond:
                self.hashing = False

    def _hash_queued(self, hasher: PrefixHasher, data: memoryview) -> None:
        """On the HashThread: one buffer queued by `hash_inline`; the last one frees the hasher."""
        try:
            hasher.update(data)
        finally:
            with self.cond:
                self._inline_pending -= 1
                if self._inline_pending == 0:
                    self.hashing = False
        self.drop_behind(hasher.offset)  # on the HashThread: off the receiving worker

    def drive_hasher(self, buf: memoryview, stop: threading.Event) -> bool:
        """Hash the contiguous finished prefix; True when all of the file is hashed.

        Only one thread drives a file's hasher at a time (`hashing`); whoever completes a range
        while nobody hashes takes over, so the hasher trails the download closely. True is
        returned once per generation: that caller verifies and places the file.
        """
        gen = self.generation
        try:
            while True:
                with self.cond:
                    if self.ended or self.generation != gen or stop.is_set():
                        self.hashing = False
                        return False
                    target = self.done.prefix_end()
                    offset = self.hasher.offset
                    if target <= offset:
                        self.hashing = False
                        # inline hashes can finish the file before the last tasks complete:
                        # then only the first of them to get here places it
                        if offset != self.size or self._placing:
                            return False
                        self._placing = True
                        return True
                if not self.hasher.enabled:
                    self.hasher.skip_to(target)
                    continue
                n = self.part.hash_range(self.hasher.update, offset, target - offset, buf)
                if n <= 0:
                    raise DiskError(f"{self.part.path}: part file is shorter than expected")
                self.drop_behind(offset + n)
        except BaseException:
            with self.cond:
                self.hashing = False
            raise

    def hash_from_disk(self, buf: memoryview, stop: threading.Event) -> PrefixHasher:
        """Hash the whole part file as it is on disk now."""
        hasher = PrefixHasher(self.job.etag, self.size, self.verify)
        if not hasher.enabled:
            hasher.skip_to(self.size)
            return hasher
        while hasher.offset < self.size:
            if stop.is_set():
                raise Abandon
            n = self.part.hash_range(hasher.update, hasher.offset, self.size - hasher.offset, buf)
            if n <= 0:
                break
        return hasher

    # -- mode changes -----------------------------------------------------------------------

    def claim_stream(self) -> int | None:
        """Switch to single-stream mode; the new generation, or None if another task has it."""
        with self.cond:
            if self.ended or self.streaming:
                return None
            self.streaming = True
            self.generation += 1
            self._written_back = 0
            self._dropped = 0
            self.done = RangeSet()
            try:
                self.journal.reset()  # ranges mean nothing without Range support
            except OSError as exc:
                raise disk_error(exc, self.journal.path, "write the resume journal") from exc
            return self.generation

    def restart(self, chunk_size: int) -> list[Task]:
        """Start the whole file over (refetch after a hash mismatch); the new tasks."""
        with self.cond:
            self.refetched = True
            self.generation += 1
            self._placing = False
            self._written_back = 0
            self._dropped = 0
            self.done = RangeSet()
            self.hasher = PrefixHasher(self.job.etag, self.size, self.verify)
            try:
                self.journal.reset()
            except OSError as exc:
                raise disk_error(exc, self.journal.path, "write the resume journal") from exc
            gen = self.generation
        return [Task(self, s, e, gen) for s, e in split([(0, self.size)], chunk_size)]

    def discard(self) -> None:
        """Delete part and journal (the content was wrong); open fds close with the last lease."""
        for path in (self.part.path, self.journal.path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def _write_out(part: PartFile, start: int, end: int) -> None:
    """Start write-out of `[start, end)` if the part file is open (a hint: never waits)."""
    fd = part.fd
    if fd is not None and end > start:
        start_writeback(fd, start, end - start)


def _drop(part: PartFile, start: int, end: int) -> None:
    """Drop clean cached pages of `[start, end)` if the part file is open (a hint)."""
    fd = part.fd
    if fd is not None and end > start and hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass  # only a hint
