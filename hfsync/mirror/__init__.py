"""`hfsync mirror`: keep a set of repos current from cron (docs/architecture.md, "Mirrors,
verify, doctor").

`config` parses and checks the TOML config, `run` is the loop (one lock, per-item isolation,
the report), `snapshots` the atomic `current` folders, `metrics` the state file, JSON log lines
and the Prometheus textfile. The layer sits above the sync orchestration and below the CLI.
"""

from __future__ import annotations

from .config import MirrorConfig, MirrorItem, load_config
from .run import ItemResult, MirrorReport, run_mirror

__all__ = ["ItemResult", "MirrorConfig", "MirrorItem", "MirrorReport", "load_config", "run_mirror"]
