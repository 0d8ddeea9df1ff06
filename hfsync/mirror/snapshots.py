"""Atomic folder destinations (`atomic = true`): readers never see a half-updated tree.

Layout on disk (docs/architecture.md, "Mirrors, verify, doctor"):

    DEST/
      current -> <commit>          relative symlink; switched with one rename
      <commit>/                    a complete `--local-dir` folder of that commit (its own
                                   .cache/huggingface metadata, so `hfsync verify` works on it)
      <older commit>/              the previous snapshot, kept until the next success (keep = N)
      .<commit>.partial/           a snapshot being built (resumed by the next run)
      .hfsync/lock                 one refresh of DEST at a time
      .hfsync/history.json         commits in the order they became current (for keep = N)
      .hfsync/source.json          which repo this is (`hfsync verify --fix` reads it)

A refresh to a new commit builds `.<commit>.partial` beside the current snapshot, hard-linking
every file whose content id is unchanged from it (rsync `--link-dest` style: no second copy on
disk, and no shared inode is ever written: a changed file arrives as a new file moved over the
link), syncs the rest, checks the result against the listing, renames it to `<commit>`, then
points `current` at it by creating a symlink under a temp name and `os.replace`-ing it over
`current`. A reader that resolves `current` once reads one commit to the end.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DiskError, IntegrityError, UsageError
from ..files import RemoteFile
from ..plan import selected
from ..targets.base import lock_file
from ..targets.local import LocalTarget
from ..treecache import write_tree_cache
from ..verify import verify_folder
from .config import MirrorItem

if TYPE_CHECKING:
    from ..hub import HubClient
    from ..orchestrate import SyncResult
    from ..transfer.jobs import ProgressSink, TransferConfig

CURRENT = "current"
META_DIR = ".hfsync"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def current_commit(dest: Path) -> str | None:
    """The commit `DEST/current` points at, or None when there is no snapshot yet."""
    try:
        name = os.path.basename(os.readlink(dest / CURRENT))
    except OSError:
        return None
    return name if _COMMIT.match(name) else None


def refresh(
    item: MirrorItem,
    *,
    client: HubClient,
    config: TransferConfig,
    progress: ProgressSink | None = None,
) -> SyncResult:
    """Bring `item.dest/current` to the commit `item.revision` names now (see module doc)."""
    from ..orchestrate import sync

    assert item.dest is not None
    dest = item.dest
    _check_layout(dest)
    with _errors(dest):
        (dest / META_DIR).mkdir(parents=True, exist_ok=True)
    with lock_file(dest / META_DIR / "lock", f"snapshots in {dest}"):
        commit = client.resolve_revision(item.repo_id, item.repo_type, item.revision)
        _write_source(dest, item)
        held = current_commit(dest)
        final = dest / commit
        if held == commit:
            build = final  # same commit: only repairs, each an atomic per-file replace
        elif final.is_dir():
            build = final  # an older kept snapshot of this commit: complete, not current
        else:
            build = dest / f".{commit}.partial"
        files = client.list_files(item.repo_id, item.repo_type, commit)
        wanted = [f for f in files if selected(f.path, item.include, item.exclude)]
        if build != final or held != commit:
            with _errors(build):
                build.mkdir(exist_ok=True)
                write_tree_cache(build / ".cache" / "huggingface", commit, files)
                if held is not None:
                    link_unchanged(dest / held, build, wanted)
        result = sync(
            item.repo_id,
            build,
            repo_type=item.repo_type,
            revision=commit,  # pinned: the folder's name must be the commit it holds
            include=item.include,
            exclude=item.exclude,
            delete=True,  # a snapshot holds exactly its commit's selected files
            max_delete=item.max_delete,
            config=config,
            progress=progress,
            client=client,
        )
        _check_complete(build, wanted, hash_files=item.verify == "hash")
        if held != commit:
            with _errors(final):
                if build != final:
                    os.rename(build, final)
                switch(dest, commit)
                _prune(dest, commit, item.keep)
        return result


def plan_refresh(item: MirrorItem, *, client: HubClient) -> SyncResult:
    """What `refresh` would change (`mirror --dry-run`): the plan of the current snapshot
    against the commit the revision names now (all new when there is none). Touches nothing:
    no lock, no `.hfsync`, no build folder."""
    from ..orchestrate import sync

    assert item.dest is not None
    _check_layout(item.dest)
    held = current_commit(item.dest)
    folder = item.dest / held if held is not None else item.dest / CURRENT
    return sync(
        item.repo_id,
        folder,
        repo_type=item.repo_type,
        revision=item.revision,
        include=item.include,
        exclude=item.exclude,
        delete=True,
        dry_run=True,
        client=client,
    )


def link_unchanged(old: Path, new: Path, wanted: list[RemoteFile]) -> int:
    """Hard-link into `new` every wanted file `old` holds with the same content id; returns
    how many. The metadata is copied with its timestamp, so the sync trusts the link exactly
    as it trusted the original. Across filesystems the file is copied instead."""
    source, target = LocalTarget(old), LocalTarget(new)
    linked = 0
    for remote in wanted:
        src = source.file_path(remote.path)
        meta = source.read_metadata(remote.path)
        if meta is None or meta.etag != remote.etag:
            continue
        try:
            stat = src.stat()
        except OSError:
            continue
        if stat.st_size != remote.size or stat.st_mtime - 1 > meta.timestamp:
            continue
        dst = target.file_path(remote.path)
        if dst.exists():
            continue  # a resumed build already has it
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copy2(src, dst)  # keeps the mtime, so the copied metadata stays valid
        meta_dst = target.metadata_path(remote.path)
        meta_dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source.metadata_path(remote.path), meta_dst)
        linked += 1
    return linked


def switch(dest: Path, commit: str) -> None:
    """Point `DEST/current` at `commit` with one rename: never absent, never half-written."""
    tmp = dest / f".{CURRENT}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(commit, tmp)
    os.replace(tmp, dest / CURRENT)
    _append_history(dest, commit)


def _check_layout(dest: Path) -> None:
    if os.path.lexists(dest / CURRENT) and not (dest / CURRENT).is_symlink():
        raise UsageError(f"{dest / CURRENT} exists and is not a symlink; atomic needs DEST free")
    if (dest / ".cache" / "huggingface").is_dir():
        raise UsageError(
            f"{dest} holds a plain synced folder; atomic snapshots need a folder of their own"
        )


def _check_complete(build: Path, wanted: list[RemoteFile], *, hash_files: bool) -> None:
    """The snapshot about to become current holds every wanted file with its recorded id."""
    report = verify_folder(
        build, hash_files=hash_files, expected={f.path: (f.etag, f.size) for f in wanted}
    )
    if report.broken:
        first = report.broken[0]
        raise IntegrityError(
            f"snapshot {build.name} failed its check ({len(report.broken)} files; "
            f"{first.path}: {first.detail}); `current` was not switched"
        )


def _history(dest: Path) -> list[str]:
    try:
        data = json.loads((dest / META_DIR / "history.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return (
        [c for c in data if isinstance(c, str) and _COMMIT.match(c)]
        if isinstance(data, list)
        else []
    )


def _append_history(dest: Path, commit: str) -> None:
    history = [c for c in _history(dest) if c != commit] + [commit]
    _write_json(dest / META_DIR / "history.json", history)


def _write_source(dest: Path, item: MirrorItem) -> None:
    source = {"repo_id": item.repo_id, "repo_type": item.repo_type, "revision": item.revision}
    _write_json(dest / META_DIR / "source.json", source)


def read_source(dest: Path) -> dict | None:
    """The repo an atomic destination mirrors (for `hfsync verify --fix`), if recorded."""
    try:
        data = json.loads((dest / META_DIR / "source.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _prune(dest: Path, commit: str, keep: int) -> None:
    """Remove snapshots beyond the newest `keep` (current included) and abandoned builds.

    Only folders this module made are touched: commits from the history, `.<sha>.partial`.
    """
    history = _history(dest)
    kept = set(history[-keep:]) | {commit}
    for old in history:
        if old not in kept:
            shutil.rmtree(dest / old, ignore_errors=True)
    if len(history) > keep:
        _write_json(dest / META_DIR / "history.json", [c for c in history if c in kept])
    for entry in os.scandir(dest):
        if entry.name.startswith(".") and entry.name.endswith(".partial"):
            if _COMMIT.match(entry.name[1 : -len(".partial")]):
                shutil.rmtree(entry.path, ignore_errors=True)


@contextlib.contextmanager
def _errors(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise DiskError(f"cannot write {path}: {exc.strerror or exc}") from exc
