"""A push stream into a host without python3: `shell_scripts.RECV` behind the agent's protocol.

docs/architecture.md, "SSH hosts". The `Pusher` (remote/push.py) speaks to a `Session`: JSON
header lines through `send`, the bytes straight onto `channel`, JSON replies from
`next_reply`. `ShellSession` keeps that contract for the shell loop: each header is turned into
the loop's three plain lines (a sequence number instead of the path in the replies, so no
reply ever needs escaping) and each reply line back into the dict the agent would have sent.
One channel carries every file of the stream, so a small file costs no round trip here either.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from hfsync.errors import HfsyncError, RemotePathError, SSHError
from hfsync.remote.channel import ConnectionLostError
from hfsync.remote.connection import quote_command, remote_shell_quote
from hfsync.remote.host import Session
from hfsync.remote.shell_scripts import RECV

if TYPE_CHECKING:
    from hfsync.remote.shell_host import ShellHost


def recv_command(remote_dir: str) -> str:
    """`exec sh -c RECV hfsync-recv ROOT` (the script is code, never data: no secret in it)."""
    return f"exec sh -c {quote_command([RECV])} hfsync-recv {remote_shell_quote(remote_dir)}"


class ShellSession(Session):
    """`Session` over the shell receiving loop (see the module docstring)."""

    def __init__(self, host: ShellHost) -> None:
        self._paths: dict[str, str] = {}
        self._seq = 0
        self._seq_lock = threading.Lock()
        super().__init__(host, "recv")

    def command_line(self, mode: str, *args: str) -> str:
        return recv_command(self.host.remote_dir)

    def preamble(self) -> bytes:
        return b""

    def send(self, data: bytes) -> None:
        """A frame header (the only thing the Pusher sends through here) as the loop's lines."""
        if not data:
            return
        header = json.loads(data)
        path, part = str(header["p"]), str(header["q"])
        if any(c in text for text in (path, part) for c in "\n\r"):
            raise RemotePathError(f"refusing a path with a line break: {path!r}")
        with self._seq_lock:
            self._seq += 1
            seq = str(self._seq)
            self._paths[seq] = path
        line = f"{seq} {int(header['s'])} {int(header['o'])} {header['e']} {header['c']}\n"
        super().send((line + path + "\n" + part + "\n").encode("utf-8", "surrogateescape"))

    def decode(self, line: bytes) -> dict[str, Any]:
        """One reply line of the loop as the agent's reply dict."""
        words = line.decode("utf-8", "replace").rstrip("\r").split(" ", 4)
        tag, seq = words[0], words[1] if len(words) > 1 else "-"
        path = self._paths.get(seq)
        if tag == "A" and len(words) == 3 and path is not None:
            return {"p": path, "at": int(words[2])}
        if tag == "K" and len(words) == 3 and path is not None:
            return {"p": path, "ok": True, "n": int(words[2])}
        if tag == "H" and path is not None:
            return {"p": path, "ok": True, "n": 0, "have": True}
        if tag == "X" and len(words) == 5:
            kind, fatal, message = words[2], words[3] == "1", words[4]
            if kind == "usage" and message.startswith("it lacks"):
                message = f"the host has no python3, and its shell cannot stand in: {message}"
            reply: dict[str, Any] = {"ok": False, "kind": kind, "error": message}
            if path is None:
                return {"error": message, "kind": kind}
            reply["p"] = path
            if fatal:
                reply["fatal"] = True
            return reply
        raise ValueError(line)

    def why_stopped(self) -> HfsyncError:
        if self.transport_gone():
            return ConnectionLostError(f"SSH connection to {self.host.conn.display} lost")
        self.channel.status_event.wait(2.0)
        status = self.channel.recv_exit_status() if self.channel.exit_status_ready() else -1
        said = self.stderr_line()
        return SSHError(
            f"the shell helper on {self.host.description} stopped (exit status {status})"
            + (f": {said}" if said else "")
        )
