"""`to_remote()`: make a folder on an SSH host hold exactly a repo's files (push mode).

The same pipeline as `orchestrate.sync` (docs/architecture.md, "Pipeline"), with the SSH host
as the target state and the local HF cache as the staging area:

    pin revision -> listing (local cache's trees/<commit>.json, else the API) -> connect ->
    remote lock -> remote scan (one command) -> make_plan -> records -> [download what the
    local cache lacks || push each file the moment it is local] -> deletes

Bytes come from the local cache so later runs and other hosts reuse them; files missing there
are downloaded by the transfer engine (verified, resumable) into the cache, and each is pushed
as soon as it is placed, so downloading and pushing overlap. The token stays on this machine:
the host receives bytes only. Ordering rules are the local ones: deletes only after every
transfer succeeded, never beyond `--max-delete`, and a dry run writes nothing anywhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import HfsyncError, UsageError, most_severe
from .files import REPO_TYPES, RemoteFile, TargetFile, check_listing, validate_repo_id
from .hub import HubClient
from .plan import Plan, PlanItem, PlanOptions, make_plan
from .remote.channel import SourceShrankError
from .remote.connection import SSHConnection, connect
from .remote.host import RemoteHost, check_remote_dir
from .remote.push import SMALL_FRAME, Pusher, PushJob, PushOutcome, read_small
from .remote.shell_host import open_host
from .remote.sshcmd import parse_ssh_command
from .remote.state import RemoteTarget, part_name
from .targets.cache import CacheTarget
from .transfer.jobs import FileJob, NullProgress, ProgressSink, TransferConfig, TransferReport

VIA = ("push", "pull", "auto")


class DeleteLimitError(HfsyncError):
    """More deletions were planned than `--max-delete` allows; none were made. (The same
    rule as orchestrate's; this layer may not import its sibling.)"""

    exit_code = 1


@dataclass
class RemoteSyncResult:
    """What a to-remote run did (or, for a dry run, would do)."""

    repo_id: str
    repo_type: str
    revision: str
    commit: str
    target: str
    plan: Plan
    dry_run: bool
    via: str = "push"
    download: TransferReport | None = None
    pushed: dict[str, PushOutcome] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reconnects: int = 0
    duration: float = 0.0
    push_duration: float = 0.0
    api_calls: int = 0

    @property
    def bytes_downloaded(self) -> int:
        return self.download.bytes_transferred if self.download else 0

    @property
    def bytes_pushed(self) -> int:
        return sum(o.bytes_sent for o in self.pushed.values())


class _StagingSink:
    """The download engine's ProgressSink: draws through `inner` and hands each verified,
    placed file to the pusher the moment the engine is done with it."""

    def __init__(self, inner: ProgressSink, on_done, on_fail) -> None:  # noqa: ANN001
        self.inner = inner
        self.on_done = on_done
        self.on_fail = on_fail

    def start(self, total_bytes: int, jobs: list[FileJob]) -> None:
        self.inner.start(total_bytes, jobs)

    def advance(self, job: FileJob, nbytes: int) -> None:
        self.inner.advance(job, nbytes)

    def file_done(self, job: FileJob, ok: bool) -> None:
        self.inner.file_done(job, ok)
        (self.on_done if ok else self.on_fail)(job)

    def close(self) -> None:
        self.inner.close()


def to_remote(
    repo_id: str,
    ssh_command: str,
    remote_dir: str,
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
    via: str = "push",
    download_progress: ProgressSink | None = None,
    push_progress: ProgressSink | None = None,
    streams: int = 1,
    connect_timeout: float | None = None,
    reconnect_backoff: float = 1.0,
    client: HubClient | None = None,
    conn: SSHConnection | None = None,
    connector: Callable[[], SSHConnection] | None = None,
) -> RemoteSyncResult:
    """Make REMOTE_DIR on the host of `ssh_command` hold exactly `repo_id`'s files.

    `conn`: an open connection to that host to use (and close) instead of connecting, e.g.
    the one `--via auto` probed the host with (hfsync.fleet). `connector`: how to connect
    instead of `connect(ssh_command)` (hfsync.fleet registers the connection); it runs on
    the thread that opens the host while the listing runs."""
    if repo_type not in REPO_TYPES:
        raise UsageError(f"--repo-type must be one of {', '.join(REPO_TYPES)}, not {repo_type!r}")
    if via not in VIA:
        raise UsageError(f"--via must be one of {', '.join(VIA)}, not {via!r}")
    if via == "pull":
        raise UsageError("--via pull is not available yet; use --via push (or auto)")
    validate_repo_id(repo_id)
    check_remote_dir(remote_dir)
    spec = parse_ssh_command(ssh_command)  # usage errors before any network
    started = time.monotonic()
    config = config or TransferConfig()
    client = client or HubClient(endpoint, token, pool_size=config.most_connections + 4)
    cache = CacheTarget(repo_id, repo_type, cache_dir)
    calls_before = client.api_calls

    given = conn
    if given is not None:
        connector = lambda: given  # noqa: E731
    elif connector is None:
        connector = lambda: connect(spec, timeout=connect_timeout)  # noqa: E731
    opening = HostOpening(
        connector,
        remote_dir,
        lock=not dry_run,
        prestart=not dry_run,
    )
    try:  # while the host connects, authenticates and starts its agents:
        commit = client.resolve_revision(repo_id, repo_type, revision)
        files = cache.read_listing(commit)
        fetched = files is None
        if files is None:
            files = client.list_files(repo_id, repo_type, commit)
        check_listing(files)
        held = None if dry_run else _cache_state(cache, commit, files)
        early = {} if held is None else _prefetch(cache, commit, files, held, opening)
        host, helper_note = opening.result()
    except BaseException:
        opening.abandon()
        raise
    conn = host.conn
    target = RemoteTarget(host)
    try:
        result = _plan(target, files, commit, include, exclude, delete, checksum)
        if not dry_run:
            assert held is not None
            if fetched:
                cache.write_listing(commit, files)
            _apply(
                result, target, host, cache, client, config, held, early,
                max_delete=max_delete,
                download_progress=download_progress or NullProgress(),
                push_progress=push_progress or NullProgress(),
                streams=streams,
                backoff=reconnect_backoff,
                revision=revision,
            )  # fmt: skip
    finally:
        host.close()
    result.repo_id, result.repo_type, result.revision = repo_id, repo_type, revision
    result.via = "push"
    result.dry_run = dry_run
    result.notes = list(conn.notes) + ([helper_note] if helper_note else [])
    result.duration = time.monotonic() - started
    result.api_calls = client.api_calls - calls_before
    return result


class HostOpening:
    """Connecting, authenticating and starting the host's control session (and, for a real
    run, its first push stream) on a thread, while this machine resolves the revision, lists
    the repo and scans its own cache: on 2,000 small files those overlap ~0.5 s of waiting on
    the host (its login shell and python3 starting) with ~0.3 s of local work.

    `result()` hands over the open host (or raises what opening it raised); `abandon()` is
    for a run that failed before that: the host is closed now, or by the thread as soon as
    it has opened it, so a Ctrl-C never waits for a slow handshake."""

    def __init__(
        self, connector: Callable[[], SSHConnection], remote_dir: str, *, lock: bool,
        prestart: bool,
    ) -> None:  # fmt: skip
        self._connector, self._remote_dir = connector, remote_dir
        self._lock, self._prestart = lock, prestart
        self._guard = threading.Lock()
        self._abandoned = False
        self._opened: tuple[RemoteHost, str] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._open, name="hfsync-connect", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        try:
            conn = self._connector()
            try:  # the control session (the lock unless a dry run): the agent, or the shell
                host, note = open_host(conn, self._remote_dir, lock=self._lock)
            except BaseException:
                conn.close()
                raise
            if self._prestart:
                try:
                    host.prestart_stream()
                except BaseException:
                    host.close()  # nobody else will: result() hands over only an open host
                    raise
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            self._error = exc
            return
        with self._guard:
            if self._abandoned:
                host.close()
            else:
                self._opened = (host, note)

    def done(self) -> bool:
        """Whether the host is open (or failed to open): `result()` would not wait."""
        return not self._thread.is_alive()

    def result(self) -> tuple[RemoteHost, str]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._opened is not None
        return self._opened

    def abandon(self) -> None:
        with self._guard:
            self._abandoned = True
            opened, self._opened = self._opened, None
        if opened is not None:
            opened[0].close()


def _cache_state(cache: CacheTarget, commit: str, files: list[RemoteFile]) -> dict[str, TargetFile]:
    """What the local cache holds of every listed file (the staging area's own scan rules),
    read before the plan so it overlaps the connection; `_staged` then picks the transfers."""
    return cache.scan({f.path: f for f in files}, checksum=False, all_files=False, commit=commit)


PREFETCH_BYTES = 24 << 20  # small files read ahead while the host starts (peak RSS target 100 MB)


def _prefetch(
    cache: CacheTarget,
    commit: str,
    files: list[RemoteFile],
    held: dict[str, TargetFile],
    opening: HostOpening,
) -> dict[str, tuple[Path, bytes | None]]:
    """Where the cache holds each file, and the bytes of the small ones, found while the host
    is still starting (what `_staged` and the push would otherwise do after the scan).

    Why: until the host's agent answers, this process only waits (its login shell and
    python3 start take ~0.2 s), and the push after it keeps both cores busy (the agent, sshd
    and this sender): reading 2,000 small files there costs ~0.06 s of CPU (0.16 s with the
    GIL shared with the sending). So they are read now, in the order they will be pushed,
    until the host is ready or PREFETCH_BYTES are held; what the plan does not push, or
    pushes from a resumed part, is dropped, and the push reads the rest as before."""
    early: dict[str, tuple[Path, bytes | None]] = {}
    budget = PREFETCH_BYTES
    for remote in files:
        if opening.done():
            break
        have = _held_as(held, remote)
        if have is None:
            continue
        source, data, size = _source(cache, commit, remote.path, have), None, remote.size
        if size <= SMALL_FRAME and size <= budget:
            try:
                data = read_small(source, size)
                budget -= size
            except (OSError, SourceShrankError):
                pass  # the push reads it again and reports what is wrong
        early[remote.path] = (source, data)
    return early


def _held_as(held: dict[str, TargetFile], remote: RemoteFile) -> TargetFile | None:
    """The cache's copy of `remote`, if the cache holds this very version (id and size)."""
    have = held.get(remote.path)
    if have is not None and have.etag == remote.etag and have.size == remote.size:
        return have
    return None


def _source(cache: CacheTarget, commit: str, path: str, have: TargetFile) -> Path:
    """Where the local cache holds a file's bytes (its blob, or a snapshot's copy)."""
    if have.source is not None:
        return cache.storage / have.source
    return cache.snapshot_path(commit, path)


def _plan(
    target: RemoteTarget,
    files: list[RemoteFile],
    commit: str,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    delete: bool,
    checksum: bool,
) -> RemoteSyncResult:
    remote = {f.path: f for f in files}
    state = target.scan(remote, checksum=checksum, all_files=delete, commit=commit)
    plan = make_plan(commit, files, state, PlanOptions(include, exclude, delete))
    return RemoteSyncResult("", "", "", commit, target.description, plan, dry_run=False)


def _apply(
    result: RemoteSyncResult,
    target: RemoteTarget,
    host: RemoteHost,
    cache: CacheTarget,
    client: HubClient,
    config: TransferConfig,
    held: dict[str, TargetFile],
    early: dict[str, tuple[Path, bytes | None]],
    *,
    max_delete: int | None,
    download_progress: ProgressSink,
    push_progress: ProgressSink,
    streams: int,
    backoff: float,
    revision: str,
) -> None:
    plan = result.plan
    if max_delete is not None and len(plan.deletes) > max_delete:
        raise DeleteLimitError(
            f"{len(plan.deletes)} files would be deleted but --max-delete is {max_delete}; "
            "nothing was changed"
        )
    target.record_many([_remote(item) for item in plan.refreshes], plan.commit)
    transfers = plan.transfers
    if transfers:
        push_started = time.monotonic()
        pusher = Pusher(
            host, plan.commit, push_progress, streams=streams, reconnect_backoff=backoff
        )
        parts = target.last_scan.parts
        ready, missing = _staged(cache, plan.commit, transfers, held, early)
        pusher.start([_remote(item) for item in transfers])
        try:
            for item, source, data in ready:
                pusher.put(_push_job(item, source, parts, data))
            early.clear()
            if missing:
                result.download = _download(
                    cache, client, config, plan.commit, revision, missing, pusher, parts,
                    download_progress,
                )  # fmt: skip
        finally:
            result.pushed = pusher.finish()
            result.reconnects = pusher.reconnects
            result.push_duration = time.monotonic() - push_started
        _raise_failures(result)
    deletes = [item.path for item in plan.deletes]
    target.delete_many(deletes)
    result.deleted = deletes


def _staged(
    cache: CacheTarget,
    commit: str,
    transfers: list[PlanItem],
    held: dict[str, TargetFile],
    early: dict[str, tuple[Path, bytes | None]],
) -> tuple[list[tuple[PlanItem, Path, bytes | None]], list[PlanItem]]:
    """Split planned pushes into those whose bytes the local cache holds (where, and the
    bytes `_prefetch` read) and those to download first. The cache's own scan rules decide
    (`held`, from `_cache_state`), so its trust is the sync's trust."""
    ready, missing = [], []
    for item in transfers:
        found = early.pop(item.path, None)
        if found is not None:  # checked against `held` already
            ready.append((item, *found))
            continue
        have = _held_as(held, _remote(item))
        if have is not None:
            ready.append((item, _source(cache, commit, item.path, have), None))
        else:
            missing.append(item)
    return ready, missing


def _download(
    cache: CacheTarget,
    client: HubClient,
    config: TransferConfig,
    commit: str,
    revision: str,
    missing: list[PlanItem],
    pusher: Pusher,
    parts: dict[str, int],
    progress: ProgressSink,
) -> TransferReport:
    from .transfer import run_transfers

    by_path = {item.path: item for item in missing}

    def pushed_when_done(job: FileJob) -> None:
        pusher.put(_push_job(by_path[job.path], cache.snapshot_path(commit, job.path), parts))

    def failed(job: FileJob) -> None:
        pusher.fail(job.path, HfsyncError(f"{job.path}: download failed"))

    with cache.lock():
        jobs = [
            cache.job(
                _remote(item),
                commit,
                client.resolve_url(cache.repo_id, cache.repo_type, commit, item.path),
            )
            for item in missing
        ]
        sink = _StagingSink(progress, pushed_when_done, failed)
        report = run_transfers(jobs, client, config, sink)
        if not report.failures:
            cache.finish(commit, revision)
    for outcome in report.failures:
        if outcome.error is not None:
            pusher.fail(outcome.job.path, outcome.error)
    return report


def _push_job(
    item: PlanItem, source: Path, parts: dict[str, int], data: bytes | None = None
) -> PushJob:
    remote = _remote(item)
    offset = min(parts.get(part_name(remote), 0), remote.size)
    return PushJob(remote, source, offset=offset, data=data if offset == 0 else None)


def _remote(item: PlanItem) -> RemoteFile:
    assert item.remote is not None, "planned transfers always carry their remote file"
    return item.remote


def _raise_failures(result: RemoteSyncResult) -> None:
    """One error for every failed file: the most severe kind, with a count (errors.SEVERITY)."""
    failed = [o for o in result.pushed.values() if not o.ok]
    if not failed:
        return
    errors = [o.error or HfsyncError(f"{o.path}: not pushed") for o in failed]
    worst = most_severe(errors)
    assert worst is not None
    if not isinstance(worst, HfsyncError):
        raise worst
    if len(failed) > 1:
        error = type(worst)(f"{len(failed)} files failed; most severe: {worst}")
        error.exit_code = worst.exit_code
        raise error from worst
    raise worst
