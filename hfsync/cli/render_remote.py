"""Text and JSON for remote pulls and many-host runs of `to-remote` (pure functions of the
results, like `render`), and the one-line-per-host progress bars of a fleet."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from ..transfer.jobs import FileJob
from ..units import human_size
from .render import printable

_VERBS = {"new": "new", "update": "update", "unchanged": "unchanged", "delete": "delete"}


def pull_plan_lines(doc: dict[str, Any]) -> list[str]:
    """The host's plan, one line per file, as `sync --dry-run` prints it."""
    lines = []
    for f in doc.get("files", ()):
        verb = "skip" if f.get("action") == "skipped" else _VERBS.get(f.get("action"), "?")
        lines.append(
            f"{verb:<9} {human_size(int(f.get('size', 0))):>10}  {printable(str(f.get('path')))}"
            f"  ({f.get('reason', '')})"
        )
    return lines


def _counts_text(counts: dict[str, int]) -> tuple[int, str]:
    files = sum(counts.get(k, 0) for k in ("new", "update", "unchanged"))
    parts = [f"{counts.get('new', 0)} new"]
    if counts.get("update"):
        parts.append(f"{counts['update']} updated")
    parts.append(f"{counts.get('unchanged', 0)} unchanged")
    if counts.get("delete"):
        parts.append(f"{counts['delete']} deleted")
    if counts.get("skipped"):
        parts.append(f"{counts['skipped']} excluded")
    return files, ", ".join(parts)


def pull_summary_line(result: Any) -> str:  # a PullResult
    """'5 files: 5 new, 0 unchanged; 3.0 MiB downloaded by the host in 1.2 s (2.5 MiB/s)'."""
    doc = result.doc
    files, parts = _counts_text(doc.get("counts", {}))
    if doc.get("dry_run"):
        planned = human_size(int(doc.get("bytes_planned", 0)))
        return f"dry run: {files} files: {parts}; the host would download {planned}"
    moved = int(doc.get("bytes_transferred", 0))
    took = float(doc.get("duration_s", 0.0))
    rate = f" ({human_size(moved / took)}/s)" if moved and took > 0 else ""
    return (
        f"{files} files: {parts}; {human_size(moved)} downloaded by the host in {took:.1f} s{rate}"
    )


def pull_json(result: Any) -> dict[str, Any]:  # a PullResult
    """The host's own `--json` document, with where it ran and how it got there."""
    return {
        **result.doc,
        "target": result.target,
        "host": result.host,
        "via": "pull",
        "via_reason": result.via_reason,
        "archive_sent": result.zip_sent,
        "local_duration_s": round(result.duration, 3),
        "notes": result.notes,
    }


def _pulled(out: Any) -> bool:
    """Whether the host ran the pull (a dry run that would pull is planned by the push path,
    so its result is a push result even though `via` says pull)."""
    return hasattr(out.result, "doc")


def host_json(out: Any) -> dict[str, Any]:  # a fleet.HostOutcome
    from ..fleet import host_error_message
    from .render import push_result_json

    entry: dict[str, Any] = {
        "host": out.display,
        "ssh_command": out.ssh_command,
        "via": out.via or None,
        "via_reason": out.via_reason,
        "status": out.status,
        "exit_code": out.exit_code,
        "duration_s": round(out.duration, 3),
    }
    if out.error is not None:
        entry["error"] = {
            "kind": type(out.error).__name__,
            "message": host_error_message(out),
            "exit_code": out.exit_code,
        }
    if out.result is not None:
        entry["result"] = pull_json(out.result) if _pulled(out) else push_result_json(out.result)
    return entry


def fleet_json(fleet: Any) -> dict[str, Any]:  # a fleet.FleetResult
    return {
        "ok": fleet.exit_code == 0,
        "exit_code": fleet.exit_code,
        "commit": fleet.commit,
        "duration_s": round(fleet.duration, 3),
        "hosts": [host_json(h) for h in fleet.hosts],
    }


