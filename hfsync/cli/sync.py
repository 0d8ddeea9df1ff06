"""`hfsync sync REPO [DEST]`: make a folder (or the HF cache) hold exactly a repo's files."""

from __future__ import annotations

from pathlib import Path

import click

from ..defaults import DEFAULT_CHUNK_TEXT, DEFAULT_CONNECTIONS, DEFAULT_SMALL_CONNECTIONS
from ..errors import UsageError
from ..transfer.jobs import NullProgress, ProgressSink, TransferConfig
from ..units import parse_size
from .common import echo_outcome, handle_errors, remember_secret, repo_options
from .progress_json import JsonLinesProgress, read_token_line, stop_on_stdin_eof


def transfer_options(func):  # noqa: ANN001, ANN201 - a click decorator
    """`--connections`, `--chunk-size`, `--bwlimit`: the executor's knobs."""
    func = click.option("--bwlimit", default=None, envvar="HFSYNC_BWLIMIT", show_envvar=True,
                        help="Cap the total rate, bytes/s (e.g. 50M).")(func)  # fmt: skip
    func = click.option(
        "--chunk-size",
        default=DEFAULT_CHUNK_TEXT,
        show_default=True,
        envvar="HFSYNC_CHUNK_SIZE",
        show_envvar=True,
        help="Split big files into ranges of this size (e.g. 8M, 64M).",
    )(func)
    return click.option(
        "--connections",
        "-j",
        "--jobs",
        type=click.IntRange(1, 256),
        default=None,
        envvar="HFSYNC_CONNECTIONS",
        show_envvar=True,
        help=(
            "Parallel HTTP connections shared by all files and chunks, at most. "
            f"[default: {DEFAULT_CONNECTIONS} for big files' chunks, "
            f"{DEFAULT_SMALL_CONNECTIONS} for small files]"
        ),
    )(func)


def plan_options(func):  # noqa: ANN001, ANN201 - a click decorator
    """The selection and deletion options every sync-like command shares."""
    for decorator in reversed(
        [
            click.option(
                "--include", multiple=True, metavar="GLOB", help="Only files matching (repeatable)."
            ),
            click.option(
                "--exclude", multiple=True, metavar="GLOB", help="Skip files matching (repeatable)."
            ),
            click.option("--delete", is_flag=True, help="Delete files the repo no longer has."),
            click.option(
                "--max-delete", type=click.IntRange(min=0), help="Refuse to delete more than N."
            ),
            click.option("--dry-run", "-n", is_flag=True, help="Show the plan; change nothing."),
            click.option(
                "--checksum", "-c", is_flag=True, help="Hash every held file, trust no metadata."
            ),
            click.option(
                "--quiet",
                "-q",
                is_flag=True,
                envvar="HFSYNC_QUIET",
                show_envvar=True,
                help="Print errors only.",
            ),
        ]
    ):
        func = decorator(func)
    return func


def transfer_config(
    connections: int | None, chunk_size: str, bwlimit: str | None
) -> TransferConfig:
    """The executor's knobs from the options (`--connections` unset: the default policy)."""
    return TransferConfig.for_connections(
        connections,
        chunk_size=parse_size(chunk_size, "--chunk-size"),
        bwlimit=parse_size(bwlimit, "--bwlimit") if bwlimit else None,
    )


def progress_sink(enabled: bool) -> ProgressSink:
    """tqdm bars on a terminal, nothing otherwise (the bars decide about the terminal)."""
    if not enabled:
        return NullProgress()
    try:
        from .progress import TqdmProgress
    except ImportError:
        return NullProgress()
    return TqdmProgress()


@click.command()
@click.argument("repo")
@click.argument("dest", required=False, type=click.Path(path_type=Path))
@repo_options
@plan_options
@transfer_options
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="HF cache to fill when DEST is omitted (default: HF_HUB_CACHE).",
)
@click.option(
    "--cache", "use_cache", is_flag=True, help="Fill the HF cache (the default without DEST)."
)
@click.option(
    "--progress-json",
    is_flag=True,
    help="Write progress and the result as JSON lines on stdout (what a remote pull reads).",
)
@click.option(
    "--token-stdin",
    is_flag=True,
    help="Read the token from the first line of stdin (never argv, environment or disk).",
)
@click.option(
    "--handoff-stdin",
    is_flag=True,
    hidden=True,  # the pull protocol's, not a user's: hfsync/remote/handoff.py
    help="Read token, listing and data URLs from stdin (a fleet's driver resolved them).",
)
@click.option(
    "--exit-on-stdin-eof",
    is_flag=True,
    help="Stop (as Ctrl-C does: exit 130, partial downloads kept) when stdin ends.",
)
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
    quiet: bool,
    connections: int | None,
    chunk_size: str,
    bwlimit: str | None,
    cache_dir: Path | None,
    use_cache: bool,
    progress_json: bool,
    token_stdin: bool,
    handoff_stdin: bool,
    exit_on_stdin_eof: bool,
) -> None:
    """Make DEST hold exactly REPO's files at --revision, fetching only what changed.

    Without DEST, fill the Hugging Face cache (as `from_pretrained` reads it).
    """
    from ..orchestrate import GivenListing
    from ..orchestrate import sync as run_sync

    config = transfer_config(connections, chunk_size, bwlimit)
    if dest is not None and (cache_dir is not None or use_cache):
        raise UsageError("give either DEST or --cache/--cache-dir, not both")
    if token_stdin:
        if token:
            raise UsageError("give either --token or --token-stdin, not both")
        token = read_token_line()
        if token:
            remember_secret(token)
    given = None
    if handoff_stdin:
        if token or token_stdin:
            raise UsageError("give either --token/--token-stdin or --handoff-stdin, not both")
        from ..remote.handoff import read_handoff

        handoff = read_handoff()
        token = handoff.token
        if token:
            remember_secret(token)
        if handoff.commit != revision:
            raise UsageError("--handoff-stdin: the document is for another commit than --revision")
        given = GivenListing(handoff.commit, handoff.files, handoff.urls)
    if exit_on_stdin_eof:
        stop_on_stdin_eof()
    lines = JsonLinesProgress() if progress_json else None
    progress = lines or progress_sink(not (quiet or as_json or dry_run))
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
            given=given,
        )
    finally:
        progress.close()
    if quiet and not (as_json or lines is not None):
        return  # nothing to print, so nothing to render: `render` stays unimported
    from .render import plan_lines, result_json, summary_line

    if lines is not None:
        lines.result(result_json(result))
        return
    echo_outcome(
        lambda: result_json(result),
        as_json=as_json,
        quiet=quiet,
        dry_run=dry_run,
        header=f"{repo} @ {result.commit} -> {result.target}",
        plan=lambda: plan_lines(result.plan),
        summary=lambda: summary_line(
            result.plan, result.bytes_transferred, result.duration, dry_run=dry_run
        ),
    )
