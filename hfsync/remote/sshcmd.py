"""Parse the ssh command line users paste from their GPU provider into an :class:`SSHSpec`.

Providers print a command (``ssh -p 41234 root@1.2.3.4 -L 8080:localhost:8080``), so that is
what hfsync accepts as a target, parsed the way OpenSSH's ``ssh`` parses it: options may come
before or after the destination, flags may be bundled (``-4C``), option arguments may be
attached (``-p22``, ``-oPort=22``), and for every setting the first value obtained wins.
Options that only matter for an interactive session (forwardings, tty, verbosity) are ignored
with a note; anything that would change the connection in a way we do not implement, and a
trailing remote command, is a :class:`~hfsync.errors.UsageError` naming it, so a pasted command
never silently means something else.
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from hfsync.errors import UsageError

# -o keys we honour (lower case -> OpenSSH spelling, for messages).
HONOURED_OPTIONS = {
    k.lower(): k
    for k in (
        "Port User HostName IdentityFile IdentitiesOnly IdentityAgent UserKnownHostsFile "
        "GlobalKnownHostsFile StrictHostKeyChecking ConnectTimeout ServerAliveInterval "
        "ProxyCommand ProxyJump HashKnownHosts HostKeyAlias AddressFamily "
        "BatchMode"
    ).split()
}
# -o keys that do not change how we connect or authenticate: accepted, noted, not used.
IGNORED_OPTIONS = {
    k.lower(): k
    for k in (
        "LogLevel Compression ForwardAgent ForwardX11 ForwardX11Trusted RequestTTY LocalForward "
        "RemoteForward DynamicForward ExitOnForwardFailure ControlMaster ControlPath "
        "ControlPersist SendEnv SetEnv TCPKeepAlive CheckHostIP UpdateHostKeys VisualHostKey "
        "AddKeysToAgent PreferredAuthentications PasswordAuthentication "
        "KbdInteractiveAuthentication ChallengeResponseAuthentication PubkeyAuthentication "
        "GSSAPIAuthentication GSSAPIDelegateCredentials EscapeChar ServerAliveCountMax "
        "PermitLocalCommand LocalCommand Ciphers MACs KexAlgorithms HostKeyAlgorithms "
        "PubkeyAcceptedKeyTypes PubkeyAcceptedAlgorithms ConnectionAttempts NumberOfPasswordPrompts"
    ).split()
}

# Flags without an argument that only matter to an interactive ssh session.
_IGNORED_FLAGS = {
    "t": "tty allocation",
    "T": "tty allocation",
    "N": "no remote command",
    "n": "stdin redirection",
    "f": "backgrounding",
    "A": "agent forwarding",
    "a": "agent forwarding",
    "X": "X11 forwarding",
    "x": "X11 forwarding",
    "Y": "X11 forwarding",
    "q": "quiet mode",
    "v": "verbose mode",
    "g": "remote hosts on forwarded ports",
    "k": "GSSAPI delegation",
    "K": "GSSAPI authentication",
    "M": "connection multiplexing",
    "y": "syslog logging",
    "C": "compression; model weights do not compress",
}
# Options with an argument that only matter to an interactive ssh session.
_IGNORED_WITH_ARG = {
    "L": "local port forwarding",
    "R": "remote port forwarding",
    "D": "dynamic port forwarding",
    "e": "escape character",
    "E": "log file",
    "S": "control socket",
    "c": "cipher selection (hfsync prefers aes128-gcm, then aes128-ctr)",
    "m": "MAC selection",
}
_WITH_ARG = set(_IGNORED_WITH_ARG) | set("pilJoFbBIOQWwP")
_REJECTED = {
    "b": "binding to a local address",
    "B": "binding to an interface",
    "I": "PKCS#11 keys",
    "O": "control commands",
    "Q": "queries",
    "W": "stdio forwarding",
    "w": "tunnel forwarding",
    "P": "tags",
    "G": "printing the configuration",
    "V": "printing the version",
    "s": "subsystems",
}


@dataclass(frozen=True)
class SSHSpec:
    """What the user asked for on the command line; ``~/.ssh/config`` is applied later.

    ``options`` maps lower-case OpenSSH option names to their first value (``-4``/``-6`` set
    ``addressfamily``, ``-J`` sets ``proxyjump``); ``jump_hosts`` is ``proxyjump`` parsed into
    specs (first hop first). ``display`` is safe to print: no key paths, no proxy commands.
    """

    host: str
    port: int | None = None
    user: str | None = None
    identity_files: tuple[str, ...] = ()
    options: dict[str, str] = field(default_factory=dict)
    jump_hosts: tuple[SSHSpec, ...] = ()
    config_file: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def display(self) -> str:
        return format_display(self.host, self.port, self.user)


def format_display(host: str, port: int | None, user: str | None) -> str:
    """``user@host:port`` (IPv6 hosts in brackets, port only when known) for messages."""
    shown = f"[{host}]" if ":" in host else host
    if port is not None:
        shown = f"{shown}:{port}"
    return f"{user}@{shown}" if user else shown


def address_family(value: str | None) -> int:
    """The socket family an ``AddressFamily`` value (``inet``, ``inet6``, ``any``/unset) names:
    one mapping for `connection.resolve` and the early connect of `preconnect`, which must
    agree for the early socket to be used."""
    families = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}
    return families.get((value or "any").lower(), socket.AF_UNSPEC)


def parse_port(value: str, what: str = "port") -> int:
    """A TCP port 1-65535, or a UsageError naming ``what``."""
    try:
        port = int(value, 10)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise UsageError(f"bad {what} {value!r}: expected a number from 1 to 65535")
    return port


def _check_host(host: str, source: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise UsageError(f"no host name in {source!r}")
    if host.startswith("-") or any(c.isspace() or ord(c) < 32 or c in "'\"`$;|&<>\\" for c in host):
        raise UsageError(f"bad host name {host!r} in {source!r}")
    return host


def parse_destination(dest: str) -> tuple[str | None, str, int | None]:
    """``[user@]host`` or ``ssh://[user@]host[:port]`` -> (user, host, port)."""
    port: int | None = None
    rest = dest
    if dest.startswith("ssh://"):
        rest = dest[len("ssh://") :].rstrip("/")
        if "/" in rest:
            raise UsageError(f"a path in {dest!r} is not part of an ssh destination")
        hostport = rest.rpartition("@")[2]
        if hostport.startswith("["):
            end = hostport.find("]")
            if end != -1 and hostport[end + 1 : end + 2] == ":":
                port = parse_port(hostport[end + 2 :])
                rest = rest[: len(rest) - len(hostport) + end + 1]
        elif hostport.count(":") == 1:
            host_part, _, port_text = hostport.partition(":")
            port = parse_port(port_text)
            rest = rest[: len(rest) - len(hostport)] + host_part
    user, at, host = rest.rpartition("@")
    if at and not user:
        raise UsageError(f"empty user name in {dest!r}")
    if host.count(":") == 1:
        raise UsageError(
            f"{dest!r}: ssh does not take 'host:port'; use '-p PORT' or ssh://user@host:port"
        )
    return (user or None), _check_host(host, dest), port


