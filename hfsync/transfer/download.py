"""The state of one file while its chunks are in flight.

Many workers touch one file at once: they write disjoint ranges, report finished ranges, and
take turns driving the hasher over the contiguous prefix. Everything they share lives here,
behind one condition variable; the engine decides what to do, this class keeps it consistent.

`generation` changes when the file starts over (the server ignored Range, or a refetch after a
hash mismatch); a task of an older generation must stop and its ranges no longer count.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests

from ..errors import DiskError
from ..gate import OriginGate
from .fetch import Source
from .jobs import FileJob
from .journal import Journal
from .partfile import PartFile, disk_error
from .ranges import RangeSet, split
from .verify import PrefixHasher


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
        session: requests.Session,
        verify: bool,
        chunk_size: int,
        gate: OriginGate | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.job = job
        self.index = index
        self.size = job.size
        self.verify = verify
        self.source = Source(session, job.url, job.path, job.size, gate, stop)
        self.part = PartFile(job.part_path, job.size)
        self.journal = Journal(job.part_path, job.size, job.etag, enabled=job.size > chunk_size)
        self.cond = threading.Condition()
        self.done = RangeSet()
        self.hasher = PrefixHasher(job.etag, job.size, verify)
        self.generation = 0
        self.streaming = False  # the server ignores Range: one stream from byte 0
        self.ranged_writes = False  # some 206 body was written in this run
        self.hashing = False
        self.refetched = False
        self.ended = False
        self.resumed = 0  # bytes found on disk from an earlier run
        self.received = 0  # bytes that came over the network
        self.counted = 0  # bytes reported to the progress sink (never above size)
        self._fresh = True
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
            if self.hashing:
                return False  # the thread hashing now will see the new range
            self.hashing = True
            return True

    def _journal(self, start: int, end: int) -> None:
        try:
            self.journal.record(start, end)
        except OSError as exc:
            raise disk_error(exc, self.journal.path, "write the resume journal") from exc

    def drive_hasher(self, buf: memoryview, stop: threading.Event) -> bool:
        """Hash the contiguous finished prefix; True when all of the file is hashed.

        Only one thread drives a file's hasher at a time (`hashing`); whoever completes a range
        while nobody hashes takes over, so the hasher trails the download closely.
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
                        return offset == self.size
                if not self.hasher.enabled:
                    self.hasher.skip_to(target)
                    continue
                n = self.part.read_into(buf[: min(len(buf), target - offset)], offset)
                if n <= 0:
                    raise DiskError(f"{self.part.path}: part file is shorter than expected")
                self.hasher.update(buf[:n])
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
            n = self.part.read_into(buf[: min(len(buf), self.size - hasher.offset)], hasher.offset)
            if n <= 0:
                break
            hasher.update(buf[:n])
        return hasher

    # -- mode changes -----------------------------------------------------------------------

    def claim_stream(self) -> int | None:
        """Switch to single-stream mode; the new generation, or None if another task has it."""
        with self.cond:
            if self.ended or self.streaming:
                return None
            self.streaming = True
            self.generation += 1
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
