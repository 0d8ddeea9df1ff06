"""Remote pull: the host runs this same hfsync (its zipapp) and downloads from the Hub itself.

rsync's `--server` mode is the model (DESIGN §6): one engine, both ends. Per host and run:

    probe (one command: python3, home, the cached archive's sha256, the endpoint as the host
    sees it) -> upload the archive if missing or damaged (`cat > tmp`, sha256 checked on the
    host, then rename to ~/.cache/hfsync/hfsync-<sha16>.pyz) -> one exec channel running
    `python3 -I -S <zip> sync REPO REMOTE_DIR --progress-json --token-stdin
    --exit-on-stdin-eof --endpoint URL ...` -> its JSON lines drive the local bars -> its
    result document, exit code and error message become the local ones.

The token is the first line of that channel's stdin: never argv, never the environment, never
a file on the host. The channel's stdin then stays open for the whole run; closing it (Ctrl-C
here) or losing it (this process dies, the link drops) is end-of-file on the host, where
`--exit-on-stdin-eof` stops the run as Ctrl-C would, keeping the partial downloads, so the
next run resumes from what the host already has. Only control traffic crosses SSH: the
archive once (~0.8 MB), the command line, the progress lines.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import paramiko

from hfsync import errors
from hfsync.errors import HfsyncError, Interrupted, NetworkError, SSHError, UsageError
from hfsync.remote.channel import ConnectionLostError, drain, first_line, send_stream
from hfsync.remote.connection import SSHConnection, quote_command, remote_shell_quote
from hfsync.remote.handoff import Handoff
from hfsync.remote.probe import Probe, probe, reach_url
from hfsync.remote.zipapp import ZipApp, build_zipapp, remote_path
from hfsync.transfer.jobs import FileJob, NullProgress, ProgressSink, TransferConfig

UPLOAD_TIMEOUT = 120.0
EVENT_TIMEOUT = 600.0  # seconds without a line from the host (a --checksum scan of a big
# folder prints nothing until it is done) before the run counts as stuck

# Exit codes back to error classes, for remote errors whose kind is not one of hfsync.errors.
_BY_CODE: dict[int, type[HfsyncError]] = {
    2: errors.UsageError,
    3: errors.NotFoundError,
    4: errors.NetworkError,
    5: errors.IntegrityError,
    6: errors.DiskError,
    7: errors.SSHError,
    8: errors.LockedError,
    130: errors.Interrupted,
}


@dataclass(frozen=True)
class PullOptions:
    """The `hfsync sync` options that travel to the host, as the local command took them."""

    repo_type: str = "model"
    revision: str = "main"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    delete: bool = False
    max_delete: int | None = None
    dry_run: bool = False
    checksum: bool = False
    config: TransferConfig = field(default_factory=TransferConfig)

    def argv(self) -> list[str]:
        out = ["--repo-type", self.repo_type, "--revision", self.revision]
        for glob in self.include:
            out += ["--include", glob]
        for glob in self.exclude:
            out += ["--exclude", glob]
        if self.delete:
            out.append("--delete")
        if self.max_delete is not None:
            out += ["--max-delete", str(self.max_delete)]
        if self.dry_run:
            out.append("--dry-run")
        if self.checksum:
            out.append("--checksum")
        if self.config.most_connections == self.config.connections:  # an explicit cap
            out += ["--connections", str(self.config.connections)]
        out += ["--chunk-size", str(self.config.chunk_size)]
        if self.config.bwlimit:
            out += ["--bwlimit", str(int(self.config.bwlimit))]
        return out


@dataclass
class PullResult:
    """What a pull did: the host's own `--json` document plus what this side added."""

    doc: dict[str, Any]
    host: str
    remote_dir: str
    zip_sent: bool
    duration: float = 0.0
    notes: list[str] = field(default_factory=list)
    via_reason: str = ""

    @property
    def target(self) -> str:
        return f"{self.host}:{self.remote_dir}"


@dataclass
class PullPlan:
    """The probe's answer and the archive for one host: enough to decide and to run."""

    probe: Probe
    zipapp: ZipApp
    endpoint: str

    @property
    def blocker(self) -> str:
        return self.probe.pull_blocker(self.zipapp.min_python, self.endpoint)


