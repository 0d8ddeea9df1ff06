"""`hfsync cache ls|prune`: what the HF cache holds per repo and revision, and reclaiming it.

Parsing and printing only; the reading and pruning live in `cache_scan`, so they work without
the CLI, and the rendering lives in `render`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..files import REPO_TYPES
from .common import cache_dir_option, handle_errors
from .render import cache_json, cache_lines, prune_json, prune_lines


def repo_filter(repo: str | None, repo_type: str) -> str | None:
    """The storage folder name REPO maps to, or None for every repo."""
    from ..targets.cache import repo_folder_name

    return repo_folder_name(repo, repo_type) if repo else None


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
    from ..cache_scan import scan_cache
    from ..targets.cache import cache_root

    root = cache_root(cache_dir)
    info = scan_cache(root, only=repo_filter(repo, repo_type))
    if as_json:
        click.echo(json.dumps(cache_json(root, info), indent=2))
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
    from ..cache_scan import prune
    from ..targets.cache import cache_root

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