def _moved(out: Any) -> str:
    if out.result is None:
        return "-"
    if _pulled(out):
        return human_size(int(out.result.doc.get("bytes_transferred", 0)))
    return human_size(out.result.bytes_pushed)


def _files(out: Any) -> str:
    if out.result is None:
        return "-"
    counts = out.result.doc.get("counts", {}) if _pulled(out) else out.result.plan.counts()
    changed = counts.get("new", 0) + counts.get("update", 0)
    total = changed + counts.get("unchanged", 0)
    return f"{changed}/{total}"


def host_line(out: Any) -> str:
    """One line per finished host (what a log without a terminal gets)."""
    from ..fleet import host_error_message

    if out.error is not None:
        return f"{printable(out.display)}: {out.status} (exit {out.exit_code}): " + printable(
            host_error_message(out)
        )
    return (
        f"{printable(out.display)}: ok via {out.via}, {_files(out)} files changed, "
        f"{_moved(out)} in {out.duration:.1f} s"
    )


def fleet_table(fleet: Any) -> list[str]:
    """The per-host status table printed at the end, then one summary line."""
    from ..fleet import host_error_message

    rows = [("HOST", "VIA", "STATUS", "EXIT", "CHANGED", "BYTES", "TIME", "ERROR")]
    for out in fleet.hosts:
        error = host_error_message(out)
        rows.append(
            (
                printable(out.display),
                out.via or "-",
                out.status,
                str(out.exit_code),
                _files(out),
                _moved(out),
                f"{out.duration:.1f} s",
                printable(error[:120]) if error else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    ok = sum(1 for h in fleet.hosts if h.status == "ok")
    lines.append(
        f"{ok}/{len(fleet.hosts)} hosts in sync at {fleet.commit[:12]} in {fleet.duration:.1f} s; "
        f"exit {fleet.exit_code}"
    )
    return lines


class HostBars:
    """One tqdm line per host (position = its index). Off when stderr is not a terminal."""

    def __init__(self, count: int, file: TextIO | None = None) -> None:
        self.file = file if file is not None else sys.stderr
        self.enabled = bool(getattr(self.file, "isatty", lambda: False)())
        self.count = count
        self._lock = threading.Lock()
        self._bars: dict[int, Any] = {}

    def sink(self, index: int, label: str) -> _HostSink:
        return _HostSink(self, index, label)

    def _bar(self, index: int, label: str, total: int) -> Any:
        from tqdm import tqdm

        bar = self._bars.get(index)
        if bar is None:
            bar = self._bars[index] = tqdm(
                total=total,
                desc=label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=self.file,
                disable=not self.enabled,
                position=index,
                leave=True,
                dynamic_ncols=True,
                mininterval=0.2,
            )
        else:
            bar.reset(total=total)
            bar.set_description_str(label, refresh=False)
        return bar

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()


class _HostSink:
    """A ProgressSink drawing one host's line."""

    def __init__(self, bars: HostBars, index: int, label: str) -> None:
        self.bars, self.index, self.label = bars, index, printable(label)
        self.files = self.done = 0

    def start(self, total_bytes: int, jobs: list[FileJob]) -> None:
        with self.bars._lock:
            self.files, self.done = len(jobs), 0
            self.bars._bar(self.index, self._desc(), total_bytes)

    def advance(self, job: FileJob, nbytes: int) -> None:
        with self.bars._lock:
            bar = self.bars._bars.get(self.index)
            if bar is not None:
                bar.update(nbytes)

    def file_done(self, job: FileJob, ok: bool) -> None:
        with self.bars._lock:
            self.done += 1
            bar = self.bars._bars.get(self.index)
            if bar is not None:
                bar.set_description_str(self._desc(), refresh=False)

    def close(self) -> None:
        pass

    def _desc(self) -> str:
        return f"{self.label} {self.done}/{self.files} files"