def prepare(
    conn: SSHConnection,
    repo_id: str,
    options: PullOptions,
    endpoint: str,
    zipapp: ZipApp | None = None,
) -> PullPlan:
    """Build (or reuse) the archive locally and probe the host once."""
    zipapp = zipapp or build_zipapp()
    url = reach_url(endpoint, repo_id, options.repo_type, options.revision)
    return PullPlan(probe(conn, remote_path(zipapp), url), zipapp, endpoint)


def unreachable_error(conn: SSHConnection, blocker: str) -> HfsyncError:
    """`--via pull` on a host that cannot pull: network (4) when the Hub is out of its reach,
    usage-like otherwise (the host lacks what hfsync needs to run there)."""
    message = f"--via pull: {conn.display} cannot pull: {blocker}"
    if "cannot reach" in blocker:
        return NetworkError(message + "; use --via push (or auto) to send the bytes from here")
    return UsageError(message + "; use --via push (or auto)")


def pull(
    conn: SSHConnection,
    repo_id: str,
    remote_dir: str,
    plan: PullPlan,
    options: PullOptions,
    *,
    token: str | None,
    progress: ProgressSink | None = None,
    handoff: Handoff | None = None,
) -> PullResult:
    """Run the pull on a probed host that can pull (`plan.blocker == ""`).

    `handoff`: the listing and data URLs of `options.revision` (a commit), resolved here once
    for every host; the host then makes no API or `/resolve` call while they are valid."""
    started = time.monotonic()
    if plan.blocker:
        raise unreachable_error(conn, plan.blocker)
    zip_at = remote_path(plan.zipapp)
    sent = False
    if plan.probe.zip_sha256 != plan.zipapp.sha256:
        upload(conn, plan.zipapp)
        sent = True
    argv = ["sync", repo_id]
    command = " ".join(
        [
            quote_command([plan.probe.executable or "python3"]),  # what the probe ran on
            "-I -S",
            remote_shell_quote(zip_at),
            quote_command(argv),
            remote_shell_quote(remote_dir),
            quote_command(
                ["--progress-json", "--handoff-stdin" if handoff else "--token-stdin"]
                + ["--exit-on-stdin-eof"]
                + ["--endpoint", plan.endpoint]
                + options.argv()
            ),
        ]
    )
    if handoff is not None:
        stdin = replace(handoff, token=token or None).encode()
    else:
        stdin = (token or "").encode() + b"\n"
    doc = run_remote(conn, command, stdin, progress or NullProgress())
    return PullResult(
        doc=doc,
        host=conn.display,
        remote_dir=remote_dir,
        zip_sent=sent,
        duration=time.monotonic() - started,
        notes=list(conn.notes),
    )


def upload(conn: SSHConnection, zipapp: ZipApp) -> None:
    """Put the archive at its content-named path, verified on the host before the rename (a
    cut upload leaves a temp file, never a damaged archive under the real name)."""
    final = remote_path(zipapp)
    folder = final.rsplit("/", 1)[0]
    check = "import hashlib,sys;sys.exit(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest()!=sys.argv[2])"  # noqa: E501
    script = (
        f'd={remote_shell_quote(folder)}; umask 022; mkdir -p "$d" && '
        f't="$d/.upload-$$.tmp" && cat > "$t" && '
        f'python3 -c {quote_command([check])} "$t" {zipapp.sha256} && '
        f'mv -f "$t" {remote_shell_quote(final)} || {{ s=$?; rm -f "$t"; exit $s; }}'
    )
    channel = conn.open_exec(script)
    try:
        channel.settimeout(UPLOAD_TIMEOUT)
        send_stream(channel, zipapp.path, close_write=True)
        status, _, err = drain(channel, None, UPLOAD_TIMEOUT)
    finally:
        channel.close()
    if status != 0:
        said = first_line(err)
        raise SSHError(
            f"could not place hfsync's archive on {conn.display} at {final} "
            f"(exit status {status}){': ' + said if said else ''}"
        )


def _job(path: str, size: int) -> FileJob:
    """A stand-in FileJob for the local bars: they only read path and size."""
    return FileJob(path, size, "", "", Path(path), _no_finalize)


def _no_finalize(part: Path) -> None:  # pragma: no cover - never called: bars only
    pass


