"""A remote folder on a host without python3: the control session as a POSIX shell.

docs/architecture.md, "SSH hosts". `ShellHost` is a `RemoteHost` whose control session is
`sh -s` reading the functions of `shell_scripts.PRELUDE` and then one snippet per request
from the channel, so the run still costs one remote process that holds the folder's lock for
as long as the channel lives. Its `call` answers `scan`/`record`/`delete` with the documents
the agent would send, so `RemoteTarget` and the pure planner cannot tell the two apart, and
its push streams are `shell_push.ShellSession`s, so the `Pusher` is the same too.

The scan is one snippet (sizes, mtimes, metadata texts, part files); the metadata rule is then
applied here (`state.parse_metadata`, what the agent applies remotely) and the files it cannot
vouch for (all, with `--checksum`) are hashed by a second snippet with sha256sum / sha1sum,
only when there are any. `open_host` picks the agent and falls back to this class when the
host has no usable python3.
"""

from __future__ import annotations

import math
import os
import secrets
import shlex
import socket
from typing import Any

import paramiko

from hfsync.errors import RemotePathError, SSHError
from hfsync.remote.channel import ConnectionLostError, first_line
from hfsync.remote.connection import SSHConnection, remote_shell_quote
from hfsync.remote.host import (
    REPLY_TIMEOUT,
    NoPythonError,
    RemoteHost,
    Session,
    agent_error,
    locked_error,
)
from hfsync.remote.shell_scripts import PRELUDE
from hfsync.remote.state import parse_metadata

FIELDS = {"X": 2, "M": 2, "S": 3, "P": 2, "E": 2, "H": 3, "B": 1, "K": 0, "D": 2, "@": 1}
HASH_TIMEOUT = 3600.0  # seconds one file may take to hash (a digest is printed per file)
FALLBACK_NOTE = "{host} has no python3; pushing with the POSIX shell (slower hashing)"


def open_host(conn: SSHConnection, remote_dir: str, *, lock: bool) -> tuple[RemoteHost, str]:
    """The host's control session through the agent, or through the shell when the host has
    no python3 (older than 3.6 counts as none). Returns the host and a note ("" for the agent)
    saying the slower path was taken."""
    host = RemoteHost(conn, remote_dir)
    try:
        host.open(lock=lock)
        return host, ""
    except NoPythonError:
        pass
    shell = ShellHost(conn, remote_dir)
    shell.open(lock=lock)
    return shell, FALLBACK_NOTE.format(host=conn.display)


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def heredoc(lines: list[str]) -> tuple[str, str]:
    """(`<<'TAG'`, body ending in TAG) for `lines`, which must not hold a newline: the
    delimiter is random per request, so no line can end the document early."""
    tag = "HFSYNC_" + secrets.token_hex(8)
    for line in lines:
        if "\n" in line or "\r" in line or line == tag:
            raise RemotePathError(f"refusing a path with a line break: {line!r}")
    return f"<<'{tag}'", "".join(line + "\n" for line in lines) + tag + "\n"


class ShellControl:
    """`sh -s` on one exec channel: snippets in, NUL-separated records out."""

    def __init__(self, host: ShellHost) -> None:
        self.host = host
        self.channel = host.conn.open_exec("exec sh -s")
        self.channel.settimeout(REPLY_TIMEOUT)
        self._buf = b""
        self._fields: list[bytes] = []

    def run(self, snippet: str, timeout: float = REPLY_TIMEOUT) -> list[tuple[str, list[str]]]:
        """Send `snippet` and return its records up to its end record."""
        token = secrets.token_hex(8)
        self.channel.settimeout(timeout)
        self._send(encode(snippet + f"\nhf_rec @ {token}\n"))
        records = []
        while True:
            tag = self._field(timeout)
            if tag not in FIELDS:
                raise SSHError(f"the shell on {self.host.description} sent a garbled reply")
            fields = [self._field(timeout) for _ in range(FIELDS[tag])]
            if tag == "@":
                if fields[0] != token:
                    raise SSHError(f"the shell on {self.host.description} is out of step")
                return records
            records.append((tag, fields))

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                sent = self.channel.send(view)
                if sent == 0:
                    raise self._stopped()
                view = view[sent:]
        except (TimeoutError, OSError, EOFError, paramiko.SSHException):
            raise self._stopped() from None

    def _field(self, timeout: float) -> str:
        while b"\0" not in self._buf:
            try:
                chunk = self.channel.recv(65536)
            except TimeoutError:
                raise SSHError(
                    f"no answer from the shell on {self.host.description} for {timeout:g} s"
                ) from None
            except (OSError, EOFError, paramiko.SSHException):
                chunk = b""
            if not chunk:
                raise self._stopped()
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return decode(raw)

    def _stopped(self) -> SSHError:
        transport = self.channel.get_transport()
        if transport is None or not transport.is_active():
            return ConnectionLostError(f"SSH connection to {self.host.conn.display} lost")
        self.channel.status_event.wait(2.0)
        status = self.channel.recv_exit_status() if self.channel.exit_status_ready() else -1
        err = b""
        while self.channel.recv_stderr_ready() and len(err) < 65536:
            err += self.channel.recv_stderr(65536)
        said = first_line(err)
        return SSHError(
            f"the shell on {self.host.description} stopped (exit status {status})"
            + (f": {said}" if said else "")
        )

    def close(self) -> None:
        try:
            self.channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass
        self.channel.close()


