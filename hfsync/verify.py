"""`hfsync verify`: re-hash what a folder or the HF cache holds against its recorded content ids.

A sync trusts its bookkeeping (metadata etag + size + mtime), which is what makes a no-op
re-sync cheap — and what lets a flipped bit on disk (same size, same mtime) go unnoticed
forever. Verify is the slow, explicit counterpart: every file is hashed, nothing is trusted
(docs/architecture.md, "Mirrors, verify, doctor").

- A local folder's ids are its `.cache/huggingface/download/<path>.metadata` etags (the
  official `--local-dir` format); the cached `trees/<commit>.json` adds sizes when present.
- The HF cache's ids are the blob names (`blobs/<etag>`), and for plain-file snapshot entries
  (symlink-less caches) the cached listing of their commit.

Hashing runs in a thread pool of one worker per core: hashlib releases the GIL while it hashes
a large buffer, so threads scale without the cost of shipping data between processes.
`fix_*` refetches exactly the broken files by invalidating their bookkeeping and running the
ordinary sync for just those paths at the commit that recorded them.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .errors import UsageError
from .hashing import new_hasher
from .treecache import read_tree_cache

if TYPE_CHECKING:
    from .orchestrate import SyncResult

READ_SIZE = 4 * 1024 * 1024
STATE = (".cache", "huggingface")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_CACHE_FOLDER = re.compile(r"^(models|datasets|spaces)--(.+)$")

MISMATCH, MISSING, EXTRA, UNVERIFIABLE = "mismatch", "missing", "extra", "unverifiable"


class HashProgress(Protocol):
    """Receives hashing progress (the CLI draws a bar); called from many threads."""

    def start(self, total_bytes: int, files: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def close(self) -> None: ...


class NullHashProgress:
    def start(self, total_bytes: int, files: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Problem:
    """One file that is not what its bookkeeping says."""

    path: str
    kind: str  # mismatch | missing | extra | unverifiable
    detail: str
    commit: str | None = None
    expected: str | None = None  # the recorded content id
    repo: str | None = None  # cache only: `models--org--name`
    on_disk: str | None = None  # cache only: the file that holds the bad bytes (blob or copy)


@dataclass
class VerifyReport:
    """Everything one verify found; `failed` decides exit 5."""

    root: str
    checked: int = 0
    bytes_hashed: int = 0
    problems: list[Problem] = field(default_factory=list)
    extra_checked: bool = False

    def of(self, kind: str) -> list[Problem]:
        return [p for p in self.problems if p.kind == kind]

    @property
    def broken(self) -> list[Problem]:
        """What `--fix` refetches: wrong or missing content."""
        return [p for p in self.problems if p.kind in (MISMATCH, MISSING)]

    @property
    def failed(self) -> bool:
        return bool(self.broken) or (self.extra_checked and bool(self.of(EXTRA)))


@dataclass(frozen=True)
class _Check:
    """One hash to compute: the file at `disk` must hash to `expected`."""

    disk: str
    expected: str
    size: int
    problem: Problem  # reported if it does not


# -- hashing ---------------------------------------------------------------------------------


def _hash(path: str, etag: str, advance: Callable[[int], None]) -> str | None:
    """The content id of `path` in the kind of `etag`, reporting progress per buffer."""
    size = os.stat(path).st_size
    hasher = new_hasher(etag, size)
    if hasher is None:
        return None
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            hasher.update(view[:count])
            advance(count)
    return hasher.hexdigest()


def _run_checks(
    checks: list[_Check], report: VerifyReport, workers: int | None, progress: HashProgress
) -> None:
    """Hash every check in parallel; a file that does not hash to its id becomes a problem."""
    lock = threading.Lock()

    def advance(nbytes: int) -> None:
        with lock:
            report.bytes_hashed += nbytes
        progress.advance(nbytes)

    def one(check: _Check) -> Problem | None:
        try:
            digest = _hash(check.disk, check.expected, advance)
        except FileNotFoundError:
            return replace(check.problem, kind=MISSING, detail="vanished")
        except OSError as exc:
            detail = f"unreadable: {exc.strerror or exc}"
            return replace(check.problem, detail=detail)
        if digest is None:
            detail = f"recorded id {check.expected!r} is not a content id"
            return replace(check.problem, kind=UNVERIFIABLE, detail=detail)
        if digest != check.expected.lower():
            return check.problem
        return None

    progress.start(sum(c.size for c in checks), len(checks))
    try:
        workers = workers or os.cpu_count() or 1
        with ThreadPoolExecutor(max_workers=min(workers, max(1, len(checks)))) as pool:
            for problem in pool.map(one, checks):
                if problem is not None:
                    report.problems.append(problem)
    finally:
        progress.close()
    report.checked += len(checks)


# -- local folders ---------------------------------------------------------------------------


def folder_root(dest: Path) -> Path:
    """The folder that holds the files: DEST itself, or what `DEST/current` points at (an
    atomic mirror destination, whose DEST holds only snapshot folders)."""
    dest = Path(dest).expanduser().absolute()
    current = dest / "current"
    if not dest.joinpath(*STATE).is_dir() and current.is_symlink() and current.is_dir():
        return Path(os.path.realpath(current))
    return dest


def verify_folder(
    dest: Path,
    *,
    extra: bool = False,
    hash_files: bool = True,
    expected: dict[str, tuple[str, int]] | None = None,
    workers: int | None = None,
    progress: HashProgress | None = None,
) -> VerifyReport:
    """Check every file a `--local-dir`-style folder has metadata for.

    `expected` ({path: (etag, size)}) makes the check strict, as an atomic snapshot needs: each
    of those paths must be present and recorded with that id. `hash_files=False` checks
    presence, sizes and recorded ids only (the quick check of a freshly built snapshot, whose
    downloads were verified as they arrived and whose other files are hard links).
    """
    from .targets.local import LocalTarget

    root = folder_root(dest)
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder")
    target = LocalTarget(root)
    report = VerifyReport(str(root), extra_checked=extra)
    recorded = dict(_recorded(target))
    sizes = _listing_sizes(target.state_dir, {meta.commit for meta in recorded.values()})
    checks: list[_Check] = []
    paths = sorted(set(recorded) | set(expected or ()))
    for path in paths:
        meta = recorded.get(path)
        want = expected.get(path) if expected else None
        commit = meta.commit if meta else None
        if meta is None:
            report.problems.append(Problem(path, MISSING, "no metadata recorded", expected=None))
            continue
        if want is not None and meta.etag != want[0]:
            detail = f"metadata names {meta.etag[:12]}, the listing {want[0][:12]}"
            report.problems.append(Problem(path, MISMATCH, detail, commit, meta.etag))
            continue
        disk = os.path.join(target.root, *path.split("/"))
        try:
            size = os.stat(disk).st_size
        except (FileNotFoundError, NotADirectoryError):
            report.problems.append(Problem(path, MISSING, "file is missing", commit, meta.etag))
            continue
        listed = want[1] if want else sizes.get((commit, path))
        if listed is not None and size != listed:
            detail = f"size {size}, expected {listed}"
            report.problems.append(Problem(path, MISMATCH, detail, commit, meta.etag))
            continue
        problem = Problem(path, MISMATCH, "content does not hash to its id", commit, meta.etag)
        if hash_files:
            checks.append(_Check(disk, meta.etag, size, problem))
        else:
            report.checked += 1
    _run_checks(checks, report, workers, progress or NullHashProgress())
    if extra:
        for path in _walk_files(target.root):
            if path not in recorded:
                report.problems.append(Problem(path, EXTRA, "not recorded by any sync"))
    report.problems.sort(key=lambda p: (p.kind, p.path))
    return report


def _recorded(target) -> Iterator[tuple[str, object]]:  # noqa: ANN001 - a LocalTarget
    """(path, metadata) of every `.metadata` file under the folder's state folder."""
    meta_root = target.state_dir / "download"
    if not meta_root.is_dir():
        return
    for folder, _dirs, names in os.walk(meta_root):
        rel_folder = os.path.relpath(folder, meta_root)
        for name in names:
            if not name.endswith(".metadata"):
                continue
            rel = name[: -len(".metadata")]
            path = rel if rel_folder == "." else f"{rel_folder.replace(os.sep, '/')}/{rel}"
            meta = target.read_metadata(path)
            if meta is not None:
                yield path, meta


