"""One remote folder on one SSH host, driven through the agent (hfsync/remote/agent.py).

The agent's source goes first on each remote command's stdin, then the requests, so nothing is
installed on the host, the only argv is the mode and the folder, and the token (which the push
path never sends at all) could not leak through a process list. A run opens one *control
session* (`agent.py serve`): it holds the folder's lock for as long as the channel lives and
answers scan/record/delete requests, so however many requests a run makes they cost one remote
process (a login shell costs 0.4 s on some hosts). The first push stream rides in that session
too (`ControlStream`: the agent's `recv` request, frames until an end header, then requests
again); further streams (`--streams N`, a stream after a broken one) are sessions of their own.
Remote pull (the next issue) reuses the connection, the lock and the scan from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import socket
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import paramiko

from hfsync.errors import DiskError, HfsyncError, LockedError, RemotePathError, SSHError, UsageError
from hfsync.remote import interpreters
from hfsync.remote.channel import ConnectionLostError, first_line
from hfsync.remote.connection import SSHConnection, quote_command, remote_shell_quote
from hfsync.remote.interpreters import interpreter

AGENT_PATH = Path(__file__).with_name("agent.py")
NO_PYTHON_STATUS = 127
OLD_PYTHON = "python3 is older than 3.6"
REPLY_TIMEOUT = 300.0  # a scan with --checksum prints nothing until every file is hashed
SEND_STALL = 60.0  # seconds without window space before the link counts as dead
RELOCK_WAIT = 10.0  # after a reconnect the old holder may take a moment to notice
END_WAIT = 3.0  # seconds a closing control session gets to release the lock and exit


@lru_cache(maxsize=1)
def agent_source() -> bytes:
    return AGENT_PATH.read_bytes()


def agent_command(mode: str, root: str, *args: str, python: str = "python3") -> str:
    """`python3 -S -c <bootstrap> MODE ROOT ARGS`: the bootstrap reads the agent from stdin.

    `-S` (no `site`): the agent is stdlib-only, and `site` with its .pth files costs 10-60 ms
    of every start on a conda/pyenv image (measured 0.07 s -> 0.01 s here), on the critical
    path of every run; it also keeps site-packages' code out of the agent. `python`: the
    interpreter the control session reported (`sys.executable`), so push streams skip a
    version manager's shim (pyenv's costs 0.1-0.15 s of host CPU per start)."""
    size = len(agent_source())
    boot = (  # a python3 older than the agent's syntax counts as none (remote/shell_host.py)
        f"import sys;sys.version_info>=(3,6) or sys.exit('hfsync-agent: {OLD_PYTHON}');"
        f"exec(compile(sys.stdin.buffer.read({size}),'hfsync-agent','exec'))"
    )
    words = [quote_command([python]), "-S", "-c", quote_command([boot]), quote_command([mode])]
    words.append(remote_shell_quote(root))
    words += [quote_command([a]) for a in args]
    return " ".join(words)


def check_remote_dir(remote_dir: str) -> str:
    """REMOTE_DIR as scp takes it: absolute, `~/...`, or relative to the remote home."""
    if not remote_dir or any(c in remote_dir for c in "\0\n\r"):
        raise UsageError(f"invalid REMOTE_DIR {remote_dir!r}")
    if remote_dir.startswith("~") and remote_dir != "~" and not remote_dir.startswith("~/"):
        raise UsageError(f"REMOTE_DIR {remote_dir!r}: ~user paths are not supported; use ~/...")
    return remote_dir


def locked_error(description: str, holder: str) -> LockedError:
    """Exit 8 naming the holder line of the remote lock (`PID local HOST pid PID`)."""
    pid, _, rest = (holder or "unknown").partition(" ")
    return LockedError(
        f"another hfsync (remote pid {pid}{', ' + rest if rest else ''}) is syncing "
        f"{description}; try again when it finishes"
    )


class NoPythonError(SSHError):
    """The host has no usable python3 for the agent; a push falls back to the POSIX shell
    (remote/shell_host.py)."""


NOT_FOUND = r"python3: (command )?not found|python3: No such"


def agent_error(kind: Any, message: str) -> HfsyncError:
    if kind == "path":
        return RemotePathError(message)
    if kind == "disk":
        return DiskError(message)
    return SSHError(message)


class Session:
    """One agent process on an exec channel: lines of JSON in, lines of JSON out (read on a
    thread, so the sender can keep sending while replies arrive)."""

    def __init__(self, host: RemoteHost, mode: str, *args: str) -> None:
        self.host = host
        self.generation = host.generation
        self.channel = host.conn.open_exec(self.command_line(mode, *args))
        self.channel.settimeout(SEND_STALL)
        self.replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.ended = False
        try:
            self.send(self.preamble())
        except BaseException:
            self.channel.close()
            raise
        self._reader = threading.Thread(target=self._read, name="hfsync-agent", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                try:
                    chunk = self.channel.recv(65536)
                except TimeoutError:
                    if self.channel.closed:
                        break
                    continue
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        try:
                            self.replies.put(self.decode(line))
                        except ValueError:
                            self.replies.put({"error": first_line(line), "kind": "ssh"})
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            self.replies.put(None)

    def command_line(self, mode: str, *args: str) -> str:
        """The remote command (a seam: remote/shell_push.py runs a shell loop instead)."""
        return agent_command(mode, self.host.remote_dir, *args, python=self.host.python)

    def preamble(self) -> bytes:
        """What goes first on stdin: the agent's source."""
        return agent_source()

    def decode(self, line: bytes) -> dict[str, Any]:
        """One reply line as a dict (ValueError when it is not one)."""
        return json.loads(line)

    def send(self, data: bytes) -> None:
        """Send all of `data` (small: headers, requests); the memoryview loop avoids
        paramiko's quadratic sendall."""
        view = memoryview(data)
        while view:
            try:
                sent = self.channel.send(view)
            except TimeoutError:
                where = self.host.conn.display
                raise ConnectionLostError(f"SSH connection to {where} stalled") from None
            except (OSError, EOFError, paramiko.SSHException):
                raise self.why_stopped() from None
            if sent == 0:
                raise self.why_stopped()
            view = view[sent:]

    def next_reply(self, timeout: float | None) -> dict[str, Any] | None:
        """The next reply; None once the agent's output ended. Raises queue.Empty on timeout."""
        if self.ended:
            return None
        reply = self.replies.get(timeout=timeout)
        if reply is None:
            self.ended = True
        return reply

    def transport_gone(self) -> bool:
        transport = self.channel.get_transport()
        if transport is None:
            return True
        if transport.is_active():
            transport.join(0.5)  # a dying transport closes channels before it clears `active`
        return not transport.is_active()

    def why_stopped(self) -> HfsyncError:
        """The error for an agent that stopped: a lost connection, or what it said."""
        if self.transport_gone():
            return ConnectionLostError(f"SSH connection to {self.host.conn.display} lost")
        self.channel.status_event.wait(2.0)  # the exit status may trail the end of output
        status = self.channel.recv_exit_status() if self.channel.exit_status_ready() else -1
        said = self.stderr_line()
        if status == NO_PYTHON_STATUS or OLD_PYTHON in said or re.search(NOT_FOUND, said):
            return NoPythonError(
                f"{self.host.conn.display} has no python3 on its PATH; hfsync's remote helper "
                "needs it (e.g. apt-get install python3-minimal)"
            )
        return SSHError(
            f"the remote helper on {self.host.description} stopped (exit status {status})"
            + (f": {said}" if said else "")
        )

    def stderr_line(self) -> str:
        err = b""
        with contextlib.suppress(OSError, paramiko.SSHException):
            while self.channel.recv_stderr_ready() and len(err) < 65536:
                err += self.channel.recv_stderr(65536)
        return first_line(err)

    def request(self, doc: dict[str, Any], timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        """Send one request line and return its reply (errors raised as HfsyncErrors)."""
        self.send(json.dumps(doc).encode() + b"\n")
        return self.expect(timeout)

    def expect(self, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        try:
            reply = self.next_reply(timeout)
        except queue.Empty:
            raise SSHError(
                f"no answer from the remote helper on {self.host.description} for {timeout:g} s"
            ) from None
        if reply is None:
            raise self.why_stopped()
        if "error" in reply:
            raise agent_error(reply.get("kind"), f"{self.host.description}: {reply['error']}")
        return reply

    def close_input(self) -> None:
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self.channel.shutdown_write()

    def close(self) -> None:
        self.close_input()
        self.channel.close()


END_FRAMES = b'{"end": true}\n'  # ends the frames of a ControlStream; the agent answers RECV_END
RECV_END = "end"


class ControlStream(Session):
    """The control session lent to one push stream: `{"op": "recv"}`, then frames on the same
    channel until `close_input` sends the end header; the agent's `{"recv": "end"}` ends the
    stream's replies and hands the session back for the run's later requests (deletes).

    Why: a session of its own costs the host a login shell and a python3 start (0.18 s of
    host CPU here, with a `.bashrc` that runs `pyenv init`), on the critical path of a small
    push. A stream closed before that end (its framing broken: a send that failed midway)
    takes the control session down with it (`RemoteHost.drop_control`); the next request
    opens a new one, which takes the lock again."""

    def __init__(self, host: RemoteHost, control: Session) -> None:  # noqa: D107
        self.host = host
        self.control = control
        self.generation = host.generation  # the session is always the current connection's
        self.channel = control.channel
        self.replies = control.replies
        self.ended = False
        self._input_closed = False
        self.send(b'{"op": "recv"}\n')

    def next_reply(self, timeout: float | None) -> dict[str, Any] | None:
        """The stream's next reply; None at the end header's answer or the session's end."""
        if self.ended:
            return None
        reply = self.replies.get(timeout=timeout)
        if reply is None:  # the agent is gone: the control session has ended too
            self.replies.put(None)
            self.ended = self.control.ended = True
            return None
        if reply.get("recv") == RECV_END:
            self.ended = True
            self.host.control_returned(self.control)
            return None
        return reply

    def close_input(self) -> None:
        """No more frames (the end header); the session itself stays open."""
        if not self._input_closed:
            self._input_closed = True
            with contextlib.suppress(HfsyncError):
                self.send(END_FRAMES)

    def close(self) -> None:
        if not self.ended:
            self.host.drop_control(self.control)


class RemoteHost:
    """The SSH connection plus the remote folder and its control session."""

    def __init__(self, conn: SSHConnection, remote_dir: str) -> None:
        self.conn = conn
        self.remote_dir = check_remote_dir(remote_dir)
        self.description = f"{conn.display}:{remote_dir}"
        self.real_root: str | None = None  # the remote's realpath of REMOTE_DIR, once known
        self.python = "python3"  # the agent's interpreter; its real path once serve said it
        self.generation = 0  # bumped on every reconnect, so parallel streams reconnect once
        self._reconnect_lock = threading.Lock()
        self._control: Session | None = None
        self._locked = False
        self._lent = False  # the control session carries a push stream (ControlStream)
        self._dropped = False  # a broken ControlStream ended it; the next call reopens it
        self._spare: list[Session | BaseException] = []
        self._spare_thread: threading.Thread | None = None

    def open(self, *, lock: bool, wait: float = 0.0) -> None:
        """Start the control session; with `lock`, take the folder's lock (LockedError names
        the holder). Without it (a dry run) nothing is created on the host.

        The agent starts on the python3 it ran on last time on this host, if one is
        remembered (remote/interpreters.py: no version manager's shim on the critical path),
        else through PATH; a remembered one that fails to start it is dropped and PATH tried."""
        holder = f"local {socket.gethostname()} pid {os.getpid()}"
        args = ("serve", f"{wait:g}" if lock else "-1", holder)
        remembered = interpreters.recall(self.conn)  # the host key was checked: this host's
        started = self._start_on(remembered, *args) if remembered else None
        if started is None:
            if remembered:
                interpreters.forget(self.conn)
                remembered = None
            self.python = "python3"  # found on PATH (a reconnect may reach another machine)
            started = self._start(*args)
        session, hello = started
        if hello is None:
            error = session.why_stopped()
            session.close()
            raise error
        if "busy" in hello:
            session.close()
            raise locked_error(self.description, str(hello["busy"]))
        if "error" in hello:
            session.close()
            raise agent_error(hello.get("kind"), f"{self.description}: {hello['error']}")
        self.real_root = hello.get("root")
        self.python = interpreter(hello.get("python"))
        if self.python not in ("python3", remembered):
            interpreters.remember(self.conn, self.python)
        self._control = session
        self._locked = lock
        self._lent = self._dropped = False

    def _start_on(self, python: str, *args: str) -> tuple[Session, dict[str, Any]] | None:
        """`_start` on a remembered interpreter; None when the agent did not start on it
        (gone, broken, too old): the caller tries PATH. A lost connection is raised."""
        self.python = python
        try:
            session, hello = self._start(*args)
        except ConnectionLostError:
            raise
        except HfsyncError:
            return None
        if hello is not None:
            return session, hello
        error = session.why_stopped()
        session.close()
        if isinstance(error, ConnectionLostError):
            raise error
        return None

    def _start(self, mode: str, *args: str) -> tuple[Session, dict[str, Any] | None]:
        """A control session on `self.python` and its first line (None: it ended first)."""
        session = Session(self, mode, *args)
        try:
            return session, session.next_reply(REPLY_TIMEOUT)
        except queue.Empty:
            session.close()
            raise SSHError(f"no answer from the remote helper on {self.description}") from None

    def call(self, op: str, **request: Any) -> dict[str, Any]:
        """One request on the control session (never while a push stream uses it)."""
        if self._control is None and self._dropped:
            self.open(lock=self._locked, wait=RELOCK_WAIT)
        assert self._control is not None, "open() first"
        assert not self._lent, "the control session carries a push stream"
        return self._control.request({"op": op, **request})

    def call_with_progress(self, op: str, on_progress: Any, **request: Any) -> dict[str, Any]:
        """`call` with `progress` asked for: the agent's `{"hashed": [files, bytes]}` lines go
        to `on_progress(files, bytes)` until the reply (each line restarts the timeout)."""
        assert self._control is not None, "open() first"
        session = self._control
        reply = session.request({"op": op, "progress": True, **request})
        while "hashed" in reply and len(reply) == 1:
            on_progress(*reply["hashed"])
            reply = session.expect()
        return reply

    def prestart_stream(self) -> None:
        """Start opening a push stream now, so its remote process (a login shell and python3
        starting: 0.4-0.7 s on some hosts) starts while the scan and the plan run. Nothing
        to start when the control session will carry the first stream (`lendable`)."""
        if self.lendable():
            return

        def opener() -> None:
            try:
                self._spare.append(self.open_stream())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever asks next
                self._spare.append(exc)

        self._spare_thread = threading.Thread(target=opener, name="hfsync-prestart", daemon=True)
        self._spare_thread.start()

    def stream(self) -> Session:
        """A push stream (`agent.py recv`): the control session if it is free, else the
        prestarted one if it is usable, else a new one."""
        if self.lendable():
            assert self._control is not None
            self._lent = True
            return ControlStream(self, self._control)
        thread, self._spare_thread = self._spare_thread, None
        if thread is not None:
            thread.join()
            spare = self._spare.pop() if self._spare else None
            if isinstance(spare, Session):
                if spare.generation == self.generation and not spare.ended:
                    return spare
                spare.close()
        return self.open_stream()

    def lendable(self) -> bool:
        """Whether the control session can carry a push stream now: an agent session (not
        the shell's), open, and not carrying one already."""
        control = self._control
        return type(control) is Session and not self._lent and not control.ended

    def control_returned(self, control: Session) -> None:
        """A ControlStream saw the end of its frames: requests may go on the session again."""
        if control is self._control:
            self._lent = False

    def drop_control(self, control: Session) -> None:
        """A ControlStream closed midway (its frames out of step): end that session (and the
        lock with it); the next `call` opens a new one."""
        if control is self._control:
            self._control, self._lent, self._dropped = None, False, True
        control.close()

    def open_stream(self) -> Session:
        """A new push stream (a seam: remote/shell_host.py's ShellHost opens shell ones)."""
        return Session(self, "recv")

    def reconnect(self, seen_generation: int, tries: int = 3, backoff: float = 1.0) -> None:
        """Re-open the connection after a drop (once, however many streams saw it) and take
        the lock again: the old holder exits when its channel dies."""
        with self._reconnect_lock:
            if self.generation != seen_generation and self.conn.is_alive():
                return
            self._control, self._lent, self._dropped = None, False, False
            self.conn.reconnect(tries=tries, backoff=backoff)
            self.open(lock=self._locked, wait=RELOCK_WAIT)
            self.generation += 1

    def close(self) -> None:
        thread, self._spare_thread = self._spare_thread, None
        if thread is not None:
            thread.join()
        for spare in self._spare:
            if isinstance(spare, Session):
                spare.close()
        self._spare.clear()
        control, self._control = self._control, None
        if control is not None:
            let_end(control.channel, self.conn)
            control.close()
        self.conn.close()


def let_end(channel: paramiko.Channel, conn: SSHConnection) -> None:
    """End the control session's input and wait (at most END_WAIT) for its remote process
    to exit, so the folder's lock is released before this run reports it is done.

    Why: the lock (the agent's flock, the shell's lock folder) goes when the remote process
    exits, a moment after the channel's EOF reaches it. Without the wait, a run that ends
    this process at once (hfsync.launch) left that moment to the host: a second run started
    right after could still find the lock held (exit 8), and a lock folder could outlive the
    run that made it. One round trip on a healthy connection; nothing on a dead one (its
    channels are closed, which ends the wait)."""
    with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
        channel.shutdown_write()
    if conn.is_alive():
        channel.status_event.wait(END_WAIT)
