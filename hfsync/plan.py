"""The planner: a pure function from (remote listing, target state, options) to a Plan.

No I/O happens here, so `--dry-run` is just "print the plan", and the rules for what counts as
unchanged live in one place that tests can exercise with plain data (docs/architecture.md,
"Pipeline" and "File identity").
"""

from __future__ import annotations

import fnmatch
import operator
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import NoReturn

from .errors import RemotePathError
from .files import RemoteFile, TargetFile, check_listing

__all__ = [
    "Action",
    "Plan",
    "PlanItem",
    "PlanOptions",
    "TargetFile",
    "check_fold_collisions",
    "fold_key",
    "make_plan",
    "safe_local_path",
    "selected",
]


class Action(str, Enum):
    NEW = "new"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DELETE = "delete"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class PlanOptions:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    delete: bool = False
    # The target's filesystem treats names equal under `fold_key` as one file (case-insensitive
    # or normalizing): a held `README.md` *is* the listed `readme.md`, never "not in source".
    fold_names: bool = False


@dataclass(frozen=True)
class PlanItem:
    """One decision, with the reason a user sees in `--dry-run` and `--json`."""

    path: str
    action: Action
    reason: str
    size: int
    remote: RemoteFile | None = None
    refresh_metadata: bool = False
    held: TargetFile | None = None  # what the target reported, for the executor's record step

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


def _expand(pattern: str) -> str:
    return pattern + "*" if pattern.endswith("/") else pattern


def selected(path: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    """`hf download`'s allow/ignore semantics: kept if it matches an include (when any are
    given) and no exclude. `*` matches across `/`, and `dir/` means everything below `dir`."""
    if not include and not exclude:
        return True  # no filters (the common case): asked once per listed file, twice a run
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
    remote_files = check_listing(remote)  # free for a listing already validated
    items: list[PlanItem] = []
    for remote_file in sorted(remote_files, key=_by_path):
        if not selected(remote_file.path, options.include, options.exclude):
            items.append(
                PlanItem(
                    remote_file.path, Action.SKIPPED, "excluded", remote_file.size, remote_file
                )
            )
            continue
        items.append(_compare(commit, remote_file, local.get(remote_file.path)))
    if options.delete:
        remote_paths = {remote_file.path for remote_file in remote_files}
        remote_keys = {fold_key(path) for path in remote_paths} if options.fold_names else set()
        for path in sorted(set(local) - remote_paths):
            if options.fold_names and fold_key(path) in remote_keys:
                continue  # the same file as a listed one on this filesystem
            if not selected(path, options.include, options.exclude):
                continue
            held = local[path]
            if not safe_local_path(path):
                # Only a broken target reports such a name; deleting it could reach outside.
                items.append(PlanItem(path, Action.SKIPPED, "kept: unsafe local name", held.size))
                continue
            items.append(
                PlanItem(path, Action.DELETE, "not in source (--delete)", held.size, held=held)
            )
    return Plan(commit=commit, items=tuple(items))


_by_path = operator.attrgetter("path")


def _compare(commit: str, remote: RemoteFile, held: TargetFile | None) -> PlanItem:
    if held is None:
        return PlanItem(remote.path, Action.NEW, "new file", remote.size, remote)
    if held.size != remote.size:
        return PlanItem(remote.path, Action.UPDATE, "size differs", remote.size, remote, held=held)
    if held.etag != remote.etag:
        reason = "content differs" if held.etag else "content unknown"
        return PlanItem(remote.path, Action.UPDATE, reason, remote.size, remote, held=held)
    # Bookkeeping is written only where it is missing or stale. Metadata naming an older commit
    # is still right about the content; rewriting thousands of such files on every new commit
    # would make a one-file update cost O(repo).
    refresh = held.needs_record
    return PlanItem(remote.path, Action.UNCHANGED, "identical", remote.size, remote, refresh, held)


def safe_local_path(path: str) -> bool:
    """Whether a path a target reported may be deleted as "not in source".

    Local names are not remote paths: a file called `bad<newline>name` or `a<backslash>b` is a
    real file inside the destination, and `--delete` may remove it like any other (a walk of
    the folder found it there). What must never be deleted is a path that leaves the
    destination or touches hfsync's own state, which a folder walk cannot produce but a broken
    target report could.
    """
    if not path or "\0" in path or path.startswith("/"):
        return False
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return False
    return not (len(parts) > 1 and parts[0] == ".cache" and parts[1] == "huggingface")


def fold_key(path: str) -> str:
    """The name a case-insensitive or normalizing filesystem actually stores a path under.

    NFC first, so `é` typed as one code point or as `e` + combining accent compare equal (what
    macOS and ext4's casefold do), then casefold, which is stronger than lower() (`ß` ~ `ss`).
    """
    return unicodedata.normalize("NFC", path).casefold()


def check_fold_collisions(paths: Iterable[str]) -> None:
    """Refuse paths that would land on the same file where names are compared by `fold_key`.

    On such a filesystem `README.md` and `readme.md` are one file: the second download would
    silently replace the first and the folder would match neither listing entry; likewise a
    file `Data` and a file `data/x` need `data` to be a file and a folder at once. Raises
    RemotePathError (exit 5) naming both paths; pure, called before anything is written.
    """
    files: dict[str, str] = {}
    for path in sorted(paths):
        other = files.setdefault(fold_key(path), path)
        if other != path:
            _fold_collision(other, path)
    for key, path in files.items():
        cut = key.rfind("/")
        while cut > 0:
            other = files.get(key[:cut])
            if other is not None:
                _fold_collision(other, path)
            cut = key.rfind("/", 0, cut)


def _fold_collision(first: str, second: str) -> NoReturn:
    raise RemotePathError(
        f"refusing listing from the Hub: {first!r} and {second!r} name the same file on this "
        "case-insensitive filesystem; nothing was written"
    )