def _listing_sizes(state_dir: Path, commits: Iterable[str]) -> dict[tuple[str, str], int]:
    sizes: dict[tuple[str, str], int] = {}
    for commit in commits:
        for remote in read_tree_cache(state_dir, commit) or ():
            sizes[(commit, remote.path)] = remote.size
    return sizes


def _walk_files(root: Path) -> Iterator[str]:
    for folder, dirs, names in os.walk(root):
        rel_folder = os.path.relpath(folder, root).replace(os.sep, "/")
        if rel_folder == ".":
            rel_folder = ""
        if rel_folder == "":
            dirs[:] = [d for d in dirs if d != ".cache"] + (
                [".cache"] if (Path(folder) / ".cache").is_dir() else []
            )
        if rel_folder == ".cache":
            dirs[:] = [d for d in dirs if d != "huggingface"]
        for name in names:
            if os.path.isfile(os.path.join(folder, name)):
                yield f"{rel_folder}/{name}" if rel_folder else name


def fix_folder(
    dest: Path,
    report: VerifyReport,
    *,
    repo_id: str,
    repo_type: str = "model",
    token: str | None = None,
    endpoint: str | None = None,
) -> list[SyncResult]:
    """Refetch exactly the broken files of a folder: drop their metadata (so the sync cannot
    trust it) and sync just those paths at the commit their metadata named."""
    from .orchestrate import sync
    from .targets.local import LocalTarget

    target = LocalTarget(Path(report.root))
    for problem in report.broken:
        with contextlib.suppress(FileNotFoundError):
            target.metadata_path(problem.path).unlink()
    results = []
    for commit, paths in _by_commit(report.broken).items():
        results.append(
            sync(
                repo_id,
                target.root,
                repo_type=repo_type,
                revision=commit,
                include=tuple(escape_glob(p) for p in paths),
                token=token,
                endpoint=endpoint,
            )
        )
    return results


