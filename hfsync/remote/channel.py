"""Moving bytes over paramiko exec channels without the known traps.

* ``Channel.sendall`` re-slices its bytes after every 32 KiB packet (O(n^2) on big buffers):
  :func:`send_stream` reads into one reused 8 MiB buffer and sends ``memoryview`` slices, which
  paramiko passes through without copying (research/ssh-push.md: 410 vs 138 MB/s), and those go
  out as batches of packets through :mod:`hfsync.remote.batchsend` (half the CPU per byte).
* A command that writes to stdout and stderr while we feed its stdin deadlocks if one side is
  not drained: :func:`drain` reads stderr on a thread and stdout here, and stdin goes on
  another thread while both are read.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import BinaryIO

import paramiko

from hfsync.errors import HfsyncError, SSHError
from hfsync.remote.batchsend import batch_sender

BUFFER_SIZE = 8 << 20


class ConnectionLostError(SSHError):
    """The SSH connection died under a running command: worth a reconnect and a retry."""


class SSHConnectError(SSHError):
    """No SSH session could be set up (refused, unreachable, timeout, DNS, handshake):
    transient often enough to retry with backoff."""


class HostKeyError(SSHError):
    """The host key is unknown, changed or revoked: never retried, never bypassed."""


class SSHAuthError(SSHError):
    """No key was accepted: retrying cannot help."""


class RemoteClosedError(SSHError):
    """The remote command ended (or closed its stdin) while we were still sending to it."""

    def __init__(self, message: str, exit_status: int, stderr: bytes, sent: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status
        self.stderr = stderr
        self.sent = sent


class SourceShrankError(HfsyncError):
    """The local file ended before ``length`` bytes: it changed while being sent."""

    def __init__(self, missing: int) -> None:
        super().__init__(
            f"source ended {missing} bytes early (the file changed while it was being sent)"
        )


def first_line(data: bytes, limit: int = 300) -> str:
    """The first non-empty line of remote output, decoded and bounded, for one-line errors."""
    for line in data.decode("utf-8", errors="replace").splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


def _lost(channel: paramiko.Channel, what: str) -> ConnectionLostError:
    transport = channel.get_transport()
    peer = getattr(transport, "hfsync_display", None) if transport is not None else None
    return ConnectionLostError(f"SSH connection{f' to {peer}' if peer else ''} lost {what}")


def send_stream(
    channel: paramiko.Channel,
    source: BinaryIO | str | os.PathLike[str],
    offset: int = 0,
    length: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    *,
    close_write: bool = True,
    buffer_size: int = BUFFER_SIZE,
) -> int:
    """Send ``length`` bytes (all to EOF when None) of ``source`` from ``offset``; return the
    count sent. ``on_progress(n)`` is called with each increment (per buffer, not per packet).

    Then ``shutdown_write()`` (unless ``close_write`` is false) so the remote sees EOF.
    Without ``channel.settimeout(s)`` a link that dies silently (no RST) blocks until TCP gives
    up; with it, ``s`` seconds without window space raise ConnectionLostError.
    Raises RemoteClosedError when the remote command stops reading (its status and stderr
    attached: the caller maps "No space left" to a disk error), ConnectionLostError when the
    transport dies, SourceShrankError when the file is shorter than promised.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb", buffering=0) as f:
            return send_stream(
                channel, f, offset, length, on_progress, close_write=close_write,
                buffer_size=buffer_size,
            )  # fmt: skip
    if offset:
        source.seek(offset)
    if length is not None:  # a 3 KiB file needs no 8 MiB buffer
        buffer_size = max(1, min(buffer_size, length))
    view = _buffer(buffer_size)
    sent_total = 0
    remaining = length
    readinto = getattr(source, "readinto", None)
    send = batch_sender(channel)
    while remaining is None or remaining > 0:
        want = buffer_size if remaining is None else min(buffer_size, remaining)
        if readinto is not None:
            n = readinto(view[:want])
        else:  # plain read() objects (e.g. some wrappers) still work, with one copy
            chunk = source.read(want)
            n = len(chunk)
            view[:n] = chunk
        if not n:
            break
        _send_all(channel, send, view[:n], sent_total)
        sent_total += n
        if remaining is not None:
            remaining -= n
        if on_progress is not None:
            on_progress(n)
    if remaining:
        raise SourceShrankError(remaining)
    if close_write:
        try:
            channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise _stopped(channel, sent_total, exc) from None
    return sent_total


def _transport_dead(channel: paramiko.Channel) -> bool:
    """Whether the connection under a closed channel without exit status is gone.

    A dying paramiko Transport closes its channels *before* it clears ``active``, so a
    channel can look closed while the transport still looks alive: give it a moment."""
    transport = channel.get_transport()
    if transport is None:
        return True
    if transport.is_active():
        transport.join(2.0)  # returns at once when the thread ends; 2 s only if it is healthy
    return not transport.is_active()


