"""Text of `hfsync mirror`, `verify` and `doctor`: pure functions of their result objects.

Kept apart from `render.py` (the sync's output) so each output format is testable alone. The
mirror's lines are written for logs read later: each starts with a UTC timestamp and names the
repo, the destination and what changed, so `grep org/name /var/log/hfsync.log` tells a story.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..units import human_size
from .render import printable

if TYPE_CHECKING:
    from ..doctor import Check
    from ..mirror.run import ItemResult, MirrorReport
    from ..verify import VerifyReport


def _short(commit: str | None) -> str:
    return commit[:8] if commit else "none"


def item_line(result: ItemResult) -> str:
    """'2026-05-01T03:00:04+00:00 org/a@main -> /data/a: updated 1a2b3c4d..5e6f7a8b, ...'."""
    from ..mirror.run import FAILED, INTERRUPTED, SKIPPED, iso

    head = f"{iso(result.finished or result.started)} {result.item.label} -> {result.dest}"
    if result.status == FAILED:
        return f"{head}: FAILED (exit {result.exit_code}): {result.error}"
    if result.status == INTERRUPTED:
        return f"{head}: interrupted"
    if result.status == SKIPPED:
        return f"{head}: not run"
    if result.planned is not None:
        return f"{head}: {_planned_change(result)}; {_planned_summary(result)}"
    if result.commit_before is None:
        what = f"new at {_short(result.commit_after)}"
    elif result.commit_before != result.commit_after:
        what = f"updated {_short(result.commit_before)}..{_short(result.commit_after)}"
    else:
        what = f"up to date at {_short(result.commit_after)}"
    return (
        f"{head}: {what}; {result.files_changed} files changed, "
        f"{human_size(result.bytes)} in {result.duration:.1f} s"
    )


def _planned_change(result: ItemResult) -> str:
    if result.commit_before is None:
        return f"would fetch {_short(result.commit_after)}"
    if result.commit_before != result.commit_after:
        return f"would update {_short(result.commit_before)}..{_short(result.commit_after)}"
    return f"at {_short(result.commit_after)} already"


def _planned_summary(result: ItemResult) -> str:
    from .render import summary_line

    assert result.planned is not None
    return summary_line(result.planned.plan, 0, 0.0, dry_run=True)


def planned_lines(result: ItemResult) -> list[str]:
    """A dry run's plan of one repo: the files that would change, indented under its line."""
    from .render import plan_lines

    if result.planned is None:
        return []
    return ["    " + line for line in plan_lines(result.planned.plan, verbose=False)]


def mirror_summary(report: MirrorReport) -> str:
    from ..mirror.run import OK, iso

    ok = sum(1 for i in report.items if i.status == OK)
    failed = len(report.items) - ok
    moved = human_size(sum(i.bytes for i in report.items))
    if report.dry_run:
        planned = sum(i.planned.plan.bytes_to_transfer for i in report.items if i.planned)
        return (
            f"{iso(report.finished)} mirror {report.config} (dry run, nothing written): "
            f"{len(report.items)} repos, {ok} planned, {failed} failed; would download "
            f"{human_size(planned)}; exit {report.exit_code}"
        )
    return (
        f"{iso(report.finished)} mirror {report.config}: {len(report.items)} repos, {ok} ok, "
        f"{failed} failed; {moved} in {report.duration:.1f} s; exit {report.exit_code}"
    )


def mirror_error(report: MirrorReport) -> str | None:
    """The one stderr line of a failed run: how many failed, and the most severe one."""
    from ..errors import severity_rank
    from ..mirror.run import FAILED

    failed = [i for i in report.items if i.status == FAILED]
    if not failed and not report.output_errors:
        return None
    parts = []
    if failed:
        worst = min(failed, key=lambda i: severity_rank(i.exit_code))
        parts.append(
            f"{len(failed)} of {len(report.items)} repos failed; most severe: "
            f"{worst.item.label} (exit {worst.exit_code}): {worst.error}"
        )
    parts += [str(e) for e in report.output_errors]
    return "; ".join(parts)


_KIND = {"mismatch": "MISMATCH", "missing": "MISSING", "extra": "EXTRA", "unverifiable": "UNKNOWN"}


def verify_lines(report: VerifyReport) -> list[str]:
    lines = []
    for problem in report.problems:
        where = f"{problem.repo} {problem.commit[:8]} " if problem.repo and problem.commit else ""
        # printable: an extra file's name comes from a disk (maybe a remote one), not from us
        lines.append(
            f"{_KIND[problem.kind]:<9} {where}{printable(problem.path)}  ({problem.detail})"
        )
    return lines


def verify_summary(report: VerifyReport, duration: float) -> str:
    counts = {kind: len(report.of(kind)) for kind in _KIND}
    parts = [f"{counts['mismatch']} mismatched", f"{counts['missing']} missing"]
    if report.extra_checked:
        parts.append(f"{counts['extra']} extra")
    if counts["unverifiable"]:
        parts.append(f"{counts['unverifiable']} unverifiable")
    return (
        f"{report.root}: {report.checked} files verified, {human_size(report.bytes_hashed)} "
        f"hashed in {duration:.1f} s: {', '.join(parts)}"
    )


def verify_json(report: VerifyReport, duration: float) -> dict:
    return {
        "ok": not report.failed,
        "root": report.root,
        "checked": report.checked,
        "bytes_hashed": report.bytes_hashed,
        "duration": round(duration, 3),
        "mismatched": [p.path for p in report.of("mismatch")],
        "missing": [p.path for p in report.of("missing")],
        "extra": [p.path for p in report.of("extra")] if report.extra_checked else None,
        "problems": [
            {k: v for k, v in p.__dict__.items() if v is not None} for p in report.problems
        ],
    }


_STATUS = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def doctor_lines(checks: list[Check]) -> list[str]:
    return [f"{_STATUS[c.status]:<4}  {c.name:<9} {c.detail}" for c in checks]