class _Replay:
    """Turns the host's JSON lines into calls on the local ProgressSink."""

    def __init__(self, sink: ProgressSink) -> None:
        self.sink = sink
        self.jobs: dict[str, FileJob] = {}
        self.final: dict[str, Any] | None = None

    def line(self, raw: bytes) -> None:
        try:
            ev = json.loads(raw)
        except ValueError:
            return  # not ours (a stray print on the host); the exit status still decides
        kind = ev.get("event") if isinstance(ev, dict) else None
        if kind == "start":
            self.jobs = {f["path"]: _job(f["path"], int(f["size"])) for f in ev.get("files", ())}
            self.sink.start(int(ev.get("total_bytes", 0)), list(self.jobs.values()))
        elif kind == "advance":
            job = self.jobs.get(ev.get("path"))
            if job is not None:
                self.sink.advance(job, int(ev.get("bytes", 0)))
        elif kind == "file_done":
            job = self.jobs.get(ev.get("path"))
            if job is not None:
                self.sink.file_done(job, bool(ev.get("ok")))
        elif kind in ("result", "error"):
            self.final = ev


def run_remote(
    conn: SSHConnection, command: str, stdin: bytes, sink: ProgressSink
) -> dict[str, Any]:
    """Run the host's `hfsync sync`, feeding it `stdin` (the token line, or the handoff
    document with the token inside) and keeping stdin open until it exits; return its result
    document or raise its error (same exit code and message)."""
    channel = conn.open_exec(command)
    replay = _Replay(sink)
    stderr: list[bytes] = []
    try:
        reader = threading.Thread(target=_read_stderr, args=(channel, stderr), daemon=True)
        reader.start()  # before a big handoff blocks on the window: the host may fail early
        channel.settimeout(EVENT_TIMEOUT)
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            channel.sendall(stdin)  # a host that stopped reading: its exit status tells why
        _read_lines(channel, replay.line)
        status = channel.recv_exit_status()
        reader.join(5)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; the pull on {conn.display} stops too, and the next run resumes "
            "from what it already has"
        ) from None
    finally:
        # Closing stdin ends the host's run if it is still going (Ctrl-C, an error here).
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            channel.close()
    return _outcome(conn, status, replay.final, b"".join(stderr))


def _read_lines(channel: paramiko.Channel, on_line: Callable[[bytes], None]) -> None:
    channel.settimeout(EVENT_TIMEOUT)
    buf = b""
    while True:
        try:
            chunk = channel.recv(65536)
        except TimeoutError:
            raise SSHError(f"the host sent nothing for {EVENT_TIMEOUT:g} s; gave up") from None
        except (OSError, EOFError, paramiko.SSHException):
            raise ConnectionLostError("SSH connection lost while the host was pulling") from None
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.strip():
                on_line(line)
    if buf.strip():
        on_line(buf)


def _read_stderr(channel: paramiko.Channel, out: list[bytes]) -> None:
    total = 0
    try:
        while chunk := channel.recv_stderr(65536):
            if total < 1 << 16:
                out.append(chunk)
                total += len(chunk)
    except (OSError, EOFError, paramiko.SSHException, TimeoutError):
        pass


def _outcome(
    conn: SSHConnection, status: int, final: dict[str, Any] | None, stderr: bytes
) -> dict[str, Any]:
    if status == 0 and final is not None and final.get("event") == "result":
        return final["result"]
    where = conn.display
    if final is not None and final.get("event") == "error":
        err = final.get("error") or {}
        code = int(err.get("exit_code") or status or 1)
        return _raise(str(err.get("kind") or ""), f"on {where}: {err.get('message')}", code)
    if status == -1:
        if not conn.is_alive():
            raise ConnectionLostError(f"SSH connection to {where} lost while it was pulling")
        raise SSHError(f"the pull on {where} was killed (no exit status)")
    said = _error_text(stderr) or f"exit status {status}"
    return _raise("", f"on {where}: {said}", status or 1)


def _error_text(stderr: bytes) -> str:
    """`hfsync: error: MESSAGE` as the host printed it, else its first line."""
    text = stderr.decode("utf-8", errors="replace")
    for line in text.splitlines():
        if line.startswith("hfsync: error: "):
            return line[len("hfsync: error: ") :].strip()
    return first_line(stderr)


def _raise(kind: str, message: str, code: int) -> dict[str, Any]:
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, HfsyncError)) or cls.exit_code != code:
        cls = _BY_CODE.get(code, HfsyncError)
    error = cls(message)
    error.exit_code = code
    raise error
