"""Pushing verified local files to an SSH host: one framed stream per worker, resumable.

Why this shape (research/ssh-push.md): an exec channel fed by a memoryview send loop with
aes128-gcm is the fastest paramiko path (1.32x scp), and framing many files into one channel
(a JSON header line, then the bytes) means a file costs no round trip at all: the agent
(agent.py, `recv`) appends each frame to the file's part, hashes it as it arrives, verifies it,
renames it into place and writes its metadata, and replies asynchronously. The sender only
waits when it must ask where a part stands (a resend after a dropped connection).

Small files go in batches: each is read whole and framed after the others (up to BATCH_BYTES),
and the batch leaves in one send once it is full or no other file is ready. Sending a 10 KiB
file on its own cost a header packet through paramiko's slow path, a body packet and a fresh
sender per file; in a batch, 2,000 small files are ~1,000 full packets.

Failures: a dropped connection reconnects (bounded tries with backoff) and resends what had no
reply yet, resuming each part where it stands; a mismatch is pushed once more from zero, then
is an IntegrityError; a full remote disk stops the push (DiskError, the part kept).
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfsync.errors import DiskError, HfsyncError, IntegrityError, RemotePathError, SSHError
from hfsync.files import RemoteFile
from hfsync.remote.channel import (
    ConnectionLostError,
    RemoteClosedError,
    SourceShrankError,
    send_stream,
    send_view,
)
from hfsync.remote.host import RemoteHost, Session
from hfsync.remote.state import part_name
from hfsync.transfer.jobs import FileJob, NullProgress, ProgressSink

REPLY_TIMEOUT = 300.0  # waiting for "where does this part stand" (the agent may hash a part)
MAX_RECONNECTS = 5  # per run; each is up to RECONNECT_TRIES attempts with backoff
RECONNECT_TRIES = 3
SMALL_FRAME = 256 << 10  # files (or what is left of them) up to this size are batched
BATCH_BYTES = 1 << 20  # a batch is sent when it holds this much (or no other file is ready)
# A stream's batch buffer, made once and reused (a fresh one per batch was ~1 MiB of newly
# faulted pages each time, three times over with the copies): a full batch plus one more
# small frame and its header. A frame that cannot fit (a header this long) goes on its own.
BATCH_ROOM = BATCH_BYTES + SMALL_FRAME + (64 << 10)


@dataclass
class PushJob:
    """One file to push: its verified local copy and where its remote part stands."""

    remote: RemoteFile
    source: Path
    offset: int = -1  # bytes of the remote part to keep; -1: ask the agent
    tries: int = 0
    progress_job: FileJob | None = None
    data: bytes | None = None  # the whole file, read ahead (remote_sync._prefetch); used once


@dataclass
class PushOutcome:
    path: str
    ok: bool = False
    bytes_sent: int = 0
    error: BaseException | None = None
    resumed_from: int = 0


class _Lost(Exception):
    """The stream's connection died; the worker reconnects."""


class _Stopped(Exception):
    """The agent stopped reading (its last replies say why)."""


