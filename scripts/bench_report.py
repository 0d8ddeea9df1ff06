"""Reporting for ``scripts/bench``: per-run records, medians, the Markdown tables, the machine.

Kept apart from the runner so the numbers' definitions (what a "ratio" is, which runs count
towards a median, how a target is judged) live in one place that ``docs/benchmarks.md`` can cite.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Cell:
    """One timed run of one tool in one scenario (a failed or timed-out run has ``error``)."""

    wall: float
    cpu: float | None
    rss_mb: float | None
    nbytes: int | None  # bytes the run moved (None: not a transfer, e.g. a no-op)
    error: str | None = None
    server_cpu: float | None = None  # CPU seconds the emulator spent during the run

    @property
    def mbps(self) -> float | None:
        if self.error or self.nbytes is None or self.wall <= 0:
            return None
        return self.nbytes / self.wall / 1e6


@dataclass
class Row:
    """All rounds of one tool in one scenario."""

    scenario: str
    title: str
    tool: str
    cells: list[Cell] = field(default_factory=list)
    computed: bool = False  # a reference row (link capacity), not a measured process

    @property
    def ok(self) -> list[Cell]:
        return [c for c in self.cells if c.error is None]

    @property
    def failures(self) -> list[Cell]:
        return [c for c in self.cells if c.error is not None]

    def median_wall(self) -> float | None:
        walls = [c.wall for c in self.ok]
        return statistics.median(walls) if walls else None

    def median_mbps(self) -> float | None:
        rates = [c.mbps for c in self.ok if c.mbps is not None]
        return statistics.median(rates) if rates else None

    def median_cpu(self) -> float | None:
        cpus = [c.cpu for c in self.ok if c.cpu is not None]
        return statistics.median(cpus) if cpus else None

    def median_server_cpu(self) -> float | None:
        cpus = [c.server_cpu for c in self.ok if c.server_cpu is not None]
        return statistics.median(cpus) if cpus else None

    def peak_rss(self) -> float | None:
        rss = [c.rss_mb for c in self.ok if c.rss_mb is not None]
        return max(rss) if rss else None


def speedup(ours: Row, peer: Row) -> float | None:
    """How many times faster ``ours`` is than ``peer``: the MB/s ratio when both moved bytes,
    else the inverse wall-time ratio (no-op runs move nothing). Same bytes -> same number."""
    a, b = ours.median_mbps(), peer.median_mbps()
    if a is not None and b is not None and b > 0:
        return a / b
    wa, wb = ours.median_wall(), peer.median_wall()
    if wa and wb is not None:
        return wb / wa
    return None


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "—" if x is None else fmt.format(x)


def results_table(rows: list[Row], reference: Callable[[Row], Row | None]) -> str:
    """The Markdown table; ``reference(row)`` names the row each ratio is taken against."""
    lines = [
        "| scenario | tool | MB/s (median) | wall s (median) | wall s min–max | CPU s "
        "| emulator CPU s | peak RSS MB | hfsync ÷ tool |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    last = None
    for row in rows:
        title = row.title if row.scenario != last else ""
        last = row.scenario
        walls = [c.wall for c in row.ok]
        if row.computed:
            span = "(computed)"
        elif walls:
            span = f"{min(walls):.2f}–{max(walls):.2f}"
        else:
            span = "—"
        rate = _num(row.median_mbps())
        if row.failures:
            rate += f" ({len(row.failures)}/{len(row.cells)} failed)"
        ref = reference(row)
        ratio = speedup(ref, row) if ref is not None else None
        ratio_text = "—" if ratio is None else f"{ratio:.2f}×"
        cpu = row.median_cpu()
        cpu_fmt = "{:.2f}" if cpu is not None and cpu < 1 else "{:.1f}"  # no-op, start-up rows
        lines.append(
            f"| {title} | {row.tool} | {rate} | {_num(row.median_wall(), '{:.2f}')} | {span} "
            f"| {_num(cpu, cpu_fmt)} | {_num(row.median_server_cpu())} "
            f"| {_num(row.peak_rss(), '{:.0f}')} | {ratio_text} |"
        )
    return "\n".join(lines)


@dataclass
class Target:
    """One goal of the issue, judged on this run's medians."""

    text: str
    measured: str
    met: bool | None  # None: not measured in this run
    detail: str = ""

    def status(self) -> str:
        if self.met is None:
            return "not run"
        return "met" if self.met else f"**missed** {self.detail}".rstrip()


def targets_table(targets: Iterable[Target]) -> str:
    lines = ["| target | measured | status |", "|---|---|---|"]
    lines += [f"| {t.text} | {t.measured} | {t.status()} |" for t in targets]
    return "\n".join(lines)


def judge_ratio(text: str, value: float | None, goal: float, unit: str = "×") -> Target:
    """A "value ≥ goal" target; a miss says by how much, in percent of the goal."""
    if value is None:
        return Target(text, "—", None)
    met = value >= goal
    short = (1 - value / goal) * 100
    return Target(text, f"{value:.2f}{unit}", met, "" if met else f"({short:.0f}% short)")


def judge_below(
    text: str, value: float | None, limit: float, fmt: str, *, strict: bool = True
) -> Target:
    """A "value < limit" target (or ≤ when not ``strict``); a miss says by how much it is over.
    ``fmt`` renders the value, e.g. ``"{:.0f} MB"``."""
    if value is None:
        return Target(text, "—", None)
    met = value < limit if strict else value <= limit
    over = (value / limit - 1) * 100
    return Target(text, fmt.format(value), met, "" if met else f"({over:.0f}% over)")


# ---- machine description --------------------------------------------------------------------


def _first_line(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not installed"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def _meminfo_gib() -> str:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return "unknown"
    m = re.search(r"MemTotal:\s+(\d+) kB", text)
    return f"{int(m.group(1)) / 2**20:.1f} GiB" if m else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_rev(repo: Path) -> str:
    """Commit of the measured code, and which tracked files differ from it (if any)."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    if not rev:
        return "unknown"
    if not changed:
        return rev
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return f"{rev} + uncommitted changes to {shown}"


def machine_lines(repo: Path, data_dir: Path, versions: dict[str, str]) -> list[str]:
    """Markdown bullets describing where the numbers came from."""
    fs = _df(data_dir)
    return [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores",
        f"- RAM: {_meminfo_gib()}",
        f"- OS: {platform.system()} {platform.release()} ({platform.machine()})",
        f"- Disk for data and destinations: {fs}",
        f"- Python {platform.python_version()}; "
        + "; ".join(f"{k} {v}" for k, v in versions.items()),
        f"- aria2c: {_first_line(['aria2c', '--version'])}",
        f"- curl: {_first_line(['curl', '--version'])}",
        f"- hfsync source: git {_git_rev(repo)}",
    ]


def _df(path: Path) -> str:
    """Filesystem type and free space of the data folder (destinations are written there)."""
    try:
        out = subprocess.run(
            ["df", "-hT", str(path)], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()
        dev, fstype, size, _used, avail = out[-1].split()[:5]
        return f"{dev} ({fstype}, {size}, {avail} free before the runs)"
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return "unknown"
