"""A plain local folder, with the official client's `--local-dir` bookkeeping.

See docs/architecture.md, "File identity".

State lives in `DEST/.cache/huggingface/download/<path>.metadata` (commit, etag, timestamp), the
same files `hf download --local-dir` reads and writes, so either tool recognises the other's
downloads as current. Partial downloads are staged beside that state, under deterministic names,
so an interrupted run can be resumed by the next one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from stat import S_ISLNK, S_ISREG
from typing import NamedTuple

from ..errors import DiskError
from ..files import RemoteFile, TargetFile, check_remote_path
from ..hashing import hash_file
from ..safeio import fsync_dir, read_state_file, refusal, write_atomic, write_new_file
from ..transfer.jobs import FileJob
from ..treecache import read_tree_cache, write_tree_cache
from .base import ensure_inside, lock_file, make_parents
from .partnames import local_part_name

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by hfsync.\n"
    "# For information about cache directory tags, see: https://bford.info/cachedir/\n"
)


# A `.metadata` file is three short lines; anything longer is not one.
METADATA_LIMIT = 4096
# How the scan opens a metadata file: never through a link, and never blocking on a FIFO.
_META_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


class DownloadMetadata(NamedTuple):
    """One `.metadata` file (a tuple: the scan makes one per file of the repo)."""

    commit: str
    etag: str
    timestamp: float


class LocalTarget:
    """A folder that receives the repo's files at their repo paths."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.state_dir = self.root / ".cache" / "huggingface"
        self.description = str(self.root)
        self._root_str = str(self.root)
        self._meta_str = str(self.state_dir / "download")
        # Joined by `+` in the scan's loop: a listed path is relative and has no `..` or empty
        # part (files.check_remote_path), nor has a name the walk found, so this is the join.
        self._root_prefix = os.path.join(self._root_str, "")
        self._meta_prefix = os.path.join(self._meta_str, "")
        self._ready_dirs: set[str] = set()  # folders created and checked during this run
        self._state_dirs: set[str] = set()  # state folders checked to stay inside state_dir
        self._unsynced: set[str] = set()  # folders that got new names since their last fsync

    # -- bookkeeping paths ------------------------------------------------------------------

    def file_path(self, path: str) -> Path:
        check_remote_path(path)
        return self.root.joinpath(*path.split("/"))

    def metadata_path(self, path: str) -> Path:
        return self.state_dir.joinpath("download", *path.split("/")).with_name(
            path.rsplit("/", 1)[-1] + ".metadata"
        )

    def part_path(self, remote: RemoteFile) -> Path:
        """Beside the metadata, under a name no `huggingface_hub` version opens (partnames).

        Joined as strings (one Path per file, not four): a sync of many small files makes one
        per file before the first byte moves."""
        folder, _, name = remote.path.rpartition("/")
        return Path(self._meta_prefix + folder, local_part_name(name, remote.etag))

    # -- Target interface -------------------------------------------------------------------

    def lock(self) -> contextlib.AbstractContextManager[None]:
        self._init_state_dir()
        return self._locked()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The lock, and the folder fsyncs owed for new names, made before it is released
        (also when the run failed or was interrupted: what was placed stays placed)."""
        with lock_file(self.state_dir / "hfsync.lock", str(self.root)):
            try:
                yield
            except BaseException:
                with contextlib.suppress(DiskError):
                    self.sync_folders()
                raise
            self.sync_folders()

    def read_listing(self, commit: str) -> Sequence[RemoteFile] | None:
        return read_tree_cache(self.state_dir, commit)

    def write_listing(self, commit: str, files: Sequence[RemoteFile]) -> None:
        write_tree_cache(self.state_dir, commit, files)

    def scan(
        self,
        remote: Mapping[str, RemoteFile],
        *,
        checksum: bool,
        all_files: bool,
        commit: str | None = None,
    ) -> dict[str, TargetFile]:
        paths = self._walk() if all_files else iter(remote)
        state: dict[str, TargetFile] = {}
        for path in paths:
            try:
                held = self._file_state(path, remote.get(path), checksum)
            except OSError as exc:
                # A local name from the walk is not a remote path: no path rule applies to it.
                where = os.path.join(self._root_str, path)
                raise DiskError(f"cannot read {where}: {exc.strerror}") from exc
            if held is not None:
                state[path] = held
        return state

    @functools.cached_property
    def case_insensitive(self) -> bool:
        """Whether this folder's filesystem stores `README.md` and `readme.md` as one file.

        Probed once per target, without writing (a dry run writes nothing): the case-swapped
        name of a folder entry that exists is stat'ed; the same inode means names fold. The
        state folder is the entry of choice (a real run has created it before the scan); else
        an entry of the root, else the nearest existing ancestor's name. A filesystem that
        folds case also folds Unicode normalization everywhere that matters (macOS, Windows,
        ext4 casefold), so the planner compares on `plan.fold_key` when this is True.
        """
        entries: list[Path] = []
        with contextlib.suppress(OSError), os.scandir(self.root) as found:
            entries = [Path(entry.path) for entry in found]
        for candidate in (self.state_dir, *entries, self.root, *self.root.parents):
            swapped = candidate.name.swapcase()
            if swapped == candidate.name or not candidate.name.isascii():
                continue  # ASCII only: `ß`.swapcase() is `SS`, which no filesystem folds to
            try:
                held = os.stat(candidate, follow_symlinks=False)
            except OSError:
                continue
            try:
                other = os.stat(candidate.with_name(swapped), follow_symlinks=False)
            except OSError:
                return False
            return os.path.samestat(held, other)
        return False

    def job(self, remote: RemoteFile, commit: str, url: str) -> FileJob:
        part = self.part_path(remote)
        self._check_state_folder(str(part.parent))  # no symlinked folder carries it out of DEST
        destination = self.file_path(remote.path)

        def finalize(done: Path) -> None:
            fresh = self._place(done, destination)
            self._write_metadata(remote.path, commit, remote.etag, fresh=fresh)

        return FileJob(remote.path, remote.size, remote.etag, url, part, finalize)

    def mark_current(self, remote: RemoteFile, commit: str, held: TargetFile | None) -> None:
        self._write_metadata(remote.path, commit, remote.etag)

    def delete(self, path: str, commit: str) -> None:
        # A name the walk found (`bad\nname` too), not a remote path: plan.safe_local_path and
        # ensure_inside keep it inside DEST, the remote-path rules do not apply to it.
        target = self.root.joinpath(*path.split("/"))
        ensure_inside(self.root, target)
        for victim in (target, self.metadata_path(path)):
            with contextlib.suppress(FileNotFoundError):
                victim.unlink()
        self._prune_empty_dirs(target.parent, self.root)
        self._prune_empty_dirs(self.metadata_path(path).parent, self.state_dir / "download")

    def finish(self, commit: str, revision: str) -> None:
        return None

    # -- internals --------------------------------------------------------------------------

    def _init_state_dir(self) -> None:
        """Create the state folder, refusing one that a symlink carries out of DEST.

        `.gitignore` and `CACHEDIR.TAG` are created by rename (never through a link planted at
        their names); one that is there already is kept if it is a regular file, refused if not.
        """
        try:
            ensure_inside(self.root, self.state_dir / ".gitignore", error=DiskError)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._state_dirs.add(str(self.state_dir))
            for name, text in ((".gitignore", "*"), ("CACHEDIR.TAG", CACHEDIR_TAG)):
                self._ensure_state_file(self.state_dir / name, text)
        except OSError as exc:
            raise DiskError(f"cannot write to {self.root}: {exc.strerror}") from exc

    @staticmethod
    def _ensure_state_file(path: Path, text: str) -> None:
        """Write `path` unless a regular file is there; a link or other non-file is refused."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            write_atomic(path, text.encode(), fsync=False)  # a marker: power loss costs nothing
            return
        if S_ISLNK(st.st_mode):
            raise refusal(path, "it is a symbolic link")
        if not S_ISREG(st.st_mode):
            raise refusal(path, "it is not a regular file")

    def _check_state_folder(self, folder: str) -> None:
        """Refuse (exit 6) a state folder that a symlink carries out of DEST or the state folder.

        Once per folder and run: thousands of files share a handful of folders.
        """
        if folder in self._state_dirs:
            return
        probe = Path(folder) / "x"
        ensure_inside(self.root, probe, error=DiskError)
        if self.state_dir in probe.parents:
            ensure_inside(self.state_dir, probe, error=DiskError)
        self._state_dirs.add(folder)

    def _walk(self) -> Iterator[str]:
        """Every regular file under the root, as repo-style paths; our state folder excluded."""
        if not self.root.is_dir():
            return
        stack = [(self.root, "")]
        while stack:
            folder, prefix = stack.pop()
            try:
                with os.scandir(folder) as entries:
                    found = [(entry.name, entry.path, _kind(entry)) for entry in entries]
            except OSError as exc:
                # `--delete` must see every file to decide; an unreadable folder is a disk
                # problem naming that folder, not a crash or a silently partial plan.
                raise DiskError(f"cannot read folder {folder}: {exc.strerror}") from exc
            for name, entry_path, kind in found:
                rel = prefix + name
                if rel == ".cache/huggingface":
                    continue
                if kind == "dir":
                    stack.append((Path(entry_path), rel + "/"))
                elif kind == "file":
                    yield rel

    def _file_state(
        self, path: str, remote: RemoteFile | None, checksum: bool
    ) -> TargetFile | None:
        """What the folder holds at `path` (None: no regular file there).

        Plain string paths and one stat per file: a no-op re-sync of a big repo is this loop.
        """
        try:
            stat = os.stat(self._root_prefix + path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not S_ISREG(stat.st_mode):
            return None
        meta = self.read_metadata(path, stat.st_mtime)
        held = TargetFile(
            path,
            stat.st_size,
            etag=meta.etag if meta else None,
            commit=meta.commit if meta else None,
        )
        if remote is None or stat.st_size != remote.size:
            return held
        if checksum or held.etag != remote.etag:
            # No trustworthy metadata (or --checksum): hash once; a match costs no download.
            digest = hash_file(self.file_path(path), remote.etag)
            return TargetFile(path, stat.st_size, digest, True, held.commit)
        return held

    def read_metadata(self, path: str, mtime: float | None = None) -> DownloadMetadata | None:
        """The metadata of `path` if it exists, parses, and the file was not modified since."""
        try:
            data = _read_metadata_file(self._meta_prefix + path + ".metadata")
            lines = data.decode("utf-8").splitlines()
            meta = DownloadMetadata(lines[0].strip(), lines[1].strip(), float(lines[2]))
        except (OSError, IndexError, ValueError):  # UnicodeDecodeError is a ValueError
            return None
        if mtime is not None and mtime - 1 > meta.timestamp:
            return None
        return meta

    def _write_metadata(self, path: str, commit: str, etag: str, *, fresh: bool = False) -> None:
        """Unique temp name, fsync, rename, fsync of the folder (safeio.write_atomic): a planted
        link at any name is replaced, never written through, and a power loss leaves the old
        metadata or the new, never a torn file that would vouch for the wrong content.

        `fresh` (the file was just placed where nothing was): a metadata file that does not
        exist yet is created in place instead, without fsync (`safeio.write_new_file`); see
        `_place` for why a power loss then costs at most a re-hash, never wrong content.
        """
        meta_path = self._meta_prefix + path + ".metadata"
        data = f"{commit}\n{etag}\n{time.time()}\n".encode()
        try:
            folder = os.path.dirname(meta_path)
            self._check_state_folder(folder)
            self._ensure_dir(folder)
            if fresh and write_new_file(meta_path, data):
                self._unsynced.add(folder)
                return
            write_atomic(meta_path, data)
        except OSError as exc:
            raise DiskError(f"cannot write {meta_path}: {exc.strerror}") from exc

    def _place(self, done: Path, destination: Path) -> bool:
        """Rename the verified, fsynced part to `destination`; True when nothing was there.

        Replacing a file fsyncs the folder at once, before its metadata is written: otherwise
        a power loss could keep the old content under new metadata (its mtime is older than
        the new timestamp, so a later scan would trust it). A *new* name owes its folder fsync
        only until the lock is released (`sync_folders`: one per folder instead of two folder
        fsyncs and a metadata fsync per file, ~0.7 ms of CPU per small file here, the
        largest saving measured for them): until then a power loss
        loses the name, and its metadata then names a file that is not there (downloaded
        again) or is lost itself (the file is hashed once). The bytes behind any name at a
        final path are always on disk first (`PartFile.fsync` precedes every `finalize`).
        """
        try:
            parent = os.path.dirname(destination)
            if parent not in self._ready_dirs:
                make_parents(self.root, destination)  # the symlink-escape check, once per folder
                self._ready_dirs.add(parent)
            fresh = not os.path.lexists(destination)
            os.replace(done, destination)
            if fresh:
                self._unsynced.add(parent)
            else:
                fsync_dir(parent)  # the new content survives a power loss (the part was fsynced)
            return fresh
        except IsADirectoryError as exc:
            raise DiskError(f"cannot write {destination}: a folder is in the way") from exc
        except OSError as exc:
            raise DiskError(f"cannot write {destination}: {exc.strerror}") from exc

    def sync_folders(self) -> None:
        """fsync every folder that got a new name without one, and the folders above it up to
        DEST (folders created this run are names in their parents too)."""
        pending, self._unsynced = self._unsynced, set()
        folders: set[str] = set()
        for folder in pending:
            while folder not in folders:
                folders.add(folder)
                if folder == self._root_str or not folder.startswith(self._root_prefix):
                    break
                folder = os.path.dirname(folder)
        for folder in sorted(folders, key=len, reverse=True):  # deepest first
            try:
                fsync_dir(folder)
            except OSError as exc:
                raise DiskError(f"cannot flush folder {folder}: {exc.strerror}") from exc

    def _ensure_dir(self, folder: str) -> None:
        """mkdir -p, remembered: thousands of small files share a handful of folders."""
        if folder not in self._ready_dirs:
            os.makedirs(folder, exist_ok=True)
            self._ready_dirs.add(folder)

    @staticmethod
    def _prune_empty_dirs(folder: Path, stop: Path) -> None:
        while folder != stop and stop in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent


def _read_metadata_file(path: str) -> bytes:
    """`safeio.read_state_file(path, METADATA_LIMIT)` in four system calls instead of seven.

    A no-op re-sync reads one metadata file per repo file, so this is its hot loop. The same
    checks: opened without following a link and without blocking, refused unless a regular
    file; but O_NONBLOCK stays set (it changes nothing for a regular file, and the fd is closed
    at once) and the size from `fstat` says when the content is read, so EOF costs no read. An
    open that fails for another reason than a missing file takes `read_state_file`, whose
    refusal names a planted link or FIFO exactly as before.
    """
    try:
        fd = os.open(path, _META_FLAGS)
    except FileNotFoundError:
        raise
    except OSError:
        return read_state_file(path, METADATA_LIMIT)
    try:
        st = os.fstat(fd)
        if not S_ISREG(st.st_mode):
            raise refusal(path, "it is not a regular file")
        want = min(st.st_size, METADATA_LIMIT)
        data = os.read(fd, want)
        if len(data) < want:  # a short read (or a file that changed size): read to the end
            chunks = [data]
            while (got := sum(map(len, chunks))) < METADATA_LIMIT:
                chunk = os.read(fd, METADATA_LIMIT - got)
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    finally:
        os.close(fd)


def _kind(entry: os.DirEntry[str]) -> str:
    """The kind of a walk entry ("dir", "file", "other"), never following a symlink: a
    linked folder is not ours to walk or delete in."""
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "file" if entry.is_file(follow_symlinks=False) else "other"