class _Stream:
    """One `agent.py recv` session: frames out, replies in; `pending` has no reply yet."""

    def __init__(self, host: RemoteHost, commit: str) -> None:
        self.host = host
        self.commit = commit
        try:
            self.session = host.stream()
        except ConnectionLostError:
            raise _Lost() from None
        self.generation = self.session.generation
        self.backlog: deque[dict[str, Any]] = deque()
        self.pending: dict[str, PushJob] = {}
        self._batch: bytearray | None = None  # BATCH_ROOM bytes, made at the first small frame
        self.batch = 0  # bytes of frames of small files in it, not sent yet (all in `pending`)
        # Only the agent reads our JSON headers as they are; a session that rewrites them in
        # `send` (the shell loop, remote/shell_push.py) gets each one through `send`.
        self.batching = type(self.session).send is Session.send
        self.batched: list[tuple[PushJob, Any, int]] = []  # (job, on_progress, body bytes)

    @property
    def ended(self) -> bool:
        return self.session.ended and not self.backlog

    def next_reply(self, timeout: float | None) -> dict[str, Any] | None:
        """The next reply, or None at the end of the stream (raises queue.Empty on timeout)."""
        if self.backlog:
            return self.backlog.popleft()
        return self.session.next_reply(timeout)

    def _send(self, data: bytes) -> None:
        try:
            self.session.send(data)
        except ConnectionLostError:
            raise _Lost() from None
        except SSHError:
            raise _Stopped() from None

    def _header(self, job: PushJob) -> bytes:
        remote = job.remote
        header = {
            "p": remote.path,
            "s": remote.size,
            "e": remote.etag,
            "c": self.commit,
            "o": job.offset,
            "q": part_name(remote),
        }
        return json.dumps(header).encode() + b"\n"

    def send(self, job: PushJob, on_progress: Any) -> int:
        """Send one frame (a small one into the batch); return the offset the remote part
        was resumed from."""
        remote = job.remote
        data, job.data = job.data, None  # a resend reads the file again
        if self.batching and job.offset >= 0 and remote.size - job.offset <= SMALL_FRAME:
            header = self._header(job)
            n = len(header) + remote.size - job.offset
            if self.batch + n > BATCH_ROOM:
                self.flush()
            if n <= BATCH_ROOM:
                self._add(job, header, data, on_progress)
                if self.batch >= BATCH_BYTES:
                    self.flush()
                return job.offset
        self.flush()  # frames stay in order, and nothing waits behind a long body
        self.pending[remote.path] = job
        self._send(self._header(job))
        offset = job.offset
        if offset < 0:
            offset = self._wait_for_offset(remote.path)
        length = remote.size - offset
        if length > 0:
            try:
                send_stream(
                    self.session.channel, job.source, offset, length, on_progress,
                    close_write=False,
                )  # fmt: skip
            except ConnectionLostError:
                raise _Lost() from None
            except RemoteClosedError:
                raise _Stopped() from None
        return offset

    @property
    def last_batched(self) -> PushJob | None:
        return self.batched[-1][0] if self.batched else None

    def _add(self, job: PushJob, header: bytes, data: bytes | None, on_progress: Any) -> None:
        """Append a small file's frame to the batch: the file read straight into it unless
        its bytes were read ahead."""
        if self._batch is None:
            self._batch = bytearray(BATCH_ROOM)
        remote, view = job.remote, memoryview(self._batch)
        start = self.batch + len(header)
        length = remote.size - job.offset
        view[self.batch : start] = header
        if data is not None and job.offset == 0 and len(data) == remote.size:
            view[start : start + length] = data
        else:
            _read_into(job.source, job.offset, view[start : start + length])
        self.pending[remote.path] = job
        self.batch = start + length
        self.batched.append((job, on_progress, length))

    def flush(self) -> None:
        """Send the batched frames in one go, then count their bytes as sent."""
        if not self.batch:
            return
        assert self._batch is not None
        view = memoryview(self._batch)[: self.batch]
        self.batch = 0
        done, self.batched = self.batched, []
        try:
            send_view(self.session.channel, view)
        except ConnectionLostError:
            raise _Lost() from None
        except RemoteClosedError:
            raise _Stopped() from None
        for _job, on_progress, n in done:
            if n:
                on_progress(n)

    def _wait_for_offset(self, path: str) -> int:
        while True:
            try:
                reply = self.session.next_reply(REPLY_TIMEOUT)
            except queue.Empty:
                raise SSHError(
                    f"{self.host.description}: no answer from the remote helper for "
                    f"{REPLY_TIMEOUT:g} s"
                ) from None
            if reply is None:
                raise _Lost() if self.session.transport_gone() else _Stopped()
            if reply.get("p") == path and "at" in reply:
                return int(reply["at"])
            self.backlog.append(reply)

    def close_input(self) -> None:
        self.session.close_input()

    def stderr_line(self) -> str:
        return self.session.stderr_line()

    def transport_gone(self) -> bool:
        return self.session.transport_gone()

    def close(self) -> None:
        self.session.close()


