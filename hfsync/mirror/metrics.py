"""What a mirror run leaves for monitoring: the state file, JSON log lines, a Prometheus file.

Staleness alerts (`time() - hfsync_mirror_last_success_timestamp_seconds > 7200`) only work if
a failing run keeps each repo's *older* success time. So the last success, commit, files and
bytes of every item live in a small state file beside the config's lock, updated after each
run; if it is lost, the previous metrics file is read back instead. The metrics file is
written to a temp name and renamed, so node_exporter's textfile collector never reads half a
file (docs/architecture.md, "Mirrors, verify, doctor").
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DiskError

if TYPE_CHECKING:
    from .run import ItemResult, MirrorReport

STATE_VERSION = 1
_SAMPLE = re.compile(r"^(\w+)\{(.*)\}\s+(\S+)\s*$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# -- state -----------------------------------------------------------------------------------


def read_state(path: Path) -> dict[str, dict[str, Any]]:
    """{item key: {last_success, last_commit, files, size_bytes}}; {} when absent/unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        return {}
    items = data.get("items")
    return (
        {k: v for k, v in items.items() if isinstance(v, dict)} if isinstance(items, dict) else {}
    )


def write_state(path: Path, state: dict[str, dict[str, Any]]) -> None:
    _atomic_write(path, json.dumps({"version": STATE_VERSION, "items": state}, indent=1) + "\n")


def previous_successes(metrics_file: Path | None) -> dict[tuple[tuple[str, str], ...], float]:
    """Last-success timestamps from an earlier metrics file, keyed by their label set."""
    if metrics_file is None:
        return {}
    try:
        text = metrics_file.read_text(encoding="utf-8")
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) == "hfsync_mirror_last_success_timestamp_seconds":
            labels = tuple(sorted((k, _unescape(v)) for k, v in _LABEL.findall(match.group(2))))
            try:
                found[labels] = float(match.group(3))
            except ValueError:
                continue
    return found


# -- JSON log lines --------------------------------------------------------------------------


def append_log(path: Path, report: MirrorReport) -> None:
    """One JSON line per item, then one for the run, appended (`tail -f`, log shippers)."""
    lines = [json.dumps({"event": "repo", **item.to_json()}) for item in report.items]
    lines.append(json.dumps({"event": "run", **report.summary_json()}))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
    except OSError as exc:
        raise DiskError(f"cannot append to the log file {path}: {exc.strerror or exc}") from exc


# -- Prometheus textfile ---------------------------------------------------------------------

_METRICS = (
    ("last_success_timestamp_seconds", "Unix time of the item's last successful refresh "
     "(0: never); kept across failing runs.", lambda r: r.last_success or 0),
    ("last_run_timestamp_seconds", "Unix time the item's last refresh finished.",
     lambda r: r.finished),
    ("last_run_status", "Exit code of the item's last refresh (0 = success; see the exit codes).",
     lambda r: r.exit_code),
    ("last_run_duration_seconds", "Seconds the item's last refresh took.", lambda r: r.duration),
    ("last_run_bytes", "Bytes downloaded by the item's last refresh.", lambda r: r.bytes),
    ("last_run_files_changed", "Files downloaded or deleted by the item's last refresh.",
     lambda r: r.files_changed),
    ("files", "Files the destination holds for the item (as of its last success).",
     lambda r: r.files),
    ("size_bytes", "Bytes the destination holds for the item (as of its last success).",
     lambda r: r.size_bytes),
)  # fmt: skip


def render_metrics(report: MirrorReport) -> str:
    """The textfile: one gauge family per measure, one sample per item, plus the run's own."""
    out: list[str] = []
    for name, help_text, value in _METRICS:
        full = f"hfsync_mirror_{name}"
        out += [f"# HELP {full} {help_text}", f"# TYPE {full} gauge"]
        for item in report.items:
            if item.status == "skipped" and name.startswith("last_run"):
                continue
            out.append(f"{full}{{{_labels(item)}}} {_number(value(item))}")
    run = (
        ("run_timestamp_seconds", "Unix time the last mirror run finished.", report.finished),
        ("run_exit_code", "Exit code of the last mirror run.", report.exit_code),
        ("run_duration_seconds", "Seconds the last mirror run took.", report.duration),
    )
    for name, help_text, number in run:
        full = f"hfsync_mirror_{name}"
        out += [f"# HELP {full} {help_text}", f"# TYPE {full} gauge", f"{full} {_number(number)}"]
    return "\n".join(out) + "\n"


def write_metrics(path: Path, report: MirrorReport) -> None:
    _atomic_write(path, render_metrics(report))


def label_set(item: ItemResult) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(_label_values(item).items()))


def _label_values(item: ItemResult) -> dict[str, str]:
    return {
        "repo": item.repo_id,
        "repo_type": item.repo_type,
        "revision": item.revision,
        "dest": item.dest,
    }


def _labels(item: ItemResult) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in _label_values(item).items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def _atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file in the same folder and one rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{int(time.time() * 1e6)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)  # node_exporter often runs as another user
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise DiskError(f"cannot write {path}: {exc.strerror or exc}") from exc