def _by_commit(problems: list[Problem]) -> dict[str, list[str]]:
    """Broken paths grouped by the commit that recorded them; unknown commits go with the
    commit most files name (a file whose metadata is gone was last synced with the rest)."""
    known = Counter(p.commit for p in problems if p.commit)
    fallback = known.most_common(1)[0][0] if known else "main"
    groups: dict[str, list[str]] = {}
    for problem in problems:
        groups.setdefault(problem.commit or fallback, []).append(problem.path)
    return groups


def escape_glob(path: str) -> str:
    """An include pattern that matches exactly `path` (fnmatch: `[*]` is a literal star)."""
    return re.sub(r"([*?\[])", r"[\1]", path)


# -- the HF cache ----------------------------------------------------------------------------


def cache_repos(root: Path, repo_id: str | None, repo_type: str) -> list[Path]:
    """The repo folders to verify: one, or every `models--…`/`datasets--…`/`spaces--…`."""
    if repo_id is not None:
        from .targets.cache import repo_folder_name

        folder = root / repo_folder_name(repo_id, repo_type)
        if not folder.is_dir():
            raise UsageError(f"{repo_type} {repo_id} is not in the cache at {root}")
        return [folder]
    if not root.is_dir():
        raise UsageError(f"no HF cache at {root}")
    return sorted(p for p in root.iterdir() if p.is_dir() and _CACHE_FOLDER.match(p.name))


def repo_of_folder(name: str) -> tuple[str, str]:
    """`models--org--name` -> ("org/name", "model")."""
    match = _CACHE_FOLDER.match(name)
    if not match:
        raise UsageError(f"{name!r} is not an HF cache repo folder")
    return match.group(2).replace("--", "/"), match.group(1)[:-1]


def verify_cache(
    cache_dir: Path | str | None = None,
    repo_id: str | None = None,
    repo_type: str = "model",
    *,
    extra: bool = False,
    workers: int | None = None,
    progress: HashProgress | None = None,
) -> VerifyReport:
    """Check every snapshot entry of one repo (or all) in the HF cache.

    Each blob is hashed once however many snapshots link it; a dangling link is missing.
    """
    from .targets.cache import cache_root

    root = cache_root(cache_dir)
    report = VerifyReport(str(root), extra_checked=extra)
    checks: list[_Check] = []
    hashed: set[str] = set()
    for storage in cache_repos(root, repo_id, repo_type):
        snapshots = storage / "snapshots"
        if not snapshots.is_dir():
            continue
        for snapshot in sorted(snapshots.iterdir()):
            if _COMMIT.match(snapshot.name) and snapshot.is_dir():
                _check_snapshot(storage, snapshot, report, checks, hashed, extra)
    _run_checks(checks, report, workers, progress or NullHashProgress())
    report.problems.sort(key=lambda p: (p.kind, p.repo or "", p.commit or "", p.path))
    return report


