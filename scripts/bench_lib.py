"""Process plumbing for ``scripts/bench``: timed child processes and the Hub emulator process.

Every tool runs as its own process so its peak RSS is its own. ``os.wait4`` on the child's pid
gives its CPU times, but its ``ru_maxrss`` is not the tool's own: Linux carries the high-water mark
over ``execve``, and a child forked (or vforked) from this Python process starts with the
harness's whole RSS mapped, so a 5 MB curl would show ~50 MB. GNU ``time`` forks the tool from a
~2 MB process and reports that grandchild's ``ru_maxrss``, so the tool runs under
``/usr/bin/time -f %M`` when it is installed (the wait4 figure, an upper bound, otherwise).
Children get their own session so a timeout can kill the whole group (a tool's helpers included)
without touching anything else.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measured:
    """One finished (or killed) child process."""

    wall: float  # seconds, time.monotonic around spawn..reap
    cpu: float  # user + system seconds of the child (and what it reaped)
    rss_mb: float  # peak resident set size, MB (10^6 bytes)
    returncode: int
    timed_out: bool
    stdout: Path
    stderr: Path

    def tail(self, lines: int = 5) -> str:
        """Last lines of stderr (or stdout), for failure messages."""
        for path in (self.stderr, self.stdout):
            try:
                text = path.read_text(errors="replace").strip()
            except OSError:
                continue
            if text:
                return "\n".join(text.splitlines()[-lines:])
        return ""


SPENT = "spent"  # where finished small DESTs wait, per scenario, until it ends
SET_ASIDE_LIMIT = 512 << 20


def set_aside(dest: Path, spent: Path, nbytes: int) -> None:
    """Clear a finished run's DEST before the next run starts.

    Big trees are deleted at once: other tools' old copies would crowd the page cache, and the
    server's blobs or the next writer would pay for it (seen as 2x slower curl). Small trees
    (thousands of files) are renamed into ``spent`` and deleted when the scenario ends: on this
    kind of disk (ext4) every inode freed in the last minutes slows each new inode's
    allocation (the kernel steps past "recently deleted" ones; 44% of a small-files run's CPU
    samples in perf), which charged one tool's deletes to whichever tool ran next.
    """
    if not dest.exists():
        return
    if nbytes > SET_ASIDE_LIMIT:
        shutil.rmtree(dest, ignore_errors=True)
        return
    spent.mkdir(parents=True, exist_ok=True)
    os.rename(dest, spent / f"{dest.parent.name}-{dest.name}-{time.monotonic_ns()}")


def run_measured(
    cmd: Sequence[str],
    *,
    env: dict[str, str],
    log_prefix: Path,
    timeout: float,
    cwd: Path | None = None,
    time_bin: str | None = None,
) -> Measured:
    """Run ``cmd`` to completion, measuring wall time, CPU time and peak RSS of that process.

    Output goes to files (``<log_prefix>.out/.err``), never to pipes, so a chatty tool can
    neither block on a full pipe nor pay for our reading it. After ``timeout`` seconds the
    child's process group is killed and the result is marked ``timed_out``.
    """
    out, err = Path(f"{log_prefix}.out"), Path(f"{log_prefix}.err")
    rss_file = Path(f"{log_prefix}.rss")
    out.parent.mkdir(parents=True, exist_ok=True)
    rss_file.unlink(missing_ok=True)
    if time_bin:
        cmd = [time_bin, "-o", str(rss_file), "-f", "%M", *cmd]
    with open(out, "wb") as fo, open(err, "wb") as fe:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            list(cmd),
            stdout=fo,
            stderr=fe,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            timed_out = not _wait_exit(proc.pid, timeout)
            if timed_out:
                _kill_group(proc.pid)
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C / SIGTERM of the harness: the child must not outlive it
            _kill_group(proc.pid)
            os.wait4(proc.pid, 0)
            raise
        wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen consistent
    rss_kib = _time_rss(rss_file) if time_bin else None
    return Measured(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,  # includes the grandchild GNU time reaped
        rss_mb=(rss_kib if rss_kib is not None else usage.ru_maxrss) * 1024 / 1e6,  # KiB
        returncode=proc.returncode,
        timed_out=timed_out,
        stdout=out,
        stderr=err,
    )


def _wait_exit(pid: int, timeout: float) -> bool:
    """Block until ``pid`` exits (True) or ``timeout`` passes (False), in the main thread.

    A pidfd wakes ``select`` the moment the child exits, so the wall time is exact; and with no
    helper thread, SIGTERM/Ctrl-C reach the main thread and interrupt the wait at once (a timer
    thread could take the signal, leaving the harness blocked until the tool finished).
    """
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: poll, accepting up to 10 ms late
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            time.sleep(0.01)
        return False
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _time_rss(path: Path) -> int | None:
    """The ``%M`` (KiB) GNU time wrote; its last line, after any "exited with status" line."""
    try:
        return int(path.read_text().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds a live process has used so far (from /proc; Linux only).

    Read around each run for the emulator, so the report shows whether the server side, which
    shares the cores with the tools, was the bottleneck.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Link:
    """The emulated network: per-connection and total caps in bytes/s (None = loopback speed)
    and a wait before each response (a CDN edge's round trip and time to first byte; issue
    12's setup has 20 ms: without it many small files measure CPU, not the latency they pay
    on a real link)."""

    rate_per_conn: float | None = None
    rate_total: float | None = None
    latency: float = 0.0

    def describe(self) -> str:
        if not self.rate_per_conn and not self.rate_total and not self.latency:
            return "unthrottled loopback"
        parts = []
        if self.rate_per_conn:
            parts.append(f"{self.rate_per_conn / 1e6:g} MB/s per connection")
        if self.rate_total:
            parts.append(f"{self.rate_total / 1e6:g} MB/s total")
        if self.latency:
            parts.append(f"{self.latency * 1000:g} ms per request")
        return ", ".join(parts)


@dataclass
class Emulator:
    """A running ``python -m hfsync.testing.hub`` process and its two origins."""

    proc: subprocess.Popen[bytes]
    endpoint: str
    cdn: str


@contextlib.contextmanager
def emulator(root: Path, link: Link, log: Path, python: str = sys.executable) -> Iterator[Emulator]:
    """Serve ``root`` with ``link``'s caps for the duration of the block; always stopped after.

    A separate process (not a thread of the harness) so the emulator's CPU time is neither
    charged to the harness's measurements nor competing with it for the GIL.
    """
    cmd = [python, "-m", "hfsync.testing.hub", "--root", str(root)]
    if link.rate_per_conn:
        cmd += ["--rate-per-conn", repr(link.rate_per_conn)]
    if link.rate_total:
        cmd += ["--rate-total", repr(link.rate_total)]
    if link.latency:
        cmd += ["--latency", repr(link.latency)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        endpoint = cdn = ""
        deadline = time.monotonic() + 30
        while not (endpoint and cdn):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Hub emulator did not start; see {log}")
            for line in log.read_text(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key == "endpoint":
                    endpoint = value
                elif key == "cdn":
                    cdn = value
            time.sleep(0.05)
        yield Emulator(proc, endpoint, cdn)
    finally:
        stop(proc)


@contextlib.contextmanager
def machine_lock(say: Callable[[str], object]) -> Iterator[None]:
    """Hold a machine-wide lock for the whole benchmark; wait if another one holds it.

    Two benchmarks at once share the cores and skew each other's numbers (this happened: a
    second run on a shared 2-core VM made every CPU-bound row 20-30% slower), so they queue.
    """
    path = Path(tempfile.gettempdir()) / "hfsync-bench.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            say(f"waiting for another scripts/bench (pid {holder}) to finish: running both "
                "at once would skew both")  # fmt: skip
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: the emulator must never outlive us."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
