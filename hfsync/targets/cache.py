"""The Hugging Face cache as a target, laid out exactly as `huggingface_hub` lays it out.

`from_pretrained("gpt2")` reads the cache, not a folder, so filling the cache is what most users
need (docs/architecture.md, "File identity"). The layout is the state; nothing else is kept:

    $HF_HUB_CACHE/
      .locks/models--org--name/hfsync.lock     our per-repo lock
      .locks/models--org--name/<etag>.lock     the official per-blob lock; both clients hold it
                                               while they write and place that blob
      models--org--name/
        blobs/<etag>                           content, named by its content id
        blobs/<etag>.hfsync.incomplete         our resumable part file (+ `.journal`)
        snapshots/<commit>/<path>              relative symlink -> ../../blobs/<etag>
        refs/<revision>                        the commit, no newline; written last, atomically
        trees/<commit>.json                    the listing, in the official client's format

A blob already present under its etag is linked, never downloaded again, which makes a second
revision cost only its changed files.

Living next to the official client (docs/architecture.md, "Transfers"):
- The part file is named so no version of `huggingface_hub` opens it. 0.x resumes
  `blobs/<etag>.incomplete` by appending, and takes one of full size as finished: it would move
  our preallocated, partly zero-filled file into `blobs/<etag>` unhashed. 2.x writes
  `<etag>.<8 hex>.incomplete`. Ours ends `.hfsync.incomplete`, which neither pattern matches,
  and still ends `.incomplete`, so `hf cache` and `scan_cache_dir` list it as a partial download.
- A part file under the old shared name that is ours (an hfsync journal beside it, from an
  hfsync before this naming) or of full size (nothing vouches for it, and 0.x would trust it) is
  moved to our name when the sync plans that blob, so an old client can never pick it up; its
  bytes count only as far as the journal says, and the hash decides. A shorter one without our
  journal is the official client's own resume state and is left alone.
- The official per-blob lock (`cache_locks`) is held while a blob is written and placed.
- Durability: the part is fsynced before it is finalized (the executor), copies are fsynced,
  and every folder an entry was renamed or linked into is fsynced before the ref is written, so
  "ref written last" also holds across a power loss.

Without symlinks (Windows without the privilege, some network filesystems; detected once per
cache dir, or forced with `HF_HUB_DISABLE_SYMLINKS=1` as in the official client) the official
degraded form is written: a freshly downloaded blob is *moved* into the snapshot path (no second
copy on disk) and an existing blob is *copied* there, since another snapshot may rely on it.

Identity rules of `scan` (what counts as current, without downloading):
- a snapshot symlink to `blobs/<id>` holds content `<id>` (the official client names blobs by
  the verified etag); with `--checksum` the blob is hashed instead;
- a snapshot entry that is a regular file (degraded form, or a copied cache) of the listed size
  is current. Commits are immutable and a snapshot path is only ever filled with that commit's
  file, so this is the trust the official client gives it too (`hf_hub_download` returns an
  existing pointer path without looking inside). Hashing it on every run would make a no-op
  re-sync cost minutes for big models and there is no metadata file to remember a hash in;
  `--checksum` hashes it;
- a missing snapshot entry whose content is already on disk (`blobs/<etag>`, or a degraded copy
  in another snapshot whose cached listing names that etag) is current but unplaced: it is
  reported with `needs_record`, so the planner asks `mark_current` to link (or copy) it.

`--delete` is a no-op here: every commit has its own snapshot folder, so a file the repo dropped
is simply absent from the new snapshot; old snapshots and the blobs only they use are reclaimed
by `hfsync cache prune`. `scan` therefore reports only the listed paths.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from stat import S_ISLNK, S_ISREG

from .. import env
from ..errors import DiskError, RemotePathError, UsageError
from ..files import RemoteFile, TargetFile, check_remote_path, validate_repo_id
from ..hashing import hash_file
from ..safeio import fsync_dir, read_state_file
from ..transfer.jobs import FileJob
from ..transfer.journal import MAGIC, journal_path
from ..treecache import read_tree_cache, write_tree_cache
from . import cache_locks
from .base import ensure_inside, lock_file, make_parents
from .cache_locks import BlobLocks
from .local import CACHEDIR_TAG
from .partnames import blob_part_name

_COMMIT = re.compile(r"[0-9a-f]{40}")
# Files at least this big hold the official blob lock for their whole download (so the official
# client waits instead of fetching the same bytes too); smaller ones only while being placed,
# which keeps a many-file repo from holding thousands of lock fds. At most _EARLY_LOCKS at once.
_EARLY_LOCK_MIN = 1024 * 1024
_EARLY_LOCKS = 256

_symlink_support: dict[str, bool] = {}
_symlink_support_lock = threading.Lock()


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """`cache_dir`, else `HF_HUB_CACHE` (legacy `HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`."""
    if cache_dir:
        return Path(os.path.expandvars(os.path.expanduser(str(cache_dir)))).absolute()
    return env.hub_cache().absolute()


def repo_folder_name(repo_id: str, repo_type: str) -> str:
    """`models--org--name`, as `huggingface_hub.file_download.repo_folder_name` builds it."""
    validate_repo_id(repo_id)
    return "--".join([f"{repo_type}s", *repo_id.split("/")])


def symlinks_supported(root: Path) -> bool:
    """Whether relative symlinks can be created in `root`; probed once per folder per process.

    Honours `HF_HUB_DISABLE_SYMLINKS` like the official client, and probes the cache folder
    itself (not /tmp) since support depends on the filesystem the cache lives on.
    """
    if env.symlinks_disabled():
        return False
    key = os.path.realpath(root)
    with _symlink_support_lock:
        if key not in _symlink_support:
            _symlink_support[key] = _probe_symlinks(Path(key))
        return _symlink_support[key]


def _probe_symlinks(root: Path) -> bool:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe_dir = Path(tempfile.mkdtemp(prefix=".hfsync-symlink-probe-", dir=root))
    except OSError as exc:
        raise DiskError(f"cannot write to {root}: {exc.strerror}") from exc
    try:
        (probe_dir / "src").touch()
        os.symlink("src", probe_dir / "dst")
        return True
    except OSError:
        return False
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)


def check_revision(revision: str) -> None:
    """Refuse a revision that would write its ref outside `refs/` (e.g. `../x`)."""
    parts = revision.split("/")
    if (
        not revision
        or revision.startswith("/")
        or "\\" in revision
        or any(part in ("", ".", "..") for part in parts)
        or any(ord(ch) < 32 for ch in revision)
    ):
        raise UsageError(f"invalid revision {revision!r}")


class CacheTarget:
    """One repo's storage folder in an HF cache, written like `huggingface_hub` writes it."""

    def __init__(self, repo_id: str, repo_type: str, cache_dir: Path | str | None = None) -> None:
        self.repo_id = repo_id
        self.repo_type = repo_type
        self.root = cache_root(cache_dir)
        self.folder_name = repo_folder_name(repo_id, repo_type)
        self.storage = self.root / self.folder_name
        self.blobs_dir = self.storage / "blobs"
        self.snapshots_dir = self.storage / "snapshots"
        self.refs_dir = self.storage / "refs"
        self.locks_dir = self.root / ".locks" / self.folder_name
        self.description = str(self.storage)
        self._parts: dict[str, int] = {}
        self._copies: dict[tuple[str, int], Path] | None = None
        self._blob_locks = BlobLocks(self.locks_dir)
        self._dirty: set[str] = set()  # folders that got an entry and are not fsynced yet
        self._dirty_lock = threading.Lock()

    # -- paths ------------------------------------------------------------------------------

    def snapshot_dir(self, commit: str) -> Path:
        if not _COMMIT.fullmatch(commit):
            raise RemotePathError(f"refusing commit id {commit!r}: not a 40-hex sha")
        return self.snapshots_dir / commit

    def snapshot_path(self, commit: str, path: str) -> Path:
        check_remote_path(path)
        return self.snapshot_dir(commit).joinpath(*path.split("/"))

    def blob_path(self, etag: str) -> Path:
        if not etag or "/" in etag or "\\" in etag or etag.startswith("."):
            raise RemotePathError(f"refusing content id {etag!r} as a blob name")
        return self.blobs_dir / etag

    def ref_path(self, revision: str) -> Path:
        check_revision(revision)
        return self.refs_dir.joinpath(*revision.split("/"))

    def read_ref(self, revision: str) -> str | None:
        """The commit `refs/<revision>` names, as the official client reads it (no strip)."""
        try:
            return self.ref_path(revision).read_text(encoding="utf-8")
        except OSError:
            return None

    def symlinks(self) -> bool:
        return symlinks_supported(self.root)

    # -- Target interface -------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The per-repo sync lock; per-blob locks still held when it ends are dropped too."""
        with lock_file(self.locks_dir / "hfsync.lock", self.description):
            try:
                yield
            finally:
                self._blob_locks.release_all()

    def read_listing(self, commit: str) -> Sequence[RemoteFile] | None:
        return read_tree_cache(self.storage, commit)

    def write_listing(self, commit: str, files: Sequence[RemoteFile]) -> None:
        write_tree_cache(self.storage, commit, files)

    def scan(
        self,
        remote: Mapping[str, RemoteFile],
        *,
        checksum: bool,
        all_files: bool,
        commit: str | None = None,
    ) -> dict[str, TargetFile]:
        """The state of each listed path in `commit`'s snapshot (see the module docstring)."""
        self._copies = None
        state: dict[str, TargetFile] = {}
        snapshot = os.fspath(self.snapshot_dir(commit)) if commit is not None else None
        blobs = os.path.normpath(self.blobs_dir)
        for path, remote_file in remote.items():
            try:
                held = self._entry_state(path, remote_file, snapshot, blobs, commit, checksum)
                if held is None:
                    held = self._source_state(path, remote_file, commit, checksum)
            except OSError as exc:
                raise DiskError(f"cannot read the cache entry of {path}: {exc.strerror}") from exc
            if held is not None:
                state[path] = held
        return state

    def job(self, remote: RemoteFile, commit: str, url: str) -> FileJob:
        """Stage `remote` in our own part file; place it under the official per-blob lock."""
        destination = self.snapshot_path(commit, remote.path)
        blob = self.blob_path(remote.etag)
        etag = remote.etag
        # Deterministic so a rerun resumes it; a second file of the same content in this run
        # gets its own part so two jobs never write one file.
        nth = self._parts.get(etag, 0)
        self._parts[etag] = nth + 1
        part = blob.with_name(blob_part_name(blob.name, nth))
        locks = self._blob_locks
        early = len(locks) < _EARLY_LOCKS and locks.try_hold(etag)
        if early:
            if nth == 0:
                self._retire_legacy_part(blob, remote.size, part)
            if remote.size < _EARLY_LOCK_MIN:
                locks.release(etag)
                early = False

        def finalize(done: Path) -> None:
            try:
                with locks.holding(etag, wait=cache_locks.PLACE_WAIT, what=remote.path):
                    with self._disk_errors(destination):
                        self._ensure_dirs(destination)
                        if self.symlinks():
                            os.replace(done, blob)  # same content if another writer was first
                            self._placed(blob)
                            self._link(blob, destination)
                        else:
                            os.replace(done, destination)  # moved, not copied: no second copy
                        self._placed(destination)
            finally:
                if early:
                    locks.release(etag)  # the hold taken for the whole download

        return FileJob(remote.path, remote.size, etag, url, part, finalize)

    def mark_current(self, remote: RemoteFile, commit: str, held: TargetFile | None) -> None:
        """Place content that is already on disk into the snapshot: link it, or copy it."""
        destination = self.snapshot_path(commit, remote.path)
        source = self._source_path(held)
        if source is None and os.path.lexists(destination):
            return  # already placed; a --checksum run merely confirmed it
        wait = cache_locks.PLACE_WAIT
        with self._blob_locks.holding(remote.etag, wait=wait, what=remote.path):
            with self._disk_errors(destination):
                if source is None:
                    source = self.blob_path(remote.etag)
                    if not source.is_file():
                        raise DiskError(f"cannot place {remote.path}: its content left the cache")
                self._ensure_dirs(destination)
                blob = self.blob_path(remote.etag)
                if self.symlinks():
                    if source != blob:
                        self._copy(source, blob)
                        self._placed(blob)
                    self._link(blob, destination)
                else:
                    self._copy(source, destination)
                self._placed(destination)

    def delete(self, path: str, commit: str) -> None:
        """Remove `path` from `commit`'s snapshot (never planned: see module doc)."""
        entry = self.snapshot_path(commit, path)
        ensure_inside(self.snapshot_dir(commit), entry)
        with self._disk_errors(entry), contextlib.suppress(FileNotFoundError):
            entry.unlink()

    def finish(self, commit: str, revision: str) -> None:
        """Make the snapshot visible under `refs/<revision>` — last, and atomically.

        A reader that follows the ref (the official client in offline mode, `scan_cache_dir`)
        therefore never sees a snapshot that is still being filled. A commit-sha revision gets
        no ref, as with the official client.
        """
        snapshot = self.snapshot_dir(commit)
        with self._disk_errors(snapshot):
            snapshot.mkdir(parents=True, exist_ok=True)  # an empty selection is a snapshot too
            self._placed(snapshot / ".")
            tag = self.root / "CACHEDIR.TAG"
            if not tag.exists():
                tag.write_text(CACHEDIR_TAG)
            self._sync_dirs()  # every entry of the snapshot is durable before the ref names it
        if revision == commit:
            return
        ref = self.ref_path(revision)
        if self.read_ref(revision) == commit:
            return  # no write: the cache may be shared read-mostly
        with self._disk_errors(ref):
            self.refs_dir.mkdir(parents=True, exist_ok=True)
            make_parents(self.refs_dir, ref)
            tmp = ref.with_name(f"{ref.name}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                with open(tmp, "w", encoding="utf-8") as handle:
                    handle.write(commit)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, ref)
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            self._placed(ref)
            self._sync_dirs()

    # -- scan internals ---------------------------------------------------------------------

    def _entry_state(
        self,
        path: str,
        remote: RemoteFile,
        snapshot: str | None,
        blobs: str,
        commit: str | None,
        checksum: bool,
    ) -> TargetFile | None:
        """What the snapshot entry of `path` (in the folder `snapshot`, of `commit`) holds, or
        None when there is none (or it dangles); `blobs`: this repo's blobs/, normalized.

        One lstat, one readlink and one stat per symlinked entry, on str paths: on 2,000
        entries the earlier lexists + is_symlink + stat + isfile on pathlib paths cost 41 ms
        of CPU against 22 ms, and this runs on every sync and push that has a cache."""
        if snapshot is None:  # no commit: no snapshot to look in
            return None
        check_remote_path(path)
        entry = os.path.join(snapshot, *path.split("/"))
        try:
            st = os.lstat(entry)
        except OSError:
            return None
        blob_name = None
        if S_ISLNK(st.st_mode):
            blob_name = self._linked_blob(entry, blobs)
            try:
                st = os.stat(entry)
            except FileNotFoundError:
                return None  # dangling link: as good as absent, the job replaces it
        if not S_ISREG(st.st_mode):
            return TargetFile(path, -1)  # a folder or device is in the way: never "identical"
        size = st.st_size
        if size != remote.size:
            return TargetFile(path, size, blob_name, commit=commit)
        if checksum:
            return TargetFile(path, size, hash_file(Path(entry), remote.etag), True, commit)
        # A link names its content; a plain file of this commit is trusted by size.
        return TargetFile(path, size, blob_name or remote.etag, commit=commit)

    @staticmethod
    def _linked_blob(entry: str, blobs: str) -> str | None:
        """The blob name the snapshot symlink `entry` points at, if it points into `blobs`."""
        target = os.path.normpath(os.path.join(os.path.dirname(entry), os.readlink(entry)))
        if os.path.dirname(target) != blobs:
            return None
        return os.path.basename(target)

    def _source_state(
        self, path: str, remote: RemoteFile, commit: str | None, checksum: bool
    ) -> TargetFile | None:
        """The content of `path` found elsewhere in the cache: current, but not yet placed."""
        source = self._find_content(remote, commit)
        if source is None:
            return None
        where = os.path.relpath(source, self.storage)
        if checksum:
            digest = hash_file(source, remote.etag)
            return TargetFile(path, remote.size, digest, True, source=where)
        return TargetFile(path, remote.size, remote.etag, needs_record=True, source=where)

    def _source_path(self, held: TargetFile | None) -> Path | None:
        """The file `scan` found the content in, checked to still lie inside this repo folder."""
        if held is None or held.source is None:
            return None
        source = self.storage / held.source
        ensure_inside(self.storage, source)
        return source

    def _find_content(self, remote: RemoteFile, commit: str | None) -> Path | None:
        blob = self.blob_path(remote.etag)
        with contextlib.suppress(OSError):
            if blob.is_file() and blob.stat().st_size == remote.size:
                return blob
        if self._copies is None:
            self._copies = self._index_copies(commit)
        return self._copies.get((remote.etag, remote.size))

    def _index_copies(self, commit: str | None) -> dict[tuple[str, int], Path]:
        """Degraded-form files of other snapshots, by (etag, size), from their cached listings.

        Without symlinks a blob lives only inside the snapshot it was moved into; this index
        lets a new revision copy it from there instead of downloading it again.
        """
        index: dict[tuple[str, int], Path] = {}
        if not self.snapshots_dir.is_dir():
            return index
        for snapshot in sorted(self.snapshots_dir.iterdir()):
            if snapshot.name == commit or not _COMMIT.fullmatch(snapshot.name):
                continue
            for listed in read_tree_cache(self.storage, snapshot.name) or []:
                try:
                    check_remote_path(listed.path)
                except RemotePathError:
                    continue
                copy = snapshot.joinpath(*listed.path.split("/"))
                with contextlib.suppress(OSError):
                    if not copy.is_symlink() and copy.is_file():
                        if copy.stat().st_size == listed.size:
                            index.setdefault((listed.etag, listed.size), copy)
        return index

    # -- write internals --------------------------------------------------------------------

    def _ensure_dirs(self, destination: Path) -> None:
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.snapshots_dir.mkdir(exist_ok=True)
        make_parents(self.snapshots_dir, destination)
        if destination.is_dir() and not destination.is_symlink():
            raise DiskError(f"cannot write {destination}: a folder is in the way")

    def _link(self, blob: Path, destination: Path) -> None:
        """Point `destination` at `blob` with a relative link, as `_create_symlink` does.

        If the filesystem refuses the link after all (e.g. EPERM across volumes), the cache is
        treated as symlink-less from now on and this file gets the degraded form: a copy, not a
        move, since other snapshots may already link the blob.
        """
        if self._points_at(destination, blob):
            return
        try:
            self._symlink_over(os.path.relpath(blob, destination.parent), destination, blob)
        except OSError:
            with _symlink_support_lock:
                _symlink_support[os.path.realpath(self.root)] = False
            self._copy(blob, destination)

    def _symlink_over(self, relative: str, destination: Path, blob: Path) -> None:
        try:
            os.symlink(relative, destination)
            return
        except FileExistsError:
            if self._points_at(destination, blob):
                return  # a concurrent writer made the same link first: success
        # Something else is there (a stale file, a wrong link): swap it atomically. A short
        # temp name: the entry's own name may already be close to NAME_MAX.
        tmp = destination.with_name(f".hfsync-{uuid.uuid4().hex[:8]}.tmp")
        try:
            os.symlink(relative, tmp)
            os.replace(tmp, destination)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    @staticmethod
    def _points_at(destination: Path, blob: Path) -> bool:
        return destination.is_symlink() and os.path.realpath(destination) == os.path.realpath(blob)

    def _copy(self, source: Path, destination: Path) -> None:
        """Copy through a staging file in blobs/ so `destination` only ever holds whole files.

        The staging name ends in `.incomplete`, so a crash leaves something `hf cache prune`
        and `scan_cache_dir` recognise, and nothing stray inside a snapshot.
        """
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.blobs_dir / f"copy-{uuid.uuid4().hex[:8]}.hfsync.incomplete"
        try:
            shutil.copyfile(source, tmp)
            with contextlib.suppress(OSError):
                shutil.copymode(source, tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())  # the copy's bytes are on disk before its name
            os.replace(tmp, destination)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _retire_legacy_part(self, blob: Path, size: int, part: Path) -> None:
        """Take `blobs/<etag>.incomplete` away from the official client when it is unsafe there.

        Called under the blob's lock (so no official client is writing it). An hfsync before
        the `.hfsync.incomplete` naming left its preallocated part (with a journal) under this
        name; a full-size one without journal is unverified too. 0.x would move either into
        `blobs/<etag>` unhashed. Both become our part: with its journal it resumes (the hash
        still decides), without one the executor starts it afresh. A shorter file without our
        journal is the official client's own resume state: left alone.
        """
        legacy = blob.with_name(f"{blob.name}.incomplete")
        legacy_journal = journal_path(legacy)
        try:
            if not legacy.is_file() or legacy.is_symlink():
                return
            ours = self._is_hfsync_journal(legacy_journal)
            if not ours and legacy.stat().st_size != size:
                return
            if os.path.lexists(part):
                legacy.unlink()  # we have a part of our own already; the old one only misleads
            else:
                if ours:
                    os.replace(legacy_journal, journal_path(part))
                else:
                    with contextlib.suppress(FileNotFoundError):
                        journal_path(part).unlink()  # a stale journal must not vouch for it
                os.replace(legacy, part)
            with contextlib.suppress(FileNotFoundError):
                legacy_journal.unlink()
        except OSError as exc:
            raise DiskError(f"cannot move aside {legacy}: {exc.strerror or exc}") from exc

    @staticmethod
    def _is_hfsync_journal(path: Path) -> bool:
        try:
            return read_state_file(path, 64).startswith(MAGIC.encode())
        except (OSError, DiskError):
            return False

    def _placed(self, entry: Path) -> None:
        """Remember the folders `entry` (and any folder created for it) live in, for fsync."""
        folders = []
        folder = entry.parent
        while True:
            folders.append(str(folder))
            if folder == self.root or self.root not in folder.parents:
                break
            folder = folder.parent
        with self._dirty_lock:
            self._dirty.update(folders)

    def _sync_dirs(self) -> None:
        """fsync every folder that got an entry, deepest first, and forget them."""
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
        for folder in sorted(dirty, key=lambda f: (-f.count(os.sep), f)):
            fsync_dir(folder)

    @contextlib.contextmanager
    def _disk_errors(self, path: Path) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise DiskError(f"cannot write {path}: {exc.strerror or exc}") from exc
