"""The transfer executor: ranged, pooled, resumable, verified downloads (DESIGN §5)."""

from .engine import MAX_HTTP_SIZE, run_transfers
from .jobs import (
    FileJob,
    FileOutcome,
    NullProgress,
    ProgressSink,
    TransferConfig,
    TransferReport,
)

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
