"""Free-space check before a transfer starts, so a full disk fails fast and cleanly (exit 6)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import DiskError
from ..units import human_size


def _existing_ancestor(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        if candidate.exists():
            return candidate
    return Path("/")


def allocated_bytes(path: Path) -> int:
    """Bytes a (possibly preallocated or sparse) file already holds on disk; 0 if absent."""
    try:
        return os.stat(path).st_blocks * 512
    except (FileNotFoundError, AttributeError):
        return 0


def check_free_space(needs: Iterable[tuple[Path, int]]) -> None:
    """Raise DiskError when a filesystem lacks room for the bytes still to be written to it.

    `needs` holds (part path, bytes still needed). Paths are grouped by filesystem, so many files
    on one disk are summed against that disk's free space.
    """
    per_folder: dict[Path, int] = {}  # thousands of small files share a handful of folders
    for path, nbytes in needs:
        if nbytes > 0:
            per_folder[path.parent] = per_folder.get(path.parent, 0) + nbytes
    per_fs: dict[int, tuple[Path, int]] = {}
    for folder, nbytes in per_folder.items():
        anchor = _existing_ancestor(folder)
        dev = os.stat(anchor).st_dev
        prev = per_fs.get(dev)
        per_fs[dev] = (anchor if prev is None else prev[0], nbytes + (prev[1] if prev else 0))
    for anchor, needed in per_fs.values():
        st = os.statvfs(anchor)
        available = st.f_bavail * st.f_frsize
        if needed > available:
            raise DiskError(
                f"not enough disk space in {anchor}: need {human_size(needed)} ({needed} bytes), "
                f"available {human_size(available)} ({available} bytes)"
            )
