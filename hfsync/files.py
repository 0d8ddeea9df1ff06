"""The data the planner, the targets and the executors share, and the rules for trusting it.

`RemoteFile` is one file of a commit as the Hub lists it; `TargetFile` is what a target holds
at a path. The path and id rules live here, not in the Hub client, because every consumer of a
listing (the planner, every target, the remote helper) must apply them and none of them should
have to import an HTTP library to do so. Nothing in this module does I/O.
"""

from __future__ import annotations

import functools
import ntpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn

from .errors import RemotePathError, UsageError

REPO_TYPES = ("model", "dataset", "space")
_REPO_ID = re.compile(r"[\w.\-]{1,96}(/[\w.\-]{1,96})?")
_CONTROL = re.compile(r"[\x00-\x1f]")
_DOT_OR_EMPTY = frozenset(("", ".", ".."))


@dataclass(frozen=True)
class RemoteFile:
    """One file of a commit, as the tree listing describes it.

    `blob_id` is the git blob sha1 (for LFS files: of the pointer); `lfs_sha256` is set for LFS
    files. `etag` is the content id the Hub's resolve endpoint reports and the local metadata
    stores: the sha256 for LFS files, the git sha1 for the rest.
    """

    path: str
    size: int
    blob_id: str
    lfs_sha256: str | None = None
    xet_hash: str | None = None

    @property
    def is_lfs(self) -> bool:
        return self.lfs_sha256 is not None

    @property
    def etag(self) -> str:
        return self.lfs_sha256 or self.blob_id


@dataclass(frozen=True)
class TargetFile:
    """What a target knows of one file it holds.

    `etag` is the content id the target can vouch for — from metadata that is still valid, or
    from hashing the file — and None when it does not know (e.g. the size already differs).
    `needs_record` says the content is right but the target's bookkeeping is not (metadata to
    rewrite after a hash, a cached blob to link into the snapshot): no bytes, just a record.
    `commit` is the commit its metadata names, if any. `source` is where the target found the
    content when it is not yet at its place (the HF cache's blob or another snapshot's copy):
    the scan result carries it to `mark_current`, so a target keeps no hidden state between
    the two calls.
    """

    path: str
    size: int
    etag: str | None = None
    needs_record: bool = False
    commit: str | None = None
    source: str | None = None


def validate_repo_id(repo_id: str) -> str:
    """Refuse a repo id that is not `name` or `org/name` in the Hub's alphabet.

    It ends up in URLs and in cache folder names (`models--org--name`), so `..`, `--` and
    extra slashes are rejected up front, as `huggingface_hub.validate_repo_id` does.
    """
    if not _REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id:
        raise UsageError(f"invalid repo id {repo_id!r}: expected 'name' or 'org/name'")
    return repo_id


@functools.lru_cache(maxsize=1 << 16)
def check_remote_path(path: str) -> None:
    """Refuse a repo path that could land outside the destination on any OS.

    Remote listings are untrusted: `..`, absolute, drive/UNC paths, backslashes, NUL and empty
    segments are rejected before anything is written (as `huggingface_hub` does, plus the
    characters that would make the POSIX and Windows readings of a name disagree). Cached,
    because every scan and plan asks again for every path of the listing.
    """
    problem = None
    if not path:
        problem = "empty path"
    elif "\0" in path:
        problem = "NUL byte"
    elif "\\" in path:
        problem = "backslash"
    elif _CONTROL.search(path):
        problem = "control character"
    elif path.startswith("/"):
        problem = "absolute path"
    elif path[0] == "." or "//" in path or "/." in path or path.endswith("/") or ":" in path:
        # Only such a path can hold a '', '.' or '..' segment, a drive or the state folder;
        # the others (nearly all) skip the split.
        parts = path.split("/")
        if not _DOT_OR_EMPTY.isdisjoint(parts):
            problem = "'..', '.' or empty segment"
        elif ":" in path and any(":" in part and ntpath.splitdrive(part)[0] for part in parts):
            problem = "drive path"
        elif parts[0] == ".cache" and len(parts) > 1 and parts[1] == "huggingface":
            problem = "collides with the .cache/huggingface state folder"
    if problem:
        raise RemotePathError(
            f"refusing unsafe path from the Hub listing: {path!r} ({problem}); nothing was written"
        )


def check_listing(files: Iterable[RemoteFile]) -> ValidatedListing:
    """Refuse the whole listing if any entry is unsafe or unverifiable, before anything looks
    at the target (the full rules: `validate_listing`); returns it as a `ValidatedListing`."""
    return validate_listing(files)


class ValidatedListing(tuple):  # tuple[RemoteFile, ...]
    """A listing that passed `validate_listing`, which alone makes one.

    A tuple of frozen `RemoteFile`s cannot change after the check, so it stays valid: handing
    it to `validate_listing` again (the planner, the orchestration, the tree cache all ask)
    costs nothing instead of a pass over every entry (issue 12: three passes per no-op).
    """

    __slots__ = ()


_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def validate_listing(files: Iterable[RemoteFile]) -> ValidatedListing:
    """Refuse a listing hfsync could not verify a download against, or could not place.

    Every byte is checked against the listed content id, so an id that is not one (not 40 or
    64 lowercase hex) would silently turn verification into a size check; a negative, float or
    bool size would break range arithmetic and the size check itself; a duplicate path, or a
    path that is a file and also a folder of another file (`a` and `a/b`), makes the target's
    final state depend on the order files happen to land. Raises RemotePathError (exit 5)
    naming the first bad entry; pure, so every entry point (API listing, cached
    `trees/<commit>.json`, the orchestration) applies the same rules. Returns the entries as
    a `ValidatedListing`; one passed in is returned as it is.
    """
    if type(files) is ValidatedListing:
        return files
    files = tuple(files)
    seen: set[str] = set()
    hex40, hex64 = _HEX40.fullmatch, _HEX64.fullmatch  # one lookup, not one per entry
    for remote_file in files:
        path = remote_file.path
        if not isinstance(path, str):
            _unverifiable(path, "the path is not a string")
        check_remote_path(path)
        size = remote_file.size
        if type(size) is not int or size < 0:
            _unverifiable(path, f"size {_short(size)} is not a non-negative integer")
        blob_id = remote_file.blob_id
        if not isinstance(blob_id, str) or not hex40(blob_id):
            _unverifiable(path, f"blob id {_short(blob_id)} is not 40 lowercase hex digits")
        sha256 = remote_file.lfs_sha256
        if sha256 is not None and (not isinstance(sha256, str) or not hex64(sha256)):
            _unverifiable(path, f"LFS sha256 {_short(sha256)} is not 64 lowercase hex digits")
        if path in seen:
            _unverifiable(path, "listed twice")
        seen.add(path)
    for remote_file in files:  # listing order, so the message names the same entry every run
        path = remote_file.path
        cut = path.rfind("/")
        while cut > 0:
            if path[:cut] in seen:
                _unverifiable(path, f"{path[:cut]!r} is listed both as a file and as its folder")
            cut = path.rfind("/", 0, cut)
    return ValidatedListing(files)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _unverifiable(path: object, problem: str) -> NoReturn:
    raise RemotePathError(
        f"refusing unsafe or unverifiable listing from the Hub: {_short(path)}: {problem}; "
        "nothing was written"
    )
