"""The planner: a pure function from (remote listing, target state, options) to a Plan.

No I/O happens here, so `--dry-run` is just "print the plan", and the rules for what counts as
unchanged live in one place that tests can exercise with plain data (DESIGN §2, §3).
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import PurePosixPath, PureWindowsPath

from .errors import RemotePathError
from .hub import RemoteFile


class Action(str, Enum):
    NEW = "new"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DELETE = "delete"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class TargetFile:
    """What a target knows of one file it holds.

    `etag` is the content id the target can vouch for — from metadata that is still valid, or
    from hashing the file — and None when it does not know (e.g. the size already differs).
    `etag_from_hash` says the id was just computed, so metadata should be rewritten.
    `commit` is the commit its metadata names, if any.
    """

    path: str
    size: int
    etag: str | None = None
    etag_from_hash: bool = False
    commit: str | None = None


@dataclass(frozen=True)
class PlanOptions:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    delete: bool = False


@dataclass(frozen=True)
class PlanItem:
    """One decision, with the reason a user sees in `--dry-run` and `--json`."""

    path: str
    action: Action
    reason: str
    size: int
    remote: RemoteFile | None = None
    refresh_metadata: bool = False

    @property
    def transfers(self) -> bool:
        return self.action in (Action.NEW, Action.UPDATE)


@dataclass(frozen=True)
class Plan:
    commit: str
    items: tuple[PlanItem, ...] = field(default_factory=tuple)

    @property
    def transfers(self) -> list[PlanItem]:
        return [item for item in self.items if item.transfers]

    @property
    def deletes(self) -> list[PlanItem]:
        return [item for item in self.items if item.action is Action.DELETE]

    @property
    def refreshes(self) -> list[PlanItem]:
        return [item for item in self.items if item.refresh_metadata]

    @property
    def bytes_to_transfer(self) -> int:
        return sum(item.size for item in self.transfers)

    def counts(self) -> dict[str, int]:
        counter = Counter(item.action.value for item in self.items)
        return {action.value: counter.get(action.value, 0) for action in Action}


def check_remote_path(path: str) -> None:
    """Refuse a repo path that could land outside the destination on any OS.

    Remote listings are untrusted: `..`, absolute, drive/UNC paths, backslashes, NUL and empty
    segments are rejected before anything is written (as `huggingface_hub` does, plus the
    characters that would make the POSIX and Windows readings of a name disagree).
    """
    problem = None
    if not path:
        problem = "empty path"
    elif "\0" in path:
        problem = "NUL byte"
    elif "\\" in path:
        problem = "backslash"
    elif any(ord(ch) < 32 for ch in path):
        problem = "control character"
    else:
        parts = path.split("/")
        if path.startswith("/") or PurePosixPath(path).is_absolute():
            problem = "absolute path"
        elif any(part in ("", ".", "..") for part in parts):
            problem = "'..', '.' or empty segment"
        elif any(PureWindowsPath(part).drive or PureWindowsPath(part).root for part in parts):
            problem = "drive or UNC path"
        elif parts[0] == ".cache" and len(parts) > 1 and parts[1] == "huggingface":
            problem = "collides with the .cache/huggingface state folder"
    if problem:
        raise RemotePathError(
            f"refusing unsafe path from the Hub listing: {path!r} ({problem}); nothing was written"
        )


def _expand(pattern: str) -> str:
    return pattern + "*" if pattern.endswith("/") else pattern


def selected(path: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    """`hf download`'s allow/ignore semantics: kept if it matches an include (when any are
    given) and no exclude. `*` matches across `/`, and `dir/` means everything below `dir`."""
    include = list(include)
    if include and not any(fnmatch.fnmatch(path, _expand(p)) for p in include):
        return False
    return not any(fnmatch.fnmatch(path, _expand(p)) for p in exclude)


def make_plan(
    commit: str,
    remote: Iterable[RemoteFile],
    local: Mapping[str, TargetFile],
    options: PlanOptions = PlanOptions(),
) -> Plan:
    """Decide, for every remote and local file, what the sync will do and why."""
    remote_files = list(remote)
    for remote_file in remote_files:
        check_remote_path(remote_file.path)
    remote_paths = {remote_file.path for remote_file in remote_files}
    items: list[PlanItem] = []
    for remote_file in sorted(remote_files, key=lambda f: f.path):
        if not selected(remote_file.path, options.include, options.exclude):
            items.append(
                PlanItem(
                    remote_file.path, Action.SKIPPED, "excluded", remote_file.size, remote_file
                )
            )
            continue
        items.append(_compare(commit, remote_file, local.get(remote_file.path)))
    if options.delete:
        for path in sorted(set(local) - remote_paths):
            if selected(path, options.include, options.exclude):
                items.append(
                    PlanItem(path, Action.DELETE, "not in source (--delete)", local[path].size)
                )
    return Plan(commit=commit, items=tuple(items))


def _compare(commit: str, remote: RemoteFile, held: TargetFile | None) -> PlanItem:
    if held is None:
        return PlanItem(remote.path, Action.NEW, "new file", remote.size, remote)
    if held.size != remote.size:
        return PlanItem(remote.path, Action.UPDATE, "size differs", remote.size, remote)
    if held.etag != remote.etag:
        reason = "content differs" if held.etag else "content unknown"
        return PlanItem(remote.path, Action.UPDATE, reason, remote.size, remote)
    refresh = held.etag_from_hash or held.commit != commit
    return PlanItem(remote.path, Action.UNCHANGED, "identical", remote.size, remote, refresh)
