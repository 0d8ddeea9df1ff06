"""`hfsync to-remote REPO 'SSH COMMAND' REMOTE_DIR`: make a folder on an SSH host hold a repo.

The ssh line is taken as the provider prints it (`ssh -p 41234 root@1.2.3.4`). Bytes are
staged in the local HF cache and pushed over SSH; the host gets bytes, never the token.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import click

from ..transfer.jobs import NullProgress, ProgressSink
from .common import handle_errors, repo_options
from .render import plan_lines, push_result_json, push_summary_line
from .sync import plan_options, progress_sink, transfer_config, transfer_options


def _labelled_sink(enabled: bool, label: str) -> ProgressSink:
    """The sync command's bars with a label, so "downloaded" and "pushed" read apart."""
    sink = progress_sink(enabled)
    if isinstance(sink, NullProgress):
        return sink
    from .progress import TqdmProgress

    class Labelled(TqdmProgress):
        def _desc(self) -> str:
            return f"{label} {super()._desc()}"

    return Labelled()


def _on_sigterm(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise KeyboardInterrupt  # the same clean exit 130 as Ctrl-C, parts kept on the host


@click.command("to-remote")
@click.argument("repo")
@click.argument("ssh_command", metavar="'SSH COMMAND'")
@click.argument("remote_dir")
@repo_options
@plan_options
@transfer_options
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Local HF cache used as the staging area (default: HF_HUB_CACHE).",
)
@click.option(
    "--via",
    type=click.Choice(["push", "pull", "auto"]),
    default="auto",
    show_default=True,
    help="push: bytes go from here over SSH; pull: the host downloads itself (not yet); "
    "auto: push until pull exists.",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Seconds to wait for the SSH connection (default: ConnectTimeout, else 30).",
)
@handle_errors
def to_remote(
    repo: str,
    ssh_command: str,
    remote_dir: str,
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
    connections: int,
    chunk_size: str,
    bwlimit: str | None,
    cache_dir: Path | None,
    via: str,
    connect_timeout: float | None,
) -> None:
    """Make REMOTE_DIR on the SSH host hold exactly REPO's files, pushing only what changed.

    'SSH COMMAND' is the ssh line your provider prints, quoted as one argument, e.g.
    'ssh -p 41234 root@1.2.3.4'. REMOTE_DIR is absolute, ~/..., or relative to the remote
    home. The remote folder ends up as `hfsync sync` or `hf download --local-dir` would make
    it, metadata included. Bytes are staged in the local HF cache (--cache-dir).
    """
    from ..remote_sync import to_remote as run

    signal.signal(signal.SIGTERM, _on_sigterm)
    config = transfer_config(connections, chunk_size, bwlimit)
    bars = not (quiet or as_json or dry_run)
    download_progress = _labelled_sink(bars, "download")
    push_progress = _labelled_sink(bars, "push")
    try:
        result = run(
            repo,
            ssh_command,
            remote_dir,
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
            via=via,
            download_progress=download_progress,
            push_progress=push_progress,
            connect_timeout=connect_timeout,
        )
    finally:
        download_progress.close()
        push_progress.close()
    if not quiet and not as_json:
        for note in result.notes:
            click.echo(f"hfsync: note: {note}", err=True)
    if as_json:
        click.echo(json.dumps(push_result_json(result), indent=2))
        return
    if quiet:
        return
    if dry_run:
        click.echo(f"{repo} @ {result.commit} -> {result.target}")
        for line in plan_lines(result.plan):
            click.echo(line)
    click.echo(push_summary_line(result))
