"""Open an authenticated, host-key-checked SSH connection the way OpenSSH would.

``connect(spec)`` applies ``~/.ssh/config`` under the command line (first value wins, command
line first), reaches the host directly, through a ProxyCommand, or through ``-J`` jump hosts
(a ``direct-tcpip`` channel on the jump connection), checks the host key against known_hosts
and authenticates with keys only (identity files, the agent, default key files): hfsync runs
unattended, so it never prompts. Every failure is one :class:`~hfsync.errors.SSHError` line
(exit 7) without secrets; the subclasses tell a push which failures are worth a reconnect.

Host keys follow OpenSSH with one stricter rule: a key that differs from a known one is refused
whatever ``StrictHostKeyChecking`` says (OpenSSH with ``no`` would connect, minus password
auth), and so is a host that offers only key types other than the ones known for it (OpenSSH
with ``accept-new`` would accept those). An unknown key is refused under ``yes``/``ask`` (the
default), and accepted and recorded under ``accept-new`` and under ``no``/``off`` -- recording
under ``no`` is what OpenSSH does too.
"""

from __future__ import annotations

import getpass
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import paramiko

from hfsync.errors import SSHError, UsageError
from hfsync.remote import hostkeys
from hfsync.remote.channel import (
    ConnectionLostError,
    HostKeyError,
    RemoteClosedError,
    SourceShrankError,
    SSHAuthError,
    SSHConnectError,
    drain,
    send_stream,
)
from hfsync.remote.sshcmd import (
    SSHSpec,
    address_family,
    format_display,
    parse_jump_hosts,
    parse_port,
)

__all__ = [
    "ConnectionLostError",
    "HostKeyError",
    "RemoteClosedError",
    "SSHAuthError",
    "SSHConnectError",
    "SSHConnection",
    "Settings",
    "SourceShrankError",
    "connect",
    "quote_command",
    "remote_shell_quote",
    "resolve",
]

DEFAULT_CONNECT_TIMEOUT = 30.0
# GCM first: AEAD, no separate MAC pass, ~1.4x aes128-ctr+hmac in paramiko (research/ssh-push.md).
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes128-ctr", "aes256-gcm@openssh.com")
DEFAULT_KEY_FILES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")


@dataclass(frozen=True)
class Settings:
    """Everything needed to connect, after merging the command line over ``~/.ssh/config``."""

    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    use_default_keys: bool
    use_agent: bool
    known_hosts: tuple[Path, ...]
    global_known_hosts: tuple[Path, ...]
    strict: str  # "yes" | "accept-new" | "no"
    hash_known_hosts: bool
    host_key_alias: str | None
    connect_timeout: float
    keepalive: int
    proxy_command: str | None
    jump_hosts: tuple[SSHSpec, ...]
    address_family: int
    config_file: str | None
    notes: tuple[str, ...] = field(default=())

    @property
    def display(self) -> str:
        return format_display(self.hostname, self.port, self.user)

    @property
    def known_name(self) -> str:
        """The name known_hosts files store this host under."""
        if self.host_key_alias:
            return self.host_key_alias
        return hostkeys.host_pattern(self.hostname, self.port)


def _yes(value: str | None) -> bool:
    return (value or "").lower() in ("yes", "true")


def _strict_mode(value: str | None) -> str:
    v = (value or "ask").lower()
    if v in ("yes", "ask", "true", "confirm"):
        return "yes"  # we cannot ask, so "ask" refuses like "yes"
    if v in ("no", "off", "false"):
        return "no"
    if v == "accept-new":
        return "accept-new"
    raise UsageError(f"bad StrictHostKeyChecking value {value!r} (yes, accept-new, no)")


def _load_config(spec: SSHSpec) -> dict[str, Any]:
    """``~/.ssh/config`` (or ``-F FILE``; ``-F none`` for none) looked up for the host."""
    path = spec.config_file or "~/.ssh/config"
    if path.lower() == "none":
        return {}
    full = Path(os.path.expanduser(path))
    if not full.is_file():
        if spec.config_file:
            raise UsageError(f"ssh config file {path} does not exist")
        return {}
    try:
        return dict(paramiko.SSHConfig.from_path(str(full)).lookup(spec.host))
    except Exception as exc:  # paramiko raises assorted types for bad configs
        raise SSHError(f"cannot use ssh config {path}: {exc}") from None