def parse_jump_hosts(value: str) -> tuple[SSHSpec, ...]:
    """``-J``/ProxyJump: comma-separated ``[user@]host[:port]`` (or ssh:// URIs); ``none``."""
    if value.strip().lower() == "none":
        return ()
    hops = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            raise UsageError(f"empty jump host in {value!r}")
        uri = item if item.startswith("ssh://") else "ssh://" + item
        user, host, port = parse_destination(uri)
        hops.append(SSHSpec(host=host, port=port, user=user))
    return tuple(hops)


def _split_option(text: str) -> tuple[str, str]:
    """``Key=Value``, ``Key Value`` or ``Key = Value`` (as OpenSSH's config parser splits)."""
    stripped = text.strip()
    key_end = len(stripped)
    for i, ch in enumerate(stripped):
        if ch == "=" or ch.isspace():
            key_end = i
            break
    key = stripped[:key_end]
    value = stripped[key_end:].strip()
    if value.startswith("="):
        value = value[1:].strip()
    if not key:
        raise UsageError(f"-o {text!r}: no option name")
    if not value:
        raise UsageError(f"-o {key}: missing value (write -o {key}=VALUE)")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return key, value


class _Builder:
    """Accumulates settings with OpenSSH's first-value-wins rule."""

    def __init__(self) -> None:
        self.host: str | None = None
        self.port: int | None = None
        self.user: str | None = None
        self.identity_files: list[str] = []
        self.options: dict[str, str] = {}
        self.config_file: str | None = None
        self.notes: list[str] = []

    def set_option(self, key: str, value: str, shown: str) -> None:
        low = key.lower()
        if low in IGNORED_OPTIONS:
            self.notes.append(f"{shown}: ignored ({IGNORED_OPTIONS[low]} does not affect hfsync)")
            return
        if low not in HONOURED_OPTIONS:
            raise UsageError(f"unsupported ssh option {shown!r}")
        if low == "identityfile":
            self.identity_files.append(value)
        elif low == "port":
            if self.port is None:
                self.port = parse_port(value)
        elif low == "user":
            if self.user is None:
                self.user = value
        elif low in ("proxycommand", "proxyjump"):
            # They compete: whichever comes first prevents the other (ssh_config(5)).
            if "proxycommand" not in self.options and "proxyjump" not in self.options:
                if low == "proxyjump":
                    parse_jump_hosts(value)  # validate now, for a usage error
                self.options[low] = value
        else:
            if low in ("connecttimeout", "serveraliveinterval"):
                if not value.isdigit():
                    raise UsageError(f"{shown}: expected a number of seconds")
            self.options.setdefault(low, value)


