"""What an HF cache holds, and reclaiming what no revision needs (`hfsync cache ls|prune`).

The cache layout is the only state (anchors §1.8), so everything here is read from the folders:
`refs/` names revisions, each `snapshots/<commit>/` lists its files as links into `blobs/` (or,
without symlinks, as plain copies), and whatever sits in `blobs/` that no snapshot points at is
dead weight.

Two kinds of reclaimable data, as `hf cache prune` sees them:
- a *detached* revision is a snapshot no ref names any more — typically the old commit after a
  branch moved on (or one fetched by commit sha). Pruning removes it, as `hf cache prune` does,
  unless `keep_detached`;
- an *unreferenced* blob is one no remaining snapshot links to. Pruning removes it.

Part files are reported, not pruned by default: hfsync resumes them on the next run
(`include_incomplete` removes them too). They are every `*.incomplete` in `blobs/` and its
`.journal`: hfsync's own `<etag>.hfsync[-N].incomplete` (a name no official client opens, see
`targets.partnames`), its copy staging `copy-*.hfsync.incomplete`, and the official client's
`<etag>.incomplete` / `<etag>.<8 hex>.incomplete`. A part whose blob lock is held is being
written right now (by either client) and is never removed.

Pruning is safe against concurrent writers: a repo whose hfsync lock is held is skipped (its new
snapshot is not referenced until the sync writes its ref last), and a blob whose official per-etag
lock (`.locks/<repo>/<etag>.lock`, taken by `huggingface_hub` while it downloads and links) is
held is kept.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DiskError, NotFoundError
from .targets.base import try_lock

REPO_PREFIXES = {"models": "model", "datasets": "dataset", "spaces": "space", "kernels": "kernel"}
LOCK_NAME = "hfsync.lock"
_ETAG = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class FileEntry:
    """A file in the cache and its size in bytes."""

    path: Path
    size: int


@dataclass(frozen=True)
class RevisionInfo:
    """One snapshot folder: its commit, the refs naming it, its files and the bytes they use."""

    commit: str
    refs: tuple[str, ...]
    files: int
    size: int
    path: Path
    blobs: frozenset[str] = frozenset()
    copies: tuple[FileEntry, ...] = ()

    @property
    def detached(self) -> bool:
        return not self.refs


@dataclass(frozen=True)
class RepoInfo:
    """One repo storage folder (`models--org--name`)."""

    repo_id: str
    repo_type: str
    path: Path
    revisions: tuple[RevisionInfo, ...]
    blobs: tuple[FileEntry, ...]
    incomplete: tuple[FileEntry, ...]
    problems: tuple[str, ...] = ()

    @property
    def size_on_disk(self) -> int:
        """Blobs plus snapshot copies, each file once; part files are counted separately."""
        copies = sum(copy.size for rev in self.revisions for copy in rev.copies)
        return sum(blob.size for blob in self.blobs) + copies

    @property
    def unreferenced(self) -> tuple[FileEntry, ...]:
        """Blobs no snapshot at all links to."""
        linked = {name for rev in self.revisions for name in rev.blobs}
        return tuple(blob for blob in self.blobs if blob.path.name not in linked)

    def reclaimable(self, *, keep_detached: bool = False) -> tuple[list[RevisionInfo], int]:
        """The revisions and bytes a prune would remove."""
        victims = [] if keep_detached else [rev for rev in self.revisions if rev.detached]
        kept = [rev for rev in self.revisions if rev not in victims]
        linked = {name for rev in kept for name in rev.blobs}
        freed = sum(blob.size for blob in self.blobs if blob.path.name not in linked)
        freed += sum(copy.size for rev in victims for copy in rev.copies)
        return victims, freed


@dataclass(frozen=True)
class CacheInfo:
    """Every repo of one cache folder."""

    root: Path
    repos: tuple[RepoInfo, ...]

    @property
    def size_on_disk(self) -> int:
        return sum(repo.size_on_disk for repo in self.repos)


@dataclass
class PruneResult:
    """What a prune removed (or, for a dry run, would remove)."""

    dry_run: bool
    revisions: list[tuple[str, str, str]] = field(default_factory=list)  # type, id, commit
    removed: list[Path] = field(default_factory=list)
    bytes_freed: int = 0
    busy: list[str] = field(default_factory=list)
    kept_incomplete: list[FileEntry] = field(default_factory=list)


def split_folder_name(name: str) -> tuple[str, str] | None:
    """`models--org--name` -> ("model", "org/name"); None for anything else in the cache."""
    prefix, sep, rest = name.partition("--")
    if not sep or not rest or prefix not in REPO_PREFIXES:
        return None
    return REPO_PREFIXES[prefix], rest.replace("--", "/")


def blob_kind(name: str) -> str:
    """'blob', 'incomplete' (a part file of either client, or its journal) or 'other'."""
    if name.endswith(".incomplete") or name.endswith(".incomplete.journal"):
        return "incomplete"
    if "." in name or name.startswith("tmp_"):
        return "other"  # staging files of the official client; never a blob
    return "blob"


def scan_cache(root: Path, *, only: str | None = None) -> CacheInfo:
    """Every repo in the cache at `root` (or only the storage folder named `only`)."""
    root = Path(root)
    if not root.is_dir():
        raise NotFoundError(f"no HF cache at {root}")
    repos = []
    try:
        names = sorted(os.listdir(root))
    except OSError as exc:
        raise DiskError(f"cannot read {root}: {exc.strerror}") from exc
    for name in names:
        if (only is not None and name != only) or split_folder_name(name) is None:
            continue
        if (root / name).is_dir():
            repos.append(scan_repo(root / name))
    return CacheInfo(root, tuple(repos))


def scan_repo(folder: Path) -> RepoInfo:
    """One storage folder: revisions with their refs, blobs, and part files."""
    kind = split_folder_name(folder.name)
    if kind is None:
        raise NotFoundError(f"{folder} is not a repo folder of an HF cache")
    repo_type, repo_id = kind
    problems: list[str] = []
    refs = _read_refs(folder / "refs")
    blobs_dir = folder / "blobs"
    blobs: list[FileEntry] = []
    incomplete: list[FileEntry] = []
    for entry in _scandir(blobs_dir):
        which = blob_kind(entry.name)
        if which == "other":
            continue
        size = _size(Path(entry.path))
        (blobs if which == "blob" else incomplete).append(FileEntry(Path(entry.path), size))
    blob_sizes = {blob.path.name: blob.size for blob in blobs}
    revisions = []
    for entry in _scandir(folder / "snapshots"):
        if not entry.is_dir(follow_symlinks=False):
            continue
        files, linked, copies, broken = _scan_snapshot(Path(entry.path), blobs_dir, blob_sizes)
        size = sum(blob_sizes[name] for name in linked) + sum(copy.size for copy in copies)
        names = tuple(sorted(ref for ref, commit in refs.items() if commit == entry.name))
        revisions.append(
            RevisionInfo(entry.name, names, files, size, Path(entry.path), linked, copies)
        )
        problems += [f"broken link {path}" for path in broken]
    present = {rev.commit for rev in revisions}
    problems += [
        f"ref {ref} names commit {commit} which has no snapshot"
        for ref, commit in sorted(refs.items())
        if commit not in present
    ]
    return RepoInfo(
        repo_id,
        repo_type,
        folder,
        tuple(sorted(revisions, key=lambda rev: (rev.detached, rev.refs, rev.commit))),
        tuple(sorted(blobs, key=lambda blob: blob.path.name)),
        tuple(sorted(incomplete, key=lambda part: part.path.name)),
        tuple(problems),
    )


def _scan_snapshot(
    snapshot: Path, blobs_dir: Path, blob_sizes: dict[str, int]
) -> tuple[int, frozenset[str], tuple[FileEntry, ...], list[Path]]:
    """(file count, linked blob names, plain copies, broken links) of one snapshot folder."""
    linked: set[str] = set()
    copies: list[FileEntry] = []
    broken: list[Path] = []
    files = 0
    blobs_norm = os.path.normpath(blobs_dir)
    for dirpath, _dirnames, filenames in os.walk(snapshot):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                target = os.path.normpath(os.path.join(dirpath, os.readlink(path)))
                if os.path.dirname(target) == blobs_norm and os.path.basename(target) in blob_sizes:
                    linked.add(os.path.basename(target))
                    files += 1
                    continue
                if not os.path.exists(path):
                    broken.append(Path(path))
                    continue
            files += 1  # a plain copy (no-symlink cache), or a link out of the repo's blobs
            copies.append(FileEntry(Path(path), _size(Path(path))))
    return files, frozenset(linked), tuple(copies), broken


def _read_refs(refs_dir: Path) -> dict[str, str]:
    refs = {}
    for dirpath, _dirnames, filenames in os.walk(refs_dir):
        for name in filenames:
            path = Path(dirpath, name)
            if name.endswith(".tmp"):
                continue  # a ref being written right now
            with contextlib.suppress(OSError, UnicodeDecodeError):
                refs[path.relative_to(refs_dir).as_posix()] = path.read_text().strip()
    return refs


def _scandir(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DiskError(f"cannot read {folder}: {exc.strerror}") from exc


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# -- prune ------------------------------------------------------------------------------------


def prune(
    root: Path,
    *,
    dry_run: bool,
    keep_detached: bool = False,
    include_incomplete: bool = False,
    only: str | None = None,
) -> PruneResult:
    """Remove detached revisions (unless `keep_detached`) and blobs no snapshot links to."""
    result = PruneResult(dry_run)
    for listed in scan_cache(root, only=only).repos:
        lock = Path(root) / ".locks" / listed.path.name / LOCK_NAME
        with _try_lock(lock, dry_run, mark=True) as held:
            if not held:
                result.busy.append(f"{listed.repo_type}/{listed.repo_id}")
                continue
            repo = scan_repo(listed.path)  # re-read under the lock
            _prune_repo(Path(root), repo, result, keep_detached, include_incomplete)
    return result


def _prune_repo(
    root: Path,
    repo: RepoInfo,
    result: PruneResult,
    keep_detached: bool,
    include_incomplete: bool,
) -> None:
    victims, _ = repo.reclaimable(keep_detached=keep_detached)
    kept = [rev for rev in repo.revisions if rev not in victims]
    linked = {name for rev in kept for name in rev.blobs}
    for rev in victims:
        result.revisions.append((repo.repo_type, repo.repo_id, rev.commit))
        result.removed.append(rev.path)
        result.bytes_freed += sum(copy.size for copy in rev.copies)
        if not result.dry_run:
            _remove(rev.path)
    locks = root / ".locks" / repo.path.name
    for blob in repo.blobs:
        if blob.path.name in linked:
            continue
        with _try_lock(locks / f"{blob.path.name}.lock", result.dry_run) as held:
            if not held:
                continue  # the official client is downloading or linking it right now
            result.removed.append(blob.path)
            result.bytes_freed += blob.size
            if not result.dry_run:
                _remove(blob.path)
    for part in repo.incomplete:
        if not include_incomplete:
            result.kept_incomplete.append(part)
            continue
        etag = part_etag(part.path.name)
        lock = contextlib.nullcontext(True)
        if etag is not None:
            lock = _try_lock(locks / f"{etag}.lock", result.dry_run)
        with lock as held:
            if not held:  # a client is downloading into it right now
                result.kept_incomplete.append(part)
                continue
            result.removed.append(part.path)
            result.bytes_freed += part.size
            if not result.dry_run:
                _remove(part.path)


def part_etag(name: str) -> str | None:
    """The content id a part file in blobs/ is for (`<etag>.…incomplete`), if it names one."""
    head = name.split(".", 1)[0]
    return head if _ETAG.fullmatch(head) else None


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise DiskError(f"cannot remove {path}: {exc.strerror}") from exc


@contextlib.contextmanager
def _try_lock(path: Path, dry_run: bool, *, mark: bool = False) -> Iterator[bool]:
    """`targets.base.try_lock`, except that a dry run takes no lock (and creates no file)."""
    if dry_run:
        yield True
        return
    with try_lock(path, mark=mark) as held:
        yield held