def _check_snapshot(
    storage: Path,
    snapshot: Path,
    report: VerifyReport,
    checks: list[_Check],
    hashed: set[str],
    extra: bool,
) -> None:
    commit = snapshot.name
    listing = {f.path: f for f in read_tree_cache(storage, commit) or ()}
    blobs = os.path.normpath(storage / "blobs")
    for path in _walk_entries(snapshot):
        entry = os.path.join(snapshot, *path.split("/"))
        remote = listing.get(path)
        base = dict(path=path, commit=commit, repo=storage.name)
        if os.path.islink(entry):
            target = os.path.normpath(os.path.join(os.path.dirname(entry), os.readlink(entry)))
            etag = os.path.basename(target)
            if os.path.dirname(target) != blobs:
                report.problems.append(
                    Problem(kind=UNVERIFIABLE, detail="links outside blobs/", **base)
                )
                continue
            if not os.path.isfile(target):
                problem = Problem(
                    kind=MISSING, detail=f"blob {etag[:12]} is missing", expected=etag, **base
                )
                report.problems.append(problem)
                continue
            disk = target
        else:
            if remote is None:
                kind = EXTRA if listing else UNVERIFIABLE
                if kind == EXTRA and not extra:
                    continue
                detail = "not in the commit's listing" if listing else "no cached listing"
                report.problems.append(Problem(kind=kind, detail=detail, **base))
                continue
            etag, disk = remote.etag, entry
        if extra and listing and remote is None:
            report.problems.append(
                Problem(kind=EXTRA, detail="not in the commit's listing", **base)
            )
        if remote is not None and remote.etag != etag:
            detail = f"links blob {etag[:12]}, the listing names {remote.etag[:12]}"
            report.problems.append(
                Problem(kind=MISMATCH, detail=detail, expected=remote.etag, **base)
            )
            continue
        if disk in hashed:
            report.checked += 1
            continue  # this blob is already being hashed; its problem names the first link
        hashed.add(disk)
        size = os.stat(disk).st_size
        if remote is not None and size != remote.size:
            detail = f"size {size}, expected {remote.size}"
            report.problems.append(
                Problem(kind=MISMATCH, detail=detail, expected=etag, on_disk=disk, **base)
            )
            continue
        problem = Problem(
            kind=MISMATCH,
            detail="content does not hash to its id",
            expected=etag,
            on_disk=disk,
            **base,
        )
        checks.append(_Check(disk, etag, size, problem))


def _walk_entries(snapshot: Path) -> Iterator[str]:
    """Every file or link below a snapshot folder, as repo paths (links are not followed)."""
    for folder, dirs, names in os.walk(snapshot):
        rel = os.path.relpath(folder, snapshot).replace(os.sep, "/")
        for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            yield name if rel == "." else f"{rel}/{name}"


def fix_cache(
    cache_dir: Path | str | None,
    report: VerifyReport,
    *,
    token: str | None = None,
    endpoint: str | None = None,
) -> list[SyncResult]:
    """Refetch exactly the broken cache entries: remove the bad bytes (a blob is shared by
    every snapshot linking it, so fixing it once fixes them all), then sync those paths at
    their commit — no ref moves, since a commit-sha revision writes none."""
    from .orchestrate import sync

    groups: dict[tuple[str, str], list[str]] = {}
    for problem in report.broken:
        if problem.on_disk:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(problem.on_disk)
        assert problem.repo and problem.commit
        groups.setdefault((problem.repo, problem.commit), []).append(problem.path)
    results = []
    for (folder, commit), paths in groups.items():
        repo_id, repo_type = repo_of_folder(folder)
        results.append(
            sync(
                repo_id,
                None,
                repo_type=repo_type,
                revision=commit,
                include=tuple(escape_glob(p) for p in paths),
                cache_dir=cache_dir,
                token=token,
                endpoint=endpoint,
            )
        )
    return results
