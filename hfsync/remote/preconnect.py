"""Connect to the SSH host of `hfsync to-remote REPO 'SSH COMMAND' DIR` while the CLI starts.

Why: until now the connection began only once click had parsed the command and the run's
modules were imported. On the bench's push-small (sshd on loopback, exec events traced with
perf) the host saw hfsync's connection 0.18-0.24 s after the process started, rsync's ssh
at 0.01 s. Connecting, authenticating and opening the first session channel take ~0.09 s
more (the channel alone ~0.045 s: sshd's post-login setup), all of it waiting on the host.
Started here, right after the interpreter and paramiko, the connection arrives at
0.13-0.14 s and that wait overlaps the imports of click, requests and the rest of the run,
on a WAN as on loopback: push-small 1.000 -> 0.925 s, medians of 10 interleaved rounds.

It is a guess made before the options are parsed, so it is only taken when it cannot be
wrong about what the run will connect to: the command line starts `to-remote REPO 'SSH
COMMAND' DIR` (the documented order; `--debug` may come first), the ssh command parses, and
no option that changes how or where to connect follows (`--host`, `--hosts-file`,
`--connect-timeout`, `--help`). A host reached through a ProxyCommand or jump hosts is
left to the run (no process is started on a guess). What the guess opens is an ordinary
authenticated connection, host key checked, with one session channel opened but nothing
run on it: `connection.connect()` hands it to the run when the run asks for the same spec,
the same way an error of it is the error that run would have met (a refused host key is
still one line, exit 7). A run that never asks (a usage error, a --help) closes it at exit.

The TCP connection itself starts before paramiko is imported (`early_socket`): a
non-blocking connect, so the TCP handshake and sshd's start for this connection (its
re-exec, config and host keys) happen during the ~0.09 s of that import instead of after it
(one round trip fewer on a WAN). Only where nothing can redirect it: a numeric address, no
ssh config file that could apply (`-F none`, or no ~/.ssh/config), no proxy or jump host.
If `resolve` settles on another address it is closed and the run connects as before; if it
is refused or does not connect within the connect timeout, that is the run's error, as a
fresh connect's would have been (not a second attempt and a second wait).
"""

from __future__ import annotations

import atexit
import os
import select
import socket
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hfsync.errors import HfsyncError
from hfsync.remote.sshcmd import SSHSpec, address_family, parse_ssh_command

if TYPE_CHECKING:
    from hfsync.remote.connection import Settings, SSHConnection

COMMAND = "to-remote"
GLOBAL_FLAGS = frozenset({"--debug"})  # `hfsync --debug to-remote ...`
# Options after which the guess could be wrong: other hosts, another timeout, no run at all.
DISQUALIFY = ("--host", "--hosts-file", "--connect-timeout", "--help", "-h", "--version")


def guess(argv: Sequence[str]) -> SSHSpec | None:
    """The spec `argv` (without the program name) will connect to, or None when unsure."""
    args = list(argv)
    while args and args[0] in GLOBAL_FLAGS:
        args.pop(0)
    if len(args) < 4 or args[0] != COMMAND:
        return None
    repo, ssh_command, remote_dir = args[1:4]
    if any(a.startswith("-") for a in (repo, ssh_command, remote_dir)):
        return None  # an option before the positionals: leave it to click
    for arg in args[4:]:
        name = arg.split("=", 1)[0]
        if name in DISQUALIFY or arg == "--":
            return None
    try:
        return parse_ssh_command(ssh_command)
    except HfsyncError:
        return None  # the run reports it, as a usage error, before any network


EarlySocket = tuple[socket.socket, str, int, int]  # (socket, host, port, family)


def early_socket(spec: SSHSpec) -> EarlySocket | None:
    """A non-blocking TCP connect to the address `spec` names, already under way, or None
    when that address might not be the one the run connects to (see the module doc)."""
    options = spec.options
    if spec.jump_hosts or "proxycommand" in options or "proxyjump" in options:
        return None
    config = spec.config_file
    if config is None:
        if os.path.lexists(os.path.expanduser("~/.ssh/config")):
            return None
    elif config.lower() != "none":
        return None
    host, port = options.get("hostname") or spec.host, spec.port or 22
    family = address_family(options.get("addressfamily"))
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return None  # a name: resolving it may block, the run does it
    af, kind, proto, _, addr = infos[0]
    sock = socket.socket(af, kind, proto)
    try:
        sock.setblocking(False)
        sock.connect_ex(addr)
    except OSError:
        sock.close()
        return None
    return sock, host, port, family


