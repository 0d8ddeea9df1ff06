"""`hfsync mirror CONFIG.toml`: refresh every repo of a config once, cron-safe.

Every option also comes from an `HFSYNC_*` variable (a cron job or a systemd unit sets them
once); a command-line or environment value overrides the config's own. Output is made for
logs: no bars without a terminal, one timestamped line per repo, nothing at all with `--quiet`
unless something failed.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from pathlib import Path

import click

from ..units import parse_size
from .common import debug_option, handle_errors
from .render_mirror import item_line, mirror_error, mirror_summary, planned_lines


@click.command()
@click.argument(
    "config_path",
    metavar="CONFIG.toml",
    envvar="HFSYNC_MIRROR_CONFIG",
    type=click.Path(path_type=Path, dir_okay=False),
)
@click.option(
    "--dry-run",
    "-n",
    is_flag=True,
    help="Print each repo's plan; write nothing (no lock, state, log, metrics or snapshot).",
)
@click.option(
    "--wait",
    is_flag=True,
    envvar="HFSYNC_WAIT",
    show_envvar=True,
    help="Wait for a running mirror of this config instead of exiting 8.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="HFSYNC_JSON",
    show_envvar=True,
    help="Print one JSON summary document.",
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    envvar="HFSYNC_QUIET",
    show_envvar=True,
    help="Print nothing on success (failures still go to stderr).",
)
@click.option(
    "--log-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="HFSYNC_LOG_FILE",
    show_envvar=True,
    help="Append one JSON line per repo and run.",
)
@click.option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="HFSYNC_METRICS_FILE",
    show_envvar=True,
    help="Write a Prometheus textfile (node_exporter's textfile collector).",
)
@click.option(
    "--connections",
    "-j",
    type=click.IntRange(1, 256),
    envvar="HFSYNC_CONNECTIONS",
    show_envvar=True,
    help="HTTP connections in total (overrides the config's `connections`).",
)
@click.option(
    "--bwlimit", envvar="HFSYNC_BWLIMIT", show_envvar=True, help="Total rate cap, e.g. 50M."
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    envvar="HFSYNC_PARALLEL",
    show_envvar=True,
    help="Repos synced at a time (they share the connections).",
)
@click.option(
    "--endpoint",
    envvar="HFSYNC_ENDPOINT",
    show_envvar=True,
    help="Hub endpoint (overrides the config).",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="HFSYNC_TOKEN_FILE",
    show_envvar=True,
    help="File holding the Hub token.",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="HFSYNC_STATE_DIR",
    show_envvar=True,
    help="Where the lock and state file live.",
)
@debug_option
@handle_errors
def mirror(
    config_path: Path,
    dry_run: bool,
    wait: bool,
    as_json: bool,
    quiet: bool,
    log_file: Path | None,
    metrics_file: Path | None,
    connections: int | None,
    bwlimit: str | None,
    parallel: int | None,
    endpoint: str | None,
    token_file: Path | None,
    state_dir: Path | None,
    debug: bool,
) -> None:
    """Keep every repo of CONFIG.toml current; one failing repo never stops the rest.

    Exits with the most severe per-repo code (8 at once if another run holds the config's
    lock, unless --wait).
    """
    from ..mirror import load_config, run_mirror

    config = load_config(config_path)
    overrides = {
        "log_file": log_file,
        "metrics_file": metrics_file,
        "connections": connections,
        "bwlimit": parse_size(bwlimit, "--bwlimit") if bwlimit else None,
        "parallel": parallel,
        "endpoint": endpoint,
        "token_file": token_file.absolute() if token_file else None,
        "state_dir": state_dir.absolute() if state_dir else None,
    }
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    lines = not (as_json or quiet)
    printing = threading.Lock()

    def done(result) -> None:  # noqa: ANN001 - an ItemResult
        line = item_line(result)
        with printing:
            if lines:
                click.echo(line)
                for planned in planned_lines(result):
                    click.echo(planned)
            elif quiet and not as_json and result.exit_code:
                click.echo(line, err=True)

    report = run_mirror(config, wait=wait, progress_factory=_bars if lines else None,
                        on_done=done, dry_run=dry_run)  # fmt: skip
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    elif lines:
        click.echo(mirror_summary(report))
    error = mirror_error(report)
    if report.interrupted:
        from ..defaults import INTERRUPTED_MESSAGE

        error = INTERRUPTED_MESSAGE
    if error:
        click.echo(f"hfsync: error: {error}", err=True)
    sys.exit(report.exit_code)


def _bars():  # noqa: ANN202 - a ProgressSink
    """tqdm bars on a terminal only: cron and pipes get the lines alone."""
    from .sync import progress_sink

    return progress_sink(sys.stderr.isatty())
