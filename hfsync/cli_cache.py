"""`hfsync cache ls|prune`: what the HF cache holds per repo and revision, and reclaiming it.

Rendering only; the reading and pruning live in `cache_scan`, so they work without the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .cli import handle_errors
from .hub import REPO_TYPES
from .units import human_size

if TYPE_CHECKING:  # the cache machinery loads only when a cache command runs
    from .cache_scan import CacheInfo, FileEntry, PruneResult, RepoInfo


def cache_dir_option(func: Any) -> Any:
    return click.option(
        "--cache-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="HF cache folder (default: HF_HUB_CACHE, then $HF_HOME/hub).",
    )(func)


def repo_filter(repo: str | None, repo_type: str) -> str | None:
    """The storage folder name REPO maps to, or None for every repo."""
    from .targets.cache import repo_folder_name

    return repo_folder_name(repo, repo_type) if repo else None


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
        for rev in repo.revisions:
            refs = ",".join(rev.refs) or "(detached)"
            rows.append(
                (repo.repo_id, repo.repo_type, refs, rev.commit[:12], str(rev.files), _h(rev.size))
            )
        if not repo.revisions:
            rows.append((repo.repo_id, repo.repo_type, "-", "-", "0", "0 B"))
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
        notes += [f"{label}: {problem}" for problem in repo.problems]
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


@click.group("cache")
def cache() -> None:
    """Inspect and prune the Hugging Face cache."""


@cache.command("ls")
@click.argument("repo", required=False)
@click.option("--repo-type", type=click.Choice(REPO_TYPES), default="model", show_default=True)
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@handle_errors
def ls(
    repo: str | None, repo_type: str, cache_dir: Path | None, as_json: bool, debug: bool
) -> None:
    """What the cache holds: revisions, sizes, unreferenced blobs (all repos, or REPO)."""
    show_cache(cache_dir, repo, repo_type, as_json)


def show_cache(cache_dir: Path | None, repo: str | None, repo_type: str, as_json: bool) -> None:
    """Print the cache listing (also used by `hfsync info --cache`)."""
    from .cache_scan import scan_cache
    from .targets.cache import cache_root

    root = cache_root(cache_dir)
    info = scan_cache(root, only=repo_filter(repo, repo_type))
    if as_json:
        doc = {
            "cache_dir": str(root),
            "size_on_disk": info.size_on_disk,
            "repos": [repo_json(item) for item in info.repos],
        }
        click.echo(json.dumps(doc, indent=2))
        return
    if repo and not info.repos:
        click.echo(f"{repo} ({repo_type}) is not in the cache at {root}")
        return
    for line in cache_lines(info):
        click.echo(line)


@cache.command("prune")
@click.argument("repo", required=False)
@click.option("--repo-type", type=click.Choice(REPO_TYPES), default="model", show_default=True)
@cache_dir_option
@click.option("--dry-run", "-n", is_flag=True, help="Show what would be removed; remove nothing.")
@click.option(
    "--keep-detached",
    is_flag=True,
    help="Keep revisions no ref names; remove only blobs no snapshot links to.",
)
@click.option(
    "--incomplete",
    "include_incomplete",
    is_flag=True,
    help="Also remove partial downloads (otherwise kept: the next sync resumes them).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@handle_errors
def prune_command(
    repo: str | None,
    repo_type: str,
    cache_dir: Path | None,
    dry_run: bool,
    keep_detached: bool,
    include_incomplete: bool,
    as_json: bool,
    debug: bool,
) -> None:
    """Remove detached revisions and the blobs no remaining snapshot links to."""
    from .cache_scan import prune
    from .targets.cache import cache_root

    root = cache_root(cache_dir)
    result = prune(
        root,
        dry_run=dry_run,
        keep_detached=keep_detached,
        include_incomplete=include_incomplete,
        only=repo_filter(repo, repo_type),
    )
    if as_json:
        click.echo(json.dumps(prune_json(result), indent=2))
        return
    for line in prune_lines(result):
        click.echo(line)


def prune_json(result: PruneResult) -> dict[str, Any]:
    return {
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
    lines = [f"{verb} {path}" for path in result.removed]
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
