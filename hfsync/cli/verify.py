"""`hfsync verify DEST | --cache [REPO] | --remote SSH REMOTE_DIR`: re-hash every file against
its content id (recorded locally; for a remote folder, the Hub's listing).

Exit 5 when anything is mismatched or missing (or, with `--extra`, unknown); `--fix` refetches
exactly those files and nothing else.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import click

from ..errors import UsageError
from ..files import REPO_TYPES
from .common import cache_dir_option, debug_option, handle_errors, json_option
from .render_mirror import verify_json, verify_lines, verify_summary


class _HashBar:
    """A tqdm bar of bytes hashed, on a terminal only (stderr, so --json stays clean)."""

    def __init__(self) -> None:
        self._bar = None
        self._lock = threading.Lock()

    def start(self, total_bytes: int, files: int) -> None:
        if not sys.stderr.isatty() or not files:
            return
        from tqdm import tqdm

        self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=f"hashing {files} files", file=sys.stderr, leave=False)  # fmt: skip

    def advance(self, nbytes: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(nbytes)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@click.command()
@click.argument("target", required=False, metavar="[DEST | REPO | REMOTE_DIR]")
@click.option(
    "--cache", "use_cache", is_flag=True, help="Verify the HF cache (all repos, or the REPO given)."
)
@cache_dir_option
@click.option("--repo-type", type=click.Choice(REPO_TYPES), default="model", show_default=True)
@click.option("--extra", is_flag=True, help="Also report (and fail on) files nothing recorded.")
@click.option("--fix", is_flag=True, help="Refetch exactly the mismatched and missing files.")
@click.option(
    "--repo",
    "repo_id",
    metavar="REPO",
    help="The repo a folder holds (needed by --fix unless the folder is a mirror's).",
)
@click.option("--token", default=None, envvar="HFSYNC_TOKEN", help="Hub token for --fix.")
@click.option("--endpoint", default=None, envvar="HFSYNC_ENDPOINT", help="Hub endpoint.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 256),
    default=None,
    help="Hashing threads (default: one per core).",
)
@click.option(
    "--remote",
    metavar="SSH",
    help="Verify REMOTE_DIR on this SSH host (one quoted ssh line) against the Hub; "
    "hashing runs on the host. Needs --repo.",
)
@click.option(
    "--revision",
    default=None,
    help="--remote: the commit to verify against (default: the one the folder records).",
)
@click.option("--include", multiple=True, metavar="GLOB", help="--remote: files to expect.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="--remote: files not to expect.")
@click.option("--quiet", "-q", is_flag=True, envvar="HFSYNC_QUIET", show_envvar=True,
              help="Print problems only.")  # fmt: skip
@json_option
@debug_option
@handle_errors
def verify(
    target: str | None,
    use_cache: bool,
    cache_dir: Path | None,
    repo_type: str,
    extra: bool,
    fix: bool,
    repo_id: str | None,
    token: str | None,
    endpoint: str | None,
    jobs: int | None,
    remote: str | None,
    revision: str | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    quiet: bool,
    as_json: bool,
    debug: bool,
) -> None:
    """Hash every file of DEST (or of the HF cache with --cache) against its content id."""
    from .. import verify as lib

    if remote is not None:
        _verify_remote(remote, target, repo_id, repo_type, revision, include, exclude,
                       extra=extra, fix=fix, token=token, endpoint=endpoint,
                       cache_dir=cache_dir, quiet=quiet, as_json=as_json)  # fmt: skip
        return
    if revision or include or exclude:
        raise UsageError("--revision, --include and --exclude go with --remote")
    cache = use_cache or cache_dir is not None
    if not cache and target is None:
        raise UsageError("give DEST, or --cache [REPO]")
    progress = None if (quiet or as_json) else _HashBar()
    started = time.monotonic()
    if cache:
        report = lib.verify_cache(cache_dir, target, repo_type, extra=extra, workers=jobs,
                                  progress=progress)  # fmt: skip
    else:
        report = lib.verify_folder(Path(target), extra=extra, workers=jobs, progress=progress)
    duration = time.monotonic() - started
    fixed: list[str] = []
    if fix and report.broken:
        fixed = [p.path for p in report.broken]
        if cache:
            lib.fix_cache(cache_dir, report, token=token, endpoint=endpoint)
        else:
            repo_id, repo_type = _folder_repo(Path(target), repo_id, repo_type)
            lib.fix_folder(Path(target), report, repo_id=repo_id, repo_type=repo_type,
                           token=token, endpoint=endpoint)  # fmt: skip
    failed = report.failed if not fixed else report.extra_checked and bool(report.of("extra"))
    if as_json:
        doc = verify_json(report, duration)
        doc["fixed"] = fixed
        doc["ok"] = not failed
        click.echo(json.dumps(doc, indent=2))
    else:
        for line in verify_lines(report):
            click.echo(line)
        if not quiet:
            click.echo(verify_summary(report, duration))
        if fixed:
            click.echo(f"fixed {len(fixed)} files: refetched and verified")
    if failed:
        click.echo(f"hfsync: error: {verify_summary(report, duration)}", err=True)
        sys.exit(5)


def _verify_remote(
    ssh_command: str,
    remote_dir: str | None,
    repo_id: str | None,
    repo_type: str,
    revision: str | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    *,
    extra: bool,
    fix: bool,
    token: str | None,
    endpoint: str | None,
    cache_dir: Path | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """`verify --remote 'SSH' REMOTE_DIR --repo REPO`: the same report, lines and exit codes as
    a local verify; `--fix` pushes exactly the broken files (result in `fix` of the JSON)."""
    from .. import verify_remote as lib

    if remote_dir is None or repo_id is None:
        raise UsageError("--remote needs REMOTE_DIR and --repo REPO (the repo the folder holds)")
    started = time.monotonic()
    checked = lib.verify_remote(
        repo_id, ssh_command, remote_dir, repo_type=repo_type, revision=revision,
        include=include, exclude=exclude, extra=extra, token=token, endpoint=endpoint,
        cache_dir=cache_dir, progress=None if (quiet or as_json) else _HashBar(),
    )  # fmt: skip
    report, duration = checked.report, time.monotonic() - started
    fixed: list[str] = []
    outcome = None
    if fix and report.broken:
        fixed = [p.path for p in report.broken]
        outcome = lib.fix_remote(repo_id, ssh_command, remote_dir, checked, repo_type=repo_type,
                                 token=token, endpoint=endpoint, cache_dir=cache_dir)  # fmt: skip
    failed = report.failed if not fixed else report.extra_checked and bool(report.of("extra"))
    if as_json:
        doc = verify_json(report, duration)
        doc.update(commit=checked.commit, fixed=fixed, ok=not failed)
        if outcome is not None:
            pushed = sorted(p for p, o in outcome.pushed.items() if o.ok)
            doc["fix"] = {
                "commit": outcome.commit,
                "bytes_pushed": outcome.bytes_pushed,
                "bytes_downloaded": outcome.bytes_downloaded,
                "pushed": pushed,
            }
        click.echo(json.dumps(doc, indent=2))
    else:
        for line in verify_lines(report):
            click.echo(line)
        if not quiet:
            click.echo(f"{verify_summary(report, duration)} (against commit {checked.commit[:12]})")
        if outcome is not None:
            click.echo(f"fixed {len(fixed)} files: pushed {outcome.bytes_pushed} bytes, verified "
                       "on the host")  # fmt: skip
    if failed:
        click.echo(f"hfsync: error: {verify_summary(report, duration)}", err=True)
        sys.exit(5)


def _folder_repo(dest: Path, repo_id: str | None, repo_type: str) -> tuple[str, str]:
    """--repo, else what an atomic mirror destination recorded about itself."""
    if repo_id:
        return repo_id, repo_type
    from ..mirror.snapshots import read_source

    source = read_source(dest.expanduser().absolute())
    if source and isinstance(source.get("repo_id"), str):
        return source["repo_id"], str(source.get("repo_type") or repo_type)
    raise UsageError(f"--fix needs --repo REPO: {dest} does not record which repo it holds")