def parse_ssh_command(command: str | Sequence[str]) -> SSHSpec:
    """Parse ``ssh [options] [user@]host [options]`` (the leading ``ssh`` is optional).

    Raises UsageError naming the offending option, for a missing destination, and for a remote
    command after the destination (hfsync runs its own commands).
    """
    if isinstance(command, str):
        try:
            args = shlex.split(command)
        except ValueError as exc:
            raise UsageError(f"cannot parse ssh command {command!r}: {exc}") from None
    else:
        args = list(command)
    if args and args[0].rsplit("/", 1)[-1] in ("ssh", "ssh.exe"):
        args = args[1:]
    b = _Builder()
    dest: str | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--" and dest is None:
            if i < len(args):
                dest = args[i]
                i += 1
                _apply_destination(b, dest)
            continue
        if not arg.startswith("-") or arg == "-":
            if dest is not None:
                raise UsageError(
                    f"remote command {' '.join(args[i - 1 :])!r} after the destination is not "
                    "supported: give only how to connect"
                )
            dest = arg
            _apply_destination(b, dest)
            continue
        j = 1
        while j < len(arg):
            flag = arg[j]
            j += 1
            if flag in _WITH_ARG:
                if j < len(arg):
                    value = arg[j:]
                elif i < len(args):
                    value = args[i]
                    i += 1
                else:
                    raise UsageError(f"ssh option -{flag} needs an argument")
                _apply(b, flag, value)
                break
            if flag in _IGNORED_FLAGS:
                b.notes.append(f"-{flag}: ignored ({_IGNORED_FLAGS[flag]})")
            elif flag in "46":
                b.options.setdefault("addressfamily", "inet" if flag == "4" else "inet6")
            elif flag in _REJECTED:
                raise UsageError(f"ssh option -{flag} ({_REJECTED[flag]}) is not supported")
            else:
                raise UsageError(f"unknown ssh option -{flag}")
    if dest is None:
        raise UsageError("no destination in the ssh command (expected [user@]host)")
    assert b.host is not None
    jumps = parse_jump_hosts(b.options["proxyjump"]) if "proxyjump" in b.options else ()
    return SSHSpec(
        host=b.host,
        port=b.port,
        user=b.user,
        identity_files=tuple(b.identity_files),
        options=dict(b.options),
        jump_hosts=jumps,
        config_file=b.config_file,
        notes=tuple(b.notes),
    )


def _apply_destination(b: _Builder, dest: str) -> None:
    """The destination's user and port count where they appear, like ssh's option parser:
    ``ssh -l a b@h`` logs in as ``a``, ``ssh b@h -l a`` as ``b``."""
    user, b.host, port = parse_destination(dest)
    if b.user is None:
        b.user = user
    if b.port is None:
        b.port = port


def _apply(b: _Builder, flag: str, value: str) -> None:
    if flag in _IGNORED_WITH_ARG:
        b.notes.append(f"-{flag} {value}: ignored ({_IGNORED_WITH_ARG[flag]})")
    elif flag in _REJECTED:
        raise UsageError(f"ssh option -{flag} ({_REJECTED[flag]}) is not supported")
    elif flag == "p":
        if b.port is None:
            b.port = parse_port(value)
    elif flag == "l":
        if b.user is None:
            b.user = value
    elif flag == "i":
        b.identity_files.append(value)
    elif flag == "J":
        b.set_option("ProxyJump", value, f"-J {value}")
    elif flag == "F":
        if b.config_file is None:
            b.config_file = value
    elif flag == "o":
        key, val = _split_option(value)
        b.set_option(key, val, f"-o {key}={val}")
