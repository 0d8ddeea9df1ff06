"""The transfer executor: ranged, pooled, resumable, verified downloads.

See docs/architecture.md, "Transfers".

The engine is imported on first use, so commands that move no bytes (a no-op re-sync, `info`,
`--dry-run`) do not pay for loading it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .jobs import (
    FileJob,
    FileOutcome,
    NullProgress,
    ProgressSink,
    TransferConfig,
    TransferReport,
)

if TYPE_CHECKING:
    from .engine import MAX_HTTP_SIZE, run_transfers

__all__ = [
    "MAX_HTTP_SIZE",
    "FileJob",
    "FileOutcome",
    "NullProgress",
    "ProgressSink",
    "TransferConfig",
    "TransferReport",
    "run_transfers",
]


def __getattr__(name: str) -> Any:
    if name in ("run_transfers", "MAX_HTTP_SIZE"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(name)
