"""`hfsync doctor`: one line per environment check; non-zero exit when one fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..files import REPO_TYPES
from ..units import parse_size
from .common import debug_option, handle_errors, json_option
from .render_mirror import doctor_lines


@click.command()
@click.option(
    "--endpoint",
    default=None,
    envvar="HFSYNC_ENDPOINT",
    help="Hub endpoint (default: HF_ENDPOINT, then https://huggingface.co).",
)
@click.option("--token", default=None, help="Token to check (default: HF_TOKEN, token file).")
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="HFSYNC_TOKEN_FILE",
    help="File holding the token to check.",
)
@click.option(
    "--dest",
    "dests",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Destination whose free space to check (repeatable; default: the HF cache).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="HFSYNC_MIRROR_CONFIG",
    help="Take endpoint, token file and destinations from a mirror config.",
)
@click.option("--repo", default=None, help="Probe one file of REPO: CDN redirect, Range.")
@click.option("--repo-type", type=click.Choice(REPO_TYPES), default="model", show_default=True)
@click.option("--min-free", default="1G", show_default=True, help="Free space a dest needs.")
@json_option
@debug_option
@handle_errors
def doctor(
    endpoint: str | None,
    token: str | None,
    token_file: Path | None,
    dests: tuple[Path, ...],
    config_path: Path | None,
    repo: str | None,
    repo_type: str,
    min_free: str,
    as_json: bool,
    debug: bool,
) -> None:
    """Check the endpoint, token, clock, disk and proxy a sync depends on."""
    from .. import doctor as lib
    from ..errors import UsageError

    targets = list(dests)
    if config_path is not None:
        from ..mirror import load_config
        from ..targets.cache import cache_root

        config = load_config(config_path)
        endpoint = endpoint or config.endpoint
        token_file = token_file or config.token_file
        for item in config.items:
            where = item.dest if item.dest is not None else cache_root(item.cache_dir)
            if where not in targets:
                targets.append(where)
    if token is None and token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise UsageError(f"cannot read the token file {token_file}: {exc.strerror}") from exc
    checks = lib.run_checks(endpoint=endpoint, token=token, dests=targets, repo=repo,
                            repo_type=repo_type,
                            min_free=parse_size(min_free, "--min-free"))  # fmt: skip
    code = lib.exit_code(checks)
    if as_json:
        doc = {"ok": code == 0, "exit_code": code, "checks": [c.to_json() for c in checks]}
        click.echo(json.dumps(doc, indent=2))
    else:
        for line in doctor_lines(checks):
            click.echo(line)
    sys.exit(code)
