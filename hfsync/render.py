"""Turning results into what a person or a program reads: plans, summaries, JSON.

Pure functions of the result objects, so output formats are testable without running a sync.
"""

from __future__ import annotations

from .hub import RemoteFile
from .plan import Action, Plan
from .units import human_size

_VERB = {
    Action.NEW: "new",
    Action.UPDATE: "update",
    Action.UNCHANGED: "unchanged",
    Action.DELETE: "delete",
    Action.SKIPPED: "skip",
}


def plan_lines(plan: Plan, *, verbose: bool = True) -> list[str]:
    """One line per file: action, size, path, reason; unchanged and skipped only if verbose."""
    lines = []
    for item in plan.items:
        if not verbose and item.action in (Action.UNCHANGED, Action.SKIPPED):
            continue
        lines.append(
            f"{_VERB[item.action]:<9} {human_size(item.size):>10}  {item.path}  ({item.reason})"
        )
    return lines


def summary_line(plan: Plan, bytes_moved: int, duration: float, *, dry_run: bool) -> str:
    """'12 files: 1 new, 2 updated, 9 unchanged; 1.2 GiB in 8.1 s'."""
    counts = plan.counts()
    files = sum(counts[a.value] for a in (Action.NEW, Action.UPDATE, Action.UNCHANGED))
    parts = [
        f"{counts['new']} new",
        f"{counts['update']} updated",
        f"{counts['unchanged']} unchanged",
    ]
    if counts["delete"]:
        parts.append(f"{counts['delete']} deleted")
    if counts["skipped"]:
        parts.append(f"{counts['skipped']} excluded")
    if dry_run:
        return (
            f"dry run: {files} files: {', '.join(parts)}; "
            f"would download {human_size(plan.bytes_to_transfer)}"
        )
    rate = f" ({human_size(bytes_moved / duration)}/s)" if bytes_moved and duration > 0 else ""
    return f"{files} files: {', '.join(parts)}; {human_size(bytes_moved)} in {duration:.1f} s{rate}"


def result_json(result) -> dict:  # noqa: ANN001 - SyncResult, imported lazily by the CLI
    """The `--json` document: plan/outcome per file and totals."""
    plan: Plan = result.plan
    failed = set()
    transferred: dict[str, int] = {}
    if result.report:
        for outcome in result.report.outcomes:
            transferred[outcome.job.path] = outcome.bytes_transferred
            if not outcome.ok:
                failed.add(outcome.job.path)
    files = []
    for item in plan.items:
        entry = {
            "path": item.path,
            "action": item.action.value,
            "reason": item.reason,
            "size": item.size,
        }
        if item.remote is not None:
            entry["etag"] = item.remote.etag
            entry["lfs"] = item.remote.is_lfs
        if item.transfers and not result.dry_run:
            entry["bytes_transferred"] = transferred.get(item.path, 0)
            entry["ok"] = item.path not in failed
        files.append(entry)
    return {
        "repo_id": result.repo_id,
        "repo_type": result.repo_type,
        "revision": result.revision,
        "commit": result.commit,
        "target": result.target,
        "dry_run": result.dry_run,
        "counts": plan.counts(),
        "bytes_planned": plan.bytes_to_transfer,
        "bytes_transferred": result.bytes_transferred,
        "deleted": result.deleted,
        "duration_s": round(result.duration, 3),
        "api_calls": result.api_calls,
        "files": files,
    }


def info_lines(repo_id: str, commit: str, files: list[RemoteFile]) -> list[str]:
    lines = [f"{repo_id} @ {commit}"]
    for remote in sorted(files, key=lambda f: f.path):
        kind = "LFS" if remote.is_lfs else "git"
        lines.append(f"  {human_size(remote.size):>10}  {kind:<3}  {remote.path}")
    total = sum(f.size for f in files)
    lines.append(f"{len(files)} files, {human_size(total)}")
    return lines
