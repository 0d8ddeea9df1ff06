"""The sync orchestration: listing → scan → plan → transfers → deletes → finish.

This is the library entry point (`hfsync.sync`); the CLI only parses options and renders the
result. Ordering rules that keep a target trustworthy live here: the revision is pinned to one
commit before anything else, deletes run only after every transfer succeeded, and a dry run
writes nothing at all.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import HfsyncError, UsageError, most_severe
from .files import REPO_TYPES, RemoteFile, check_listing, validate_repo_id
from .hub import HubClient
from .plan import Plan, PlanOptions, check_fold_collisions, make_plan, selected
from .targets import Target, open_target
from .transfer.jobs import NullProgress, ProgressSink, TransferConfig, TransferReport


@dataclass
class SyncResult:
    """What a sync did (or, for a dry run, would do)."""

    repo_id: str
    repo_type: str
    revision: str
    commit: str
    target: str
    plan: Plan
    dry_run: bool
    report: TransferReport | None = None
    deleted: list[str] = field(default_factory=list)
    duration: float = 0.0
    api_calls: int = 0

    @property
    def bytes_transferred(self) -> int:
        return self.report.bytes_transferred if self.report else 0


@dataclass(frozen=True)
class GivenListing:
    """A commit's listing (and data URLs for its files) that someone already fetched: a
    fleet's driving machine hands it to every pulling host (docs/scale-out.md), so the host
    makes no revision, tree or `/resolve` call of its own. Checked like the Hub's answer."""

    commit: str
    files: list[RemoteFile]
    urls: Mapping[str, str] = field(default_factory=dict)


class DeleteLimitError(HfsyncError):
    """More deletions were planned than `--max-delete` allows; none were made."""

    exit_code = 1


def sync(
    repo_id: str,
    dest: Path | str | None = None,
    *,
    repo_type: str = "model",
    revision: str = "main",
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    delete: bool = False,
    max_delete: int | None = None,
    dry_run: bool = False,
    checksum: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    config: TransferConfig | None = None,
    cache_dir: Path | str | None = None,
    progress: ProgressSink | None = None,
    client: HubClient | None = None,
    target: Target | None = None,
    given: GivenListing | None = None,
) -> SyncResult:
    """Make `dest` (or the HF cache) hold exactly the files of `repo_id` at `revision`.

    `given`: the listing (and data URLs) of the commit `revision` names, fetched elsewhere."""
    if repo_type not in REPO_TYPES:
        raise UsageError(f"--repo-type must be one of {', '.join(REPO_TYPES)}, not {repo_type!r}")
    validate_repo_id(repo_id)
    started = time.monotonic()
    config = config or TransferConfig()
    client = client or HubClient(endpoint, token, pool_size=config.most_connections + 4)
    target = target or open_target(dest, repo_id=repo_id, repo_type=repo_type, cache_dir=cache_dir)
    progress = progress or NullProgress()
    calls_before = client.api_calls

    # The commit is looked up before the target's lock is taken: a missing repo, a bad token or
    # a dead endpoint then leaves DEST exactly as it was (no `.cache/huggingface` created).
    commit = given.commit if given is not None else None
    if commit is None:
        commit = client.resolve_revision(repo_id, repo_type, revision)

    def run() -> SyncResult:
        if given is not None:
            files, fetched = list(given.files), True
        else:
            files = target.read_listing(commit)
            fetched = False
        if files is None:
            files = client.list_files(repo_id, repo_type, commit)
            fetched = True
        files = check_listing(files)  # before the target is even looked at; once per run
        # Only the selected files are scanned against the listing: an excluded file is never
        # hashed (`--checksum`, or a `cp -r` copy without metadata); a `--delete` walk only
        # stats it. The planner still sees the whole listing: excluded files show as skipped.
        wanted = [f for f in files if selected(f.path, include, exclude)]
        fold = _folds_names(target)
        if fold:
            check_fold_collisions(f.path for f in wanted)
        remote = {remote_file.path: remote_file for remote_file in wanted}
        state = target.scan(remote, checksum=checksum, all_files=delete, commit=commit)
        plan = make_plan(commit, files, state, PlanOptions(include, exclude, delete, fold))
        if fetched and not dry_run:
            target.write_listing(commit, files)  # only a listing the planner accepted
        result = SyncResult(repo_id, repo_type, revision, commit, target.description, plan, dry_run)
        if not dry_run:
            _apply(plan, result)
        result.duration = time.monotonic() - started
        result.api_calls = client.api_calls - calls_before
        return result

    def _apply(plan: Plan, result: SyncResult) -> None:
        if max_delete is not None and len(plan.deletes) > max_delete:
            # Checked before any byte moves so a surprising mass deletion is caught early.
            raise DeleteLimitError(
                f"{len(plan.deletes)} files would be deleted but --max-delete is {max_delete}; "
                "nothing was changed"
            )
        for item in plan.refreshes:
            target.mark_current(_remote(item.remote), plan.commit, item.held)
        urls = given.urls if given is not None else {}
        jobs = []
        shortcuts, key = client.gate.shortcuts, (repo_type, repo_id, plan.commit)
        for item in plan.transfers:
            url = client.resolve_url(repo_id, repo_type, plan.commit, item.path)
            remote = _remote(item.remote)
            if not remote.is_lfs:  # may skip its /resolve hop (resolve_cache.py)
                predicted = client.resolve_cache_url(repo_id, repo_type, plan.commit, item.path)
                shortcuts.expect(url, predicted, key)
            jobs.append(target.job(remote, plan.commit, url))
        for job in jobs:
            job.cached_url = urls.get(job.path)  # resolved once for a whole fleet
        if jobs:
            from .transfer import run_transfers

            result.report = run_transfers(jobs, client, config, progress)
            _raise_failures(result.report)
        for item in plan.deletes:
            target.delete(item.path, plan.commit)
            result.deleted.append(item.path)
        target.finish(plan.commit, revision)

    if dry_run:
        return run()
    with target.lock():
        return run()


def _folds_names(target: Target) -> bool:
    """Whether the target's filesystem stores names equal under `plan.fold_key` as one file.

    Targets that cannot tell (or never fold, like an SSH host's state as reported) say nothing;
    the attribute is optional so they need not implement it.
    """
    return bool(getattr(target, "case_insensitive", False))


def _remote(remote: RemoteFile | None) -> RemoteFile:
    assert remote is not None, "planned transfers always carry their remote file"
    return remote


def _raise_failures(report: TransferReport) -> None:
    """Turn failed files into one error: the most severe failure's kind, with a count.

    Severity, not path order, decides (errors.SEVERITY): a network failure on `a.bin` must not
    hide an integrity failure on `z.bin` from the exit code cron and monitoring branch on.
    """
    failures = report.failures
    if not failures:
        return
    errors = [
        f.error
        if isinstance(f.error, HfsyncError)
        else HfsyncError(f"{f.job.path}: {f.error or 'failed'}")
        for f in failures
    ]
    worst = most_severe(errors)
    assert isinstance(worst, HfsyncError)
    if len(failures) > 1:
        error = type(worst)(f"{len(failures)} files failed; most severe: {worst}")
        error.exit_code = worst.exit_code
        raise error from worst
    raise worst
