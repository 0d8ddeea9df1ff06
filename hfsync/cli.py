"""The `hfsync` command line: parse options, call the library, render the outcome.

Every failure ends as one line on stderr and the exit code of DESIGN §7; a traceback is shown
only with `--debug`. The token is scrubbed from anything printed.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .auth import redact, resolve_token
from .errors import HfsyncError, UsageError
from .hub import REPO_TYPES, HubClient, validate_repo_id
from .render import info_lines, plan_lines, result_json, summary_line
from .transfer.jobs import NullProgress, TransferConfig
from .units import parse_size

DEFAULT_CONNECTIONS = 16
DEFAULT_CHUNK = "16M"


def _fail(message: str, code: int) -> None:
    click.echo(f"hfsync: error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Map every exception to one line and an exit code (DESIGN §7)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = resolve_token(kwargs.get("token"))
        debug = kwargs.get("debug", False)
        try:
            return func(*args, **kwargs)
        except HfsyncError as exc:
            if debug:
                traceback.print_exc()
            _fail(redact(str(exc), token), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; partial downloads were kept and the next run resumes them", 130)
        except click.exceptions.Exit:
            raise
        except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
            if debug:
                traceback.print_exc()
            _fail(redact(f"unexpected {type(exc).__name__}: {exc}", token), 1)

    return wrapper


def repo_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every command that names a repo."""
    decorators = [
        click.option(
            "--repo-type",
            type=click.Choice(REPO_TYPES),
            default="model",
            show_default=True,
            help="Kind of repo.",
        ),
        click.option(
            "--revision",
            default="main",
            show_default=True,
            help="Branch, tag or commit sha to sync.",
        ),
        click.option(
            "--token",
            default=None,
            help="Hub token (default: HF_TOKEN, then the token file of `hf auth login`). "
            "Prefer HF_TOKEN: a command-line value is visible in process lists.",
        ),
        click.option(
            "--endpoint",
            default=None,
            help="Hub endpoint (default: HF_ENDPOINT, then https://huggingface.co).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON document."),
        click.option("--debug", is_flag=True, help="Show tracebacks on errors."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hfsync")
def main() -> None:
    """Incremental, verified sync of Hugging Face Hub repos to local folders and the HF cache."""


@main.command()
@click.argument("repo")
@click.argument("dest", required=False, type=click.Path(path_type=Path))
@repo_options
@click.option("--include", multiple=True, metavar="GLOB", help="Only files matching (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching (repeatable).")
@click.option("--delete", is_flag=True, help="Delete local files the repo no longer has.")
@click.option("--max-delete", type=click.IntRange(min=0), help="Refuse to delete more than N.")
@click.option("--dry-run", "-n", is_flag=True, help="Show the plan; change nothing.")
@click.option("--checksum", "-c", is_flag=True, help="Hash every local file, trust no metadata.")
@click.option(
    "--connections",
    "-j",
    "--jobs",
    type=click.IntRange(1, 256),
    default=DEFAULT_CONNECTIONS,
    show_default=True,
    help="Parallel HTTP connections shared by all files and chunks.",
)
@click.option(
    "--chunk-size",
    default=DEFAULT_CHUNK,
    show_default=True,
    help="Split big files into ranges of this size (e.g. 8M, 64M).",
)
@click.option("--bwlimit", default=None, help="Cap the total rate, bytes/s (e.g. 50M).")
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="HF cache to fill when DEST is omitted (default: HF_HUB_CACHE).",
)
@click.option(
    "--cache", "use_cache", is_flag=True, help="Fill the HF cache (the default without DEST)."
)
@click.option("--quiet", "-q", is_flag=True, help="Print errors only.")
@handle_errors
def sync(
    repo: str,
    dest: Path | None,
    repo_type: str,
    revision: str,
    token: str | None,
    endpoint: str | None,
    as_json: bool,
    debug: bool,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    delete: bool,
    max_delete: int | None,
    dry_run: bool,
    checksum: bool,
    connections: int,
    chunk_size: str,
    bwlimit: str | None,
    cache_dir: Path | None,
    use_cache: bool,
    quiet: bool,
) -> None:
    """Make DEST hold exactly REPO's files at --revision, fetching only what changed.

    Without DEST, fill the Hugging Face cache (as `from_pretrained` reads it).
    """
    from .orchestrate import sync as run_sync

    config = TransferConfig(
        connections=connections,
        chunk_size=parse_size(chunk_size, "--chunk-size"),
        bwlimit=parse_size(bwlimit, "--bwlimit") if bwlimit else None,
    )
    if dest is not None and (cache_dir is not None or use_cache):
        raise UsageError("give either DEST or --cache/--cache-dir, not both")
    show_progress = not (quiet or as_json or dry_run)
    progress = _progress() if show_progress else NullProgress()
    try:
        result = run_sync(
            repo,
            dest,
            repo_type=repo_type,
            revision=revision,
            include=include,
            exclude=exclude,
            delete=delete,
            max_delete=max_delete,
            dry_run=dry_run,
            checksum=checksum,
            token=token,
            endpoint=endpoint,
            config=config,
            cache_dir=cache_dir,
            progress=progress,
        )
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(result_json(result), indent=2))
        return
    if quiet:
        return
    if dry_run:
        click.echo(f"{repo} @ {result.commit} -> {result.target}")
        for line in plan_lines(result.plan):
            click.echo(line)
    moved, took = result.bytes_transferred, result.duration
    click.echo(summary_line(result.plan, moved, took, dry_run=dry_run))


def _progress():  # noqa: ANN202 - a ProgressSink
    try:
        from .progress import TqdmProgress
    except ImportError:
        return NullProgress()
    return TqdmProgress()


@main.command()
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
        from .cli_cache import show_cache as print_cache

        print_cache(cache_dir, repo, repo_type, as_json)
        return
    client = HubClient(endpoint, token)
    commit = client.resolve_revision(validate_repo_id(repo), repo_type, revision)
    files = client.list_files(repo, repo_type, commit)
    if as_json:
        doc = {
            "repo_id": repo,
            "repo_type": repo_type,
            "revision": revision,
            "commit": commit,
            "total_size": sum(f.size for f in files),
            "files": [
                {"path": f.path, "size": f.size, "lfs": f.is_lfs, "etag": f.etag}
                for f in sorted(files, key=lambda f: f.path)
            ],
        }
        click.echo(json.dumps(doc, indent=2))
        return
    for line in info_lines(repo, commit, files):
        click.echo(line)


__all__ = ["main"]

from .cli_cache import cache  # noqa: E402

main.add_command(cache)
