"""Machine-readable progress: `hfsync sync --progress-json` writes one JSON object per line.

This is how a remote pull reports back (docs/architecture.md, "Remote pull and many hosts"):
the host runs this same `hfsync sync`, its stdout is the SSH channel, and the local side turns
each line back into ProgressSink calls on its own bars. The protocol, one event per line:

    {"event": "start", "total_bytes": N, "files": [{"path": P, "size": S}, ...]}
    {"event": "advance", "path": P, "bytes": N}          (throttled: per file, every 0.2 s)
    {"event": "file_done", "path": P, "ok": true}
    {"event": "result", "result": {...the --json document...}}        (last line, success)
    {"event": "error", "error": {"kind": K, "message": M, "exit_code": C}}  (last line, failure)

Workers call the sink from many threads every ~1 MiB; bytes are summed per file and written
at most every `interval` seconds, so a fast link costs a few lines per second, not thousands.
Each line is written and flushed under one lock, so lines never interleave.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

from ..transfer.jobs import FileJob

INTERVAL = 0.2  # seconds between advance lines


class JsonLinesProgress:
    """A thread-safe ProgressSink that writes the events above to `stream` (stdout)."""

    def __init__(self, stream: TextIO | None = None, interval: float = INTERVAL) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._last = 0.0

    def emit(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._write(event)

    def _write(self, event: dict[str, Any]) -> None:
        try:
            self._stream.write(json.dumps(event, separators=(",", ":")) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # the reader went away; the stdin watcher stops the run

    def _flush(self, only: str | None = None) -> None:
        paths = [only] if only is not None else list(self._pending)
        for path in paths:
            nbytes = self._pending.pop(path, 0)
            if nbytes:
                self._write({"event": "advance", "path": path, "bytes": nbytes})
        self._last = time.monotonic()

    def start(self, total_bytes: int, jobs: list[FileJob]) -> None:
        files = [{"path": job.path, "size": job.size} for job in jobs]
        with self._lock:
            self._flush()
            self._write({"event": "start", "total_bytes": total_bytes, "files": files})

    def advance(self, job: FileJob, nbytes: int) -> None:
        with self._lock:
            self._pending[job.path] = self._pending.get(job.path, 0) + nbytes
            if time.monotonic() - self._last >= self._interval:
                self._flush()

    def file_done(self, job: FileJob, ok: bool) -> None:
        with self._lock:
            self._flush(job.path)
            self._write({"event": "file_done", "path": job.path, "ok": ok})

    def close(self) -> None:
        with self._lock:
            self._flush()

    def result(self, doc: dict[str, Any]) -> None:
        """The final line of a successful run: the `--json` document."""
        self.close()
        self.emit({"event": "result", "result": doc})


def error_line(kind: str, message: str, code: int) -> str:
    """The final line of a failed run (written by the CLI's one error handler)."""
    doc = {"event": "error", "error": {"kind": kind, "message": message, "exit_code": code}}
    return json.dumps(doc, separators=(",", ":"))


# --- the rest of the remote side's stdin protocol ----------------------------------------------

STOP_GRACE = 10.0  # seconds the Ctrl-C path gets before the process ends regardless


def read_token_line() -> str | None:
    """`--token-stdin`: the first line of stdin is the token (empty: use the usual chain).

    The token thus never appears in argv (a process list), the environment (/proc/PID/environ,
    children) or a file on the host; it lives in this process's memory only."""
    import os

    line = bytearray()
    while len(line) < 4096:  # unbuffered: nothing past the line is taken from the stdin watcher
        byte = os.read(0, 1)
        if not byte or byte == b"\n":
            break
        line += byte
    token = line.decode("utf-8", errors="replace").strip()
    return token or None


def stop_on_stdin_eof(grace: float = STOP_GRACE) -> threading.Thread:
    """`--exit-on-stdin-eof`: when stdin ends, stop the run as Ctrl-C would.

    Over SSH, stdin is the channel: it ends when the local hfsync closes it (Ctrl-C there) or
    dies (the connection drops). Without this the host would go on downloading on its own. A
    SIGINT to ourselves takes the ordinary interrupt path (partial downloads kept, exit 130,
    the next run resumes); if that has not ended the process within `grace` seconds, it ends
    with 130 anyway (the journal on disk is what the next run resumes from). Must be called
    from the main thread (it installs Python's SIGINT handler, which a parent may have set to
    "ignore")."""
    import os
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)

    def watch() -> None:
        # The raw fd, not sys.stdin: a daemon thread blocked inside a buffered reader holds
        # its lock, and interpreter shutdown aborts on that lock.
        try:
            while os.read(0, 65536):
                pass
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(grace)
        os._exit(130)

    thread = threading.Thread(target=watch, name="hfsync-stdin-watch", daemon=True)
    thread.start()
    return thread