class ShellHost(RemoteHost):
    """`RemoteHost` for a host without python3 (see the module docstring)."""

    helper = "shell"

    def open(self, *, lock: bool, wait: float = 0.0) -> None:
        holder = f"local {socket.gethostname()} pid {os.getpid()}"
        control = ShellControl(self)
        try:
            wait_arg = str(math.ceil(wait)) if lock else "-1"
            hello = control.run(
                PRELUDE
                + f"\nhf_root {remote_shell_quote(self.remote_dir)}\n"
                + f"hf_hello {wait_arg} {shlex.quote(holder)} </dev/null"
            )
        except BaseException:
            control.close()
            raise
        for tag, fields in hello:
            if tag == "H":
                self.real_root = fields[2]
                self._control = control  # type: ignore[assignment]  # closed like a Session
                self._locked = lock
                return
            control.close()
            if tag == "B":
                raise locked_error(self.description, fields[0])
            if tag == "E":
                kind, message = fields
                if kind == "usage":
                    raise SSHError(
                        f"{self.conn.display} has no python3, and its shell cannot stand in: "
                        f"{message} (install coreutils, or python3)"
                    )
                raise agent_error(kind, f"{self.description}: {message}")
        control.close()
        raise SSHError(f"no answer from the shell on {self.description}")

    @property
    def shell(self) -> ShellControl:
        control = self._control
        assert isinstance(control, ShellControl), "open() first"
        return control

    def call(self, op: str, **request: Any) -> dict[str, Any]:
        """The agent's requests, answered with the agent's documents."""
        if op == "scan":
            return self._scan(
                request.get("files", {}),
                checksum=bool(request.get("checksum")),
                all_files=bool(request.get("all_files")),
            )
        if op == "record":
            lines = [word for rel, commit, etag in request["items"] for word in (commit, etag, rel)]
            self._run_checked("hf_record", lines)
            return {"ok": True}
        if op == "delete":
            self._run_checked("hf_delete", list(request["items"]))
            return {"ok": True}
        raise SSHError(f"unknown request {op!r} for the shell helper")

    def call_with_progress(self, op: str, on_progress: Any, **request: Any) -> dict[str, Any]:
        return self.call(op, **request)

    def _run_checked(
        self, function: str, lines: list[str], timeout: float = REPLY_TIMEOUT
    ) -> list[tuple[str, list[str]]]:
        redirect, body = heredoc(lines)
        records = self.shell.run(f"( {function} {redirect}\n{body}) </dev/null", timeout)
        for tag, fields in records:
            if tag == "E":
                raise agent_error(fields[0], f"{self.description}: {fields[1]}")
        return records

    def _scan(self, listed: dict[str, Any], *, checksum: bool, all_files: bool) -> dict[str, Any]:
        records = self._run_checked(f"hf_scan {1 if all_files else 0}", list(listed))
        doc: dict[str, Any] = {"exists": False, "root": self.real_root, "files": [], "parts": []}
        meta: dict[str, str] = {}
        stats: dict[str, tuple[int, float]] = {}
        for tag, fields in records:
            if tag == "X":
                doc["exists"], doc["root"] = fields[0] == "1", fields[1]
            elif tag == "M":
                meta[fields[0]] = fields[1]
            elif tag == "S" and fields[0].startswith("./"):
                try:
                    stats[fields[0][2:]] = (int(fields[1]), float(fields[2]))
                except ValueError:
                    continue
            elif tag == "P" and fields[0].startswith("./"):
                doc["parts"].append([fields[0][2:], int(fields[1])])
        to_hash = []
        for rel, (size, mtime) in stats.items():
            want = listed.get(rel)
            if want is None or size != want[0]:
                continue
            held = parse_metadata(meta.get(rel), mtime)
            if checksum or held is None or held.etag != want[1]:
                to_hash.append(rel)
        digests = self._hash(to_hash, listed) if to_hash else {}
        doc["files"] = [
            [rel, size, mtime, meta.get(rel) if rel in listed else None, digests.get(rel)]
            for rel, (size, mtime) in stats.items()
        ]
        return doc

    def _hash(self, paths: list[str], listed: dict[str, Any]) -> dict[str, str]:
        lines = []
        for rel in paths:
            size, etag = listed[rel][0], listed[rel][1]
            lines += [f"{'sha256' if len(etag) == 64 else 'sha1'} {int(size)}", rel]
        records = self._run_checked("hf_hash", lines, HASH_TIMEOUT)
        return {fields[0]: fields[1] for tag, fields in records if tag == "D"}

    def open_stream(self) -> Session:
        from hfsync.remote.shell_push import ShellSession

        return ShellSession(self)
