"""The executor: every chunk of every file through one pool of worker threads.

Each worker owns its keep-alive connections (`wire`, one per origin) and loops: take the next
task, fetch its range with retries, write it with `pwrite` (a buffer that lands where the
file's hasher stands is hashed right from memory), journal it, and -- if it extended the file's
finished prefix and nobody else is hashing that file -- hash the rest of the prefix from disk.
Whoever hashes the last byte verifies, fsyncs and hands the file to the target (`finalize`),
so files land as soon as they are complete; in a run with many small files those are handed
to the settler instead (settle.py), which makes a batch of them durable with one syncfs.
Small files are queued first so configs and tokenizers arrive before the big weights.

A server that answers a Range request with 200 gets one worker streaming the whole file from
byte 0 instead (mirrors, proxies); the bytes are verified by size and hash the same way.
"""

from __future__ import annotations

import collections
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterable

from .. import httplog
from ..auth import redact
from ..defaults import INTERRUPTED_MESSAGE, origin
from ..errors import HfsyncError, IntegrityError, Interrupted, NetworkError
from ..hub import HubClient
from ..units import human_size
from .download import Abandon, FileDownload, Task
from .fetch import READ_ERRORS, Expired, Retryable, Timeouts, parse_content_range
from .jobs import FileJob, FileOutcome, NullProgress, ProgressSink, TransferConfig, TransferReport
from .partfile import SMALL_FILE, disk_error
from .ramp import Stopped, StreamRamp
from .ranges import guided_piece
from .ratelimit import TokenBucket
from .settle import Settler
from .space import allocated_bytes, check_free_space
from .verify import HashPipe, HashThread, PrefixHasher
from .wire import DataClient, Response

MAX_HTTP_SIZE = 50 * 1000**3  # the Hub serves bigger files only through Xet
READ_SIZE = 512 * 1024  # per read: large enough that per-call overhead is noise; x2 per worker
MIN_PIECE = 2 * 1024 * 1024  # smallest piece near the end: ~0.1 s at 25 MB/s, one request each
_STOP_GRACE = 5.0
INLINE_HASH_MAX = SMALL_FILE  # files up to this size are hashed by the worker receiving them


def run_transfers(
    jobs: Iterable[FileJob],
    client: HubClient,
    config: TransferConfig | None = None,
    progress: ProgressSink | None = None,
) -> TransferReport:
    """Download and verify `jobs`; finalize each file as soon as it is complete.

    One file's failure does not stop the others: its outcome carries the typed error. Raises
    DiskError (before any request) when a filesystem lacks room, and Interrupted on Ctrl-C
    (journals kept, so a rerun resumes). `progress` gets start/advance/file_done; closing it is
    left to its owner, so one sink can span several runs.
    """
    engine = _Engine(list(jobs), client, config or TransferConfig(), progress or NullProgress())
    return engine.run()


class _TaskQueue:
    """FIFO of tasks that can take urgent work at the front and be closed to stop workers.

    Chunks of many-chunk files shrink as the queue runs dry (`ranges.guided_piece`): a task
    bigger than its share is cut, its rest put back at the front, so the order is unchanged.
    """

    def __init__(
        self,
        streams: Callable[[], int] = lambda: 1,
        chunk_size: int = 0,
        min_piece: int = 0,
    ) -> None:
        self._items: collections.deque[Task] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._streams = streams  # how many streams share the queued bytes now (the ramp's)
        self._chunk_size = chunk_size  # tasks of files up to this size are never cut
        self._min_piece = min_piece  # 0: never cut
        self._queued = 0  # bytes of the queued ranges

    def put(self, tasks: Iterable[Task], *, front: bool = False) -> None:
        tasks = list(tasks)
        with self._cond:
            if front:
                self._items.extendleft(reversed(tasks))
            else:
                self._items.extend(tasks)
            self._queued += sum(t.end - t.start for t in tasks)
            self._cond.notify_all()

    def get(self, small_only: bool = False) -> Task | None:
        """The next task, None once closed; `small_only` waits while the next one is not a
        whole small file (the extra small-file workers: a big file's chunks never get more
        streams than `connections`)."""
        with self._cond:
            while not self._closed and (
                not self._items or (small_only and self._items[0].file.size > SMALL_FILE)
            ):
                self._cond.wait()
            if self._closed:
                return None
            task = self._items.popleft()
            size = task.end - task.start
            if task.file.size > self._chunk_size:
                piece = guided_piece(size, self._queued, self._streams(), self._min_piece)
                if piece < size:
                    rest = Task(task.file, task.start + piece, task.end, task.generation)
                    self._items.appendleft(rest)
                    task = Task(task.file, task.start, task.start + piece, task.generation)
                    size = piece
            self._queued -= size
            return task

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class _Attempts:
    """Try counting for one task: bounded failures in a row, reset whenever bytes arrive."""

    def __init__(self, engine: _Engine, file: FileDownload) -> None:
        self.engine = engine
        self.file = file
        self.failures = 0
        self.expiries = 0

    def progress(self) -> None:
        self.failures = 0
        self.expiries = 0

    def failed(self, exc: Retryable) -> None:
        """Sleep before the next try, or raise NetworkError when the tries are used up.

        A wait the server asked for is not a failure: the origin's gate (`client.gate`) holds
        every worker off until it ends, bounded by the gate's time budget, not by the tries.
        """
        engine = self.engine
        if engine.stop.is_set():
            raise Abandon
        if exc.wait is not None:
            return
        self.failures += 1
        tries = engine.config.max_tries
        if self.failures >= tries:
            raise NetworkError(
                redact(
                    f"{self.file.job.path}: download failed after {tries} tries ({exc})",
                    engine.client.token,
                )
            )
        if engine.stop.wait(engine.client.retry.delay(self.failures - 1)):
            raise Abandon

    def expired(self, exc: Expired) -> None:
        self.expiries += 1
        if self.expiries > self.engine.config.max_tries:
            raise NetworkError(
                f"{self.file.job.path}: the CDN keeps refusing freshly signed URLs (HTTP 403)"
            )
        self.file.source.invalidate(exc.url)


