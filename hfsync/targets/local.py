"""A plain local folder, with the official client's `--local-dir` bookkeeping.

See docs/architecture.md, "File identity".

State lives in `DEST/.cache/huggingface/download/<path>.metadata` (commit, etag, timestamp), the
same files `hf download --local-dir` reads and writes, so either tool recognises the other's
downloads as current. Partial downloads are staged beside that state, under deterministic names,
so an interrupted run can be resumed by the next one.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

from ..errors import DiskError
from ..files import RemoteFile, TargetFile, check_remote_path
from ..hashing import hash_file
from ..transfer.jobs import FileJob
from ..treecache import read_tree_cache, write_tree_cache
from .base import ensure_inside, lock_file, make_parents

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by hfsync.\n"
    "# For information about cache directory tags, see: https://bford.info/cachedir/\n"
)


@dataclass(frozen=True)
class DownloadMetadata:
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
        self._ready_dirs: set[str] = set()  # folders created and checked during this run

    # -- bookkeeping paths ------------------------------------------------------------------

    def file_path(self, path: str) -> Path:
        check_remote_path(path)
        return self.root.joinpath(*path.split("/"))

    def metadata_path(self, path: str) -> Path:
        return self.state_dir.joinpath("download", *path.split("/")).with_name(
            path.rsplit("/", 1)[-1] + ".metadata"
        )

    def part_path(self, remote: RemoteFile) -> Path:
        meta = self.metadata_path(remote.path)
        return meta.with_name(f"{meta.name[: -len('.metadata')]}.{remote.etag}.incomplete")

    # -- Target interface -------------------------------------------------------------------

    def lock(self) -> contextlib.AbstractContextManager[None]:
        self._init_state_dir()
        return lock_file(self.state_dir / "hfsync.lock", str(self.root))

    def read_listing(self, commit: str) -> list[RemoteFile] | None:
        return read_tree_cache(self.state_dir, commit)

    def write_listing(self, commit: str, files: list[RemoteFile]) -> None:
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
                raise DiskError(f"cannot read {self.file_path(path)}: {exc.strerror}") from exc
            if held is not None:
                state[path] = held
        return state

    def job(self, remote: RemoteFile, commit: str, url: str) -> FileJob:
        part = self.part_path(remote)
        destination = self.file_path(remote.path)

        def finalize(done: Path) -> None:
            self._place(done, destination)
            self._write_metadata(remote.path, commit, remote.etag)

        return FileJob(remote.path, remote.size, remote.etag, url, part, finalize)

    def mark_current(self, remote: RemoteFile, commit: str, held: TargetFile | None) -> None:
        self._write_metadata(remote.path, commit, remote.etag)

    def delete(self, path: str, commit: str) -> None:
        target = self.file_path(path)
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
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            gitignore = self.state_dir / ".gitignore"
            if not gitignore.exists():
                gitignore.write_text("*")
            tag = self.state_dir / "CACHEDIR.TAG"
            if not tag.exists():
                tag.write_text(CACHEDIR_TAG)
        except OSError as exc:
            raise DiskError(f"cannot write to {self.root}: {exc.strerror}") from exc

    def _walk(self) -> Iterator[str]:
        """Every regular file under the root, as repo-style paths; our state folder excluded."""
        if not self.root.is_dir():
            return
        stack = [(self.root, "")]
        while stack:
            folder, prefix = stack.pop()
            with os.scandir(folder) as entries:
                for entry in entries:
                    rel = prefix + entry.name
                    if rel == ".cache/huggingface":
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((Path(entry.path), rel + "/"))
                    elif entry.is_file(follow_symlinks=False):
                        yield rel

    def _file_state(
        self, path: str, remote: RemoteFile | None, checksum: bool
    ) -> TargetFile | None:
        """What the folder holds at `path` (None: no regular file there).

        Plain string paths and one stat per file: a no-op re-sync of a big repo is this loop.
        """
        try:
            stat = os.stat(os.path.join(self._root_str, path))
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
            with open(os.path.join(self._meta_str, path + ".metadata"), encoding="utf-8") as fh:
                lines = fh.read().splitlines()
            meta = DownloadMetadata(lines[0].strip(), lines[1].strip(), float(lines[2]))
        except (OSError, IndexError, ValueError):
            return None
        if mtime is not None and mtime - 1 > meta.timestamp:
            return None
        return meta

    def _write_metadata(self, path: str, commit: str, etag: str) -> None:
        meta_path = os.path.join(self._meta_str, path + ".metadata")
        tmp = meta_path + ".tmp"
        try:
            self._ensure_dir(os.path.dirname(meta_path))
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(f"{commit}\n{etag}\n{time.time()}\n")
            os.replace(tmp, meta_path)
        except OSError as exc:
            raise DiskError(f"cannot write {meta_path}: {exc.strerror}") from exc

    def _place(self, done: Path, destination: Path) -> None:
        try:
            parent = os.path.dirname(destination)
            if parent not in self._ready_dirs:
                make_parents(self.root, destination)  # the symlink-escape check, once per folder
                self._ready_dirs.add(parent)
            os.replace(done, destination)
        except IsADirectoryError as exc:
            raise DiskError(f"cannot write {destination}: a folder is in the way") from exc
        except OSError as exc:
            raise DiskError(f"cannot write {destination}: {exc.strerror}") from exc

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
