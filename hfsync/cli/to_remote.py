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

from ..plan import Action
from ..transfer.jobs import NullProgress, ProgressSink
from ..units import human_size
from .common import handle_errors, repo_options
from .render import plan_lines
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
        click.echo(json.dumps(result_json(result), indent=2))
        return
    if quiet:
        return
    if dry_run:
        click.echo(f"{repo} @ {result.commit} -> {result.target}")
        for line in plan_lines(result.plan):
            click.echo(line)
    click.echo(summary(result))


def summary(result: Any) -> str:
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


def result_json(result: Any) -> dict[str, Any]:
    """The `--json` document: per-file action, reason, size, bytes pushed; totals."""
    downloaded: dict[str, int] = {}
    if result.download:
        for outcome in result.download.outcomes:
            downloaded[outcome.job.path] = outcome.bytes_transferred
    files = []
    for item in result.plan.items:
        entry: dict[str, Any] = {
            "path": item.path,
            "action": item.action.value,
            "reason": item.reason,
            "size": item.size,
        }
        if item.remote is not None:
            entry["etag"] = item.remote.etag
            entry["lfs"] = item.remote.is_lfs
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
