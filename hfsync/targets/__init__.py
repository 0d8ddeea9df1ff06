"""Destinations: a local folder, the HF cache (and, through `hfsync.remote`, an SSH host).

`open_target` is the one place that turns the DEST argument into a target.
"""

from __future__ import annotations

from pathlib import Path

from .base import Placement, Target, TargetState

__all__ = ["Placement", "Target", "TargetState", "open_target"]


def open_target(
    dest: Path | str | None,
    *,
    repo_id: str,
    repo_type: str,
    cache_dir: Path | str | None = None,
) -> Target:
    """A local folder when DEST is given, else the HF cache (`cache_dir` or HF_HUB_CACHE)."""
    if dest is not None:
        from .local import LocalTarget

        return LocalTarget(Path(dest))
    from .cache import CacheTarget

    return CacheTarget(repo_id, repo_type, cache_dir)
