"""hfsync: rsync-style incremental sync for Hugging Face Hub repositories.

Library use: `hfsync.sync("gpt2", "./models/gpt2") -> SyncResult` (imported lazily so that
`import hfsync` stays cheap for the CLI's `--help`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

__all__ = ["sync", "SyncResult", "__version__"]

if TYPE_CHECKING:
    from .orchestrate import SyncResult, sync


def __getattr__(name: str) -> Any:
    if name in ("sync", "SyncResult"):
        from . import orchestrate

        return getattr(orchestrate, name)
    raise AttributeError(name)