class _Engine:
    def __init__(
        self, jobs: list[FileJob], client: HubClient, config: TransferConfig, progress: ProgressSink
    ) -> None:
        self.jobs = jobs
        self.client = client
        self.config = config
        self.progress = progress
        self.timeouts = Timeouts(config.connect_timeout, config.read_timeout)
        self.bucket = TokenBucket(config.bwlimit) if config.bwlimit else None
        self.read_size = self.bucket.read_size(READ_SIZE) if self.bucket else READ_SIZE
        self.stop = threading.Event()
        self.outcomes: list[FileOutcome | None] = [None] * len(jobs)
        self._lock = threading.Lock()
        self._remaining = 0
        self._all_done = threading.Event()
        self._interrupted = False
        self._readers: dict[int, tuple[FileDownload, Response]] = {}
        self.settler: Settler | None = None  # small files' durability, a batch at a time
        self.hash_thread = HashThread()  # hashes in-order buffers beside the receiving workers
        # 1 stream per big file first, more only while they add throughput (ramp.py)
        self.ramp = StreamRamp(config.connections, start=1)
        self.queue = _TaskQueue(lambda: self.ramp.limit, config.chunk_size, MIN_PIECE)

    # -- orchestration ----------------------------------------------------------------------

    def run(self) -> TransferReport:
        client = self.client
        session = DataClient(
            lambda: client.session,  # built only for a proxied origin
            origin(client.endpoint),
            client.token,
            on_response=httplog.log_request if httplog.enabled() else None,
            user_agent=client.user_agent,
        )
        try:
            return self._run_all(session)
        finally:
            if self.settler is not None:
                self.settler.close()  # after the workers: nothing is submitted any more
            session.close()  # every worker's keep-alive connections
            self.hash_thread.close()

    def _run_all(self, session: DataClient) -> TransferReport:
        files: list[FileDownload] = []
        for index, job in enumerate(self.jobs):
            if job.size > MAX_HTTP_SIZE:
                self.outcomes[index] = FileOutcome(
                    job,
                    ok=False,
                    error=HfsyncError(
                        f"{job.path}: {human_size(job.size)} is over the 50 GB limit of plain HTTP "
                        "downloads; the Hub serves such files only through Xet"
                    ),
                )
                continue
            try:
                f = FileDownload(
                    job,
                    index,
                    session,
                    self.config.verify,
                    self.config.chunk_size,
                    gate=self.client.gate,
                    stop=self.stop,
                )
            except IntegrityError as exc:  # an etag nothing can be verified against
                self.outcomes[index] = FileOutcome(job, ok=False, error=exc)
                continue
            f.prepare()
            files.append(f)
        check_free_space(
            (f.part.path, max(0, f.size - allocated_bytes(f.part.path))) for f in files
        )
        self.progress.start(sum(j.size for j in self.jobs), self.jobs)
        for f in files:
            if f.resumed:
                self.progress.advance(f.job, f.resumed)
        files.sort(key=lambda f: (f.size, f.index))  # small files first
        tasks = [t for f in files for t in f.tasks(self.config.chunk_size)]
        self._remaining = len(files)
        self.settler = Settler.for_run(
            files, self._place, self._fail, lambda: self._remaining, self.stop
        )
        if files:
            self._work(tasks)
        return TransferReport([o for o in self.outcomes if o is not None])

    def _work(self, tasks: list[Task]) -> None:
        self.queue.put(tasks)
        # all connections even for few tasks: a refetch or a resumed file can add work later
        count = max(1, self.config.connections)
        small = sum(1 for t in tasks if t.file.size <= SMALL_FILE)  # one task each
        extra = max(0, min(small, self.config.small_connections or count) - count)
        workers = [
            threading.Thread(
                target=self._worker, args=(i >= count,), name=f"hfsync-transfer-{i}", daemon=True
            )
            for i in range(count + extra)
        ]
        for worker in workers:
            worker.start()
        try:
            while not self._all_done.wait(0.25):
                if self._interrupted:
                    raise KeyboardInterrupt
                if not any(w.is_alive() for w in workers) and not self._all_done.is_set():
                    raise HfsyncError("internal error: all transfer workers exited early")
        except KeyboardInterrupt:
            self._shutdown()
            deadline = time.monotonic() + _STOP_GRACE
            for worker in workers:
                worker.join(max(0.0, deadline - time.monotonic()))
            raise Interrupted(INTERRUPTED_MESSAGE) from None
        for worker in workers:
            worker.join()

    def _shutdown(self) -> None:
        self.stop.set()
        self.queue.close()
        with self._lock:
            readers = list(self._readers.values())
        for _, reader in readers:
            reader.abort()

    def _end(self, f: FileDownload, ok: bool, error: BaseException | None = None) -> None:
        with self._lock:
            if f.ended:
                return
            with f.cond:
                f.ended = True
            self.outcomes[f.index] = FileOutcome(
                f.job, ok=ok, bytes_transferred=f.received, error=error
            )
            self._remaining -= 1
            last = self._remaining == 0
        self.progress.file_done(f.job, ok)
        if self.settler is not None:
            self.settler.wake()
        if last:
            self._all_done.set()  # before the queue closes, so no worker exits before it is set
            self.queue.close()

    def _fail(self, f: FileDownload, error: BaseException) -> None:
        """End `f` as failed; an error that is not an HfsyncError (a bug in handling one file:
        it must not end the run) is reported as one naming the file."""
        if f.ended:
            return
        if not isinstance(error, HfsyncError):
            wrapped = HfsyncError(f"{f.job.path}: {type(error).__name__}: {error}")
            wrapped.__cause__ = error
            error = wrapped
        if isinstance(error, IntegrityError):
            f.discard()
        self._end(f, False, error)
        self._abort_readers(f)

    # -- workers ----------------------------------------------------------------------------

    def _worker(self, small_only: bool = False) -> None:
        # Two receive buffers: one is hashed on the hash thread while the other fills. Anonymous
        # memory, not a bytearray (which zeroes all of it): a worker that only ever receives
        # small files touches, and keeps resident, only the pages those used.
        pipe = HashPipe(memoryview(mmap.mmap(-1, 2 * READ_SIZE)), self.hash_thread)
        buf = pipe.buffer()  # also reused for every read-back hash (after pipe.drain())
        while True:
            task = self.queue.get(small_only)
            if task is None:
                return
            f = task.file
            if f.is_stale(task):
                continue
            try:
                self._run(task, buf, pipe)
            except Abandon:
                pass
            except KeyboardInterrupt:
                self._interrupted = True
                self._shutdown()
                return
            except Exception as exc:  # noqa: BLE001 - one file's failure must not end the run
                self._fail(f, exc)

    def _check(self, task: Task) -> None:
        if self.stop.is_set() or task.file.is_stale(task):
            raise Abandon

    def _run(self, task: Task, buf: memoryview, pipe: HashPipe) -> None:
        f = task.file
        # A chunk of a many-chunk file needs one of the ramp's slots (ramp.py), held until the
        # chunk is hashed or handed on: the worker taking the next chunk then finds the hasher
        # where its first buffer lands, so a single stream hashes every byte inline.
        ramp = self.ramp if task.end > task.start and f.size > self.config.chunk_size else None
        with f.lease():
            if ramp is not None:
                try:
                    # the queue's order: smaller files first, each file front to back
                    ramp.acquire((f.size, f.index, task.start), self.stop)
                except Stopped:
                    raise Abandon from None
            try:
                try:
                    fetched = task.end == task.start or self._fetch_range(task, buf, pipe, ramp)
                finally:
                    pipe.drain()  # this worker's queued hashes ran: the hasher is free again
                if not fetched:
                    return  # the file switched to single-stream mode and was handled there
                hashed = f.complete(task) and f.drive_hasher(buf, self.stop)
            finally:
                if ramp is not None:
                    ramp.release()
            if hashed:
                self._finish(f, f.hasher.matches(), buf)

    def _fetch_range(
        self, task: Task, buf: memoryview, pipe: HashPipe, ramp: StreamRamp | None = None
    ) -> bool:
        """Fetch `[task.start, task.end)`, resuming from the last byte after a drop.

        Returns False when the server ignored Range and this worker streamed the file instead.
        Whatever landed before a failure or stop is journaled, so a rerun resumes from there.
        """
        f = task.file
        attempts = _Attempts(self, f)
        task.pos = task.start
        try:
            while task.pos < task.end:
                response = self._open(task, attempts, task.pos, task.end)
                if response.status_code == 200:
                    pipe.drain()
                    self._stream(task, response, buf)
                    return False
                before = task.pos
                error = self._read_partial(task, response, pipe, ramp)
                if task.pos > before:
                    attempts.progress()
                if error is not None:
                    attempts.failed(error)
        except BaseException:
            f.record(task.start, task.pos, task.generation)
            raise
        return True

    def _read_partial(
        self, task: Task, response: Response, pipe: HashPipe, ramp: StreamRamp | None
    ) -> Retryable | None:
        """Write a 206 body at its offset, advancing `task.pos`; the error that cut it short."""
        f = task.file
        pos = task.pos
        header = response.headers.get("Content-Range")
        parsed = parse_content_range(header)
        if parsed is None or parsed[0] != pos or parsed[1] < pos:
            response.close()
            return Retryable(f"unexpected Content-Range {header!r} for offset {pos}")
        _, last, total = parsed
        if total is not None and total != f.size:
            response.close()
            raise IntegrityError(f"{f.job.path}: the server has {total} bytes, expected {f.size}")
        end = min(last + 1, task.end)
        # A small file is hashed by its worker: the HashThread's overlap pays for big streams,
        # but a small body is whole after a read or two and its worker would only wait for it
        # (two thread switches a file).
        hash_pipe = pipe if f.size > INLINE_HASH_MAX else None
        reader = response
        complete = False
        with f.writing():
            self._register(f, reader)
            try:
                f.ranged_writes = True
                while task.pos < end:
                    self._check(task)
                    view = pipe.buffer()[: min(self.read_size, end - task.pos)]
                    try:
                        n = reader.readinto(view)
                    except READ_ERRORS as exc:
                        self._check(task)
                        return Retryable(f"{type(exc).__name__}: {exc}")
                    if n <= 0:
                        return Retryable("connection closed before the end of the range")
                    self._throttle(n)
                    f.write(view[:n], task.pos)
                    f.hash_inline(view[:n], task.pos, hash_pipe)
                    if ramp is not None:
                        ramp.count(n, task.pos == task.start)
                    task.pos += n
                    self._advance(f, n)
                complete = end == last + 1
                return None
            finally:
                self._unregister()
                reader.finish(complete)

    def _stream(self, task: Task, response: Response, buf: memoryview) -> None:
        """The server ignored Range: fetch the whole file as one stream from byte 0."""
        f = task.file
        generation = f.claim_stream()
        if generation is None:
            response.close()  # another worker streams this file already
            return
        task.generation = generation
        self._abort_readers(f)
        attempts = _Attempts(self, f)
        read_buf = buf[: self.read_size]
        furthest = 0  # every try starts at byte 0: only getting further than before is progress
        while True:
            hasher, error = self._read_stream(task, response, read_buf)
            if error is None:
                f.wait_for_writers(self.timeouts.read)
                if f.ranged_writes:  # an older ranged write may have touched the file
                    hasher = f.hash_from_disk(buf, self.stop)
                if hasher.offset != f.size:
                    raise IntegrityError(
                        f"{f.job.path}: the server sent {hasher.offset} bytes, expected {f.size}"
                    )
                if hasher.matches() or f.refetched:
                    self._finish(f, hasher.matches(), buf)
                    return
                f.refetched = True  # one refetch after a mismatch
            else:
                if hasher.offset > furthest:
                    furthest = hasher.offset
                    attempts.progress()
                attempts.failed(error)
            response = self._reopen_stream(task, attempts)

    def _open(self, task: Task, attempts: _Attempts, start: int, end: int | None) -> Response:
        """GET `[start, end)` of the task's file, through transient failures and expired URLs."""
        while True:
            self._check(task)
            try:
                return task.file.source.open(start, end, self.timeouts)
            except Expired as exc:
                attempts.expired(exc)
            except Retryable as exc:
                attempts.failed(exc)

    def _reopen_stream(self, task: Task, attempts: _Attempts) -> Response:
        while True:
            response = self._open(task, attempts, 0, None)
            parsed = parse_content_range(response.headers.get("Content-Range"))
            if response.status_code == 200 or (parsed and parsed[0] == 0):
                return response
            response.close()
            attempts.failed(Retryable("unexpected partial response to a full GET"))

    def _read_stream(
        self, task: Task, response: Response, buf: memoryview
    ) -> tuple[PrefixHasher, Retryable | None]:
        f = task.file
        hasher = PrefixHasher(f.job.etag, f.size, self.config.verify)
        length = response.headers.get("Content-Length")
        if response.status_code == 200 and length and length.isdigit() and int(length) != f.size:
            response.close()
            raise IntegrityError(f"{f.job.path}: the server has {length} bytes, expected {f.size}")
        reader = response
        complete = False
        with f.writing():
            self._register(f, reader)
            try:
                while True:
                    self._check(task)
                    try:
                        n = reader.readinto(buf)
                    except READ_ERRORS as exc:
                        self._check(task)
                        return hasher, Retryable(f"{type(exc).__name__}: {exc}")
                    if n <= 0:
                        break
                    if hasher.offset + n > f.size:
                        raise IntegrityError(
                            f"{f.job.path}: the server sent more than the expected {f.size} bytes"
                        )
                    self._throttle(n)
                    f.write(buf[:n], hasher.offset)
                    hasher.update(buf[:n])
                    f.write_back(hasher.offset)
                    self._advance(f, n)
                complete = True
            finally:
                self._unregister()
                reader.finish(complete)
        if hasher.offset < f.size:
            # Short is a transfer failure, whatever the framing: a close-delimited body (no
            # Content-Length, not chunked) cut by a dropped connection reads as a clean EOF.
            # Only more bytes than listed (raised above) says the content itself is wrong.
            return hasher, Retryable(
                f"connection closed after {hasher.offset} of {f.size} bytes of the file"
            )
        return hasher, None

    def _finish(self, f: FileDownload, ok: bool, buf: memoryview) -> None:
        """Verified (or not): finalize, refetch once, or fail with IntegrityError."""
        if not ok:
            if not f.refetched and not f.streaming:
                self.queue.put(f.restart(self.config.chunk_size), front=True)
                return
            raise IntegrityError(
                f"{f.job.path}: content does not match its id {f.job.etag} "
                "(downloaded twice); nothing was written to the destination"
            )
        if self.settler is not None and self.settler.takes(f):
            assert f.part.fd is not None  # the worker's lease holds it open
            try:
                fd = os.dup(f.part.fd)
            except OSError:  # out of descriptors: this one is fsynced by its worker
                pass
            else:
                self.settler.submit(f, fd)  # made durable with others (settle.py)
                return
        f.part.fsync()
        self._place(f)

    def _place(self, f: FileDownload) -> None:
        """Hand a verified part whose bytes are on disk to the target, and end the file."""
        if self.stop.is_set():
            raise Abandon
        try:
            f.job.finalize(f.part.path)
        except OSError as exc:
            raise disk_error(exc, f.part.path, "move into place") from exc
        f.journal.remove()
        self._end(f, True)

    # -- helpers ----------------------------------------------------------------------------

    def _advance(self, f: FileDownload, nbytes: int) -> None:
        new = f.count(nbytes)
        if new:
            self.progress.advance(f.job, new)

    def _throttle(self, nbytes: int) -> None:
        if self.bucket is not None:
            self.bucket.consume(nbytes, self.stop.wait)

    def _register(self, f: FileDownload, reader: Response) -> None:
        with self._lock:
            self._readers[threading.get_ident()] = (f, reader)

    def _unregister(self) -> None:
        with self._lock:
            self._readers.pop(threading.get_ident(), None)

    def _abort_readers(self, f: FileDownload) -> None:
        """Unblock other workers reading bodies of `f` (it ended or switched mode)."""
        me = threading.get_ident()
        with self._lock:
            readers = [r for ident, (g, r) in self._readers.items() if g is f and ident != me]
        for reader in readers:
            reader.abort()
