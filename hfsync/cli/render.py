"""Turning results into what a person or a program reads: plans, summaries, tables, JSON.

All text and JSON rendering of every command lives here, as pure functions of the result
objects, so output formats are testable without running anything and stay consistent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..files import RemoteFile
from ..plan import Action, Plan, PlanItem
from ..units import human_size

if TYPE_CHECKING:  # the cache machinery loads only when a cache command runs
    from ..cache_scan import CacheInfo, FileEntry, PruneResult, RepoInfo
    from ..orchestrate import SyncResult

_VERB = {
    Action.NEW: "new",
    Action.UPDATE: "update",
    Action.UNCHANGED: "unchanged",
    Action.DELETE: "delete",
    Action.SKIPPED: "skip",
}


def printable(text: str) -> str:
    """`text` with every non-printable character escaped (`\\n`, `\\x1b`, `\\x9b`, `\\u202e`).

    Paths come from a Hub listing or a local folder, neither of which we control: a raw escape
    sequence could recolour or rewrite the user's terminal, a newline would forge an extra
    plan line, a bidi override would show a name reversed. Escaped, every entry is one line
    that shows what is really there. JSON output needs none of this (json.dumps escapes).
    """
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def plan_lines(plan: Plan, *, verbose: bool = True) -> list[str]:
    """One line per file: action, size, path, reason; unchanged and skipped only if verbose."""
    lines = []
    for item in plan.items:
        if not verbose and item.action in (Action.UNCHANGED, Action.SKIPPED):
            continue
        lines.append(
            f"{_VERB[item.action]:<9} {human_size(item.size):>10}  {printable(item.path)}"
            f"  ({item.reason})"
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


def plan_item_json(item: PlanItem) -> dict[str, Any]:
    """One file's decision as every `--json` document shows it (sync, to-remote)."""
    entry: dict[str, Any] = {
        "path": item.path,
        "action": item.action.value,
        "reason": item.reason,
        "size": item.size,
    }
    if item.remote is not None:
        entry["etag"] = item.remote.etag
        entry["lfs"] = item.remote.is_lfs
    return entry


