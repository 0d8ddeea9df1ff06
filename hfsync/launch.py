"""The `hfsync` program's entry point (the console script and `python -m hfsync`).

Two things happen here around the CLI, both for start-to-exit time:

- For `hfsync to-remote REPO 'SSH COMMAND' DIR`, connecting to the host starts before the
  CLI is imported (hfsync.remote.preconnect), so the SSH handshake overlaps the ~0.1 s of
  importing click, requests and the run's modules. Any other command line costs one list
  lookup here and imports nothing it would not have (tests/test_startup.py).
- When the command is done, the process ends the way Python's own exit would (other
  threads joined, atexit handlers run, stdout and stderr flushed) but without tearing down
  every module and collecting every object first: that teardown took ~0.05 s of a 2,000-file
  push and of a no-op sync, on the clock after the work was finished (perf of
  `scripts/bench --scenario push`: gc_collect_main and module deallocation, after the host's
  agent had exited). Nothing of hfsync's is left to it: files are closed and made durable
  by the code that wrote them.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

EARLY_COMMAND = "to-remote"  # preconnect.COMMAND, spelled here to import nothing for others
BROKEN_STDOUT = 120  # what Python exits with when flushing stdout fails at exit


def main() -> None:
    if EARLY_COMMAND in sys.argv[1:3]:
        from .remote import preconnect

        preconnect.start(sys.argv[1:])
    from .cli import main as cli

    try:
        cli(prog_name="hfsync")
    except SystemExit as exc:
        code = _exit_status(exc.code)
    except OSError as exc:
        code = _output_failed(exc)
    else:
        code = 0
    _exit_now(code)


def _output_failed(exc: OSError) -> int:
    """What escapes click is its own writing failing (`hfsync --help > /dev/full`): every
    command maps its errors to one line itself (cli.common.handle_errors), and click handles
    a closed pipe. One line, and the status Python gives a failed flush of stdout."""
    try:
        print(f"hfsync: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
    except (OSError, ValueError):
        pass
    return BROKEN_STDOUT


def _exit_status(code: object) -> int:
    """`sys.exit(code)`'s status: None is 0, an int itself, anything else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _exit_now(code: int) -> None:
    """Python's exit minus the interpreter's teardown: join the non-daemon threads (and stop
    idle executor workers) as `Py_Finalize` does, run atexit handlers, flush, `os._exit`."""
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`), a closed stream
            if stream is sys.stdout and code == 0:
                code = BROKEN_STDOUT
    os._exit(code)