def send_view(channel: paramiko.Channel, view: memoryview) -> None:
    """Send all of ``view`` (bytes already in memory: a batch of small frames), with
    :func:`send_stream`'s errors; no copy of it is made."""
    _send_all(channel, batch_sender(channel), view, 0)


def _send_all(
    channel: paramiko.Channel, send: Callable[[memoryview], int], view: memoryview, before: int
) -> None:
    """``send`` until all of ``view`` is out; ``before``: bytes of this stream sent earlier,
    for the error's count."""
    pos, n = 0, len(view)
    while pos < n:
        try:
            sent = send(view[pos:])
        except TimeoutError:
            # Only with channel.settimeout(): a stalled link counts as lost (reconnect).
            raise _lost(channel, f"(no progress after {before + pos} bytes)") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise _stopped(channel, before + pos, exc) from None
        if sent == 0:
            raise _stopped(channel, before + pos, None)
        pos += sent


_buffers = threading.local()


def _buffer(size: int) -> memoryview:
    """A buffer of at least ``size`` bytes, this thread's own, reused by its next sends.

    Why: a fresh ``bytearray`` per file over malloc's mmap threshold (128 KiB) is a fresh
    mapping of zeroed pages, each faulted in (and, on a VM that hands freed memory back,
    faulted in by the host too); with the batches' own copies that was ~50 ms of a
    2,000-small-file push's local CPU (perf). One buffer per sending thread, grown to the
    largest send it has made (at most BUFFER_SIZE), is faulted in once."""
    buf = getattr(_buffers, "buf", None)
    if buf is None or len(buf) < size:
        buf = _buffers.buf = bytearray(size)
    return memoryview(buf)[:size]


def _stopped(channel: paramiko.Channel, sent: int, exc: BaseException | None) -> SSHError:
    status = channel.recv_exit_status() if channel.exit_status_ready() else -1
    if status == -1 and _transport_dead(channel):
        return _lost(channel, f"after {sent} bytes were sent")
    # The remote side closed: collect what it said, bounded, and report it.
    stderr = b""
    try:
        channel.settimeout(2.0)
        while len(stderr) < 65536:
            chunk = channel.recv_stderr(65536)
            if not chunk:
                break
            stderr += chunk
    except (TimeoutError, OSError, paramiko.SSHException):
        pass
    said = first_line(stderr)
    return RemoteClosedError(
        f"remote command stopped reading after {sent} bytes (exit status {status})"
        + (f": {said}" if said else ""),
        status,
        stderr,
        sent,
    )


def drain(
    channel: paramiko.Channel, stdin: bytes | None = None, timeout: float | None = None
) -> tuple[int, bytes, bytes]:
    """Feed ``stdin`` (then EOF), read stdout and stderr to the end, return
    ``(exit_status, stdout, stderr)``; exit status -1 when the remote sent none (killed by a
    signal). ``timeout`` bounds each wait for data, not the whole command."""
    channel.settimeout(timeout)
    errors: list[BaseException] = []
    stderr_parts: list[bytes] = []

    def read_stderr() -> None:
        try:
            while chunk := channel.recv_stderr(65536):
                stderr_parts.append(chunk)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def write_stdin() -> None:
        try:
            if stdin:
                view = memoryview(stdin)
                while view:
                    sent = channel.send(view[:BUFFER_SIZE])
                    if sent == 0:
                        return  # the command closed its stdin; its status says why
                    view = view[sent:]
            channel.shutdown_write()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read_stderr, daemon=True)]
    threads.append(threading.Thread(target=write_stdin, daemon=True))
    for t in threads:
        t.start()
    stdout_parts: list[bytes] = []
    try:
        while chunk := channel.recv(1 << 20):
            stdout_parts.append(chunk)
    except TimeoutError:
        channel.close()
        raise SSHError(f"remote command produced nothing for {timeout:g} s; gave up") from None
    except (OSError, EOFError, paramiko.SSHException):
        raise _lost(channel, "while a remote command ran") from None
    for t in threads:
        t.join(timeout)
    if any(isinstance(e, socket.timeout) for e in errors):
        channel.close()
        raise SSHError(f"remote command produced nothing for {timeout:g} s; gave up")
    status = channel.recv_exit_status()  # a closed channel (dead transport) gives -1 at once
    if status == -1 and _transport_dead(channel):
        raise _lost(channel, "while a remote command ran")
    return status, b"".join(stdout_parts), b"".join(stderr_parts)