def result_json(result: SyncResult) -> dict[str, Any]:
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
        entry = plan_item_json(item)
        if item.transfers and not result.dry_run:
            entry["bytes_transferred"] = transferred.get(item.path, 0)
            entry["ok"] = item.path not in failed
        files.append(entry)
    return {
        "ok": True,
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
        lines.append(f"  {human_size(remote.size):>10}  {kind:<3}  {printable(remote.path)}")
    total = sum(f.size for f in files)
    lines.append(f"{len(files)} files, {human_size(total)}")
    return lines


def info_json(
    repo_id: str, repo_type: str, revision: str, commit: str, files: list[RemoteFile]
) -> dict[str, Any]:
    return {
        "ok": True,
        "repo_id": repo_id,
        "repo_type": repo_type,
        "revision": revision,
        "commit": commit,
        "total_size": sum(f.size for f in files),
        "files": [
            {"path": f.path, "size": f.size, "lfs": f.is_lfs, "etag": f.etag}
            for f in sorted(files, key=lambda f: f.path)
        ],
    }


def repo_json(repo: RepoInfo) -> dict[str, Any]:
    _, reclaimable = repo.reclaimable()
    return {
        "repo_id": repo.repo_id,
        "repo_type": repo.repo_type,
        "path": str(repo.path),
        "size_on_disk": repo.size_on_disk,
        "revisions": [
            {
                "commit": rev.commit,
                "refs": list(rev.refs),
                "detached": rev.detached,
                "files": rev.files,
                "size": rev.size,
                "path": str(rev.path),
            }
            for rev in repo.revisions
        ],
        "blobs": len(repo.blobs),
        "unreferenced_blobs": [_entry_json(blob) for blob in repo.unreferenced],
        "unreferenced_bytes": sum(blob.size for blob in repo.unreferenced),
        "reclaimable_bytes": reclaimable,
        "incomplete": [_entry_json(part) for part in repo.incomplete],
        "problems": list(repo.problems),
    }


def _entry_json(entry: FileEntry) -> dict[str, Any]:
    return {"path": str(entry.path), "size": entry.size}


def cache_lines(info: CacheInfo) -> list[str]:
    """A table with one row per revision, then what is reclaimable and what is resumable."""
    rows = [("REPO", "TYPE", "REVISION", "COMMIT", "FILES", "SIZE")]
    notes: list[str] = []
    reclaim_total = 0
    for repo in info.repos:
        name = printable(repo.repo_id)  # read from folder names on disk
        for rev in repo.revisions:
            refs = ",".join(rev.refs) or "(detached)"
            rows.append((name, repo.repo_type, refs, rev.commit[:12], str(rev.files), _h(rev.size)))
        if not repo.revisions:
            rows.append((name, repo.repo_type, "-", "-", "0", "0 B"))
        victims, reclaimable = repo.reclaimable()
        reclaim_total += reclaimable
        label = f"{repo.repo_type}/{repo.repo_id}"
        unreferenced = repo.unreferenced
        if unreferenced:
            size = _h(sum(blob.size for blob in unreferenced))
            notes.append(f"{label}: {len(unreferenced)} unreferenced blob(s), {size}")
        if victims:
            notes.append(f"{label}: {len(victims)} detached revision(s)")
        if repo.incomplete:
            size = _h(sum(part.size for part in repo.incomplete))
            notes.append(f"{label}: {len(repo.incomplete)} partial download file(s), {size}")
        notes += [f"{label}: {printable(problem)}" for problem in repo.problems]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines += notes
    summary = f"{len(info.repos)} repo(s), {_h(info.size_on_disk)} on disk in {info.root}"
    if reclaim_total:
        summary += f"; {_h(reclaim_total)} reclaimable with `hfsync cache prune`"
    lines.append(summary)
    return lines


def _h(size: int) -> str:
    return human_size(size)


def cache_json(root: object, info: CacheInfo) -> dict[str, Any]:
    return {
        "ok": True,
        "cache_dir": str(root),
        "size_on_disk": info.size_on_disk,
        "repos": [repo_json(item) for item in info.repos],
    }


def prune_json(result: PruneResult) -> dict[str, Any]:
    return {
        "ok": True,
        "dry_run": result.dry_run,
        "revisions": [
            {"repo_type": kind, "repo_id": repo_id, "commit": commit}
            for kind, repo_id, commit in result.revisions
        ],
        "removed": [str(path) for path in result.removed],
        "bytes_freed": result.bytes_freed,
        "busy": result.busy,
        "kept_incomplete": [_entry_json(part) for part in result.kept_incomplete],
    }


def prune_lines(result: PruneResult) -> list[str]:
    verb = "would remove" if result.dry_run else "removed"
    lines = [f"{verb} {printable(str(path))}" for path in result.removed]
    lines += [f"skipped {name}: a sync is running on it" for name in result.busy]
    if result.kept_incomplete:
        size = _h(sum(part.size for part in result.kept_incomplete))
        lines.append(
            f"kept {len(result.kept_incomplete)} partial download file(s), {size} "
            "(resumable; --incomplete removes them)"
        )
    revisions = len(result.revisions)
    files = len(result.removed) - revisions
    freed = "would free" if result.dry_run else "freed"
    lines.append(
        f"{verb} {revisions} detached revision(s) and {files} file(s); {freed} "
        f"{_h(result.bytes_freed)}"
    )
    return lines


def push_summary_line(result: Any) -> str:  # a RemoteSyncResult
    """'12 files: 3 new, 9 unchanged; 4.1 GiB pushed in 12.3 s (340 MB/s)'."""
    counts = result.plan.counts()
    files = sum(counts[a.value] for a in (Action.NEW, Action.UPDATE, Action.UNCHANGED))
    parts = [f"{counts['new']} new"]
    if counts["update"]:
        parts.append(f"{counts['update']} updated")
    parts.append(f"{counts['unchanged']} unchanged")
    if counts["delete"]:
        parts.append(f"{counts['delete']} deleted")
    if counts["skipped"]:
        parts.append(f"{counts['skipped']} excluded")
    head = f"{files} files: {', '.join(parts)}"
    if result.dry_run:
        return f"dry run: {head}; would push {human_size(result.plan.bytes_to_transfer)}"
    pushed, took = result.bytes_pushed, result.duration
    rate = ""
    if pushed and result.push_duration > 0:
        rate = f" ({human_size(pushed / result.push_duration)}/s)"
    text = f"{head}; {human_size(pushed)} pushed in {took:.1f} s{rate}"
    if result.bytes_downloaded:
        text += f"; {human_size(result.bytes_downloaded)} downloaded"
    if result.reconnects:
        text += f"; reconnected {result.reconnects}x"
    return text


def push_result_json(result: Any) -> dict[str, Any]:  # a RemoteSyncResult
    """The `--json` document: per-file action, reason, size, bytes pushed; totals."""
    downloaded: dict[str, int] = {}
    if result.download:
        for outcome in result.download.outcomes:
            downloaded[outcome.job.path] = outcome.bytes_transferred
    files = []
    for item in result.plan.items:
        entry = plan_item_json(item)
        if item.transfers and not result.dry_run:
            pushed = result.pushed.get(item.path)
            entry["bytes_pushed"] = pushed.bytes_sent if pushed else 0
            entry["bytes_downloaded"] = downloaded.get(item.path, 0)
            entry["resumed_from"] = pushed.resumed_from if pushed else 0
            entry["ok"] = bool(pushed and pushed.ok)
        files.append(entry)
    return {
        "ok": True,
        "repo_id": result.repo_id,
        "repo_type": result.repo_type,
        "revision": result.revision,
        "commit": result.commit,
        "target": result.target,
        "via": result.via,
        "dry_run": result.dry_run,
        "counts": result.plan.counts(),
        "bytes_planned": result.plan.bytes_to_transfer,
        "bytes_downloaded": result.bytes_downloaded,
        "bytes_pushed": result.bytes_pushed,
        "deleted": result.deleted,
        "reconnects": result.reconnects,
        "duration_s": round(result.duration, 3),
        "push_duration_s": round(result.push_duration, 3),
        "api_calls": result.api_calls,
        "notes": result.notes,
        "files": files,
    }