def _connected(early: EarlySocket | None, settings: Settings) -> socket.socket | None:
    """The early socket, connected and blocking, if it is what `settings` would connect to;
    else None (closed: the run connects itself). A connect that failed or did not finish
    within the connect timeout raises the SSHConnectError a fresh connect would have raised
    (a second attempt would have doubled the wait for a silent address)."""
    if early is None:
        return None
    from hfsync.remote.connection import _socket_error

    sock, host, port, family = early
    same = (settings.hostname, settings.port, settings.address_family) == (host, port, family)
    if not same or settings.proxy_command or settings.jump_hosts:
        sock.close()
        return None
    try:
        _, writable, _ = select.select([], [sock], [], settings.connect_timeout)
        if not writable:
            raise TimeoutError
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, os.strerror(error))
        sock.setblocking(True)
        sock.settimeout(settings.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        sock.close()
        raise _socket_error(exc, settings, host, port) from None
    return sock


class Early:
    """One speculative connection: opened on a thread, handed over once by `claim`."""

    def __init__(self, spec: SSHSpec, sock: EarlySocket | None = None) -> None:
        self.spec = spec
        self._sock = sock
        self._lock = threading.Lock()
        self._claimed = False  # handed to the run (or refused to it, once abandoned)
        self._abandoned = False
        self._conn: SSHConnection | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._open, name="hfsync-preconnect", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _open(self) -> None:
        from hfsync.remote.connection import SSHConnection, resolve

        early, self._sock = self._sock, None
        try:
            try:
                settings = resolve(self.spec)
            except BaseException:
                if early is not None:
                    early[0].close()
                raise
            sock = _connected(early, settings)
            if settings.proxy_command or settings.jump_hosts:
                return  # not on a guess: the run starts its proxy itself
            conn = SSHConnection(self.spec, settings).open(sock)
        except BaseException as exc:  # noqa: BLE001 - handed to the run by claim()
            self._error = exc
            return
        try:
            conn.preopen_session()
        except HfsyncError:
            pass  # the run opens its channels itself, and meets whatever this was
        with self._lock:
            if self._abandoned:  # the process is exiting
                conn.close()
            else:
                self._conn = conn

    def claim(self, spec: SSHSpec) -> SSHConnection | None:
        """The open connection (or its error, raised) if `spec` is the guessed one and nobody
        took it yet; else None, and the caller connects itself."""
        with self._lock:
            if self._claimed or spec != self.spec:
                return None
            self._claimed = True
        self._thread.join()
        if self._error is not None:
            raise self._error
        with self._lock:
            conn, self._conn = self._conn, None  # the run's now: abandon() leaves it alone
        return conn  # None: skipped (a proxy or jump hosts)

    def abandon(self) -> None:
        """At exit: close what nobody claimed, now or as soon as the thread has it."""
        with self._lock:
            self._claimed = self._abandoned = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


_early: Early | None = None


def start(argv: Sequence[str]) -> None:
    """Begin connecting if `argv` (without the program name) is a to-remote run to guess."""
    global _early
    spec = guess(argv)
    if spec is None or _early is not None:
        return
    sock = early_socket(spec)  # under way while paramiko is imported
    from hfsync.remote import connection

    _early = Early(spec, sock)
    atexit.register(_early.abandon)
    connection.EARLY_CLAIM[:] = [claim]
    _early.start()


def claim(spec: SSHSpec, timeout: float | None) -> SSHConnection | None:
    """For `connection.connect`: the early connection to `spec`, if one was started and a run
    with the default timeout asks for it (the guess never has another)."""
    if _early is None or timeout is not None:
        return None
    return _early.claim(spec)
