"""The two seams every destination implements, and the lock file they share.

**Target state** answers "what do you hold?" and keeps the bookkeeping (lock, listing cache,
scan, mark current, delete, finish). **Placement** turns a verified local file into a held one
(a part path to stage bytes in, and a finalize step). The local folder and the HF cache have
both; an SSH host has only state, and its bytes arrive through the remote push, so it never has
to pretend to own a local part file. Scan results (`TargetFile`) carry everything the later
calls need, so no target keeps hidden state between `scan` and `mark_current`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from ..errors import DiskError, HfsyncError, LockedError, RemotePathError
from ..files import RemoteFile, TargetFile
from ..safeio import open_state_file, read_state_file
from ..transfer.jobs import FileJob


class TargetState(Protocol):
    """What the sync orchestration needs to know and record about a destination."""

    description: str

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive right to write this target; raises LockedError naming the holder."""

    def read_listing(self, commit: str) -> Sequence[RemoteFile] | None:
        """A cached listing of `commit`, if the target keeps one."""

    def write_listing(self, commit: str, files: Sequence[RemoteFile]) -> None:
        """Remember the listing of `commit` for the next run."""

    def scan(
        self,
        remote: Mapping[str, RemoteFile],
        *,
        checksum: bool,
        all_files: bool,
        commit: str | None = None,
    ) -> dict[str, TargetFile]:
        """The target's state for the remote paths (and every file it holds if `all_files`).

        `commit` is the commit being synced; targets that keep one folder per commit (the HF
        cache) need it to find their state, others ignore it.
        """

    def mark_current(self, remote: RemoteFile, commit: str, held: TargetFile | None) -> None:
        """Record that the held copy of `remote` is current (bookkeeping only, no download).

        `held` is what `scan` reported for the path (its `source` says where content that is
        not yet in place was found)."""

    def delete(self, path: str, commit: str) -> None:
        """Remove a file the source no longer has (`--delete`)."""

    def finish(self, commit: str, revision: str) -> None:
        """Called once after every transfer succeeded (e.g. the cache writes its ref last)."""


class Placement(Protocol):
    """Where a local executor stages a file's bytes, and how the verified file is put in place."""

    def job(self, remote: RemoteFile, commit: str, url: str) -> FileJob:
        """A FileJob whose part file and finalize step fit this target's layout."""


class Target(TargetState, Placement, Protocol):
    """A destination with local placement: the local folder and the HF cache."""


@contextlib.contextmanager
def try_lock(path: Path, *, mark: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on `path` if it is free (yield True), else yield False.

    `mark` writes our pid into the file so a run that finds it busy can name the holder. flock
    is released by the kernel when the process dies, so a SIGKILLed run never leaves a stale
    lock behind. The file is opened without following links (a planted symlink is refused,
    never truncated) and is created 0o666 & ~umask; a lock file another user created with a
    narrower mode is opened read-only, which flock accepts, so users sharing a cache can all
    take its locks (only the pid mark is skipped then).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, writable = _open_lock(path)
    except OSError as exc:
        raise DiskError(f"cannot create lock file {path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise DiskError(f"cannot lock {path}: {exc.strerror}") from exc
            yield False
            return
        if mark and writable:
            try:
                # Overwrite, then cut: truncating to 0 first makes ext4 flush the file on
                # close (its replace-via-truncate rule), up to 0.1 s on every no-op re-sync.
                pid = f"{os.getpid()}\n".encode()
                if os.pwrite(fd, pid, 0) == len(pid):
                    os.ftruncate(fd, len(pid))
            except OSError:
                pass  # the pid is a courtesy for the next run's message, not the lock itself
        yield True
    finally:
        os.close(fd)


def _open_lock(path: Path) -> tuple[int, bool]:
    """The lock file's fd and whether it is writable (O_RDWR, else O_RDONLY on EACCES)."""
    try:
        return open_state_file(path, os.O_RDWR | os.O_CREAT, 0o666), True
    except PermissionError:
        return open_state_file(path, os.O_RDONLY), False


@contextlib.contextmanager
def lock_file(path: Path, what: str) -> Iterator[None]:
    """One sync per target at a time: hold `path`'s lock, or fail naming the holder's pid."""
    with try_lock(path) as held:
        if not held:
            try:
                holder = read_state_file(path, 64).decode(errors="replace").split("\n")[0].strip()
            except (OSError, DiskError):
                holder = ""
            raise LockedError(
                f"another hfsync (pid {holder or 'unknown'}) is syncing {what}; "
                "try again when it finishes"
            )
        yield


def ensure_inside(root: Path, path: Path, *, error: type[HfsyncError] = RemotePathError) -> None:
    """Refuse to write `path` when a symlinked folder would carry it outside `root`.

    Checks the nearest folder that already exists, so it is safe to call before creating the
    missing ones (`root` included): folders created below a folder inside `root` stay inside.
    `error` is RemotePathError (exit 5) for repo paths, whose listing is what would escape;
    state folders pass DiskError (exit 6): there the local folder itself is unsafe.
    """
    real_root = os.path.realpath(root)
    existing = path.parent
    while not os.path.lexists(existing) and existing != existing.parent:
        if existing == root:
            return  # nothing below root exists yet: what mkdir creates there stays inside
        existing = existing.parent
    real = os.path.realpath(existing)
    if real != real_root and not real.startswith(real_root + os.sep):
        raise error(
            f"refusing to write {path}: its folder resolves outside {root} (symlink escape)"
        )


def make_parents(root: Path, path: Path) -> None:
    """Create `path`'s folders, after checking no symlink carries them outside `root`."""
    ensure_inside(root, path)
    path.parent.mkdir(parents=True, exist_ok=True)