def _expand_tokens(text: str, hostname: str, port: int, user: str, alias: str) -> str:
    """The ``%h %p %r %n %%`` tokens ssh expands in a command-line ProxyCommand."""
    table = {"h": hostname, "p": str(port), "r": user, "n": alias, "%": "%"}
    out, i = [], 0
    while i < len(text):
        if text[i] == "%" and i + 1 < len(text) and text[i + 1] in table:
            out.append(table[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def resolve(spec: SSHSpec, *, timeout: float | None = None) -> Settings:
    """Merge ``spec`` over the ssh config for its host (command line first, first value wins)."""
    cfg = _load_config(spec)
    cli = spec.options

    def get(key: str) -> str | None:
        value = cli.get(key)
        if value is None:
            value = cfg.get(key)
        return value if isinstance(value, str) else None

    hostname = cli.get("hostname") or cfg.get("hostname") or spec.host
    port = spec.port or (parse_port(cfg["port"], "Port in ssh config") if cfg.get("port") else 22)
    user = spec.user or cfg.get("user") or getpass.getuser()
    identity = list(spec.identity_files) + list(cfg.get("identityfile") or [])
    known = get("userknownhostsfile")
    known_files = tuple(shlex.split(known)) if known else DEFAULT_KNOWN_HOSTS
    global_known = get("globalknownhostsfile")
    global_files = tuple(shlex.split(global_known)) if global_known else GLOBAL_KNOWN_HOSTS
    ct = get("connecttimeout")
    connect_timeout = float(ct) if ct else (timeout or DEFAULT_CONNECT_TIMEOUT)
    keepalive = int(get("serveraliveinterval") or 0)
    # ProxyCommand and ProxyJump compete: whichever was obtained first wins.
    proxy_command = jump = None
    if "proxycommand" in cli or "proxyjump" in cli:
        proxy_command, jump = cli.get("proxycommand"), cli.get("proxyjump")
    elif cfg.get("proxycommand"):
        proxy_command = cfg["proxycommand"]
    elif cfg.get("proxyjump"):
        jump = cfg["proxyjump"]
    if proxy_command and proxy_command.strip().lower() == "none":
        proxy_command = None
    if proxy_command and "proxycommand" in cli:
        proxy_command = _expand_tokens(proxy_command, hostname, port, user, spec.host)
    jumps = spec.jump_hosts if "proxyjump" in cli else parse_jump_hosts(jump) if jump else ()
    family = address_family(get("addressfamily"))
    agent = get("identityagent")
    return Settings(
        hostname=hostname,
        port=port,
        user=user,
        identity_files=tuple(identity),
        use_default_keys=not identity,
        use_agent=not _yes(get("identitiesonly")) and (agent or "").lower() != "none",
        known_hosts=tuple(Path(os.path.expanduser(p)) for p in known_files),
        global_known_hosts=tuple(Path(os.path.expanduser(p)) for p in global_files),
        strict=_strict_mode(get("stricthostkeychecking")),
        hash_known_hosts=_yes(get("hashknownhosts")),
        host_key_alias=get("hostkeyalias"),
        connect_timeout=connect_timeout,
        keepalive=keepalive,
        proxy_command=proxy_command,
        jump_hosts=jumps,
        address_family=family,
        config_file=spec.config_file,
        notes=spec.notes,
    )


def remote_shell_quote(path: str) -> str:
    """Quote a remote path for the remote POSIX shell; a leading ``~/`` stays the remote home
    (``"$HOME"/...``), since users write remote paths like ``~/models/x``."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        rest = path[2:]
        return '"$HOME"/' + shlex.quote(rest) if rest else '"$HOME"/'
    return shlex.quote(path)


def quote_command(argv: Sequence[str]) -> str:
    """A remote command line with every argument quoted (sshd runs it with the login shell)."""
    return " ".join(shlex.quote(a) for a in argv)


def _socket_error(exc: OSError, settings: Settings, host: str, port: int) -> SSHConnectError:
    where = format_display(host, port, None)
    if isinstance(exc, socket.gaierror):
        return SSHConnectError(f"cannot resolve host name {host!r}: {exc.strerror or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return SSHConnectError(f"connection refused by {where} (is sshd running on that port?)")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return SSHConnectError(
            f"timed out after {settings.connect_timeout:g} s connecting to {where}"
        )
    return SSHConnectError(f"cannot connect to {where}: {exc.strerror or exc}")


def _tcp_connect(settings: Settings) -> socket.socket:
    host, port = settings.hostname, settings.port
    try:
        infos = socket.getaddrinfo(host, port, settings.address_family, socket.SOCK_STREAM)
    except OSError as exc:
        raise _socket_error(exc, settings, host, port) from None
    last: OSError | None = None
    deadline = time.monotonic() + settings.connect_timeout
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    assert last is not None
    raise _socket_error(last, settings, host, port) from None


class SSHConnection:
    """An authenticated SSH connection; cheap to :meth:`reconnect` after a drop.

    ``notes`` collects what the user should know but that is no error (ignored options, a
    recorded host key, an unreadable key file that was skipped).
    """

    def __init__(self, spec: SSHSpec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings
        self.notes: list[str] = list(settings.notes)
        self.host_key_fingerprint: str | None = None
        self.transport: paramiko.Transport | None = None
        self._jump: SSHConnection | None = None
        self._spare: paramiko.Channel | None = None  # see preopen_session

    @property
    def display(self) -> str:
        return self.settings.display

    # -- connecting ------------------------------------------------------------------------

    def _open_socket(self) -> Any:
        s = self.settings
        if s.jump_hosts:
            *before, last = s.jump_hosts
            hop = SSHSpec(
                host=last.host,
                port=last.port,
                user=last.user,
                options={"proxyjump": ",".join(_hop_text(h) for h in before)} if before else {},
                jump_hosts=tuple(before),
                config_file=s.config_file,
            )
            self._jump = connect(hop, timeout=s.connect_timeout)
            assert self._jump.transport is not None
            try:
                return self._jump.transport.open_channel(
                    "direct-tcpip",
                    (s.hostname, s.port),
                    ("127.0.0.1", 0),
                    timeout=s.connect_timeout,
                )
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise SSHConnectError(
                    f"jump host {self._jump.display} could not reach "
                    f"{format_display(s.hostname, s.port, None)}: {exc}"
                ) from None
        if s.proxy_command:
            try:
                return paramiko.ProxyCommand(s.proxy_command)
            except (OSError, ValueError, paramiko.SSHException) as exc:
                raise SSHConnectError(f"cannot start ProxyCommand for {s.display}: {exc}") from None
        return _tcp_connect(s)

    def open(self, sock: socket.socket | None = None) -> SSHConnection:
        """Establish (or re-establish) the connection; returns self. `sock`: a TCP connection
        to the settings' address made already (hfsync.remote.preconnect), to use instead."""
        self.close()
        try:
            if sock is None:
                sock = self._open_socket()
        except BaseException:
            self.close()  # a jump connection may be up already
            raise
        try:
            t = paramiko.Transport(sock)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            _close_quietly(sock)
            self.close()
            raise SSHConnectError(f"cannot start SSH with {self.display}: {exc}") from None
        t.hfsync_display = self.display  # type: ignore[attr-defined]  # for error messages
        self.transport = t
        try:
            self._handshake(t)
            self._check_host_key(t)
            self._authenticate(t)
        except BaseException:
            self.close()
            raise
        if self.settings.keepalive:
            t.set_keepalive(self.settings.keepalive)
        return self

    def _handshake(self, t: paramiko.Transport) -> None:
        s = self.settings
        opts = t.get_security_options()
        offered = tuple(opts.ciphers)
        opts.ciphers = tuple(c for c in PREFERRED_CIPHERS if c in offered) + tuple(
            c for c in offered if c not in PREFERRED_CIPHERS
        )
        self._known = hostkeys.find_known(
            list(s.known_hosts) + list(s.global_known_hosts), s.known_name
        )
        opts.key_types = hostkeys.preferred_key_types(self._known, tuple(opts.key_types))
        t.banner_timeout = s.connect_timeout
        t.handshake_timeout = s.connect_timeout
        t.auth_timeout = s.connect_timeout
        done = threading.Event()
        try:
            t.start_client(event=done)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHConnectError(f"SSH handshake with {self.display} failed: {exc}") from None
        if not done.wait(s.connect_timeout) and t.is_active():
            raise SSHConnectError(
                f"SSH handshake with {self.display} timed out after {s.connect_timeout:g} s"
            )
        if not t.is_active():
            exc = t.get_exception()
            reason = _one_line(exc) if exc else "the server closed the connection"
            raise SSHConnectError(f"SSH handshake with {self.display} failed: {reason}")

    def _check_host_key(self, t: paramiko.Transport) -> None:
        s = self.settings
        key = t.get_remote_server_key()
        blob, fp, ktype = key.asbytes(), hostkeys.fingerprint(key), key.get_name()
        self.host_key_fingerprint = fp
        name = s.known_name
        for k in self._known:
            if k.revoked and k.blob == blob:
                raise HostKeyError(
                    f"host key {ktype} {fp} of {name} is marked @revoked in "
                    f"{k.path}:{k.lineno}; refusing to connect"
                )
        if any(k.blob == blob for k in self._known if not k.revoked):
            return
        known = [k for k in self._known if not k.revoked]
        if known:
            same = [k for k in known if hostkeys.key_type_matches(k, key)]
            k = (same or known)[0]
            fix = (
                f"if the host was reinstalled or the address reused, remove line {k.lineno} of "
                f"{k.path} (ssh-keygen -R '{name}' -f {k.path}) and connect again"
            )
            if same:
                raise HostKeyError(
                    f"HOST KEY CHANGED for {name} (possible man-in-the-middle attack): "
                    f"expected {k.key_type} {k.fingerprint}, offered {ktype} {fp}; {fix}"
                )
            raise HostKeyError(
                f"host {name} offered a {ktype} key {fp} but only "
                f"{', '.join(sorted({x.key_type for x in known}))} keys are known for it; {fix}"
            )
        if s.strict == "yes":
            scan = f"ssh-keyscan{'' if s.port == 22 else f' -p {s.port}'} {s.hostname}"
            raise HostKeyError(
                f"host key for {name} is not known: {ktype} {fp}. Check the fingerprint with "
                f"your provider, then accept it with `{scan} >> ~/.ssh/known_hosts` or with "
                "-o StrictHostKeyChecking=accept-new"
            )
        target = s.known_hosts[0] if s.known_hosts else Path(DEFAULT_KNOWN_HOSTS[0])
        try:
            hostkeys.record(target, name, key, s.hash_known_hosts)
        except OSError as exc:
            self.notes.append(f"could not record the host key of {name} in {target}: {exc}")
        else:
            self.notes.append(f"permanently added {name} ({ktype} {fp}) to {target}")

    def _candidate_keys(self) -> list[tuple[str, paramiko.PKey]]:
        s = self.settings
        found: list[tuple[str, paramiko.PKey]] = []
        files = list(s.identity_files) or []
        if s.use_default_keys:
            files = [f for f in DEFAULT_KEY_FILES if os.path.isfile(os.path.expanduser(f))]
        for name in files:
            path = os.path.expanduser(name)
            if not os.path.isfile(path):
                self.notes.append(f"identity file {name} not found; skipped")
                continue
            try:
                found.append((name, paramiko.PKey.from_path(path)))
            except paramiko.PasswordRequiredException:
                self.notes.append(f"{name} is passphrase-protected: load it into ssh-agent")
            except (paramiko.SSHException, ValueError, OSError, TypeError) as exc:
                self.notes.append(f"cannot load key {name}: {_one_line(exc)}")
        if s.use_agent and os.environ.get("SSH_AUTH_SOCK"):
            try:
                agent_keys = paramiko.Agent().get_keys()
            except (paramiko.SSHException, OSError) as exc:
                self.notes.append(f"ssh-agent not usable: {_one_line(exc)}")
                agent_keys = ()
            found += [(f"agent key {i + 1}", k) for i, k in enumerate(agent_keys)]
        seen: set[bytes] = set()
        unique = []
        for label, k in found:
            if k.asbytes() not in seen:
                seen.add(k.asbytes())
                unique.append((label, k))
        return unique

    def _authenticate(self, t: paramiko.Transport) -> None:
        s = self.settings
        keys = self._candidate_keys()
        for _label, key in keys:
            try:
                more = t.auth_publickey(s.user, key)
            except paramiko.BadAuthenticationType as exc:
                raise SSHAuthError(
                    f"{s.display} does not accept public keys (it allows: "
                    f"{', '.join(exc.allowed_types) or 'nothing'}); hfsync authenticates "
                    "with keys only"
                ) from None
            except paramiko.AuthenticationException:
                continue
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise SSHConnectError(
                    f"connection to {s.display} lost during authentication: {_one_line(exc)}"
                ) from None
            if more:
                raise SSHAuthError(
                    f"{s.display} wants a second factor ({', '.join(more)}); hfsync cannot "
                    "answer prompts"
                )
            if t.is_authenticated():
                return
        tried = ", ".join(label for label, _ in keys) or "no keys found"
        raise SSHAuthError(
            f"authentication failed for {s.display}: no key was accepted (tried: {tried}); "
            "pass the right one with -i KEY"
        )

    def reconnect(self, tries: int = 3, backoff: float = 1.0) -> SSHConnection:
        """Re-open after a drop: up to ``tries`` attempts, sleeping ``backoff * 2**n`` between
        them. Host key and authentication failures are not retried (they cannot heal)."""
        for attempt in range(tries):
            try:
                return self.open()
            except (SSHConnectError, ConnectionLostError):
                if attempt == tries - 1:
                    raise
                time.sleep(backoff * (2**attempt))
        raise AssertionError("unreachable")

    # -- using it --------------------------------------------------------------------------

    def is_alive(self) -> bool:
        return self.transport is not None and self.transport.is_active()

    def preopen_session(self) -> None:
        """Open one session channel now, to be the next :meth:`open_exec`'s.

        Why: a connection's first session channel takes ~0.045 s to open (sshd sets up the
        logged-in session then; later ones take 0.3 ms). hfsync.remote.preconnect opens it
        while the CLI is still starting, so the run's first command does not wait for it.
        Nothing runs on it until then."""
        if self._spare is None and self.is_alive():
            assert self.transport is not None
            try:
                self._spare = self.transport.open_session(timeout=self.settings.connect_timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise SSHError(f"cannot open a session on {self.display}: {exc}") from None

    def _session(self) -> paramiko.Channel:
        spare, self._spare = self._spare, None
        if spare is not None and not spare.closed:
            return spare
        assert self.transport is not None
        return self.transport.open_session(timeout=self.settings.connect_timeout)

    def open_exec(self, command: str) -> paramiko.Channel:
        """Start ``command`` (built with :func:`quote_command`/:func:`remote_shell_quote`) on
        a new channel, for streaming; the caller reads, sends and closes it."""
        if not self.is_alive():
            raise ConnectionLostError(f"SSH connection to {self.display} is closed")
        assert self.transport is not None
        try:
            channel = self._session()
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if not self.is_alive():
                raise ConnectionLostError(f"SSH connection to {self.display} lost") from None
            raise SSHError(f"cannot start a remote command on {self.display}: {exc}") from None
        return channel

    def run(
        self, command: str, stdin: bytes | None = None, timeout: float | None = None
    ) -> tuple[int, bytes, bytes]:
        """Run ``command``; return ``(exit_status, stdout, stderr)``. A non-zero status is
        returned, not raised: the caller knows what it means. ``timeout`` bounds each wait."""
        channel = self.open_exec(command)
        try:
            return drain(channel, stdin, timeout)
        finally:
            channel.close()

    def send_stream(
        self,
        channel: paramiko.Channel,
        source: BinaryIO | str | os.PathLike[str],
        offset: int = 0,
        length: int | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """See :func:`hfsync.remote.channel.send_stream` (fast, bounded-memory upload)."""
        return send_stream(channel, source, offset, length, on_progress)

    def close(self) -> None:
        self._spare = None  # closed with its transport
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        if self._jump is not None:
            self._jump.close()
            self._jump = None

    def __enter__(self) -> SSHConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(spec: SSHSpec, *, timeout: float | None = None) -> SSHConnection:
    """Connect and authenticate; ``timeout`` is the connect timeout unless ConnectTimeout is
    set. Raises SSHError subclasses (exit 7) with one-line messages.

    The connection hfsync.remote.preconnect opened for this very spec while the CLI started
    is handed over instead, once (or the error it met is raised)."""
    early = EARLY_CLAIM[0](spec, timeout) if EARLY_CLAIM else None
    if early is not None:
        return early
    return SSHConnection(spec, resolve(spec, timeout=timeout)).open()


# Set by hfsync.remote.preconnect when it starts a connection: (spec, timeout) -> the open
# connection, or None to connect as usual. A hook, so this module never imports that one.
EARLY_CLAIM: list[Callable[[SSHSpec, float | None], SSHConnection | None]] = []


def _hop_text(hop: SSHSpec) -> str:
    host = f"[{hop.host}]" if ":" in hop.host else hop.host
    text = f"{hop.user}@{host}" if hop.user else host
    return f"{text}:{hop.port}" if hop.port else text


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _close_quietly(sock: Any) -> None:
    try:
        sock.close()
    except OSError:
        pass
