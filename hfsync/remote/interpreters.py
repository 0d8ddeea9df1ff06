"""The python3 each SSH host's agent ran on last time, remembered here, so the next run's
control session starts it by its path instead of through the login shell's PATH.

Why: on a host whose `python3` is a version manager's shim (pyenv, asdf), resolving it costs
0.09-0.15 s of host CPU per start, on the critical path of every run: the control session is
the first thing a push waits for (`scripts/bench --scenario push`, push-small). The push
streams already skip the shim (the agent's `serve` reports `sys.executable`); the control
session could not, because nothing was known before it started. Now what it reported is kept
in `$XDG_CACHE_HOME/hfsync/hosts/` (else `~/.cache/hfsync/hosts/`), one small file per host.

A host is its account and its verified host key (user, name, port and the key's
fingerprint), so another machine behind the same name, or another user, never gets this
host's path. A remembered path is only a first try: a control session that fails to start
with it is started again through PATH and the memory is dropped (remote/host.py). The
agent needs nothing but the standard library, so any python3 of the host serves it; the file
holds a path the host itself reported, checked again by `interpreter()` when read, and is
never read or written through a link (hfsync.safeio).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Protocol

from hfsync import env
from hfsync.errors import DiskError
from hfsync.safeio import read_state_file, write_atomic

LIMIT = 4096  # longer than any interpreter path a host reports


class Identified(Protocol):
    """What names a host: a connection after its host key was checked."""

    host_key_fingerprint: str | None

    @property
    def display(self) -> str: ...  # user@host[:port]


def interpreter(reported: Any) -> str:
    """The absolute path a host's python3 reported (`sys.executable`), for the next command to
    start directly; anything that is not a plain absolute path keeps `python3` (the host's
    word is only trusted to name its own interpreter, and is quoted either way)."""
    if (
        isinstance(reported, str)
        and reported.startswith("/")
        and len(reported) < LIMIT
        and reported.isprintable()
    ):
        return reported
    return "python3"


def folder() -> Path:
    """`$XDG_CACHE_HOME/hfsync/hosts`, else `~/.cache/hfsync/hosts`."""
    return env.hfsync_cache() / "hosts"


def _file(conn: Identified) -> Path | None:
    if not conn.host_key_fingerprint:
        return None  # not connected (or no key seen): nothing names the host yet
    key = f"{conn.display}\n{conn.host_key_fingerprint}".encode("utf-8", "surrogateescape")
    return folder() / f"{hashlib.sha256(key).hexdigest()[:32]}.python"


def recall(conn: Identified) -> str | None:
    """The absolute path this host's agent last ran on, or None (never seen, unreadable)."""
    path = _file(conn)
    if path is None:
        return None
    try:
        raw = read_state_file(path, LIMIT + 1)
    except (OSError, DiskError):  # DiskError: a link or not a regular file, never followed
        return None
    text = interpreter(raw.decode("utf-8", "surrogateescape").strip())
    return None if text == "python3" else text


def remember(conn: Identified, python: str) -> None:
    """Keep `python` (an absolute path the host reported) for this host's next run; a cache
    that cannot be written only costs the next run its shortcut."""
    path = _file(conn)
    if path is None or python == "python3" or interpreter(python) != python:
        return
    if recall(conn) == python:
        return
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, python.encode("utf-8", "surrogateescape") + b"\n", fsync=False)
    except OSError:
        pass


def forget(conn: Identified) -> None:
    """Drop this host's remembered path (it failed to start an agent)."""
    path = _file(conn)
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass
