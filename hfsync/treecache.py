"""The per-commit listing cache, in the official client's `trees/<commit>.json` format.

Commits are immutable, so a listing fetched once never goes stale; reading it back lets a
re-sync of an unchanged revision make one API call and no listing call (docs/architecture.md,
"File identity"). Sharing the official format means `huggingface_hub` reuses ours and we
reuse theirs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from .errors import RemotePathError
from .files import RemoteFile, ValidatedListing, validate_listing

FORMAT_VERSION = 1


def tree_cache_path(folder: Path, commit: str) -> Path:
    return folder / "trees" / f"{commit}.json"


def read_tree_cache(folder: Path, commit: str) -> ValidatedListing | None:
    """The cached listing of `commit`, or None when absent, unreadable, of another format, or
    failing `validate_listing` (values are taken as stored, not coerced: a cache file is as
    untrusted as the API, since anything that can write the folder can write it)."""
    try:
        data = json.loads(tree_cache_path(folder, commit).read_text(encoding="utf-8"))
        if data.get("format_version") != FORMAT_VERSION:
            return None
        files = [
            RemoteFile(
                path=path,
                size=info["lfs_size"] if "lfs_size" in info else info["size"],
                blob_id=info["blob_id"],
                lfs_sha256=info.get("lfs_sha256"),
                xet_hash=info.get("xet_hash"),
            )
            for path, info in data["files"].items()
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    try:
        return validate_listing(files)  # validated once: the planner's own check is then free
    except RemotePathError:
        return None  # tampered or broken: discarded, and the caller fetches the listing again


def write_tree_cache(folder: Path, commit: str, files: Sequence[RemoteFile]) -> None:
    """Store the listing atomically; a failure to cache is never a sync failure."""
    entries = {}
    for remote in sorted(files, key=lambda f: f.path):
        info: dict = {"size": remote.size, "blob_id": remote.blob_id}
        if remote.lfs_sha256:
            info["lfs_sha256"] = remote.lfs_sha256
            info["lfs_size"] = remote.size
        if remote.xet_hash:
            info["xet_hash"] = remote.xet_hash
        entries[remote.path] = info
    import tempfile  # here: it imports shutil, bz2 and lzma, which a no-op re-sync never needs

    path = tree_cache_path(folder, commit)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"format_version": FORMAT_VERSION, "files": entries}, handle, indent=1)
        os.replace(tmp, path)
    except OSError:
        return
