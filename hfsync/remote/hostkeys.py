"""known_hosts checking the way OpenSSH does it, with file and line for every match.

paramiko's HostKeys loses line numbers and ignores markers; a refusal must tell the user which
line to remove (``ssh-keygen -R``), and ``@revoked`` must never be accepted. Hashed
(``|1|salt|hash``) and ``[host]:port`` entries, comma lists, ``*``/``?`` patterns and ``!``
negation are all understood, so files written by ``ssh``/``ssh-keyscan`` work unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

import paramiko


@dataclass(frozen=True)
class KnownKey:
    """One known_hosts entry that names our host."""

    path: Path
    lineno: int
    key_type: str
    blob: bytes
    revoked: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint_blob(self.blob)


def fingerprint_blob(blob: bytes) -> str:
    """OpenSSH's ``SHA256:`` fingerprint (base64 without padding) of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def fingerprint(key: paramiko.PKey) -> str:
    return fingerprint_blob(key.asbytes())


def host_pattern(host: str, port: int) -> str:
    """The name known_hosts uses: ``host`` on port 22, ``[host]:port`` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def _hashed_match(entry: str, name: str) -> bool:
    try:
        _, magic, salt_b64, hash_b64 = entry.split("|")
        salt = base64.b64decode(salt_b64)
        want = base64.b64decode(hash_b64)
    except ValueError:
        return False
    if magic != "1":
        return False
    got = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(got, want)


def _glob(pattern: str) -> re.Pattern[str]:
    """OpenSSH patterns know only ``*`` and ``?``; ``[`` is literal (``[host]:port``)."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower()]
    return re.compile("".join(parts))


def names_match(field: str, name: str) -> bool:
    """OpenSSH's match_hostname: any positive pattern matches and no ``!pattern`` does."""
    if field.startswith("|"):
        return _hashed_match(field, name)
    matched = False
    for pattern in field.split(","):
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if _glob(pattern).fullmatch(name.lower()):
            if negated:
                return False
            matched = True
    return matched


def find_known(paths: list[Path], name: str) -> list[KnownKey]:
    """Every entry for ``name`` (already in ``[host]:port`` form) across ``paths``."""
    found: list[KnownKey] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # a missing or unreadable file knows no keys, as for ssh
        for lineno, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            marker = ""
            if fields[0].startswith("@"):
                marker, fields = fields[0], fields[1:]
            if len(fields) < 3 or marker == "@cert-authority":
                continue  # host certificates are not supported; such lines vouch for nothing
            if not names_match(fields[0], name):
                continue
            try:
                blob = base64.b64decode(fields[2], validate=True)
            except ValueError:
                continue
            found.append(KnownKey(path, lineno, fields[1], blob, revoked=marker == "@revoked"))
    return found


def preferred_key_types(known: list[KnownKey], offered: tuple[str, ...]) -> tuple[str, ...]:
    """Put the algorithms of keys we already know first, so the server proves a known key
    (OpenSSH does the same) instead of a new type we would have to refuse."""
    first: list[str] = []
    for k in known:
        if k.revoked:
            continue
        algs = ["rsa-sha2-512", "rsa-sha2-256"] if k.key_type == "ssh-rsa" else [k.key_type]
        first += [a for a in algs if a in offered and a not in first]
    return tuple(first) + tuple(a for a in offered if a not in first)


def _key_type_of(algorithm: str) -> str:
    return "ssh-rsa" if algorithm.startswith("rsa-sha2-") else algorithm


def known_hosts_line(name: str, key: paramiko.PKey, hashed: bool) -> str:
    """The line ssh would append for ``name`` (hashed like ``HashKnownHosts yes``)."""
    field = paramiko.HostKeys.hash_host(name) if hashed else name
    return f"{field} {key.get_name()} {key.get_base64()}\n"


def record(path: Path, name: str, key: paramiko.PKey, hashed: bool) -> None:
    """Append the key to ``path``, creating ``~/.ssh``-style private directories as needed."""
    path = Path(os.path.expanduser(str(path)))
    if str(path) != os.devnull:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = known_hosts_line(name, key, hashed)
    with open(path, "a", encoding="utf-8") as f:
        if str(path) != os.devnull and f.tell() > 0:
            with open(path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    line = "\n" + line
        f.write(line)


def key_type_matches(known: KnownKey, key: paramiko.PKey) -> bool:
    return _key_type_of(known.key_type) == _key_type_of(key.get_name())