class Pusher:
    """Workers that push queued files as they become available (downloads feed the queue)."""

    def __init__(
        self,
        host: RemoteHost,
        commit: str,
        progress: ProgressSink | None = None,
        *,
        streams: int = 1,
        reconnect_backoff: float = 1.0,
    ) -> None:
        self.host = host
        self.commit = commit
        self.progress = progress or NullProgress()
        self.streams = max(1, streams)
        self.backoff = reconnect_backoff
        self.outcomes: dict[str, PushOutcome] = {}
        self.reconnects = 0
        self.fatal: BaseException | None = None
        self._queue: queue.Queue[PushJob | None] = queue.Queue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- feeding ---------------------------------------------------------------------------

    def start(self, expected: list[RemoteFile]) -> None:
        """Start the workers; `expected` is every file that will be put (for the progress)."""
        placeholders = [
            FileJob(r.path, r.size, r.etag, "", Path(), lambda _p: None) for r in expected
        ]
        self._progress_jobs = {job.path: job for job in placeholders}
        self.progress.start(sum(r.size for r in expected), placeholders)
        for r in expected:
            self.outcomes[r.path] = PushOutcome(r.path)
        for n in range(self.streams):
            t = threading.Thread(target=self._work, name=f"hfsync-push-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def put(self, job: PushJob) -> None:
        job.progress_job = self._progress_jobs.get(job.remote.path)
        self._queue.put(job)

    def fail(self, path: str, error: BaseException) -> None:
        """A file that will never be put (its download failed)."""
        with self._lock:
            outcome = self.outcomes.setdefault(path, PushOutcome(path))
            outcome.error = error
        job = self._progress_jobs.get(path)
        if job is not None:
            self.progress.file_done(job, False)

    def finish(self) -> dict[str, PushOutcome]:
        """No more files: wait for the workers and return every file's outcome."""
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            while t.is_alive():
                t.join(0.2)  # short joins keep Ctrl-C responsive in the main thread
        return self.outcomes

    # -- the worker ------------------------------------------------------------------------

    def _work(self) -> None:
        retry: deque[PushJob] = deque()
        stream: _Stream | None = None
        no_more = False
        while True:
            if retry:
                job = retry.popleft()
            elif not no_more:
                try:  # with a batch waiting, only take a file that is ready now
                    got = self._queue.get(block=stream is None or not stream.batch)
                except queue.Empty:
                    assert stream is not None
                    stream = self._flush(stream, retry)
                    continue
                if got is None:
                    no_more = True
                    continue
                job = got
            else:
                if stream is None:
                    break
                if stream.batch:
                    stream = self._flush(stream, retry)
                    continue
                stream = self._drain(stream, retry)  # may queue resends after a drop
                continue
            if self.fatal is not None:
                self._done(job, False, self.fatal)
                continue
            try:
                if stream is None:
                    stream = _Stream(self.host, self.commit)
                self._send(stream, job)
                if not self._take_replies(stream, retry, block=False):
                    stream = self._ended(stream, job, retry)
            except (_Lost, ConnectionLostError):
                stream = self._recover(stream, job, retry)
            except _Stopped:
                assert stream is not None
                stream = self._ended(stream, job, retry)
            except SourceShrankError as exc:
                if stream is not None:
                    stream.pending.pop(job.remote.path, None)
                    stream = self._abandon(stream, retry)
                self._done(job, False, HfsyncError(f"{job.remote.path}: {exc}"))
            except HfsyncError as exc:
                if stream is not None:
                    stream.pending.pop(job.remote.path, None)
                    stream = self._abandon(stream, retry)
                self._done(job, False, exc)

    def _flush(self, stream: _Stream, retry: deque[PushJob]) -> _Stream | None:
        """Send the stream's batch; failures handled as a send's are (the batch's last file
        stands for the send that failed)."""
        job = stream.last_batched
        try:
            stream.flush()
            if not self._take_replies(stream, retry, block=False):
                return self._ended(stream, job, retry)
        except (_Lost, ConnectionLostError):
            return self._recover(stream, None, retry)
        except _Stopped:
            return self._ended(stream, job, retry)
        except HfsyncError as exc:
            if job is not None:
                stream.pending.pop(job.remote.path, None)
                self._done(job, False, exc)
            return self._abandon(stream, retry)
        return stream

    @staticmethod
    def _abandon(stream: _Stream, retry: deque[PushJob]) -> None:
        """Close a stream whose framing is broken; what had no reply goes again."""
        stream.close()
        for other in stream.pending.values():
            other.offset = -1
            retry.append(other)
        stream.pending.clear()
        return None

    def _send(self, stream: _Stream, job: PushJob) -> None:
        outcome = self.outcomes.setdefault(job.remote.path, PushOutcome(job.remote.path))
        progress_job = job.progress_job

        def advance(n: int) -> None:
            outcome.bytes_sent += n
            if progress_job is not None:
                self.progress.advance(progress_job, n)

        offset = stream.send(job, advance)
        if job.tries == 0 and offset:
            outcome.resumed_from = offset

    def _take_replies(self, stream: _Stream, retry: deque[PushJob], *, block: bool) -> bool:
        """Handle replies that arrived; with `block`, until the stream ends. Returns whether
        the stream is still usable."""
        while True:
            try:
                reply = stream.next_reply(REPLY_TIMEOUT if block else 0.0)
            except queue.Empty:
                if block:
                    raise SSHError(
                        f"{self.host.description}: no answer from the remote helper for "
                        f"{REPLY_TIMEOUT:g} s"
                    ) from None
                return True
            if reply is None:
                return False
            if "at" in reply:
                continue  # an offset answer we no longer wait for (never, in order)
            path = reply.get("p")
            job = stream.pending.pop(path, None) if isinstance(path, str) else None
            if job is None:
                continue
            if reply.get("ok"):
                self._done(job, True)
                continue
            kind = reply.get("kind")
            message = f"{self.host.description}: {path}: {reply.get('error')}"
            if kind == "integrity" and job.tries < 1:
                job.tries, job.offset = job.tries + 1, 0
                retry.append(job)
            elif kind == "integrity":
                self._done(job, False, IntegrityError(message + " (pushed twice)"))
            elif kind == "resume" and job.tries < 2:
                job.tries, job.offset = job.tries + 1, -1
                retry.append(job)
            elif kind == "disk":
                self.fatal = DiskError(message + "; the partial file was kept for the next run")
                self._done(job, False, self.fatal)
            elif kind == "path":
                self._done(job, False, RemotePathError(message))
            else:
                self._done(job, False, SSHError(message))
            if reply.get("fatal"):
                return False

    def _drain(self, stream: _Stream, retry: deque[PushJob]) -> _Stream | None:
        """End of input: close the stream's stdin and collect every outstanding reply."""
        stream.close_input()
        try:
            self._take_replies(stream, retry, block=True)
        except HfsyncError as exc:
            for job in list(stream.pending.values()):
                self._done(job, False, exc)
            stream.pending.clear()
        if stream.pending:
            if not self.host.conn.is_alive() or stream.transport_gone():
                return self._recover(stream, None, retry)
            said = stream.stderr_line()
            error = SSHError(
                f"the remote helper on {self.host.description} ended early"
                + (f": {said}" if said else "")
            )
            for job in stream.pending.values():
                self._done(job, False, error)
        stream.close()
        return None

    def _ended(self, stream: _Stream, job: PushJob | None, retry: deque[PushJob]) -> None:
        """The agent stopped reading: its last replies say why (a full disk, an unsafe path),
        or the connection died under it."""
        if not stream.ended:
            with contextlib.suppress(HfsyncError):
                self._take_replies(stream, retry, block=True)
        if not stream.pending:
            stream.close()
            return None
        if stream.transport_gone():
            return self._recover(stream, None, retry)
        said = stream.stderr_line()
        for other in list(stream.pending.values()):
            if self.fatal is not None:
                self._done(other, False, self.fatal)
            elif other is job:
                where = self.host.description
                tail = f": {said}" if said else ""
                self._done(other, False, SSHError(f"the remote helper on {where} stopped{tail}"))
            else:
                other.offset = -1
                retry.append(other)
        stream.pending.clear()
        stream.close()
        return None

    def _recover(self, stream: _Stream | None, job: PushJob | None, retry: deque) -> None:
        """Reconnect and queue everything without a reply again, resuming where parts stand."""
        resend = list(stream.pending.values()) if stream is not None else []
        if job is not None and job not in resend:
            resend.append(job)
        generation = stream.generation if stream is not None else self.host.generation
        if stream is not None:
            stream.close()
        with self._lock:
            self.reconnects += 1
            too_many = self.reconnects > MAX_RECONNECTS * self.streams
        error: BaseException | None = None
        if too_many:
            error = ConnectionLostError(
                f"SSH connection to {self.host.conn.display} kept dropping "
                f"({MAX_RECONNECTS} reconnects); the partial files were kept for the next run"
            )
        else:
            try:
                self.host.reconnect(generation, tries=RECONNECT_TRIES, backoff=self.backoff)
            except HfsyncError as exc:
                error = exc
        for j in resend:
            if error is not None:
                self._done(j, False, error)
            else:
                j.offset = -1
                retry.append(j)
        if error is not None and self.fatal is None:
            self.fatal = error
        return None

    def _done(self, job: PushJob, ok: bool, error: BaseException | None = None) -> None:
        with self._lock:
            outcome = self.outcomes.setdefault(job.remote.path, PushOutcome(job.remote.path))
            outcome.ok = ok
            outcome.error = error
        if job.progress_job is not None:
            self.progress.file_done(job.progress_job, ok)


def read_small(source: Path, length: int) -> bytes:
    """A whole small file of `length` bytes (SourceShrankError when it is shorter)."""
    with open(source, "rb", buffering=0) as f:
        data = f.read(length)
    if len(data) < length:
        raise SourceShrankError(length - len(data))
    return data


def _read_into(source: Path, offset: int, view: memoryview) -> None:
    """Fill `view` with `source`'s bytes from `offset` (SourceShrankError when it is shorter)."""
    with open(source, "rb", buffering=0) as f:
        if offset:
            f.seek(offset)
        got = 0
        while got < len(view):
            n = f.readinto(view[got:])
            if not n:
                raise SourceShrankError(len(view) - got)
            got += n
