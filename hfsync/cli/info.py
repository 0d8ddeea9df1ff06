"""`hfsync info REPO`: a repo's commit and files, or what the HF cache holds of it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..files import validate_repo_id
from .common import handle_errors, repo_options
from .render import info_json, info_lines


@click.command()
@click.argument("repo")
@repo_options
@click.option(
    "--cache", "show_cache", is_flag=True, help="Show what the HF cache holds of REPO (offline)."
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="HF cache for --cache (default: HF_HUB_CACHE).",
)
@handle_errors
def info(
    repo: str,
    repo_type: str,
    revision: str,
    token: str | None,
    endpoint: str | None,
    as_json: bool,
    debug: bool,
    show_cache: bool,
    cache_dir: Path | None,
) -> None:
    """Show REPO's commit and files (size, LFS or not) without downloading anything."""
    if show_cache or cache_dir is not None:
        from .cache import show_cache as print_cache

        print_cache(cache_dir, repo, repo_type, as_json)
        return
    from ..hub import HubClient

    client = HubClient(endpoint, token)
    commit = client.resolve_revision(validate_repo_id(repo), repo_type, revision)
    files = client.list_files(repo, repo_type, commit)
    if as_json:
        click.echo(json.dumps(info_json(repo, repo_type, revision, commit, files), indent=2))
        return
    for line in info_lines(repo, commit, files):
        click.echo(line)
