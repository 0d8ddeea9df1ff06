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
from .common import echo_outcome, handle_errors, repo_options
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
    envvar="HFSYNC_VIA",
    show_envvar=True,
    help="push: bytes go from here over SSH; pull: the host runs hfsync and downloads from "
    "the Hub itself (token over the channel's stdin); auto: pull when the host can, else push.",
)
@click.option(
    "--host",
    "extra_hosts",
    multiple=True,
    metavar="'SSH COMMAND'",
    help="Another host that gets REMOTE_DIR too (repeatable).",
)
@click.option(
    "--hosts-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="More hosts: one ssh command per line, # comments.",
)
@click.option(
    "--parallel-hosts",
    type=click.IntRange(1, 256),
    default=None,
    help="Hosts at a time (default: all, at most 8).",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Seconds to wait for the SSH connection (default: ConnectTimeout, else 30).",
)
@click.option(
    "--streams",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Push: files at a time, each on its own remote helper over the one SSH connection "
    "(helps many small files when the host, not the link, is the limit).",
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
    connections: int | None,
    chunk_size: str,
    bwlimit: str | None,
    cache_dir: Path | None,
    via: str,
    connect_timeout: float | None,
    extra_hosts: tuple[str, ...],
    hosts_file: Path | None,
    parallel_hosts: int | None,
    streams: int,
) -> None:
    """Make REMOTE_DIR on the SSH host hold exactly REPO's files, pushing only what changed.

    'SSH COMMAND' is the ssh line your provider prints, quoted as one argument, e.g.
    'ssh -p 41234 root@1.2.3.4'. REMOTE_DIR is absolute, ~/..., or relative to the remote
    home. The remote folder ends up as `hfsync sync` or `hf download --local-dir` would make
    it, metadata included. Bytes are staged in the local HF cache (--cache-dir).

    With --via pull (or auto, when the host has python3 and reaches the endpoint) the host
    runs this same hfsync and downloads from the Hub itself. --host / --hosts-file add hosts:
    each gets REMOTE_DIR, --parallel-hosts at a time; the exit code is the most severe.
    """
    from ..fleet import RunOptions, Sinks, check_options, read_hosts_file, sync_host

    signal.signal(signal.SIGTERM, _on_sigterm)
    config = transfer_config(connections, chunk_size, bwlimit)
    opts = RunOptions(
        repo, remote_dir, repo_type=repo_type, revision=revision, include=include,
        exclude=exclude, delete=delete, max_delete=max_delete, dry_run=dry_run,
        checksum=checksum, token=token, endpoint=endpoint, config=config,
        cache_dir=cache_dir, via=via, connect_timeout=connect_timeout, streams=streams,
    )  # fmt: skip
    hosts = [ssh_command, *extra_hosts]
    if hosts_file is not None:
        hosts += read_hosts_file(hosts_file)
    check_options(opts)
    if len(hosts) > 1:
        _many_hosts(opts, hosts, parallel_hosts, quiet=quiet, as_json=as_json)
        return
    bars = not (quiet or as_json or dry_run)
    sinks = Sinks(
        pull=_labelled_sink(bars, "pull"),
        download=_labelled_sink(bars, "download"),
        push=_labelled_sink(bars, "push"),
    )
    try:
        outcome = sync_host(opts, ssh_command, sinks=sinks)
    finally:
        for sink in (sinks.pull, sinks.download, sinks.push):
            sink.close()
    result = outcome.result
    if not quiet and not as_json:
        if via == "auto":
            click.echo(f"hfsync: via {outcome.via}: {outcome.via_reason}", err=True)
        for note in result.notes:
            click.echo(f"hfsync: note: {note}", err=True)
    if hasattr(result, "doc"):  # the host ran the pull (a dry run plans the push way)
        _pull_output(result, repo, quiet=quiet, as_json=as_json, dry_run=dry_run)
        return
    echo_outcome(
        lambda: {**push_result_json(result), "via_reason": outcome.via_reason},
        as_json=as_json,
        quiet=quiet,
        dry_run=dry_run,
        header=f"{repo} @ {result.commit} -> {result.target}",
        plan=lambda: plan_lines(result.plan),
        summary=lambda: push_summary_line(result),
    )


def _pull_output(result: Any, repo: str, *, quiet: bool, as_json: bool, dry_run: bool) -> None:
    from .render_remote import pull_json, pull_plan_lines, pull_summary_line

    echo_outcome(
        lambda: pull_json(result),
        as_json=as_json,
        quiet=quiet,
        dry_run=dry_run,
        header=f"{repo} @ {result.doc.get('commit')} -> {result.target}",
        plan=lambda: pull_plan_lines(result.doc),
        summary=lambda: pull_summary_line(result),
    )


def _many_hosts(
    opts: Any, hosts: list[str], parallel: int | None, *, quiet: bool, as_json: bool
) -> None:
    """Every host at once (bounded): one line per host, the table, the most severe exit."""
    from ..fleet import Sinks, sync_hosts
    from .render_remote import HostBars, fleet_json, fleet_table, host_line

    bars = HostBars(len(hosts))
    drawing = bars.enabled and not (quiet or as_json or opts.dry_run)

    def sinks(index: int, label: str) -> Sinks:
        if not drawing:
            return Sinks()
        sink = bars.sink(index, label)
        return Sinks(pull=sink, push=sink)

    def done(index: int, out: Any) -> None:
        if not drawing and not quiet and not as_json:
            click.echo(host_line(out), err=True)

    try:
        fleet = sync_hosts(opts, hosts, parallel=parallel, sinks=sinks, on_host_done=done)
    finally:
        bars.close()
    code = fleet.exit_code
    if as_json:
        click.echo(json.dumps(fleet_json(fleet), indent=2))
    elif not quiet or code:
        for line in fleet_table(fleet):
            click.echo(line, err=bool(quiet))
    if code:
        failed = [h for h in fleet.hosts if h.exit_code]
        click.echo(
            f"hfsync: error: {len(failed)} of {len(hosts)} hosts failed (most severe: exit {code})",
            err=True,
        )
        raise SystemExit(code)
