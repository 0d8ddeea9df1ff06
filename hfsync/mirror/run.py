"""The mirror loop: every item of a config synced under one lock, each isolated from the rest.

Mirror tools' users' top complaints are one bad item stalling the whole mirror and silent
staleness (bandersnatch #1434; DESIGN.md §9). So: an item's failure is recorded and the loop
moves on; the run's exit code is the most severe item code (`errors.most_severe_code`); and
every run leaves a state file, and optionally a log and a metrics file, whatever happened.

Items run one after another, or `parallel` at a time on daemon threads; all share one
`HubClient` (one HTTP connection pool), and the config's connection and bandwidth budgets are
split between the items running at once, so a config's `connections = 16` means 16 in total.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..auth import redact
from ..errors import (
    DiskError,
    HfsyncError,
    Interrupted,
    UsageError,
    exit_code_of,
    most_severe_code,
)
from ..hub import HubClient
from ..orchestrate import SyncResult, sync
from ..plan import Action
from ..targets.base import lock_file
from ..transfer.jobs import ProgressSink, TransferConfig
from . import metrics, snapshots
from .config import MirrorConfig, MirrorItem

OK, FAILED, SKIPPED, INTERRUPTED = "ok", "failed", "skipped", "interrupted"


@dataclass
class ItemResult:
    """What one item's refresh did: the unit of the report, the log line and the metrics."""

    item: MirrorItem
    dest: str
    status: str = SKIPPED
    exit_code: int = 0
    error: str | None = None
    error_kind: str | None = None
    commit_before: str | None = None
    commit_after: str | None = None
    files_changed: int = 0
    bytes: int = 0
    files: int = 0  # files held for the item (as of its last success)
    size_bytes: int = 0
    started: float = 0.0
    finished: float = 0.0
    duration: float = 0.0
    last_success: float | None = None
    planned: SyncResult | None = None  # a dry run's plan (nothing was done)

    @property
    def repo_id(self) -> str:
        return self.item.repo_id

    @property
    def repo_type(self) -> str:
        return self.item.repo_type

    @property
    def revision(self) -> str:
        return self.item.revision

    @property
    def changed(self) -> bool:
        return self.commit_before != self.commit_after or self.files_changed > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo_id,
            "repo_type": self.repo_type,
            "revision": self.revision,
            "dest": self.dest,
            "atomic": self.item.atomic,
            "status": self.status,
            "exit_code": self.exit_code,
            "error": (
                {"kind": self.error_kind, "message": self.error} if self.error is not None else None
            ),
            "commit_before": self.commit_before,
            "commit_after": self.commit_after,
            "files_changed": self.files_changed,
            "bytes": self.bytes,
            "files": self.files,
            "size_bytes": self.size_bytes,
            "started": iso(self.started) if self.started else None,
            "finished": iso(self.finished) if self.finished else None,
            "duration": round(self.duration, 3),
            "last_success": iso(self.last_success) if self.last_success else None,
            **({"plan": _plan_json(self.planned)} if self.planned is not None else {}),
        }


def _plan_json(planned: SyncResult) -> dict[str, Any]:
    """A dry run's per-file plan, in the shape `sync --dry-run --json` prints its files."""
    items = [i for i in planned.plan.items if i.action not in (Action.UNCHANGED, Action.SKIPPED)]
    return {
        "commit": planned.commit,
        "bytes_planned": sum(i.size for i in planned.plan.transfers),
        "files": [
            {"action": i.action.value, "path": i.path, "size": i.size, "reason": i.reason}
            for i in items
        ],  # fmt: skip
    }


@dataclass
class MirrorReport:
    config: str
    items: list[ItemResult] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    interrupted: bool = False
    output_errors: list[HfsyncError] = field(default_factory=list)  # log/metrics not written
    dry_run: bool = False

    @property
    def duration(self) -> float:
        return max(0.0, self.finished - self.started)

    @property
    def exit_code(self) -> int:
        codes = [item.exit_code for item in self.items]
        codes += [error.exit_code for error in self.output_errors]
        return most_severe_code(codes + ([130] if self.interrupted else []))

    def summary_json(self) -> dict[str, Any]:
        counts = {s: sum(1 for i in self.items if i.status == s) for s in (OK, FAILED, SKIPPED)}
        return {
            "config": self.config,
            "ok": self.exit_code == 0,
            "exit_code": self.exit_code,
            "started": iso(self.started),
            "finished": iso(self.finished),
            "duration": round(self.duration, 3),
            "repos_total": len(self.items),
            "repos_ok": counts[OK],
            "repos_failed": counts[FAILED] + sum(1 for i in self.items if i.status == INTERRUPTED),
            "bytes": sum(i.bytes for i in self.items),
            "files_changed": sum(i.files_changed for i in self.items),
            "interrupted": self.interrupted,
            "dry_run": self.dry_run,
        }

    def to_json(self) -> dict[str, Any]:
        doc = self.summary_json()
        doc["repos"] = [item.to_json() for item in self.items]
        if self.output_errors:
            doc["output_errors"] = [str(e) for e in self.output_errors]
        return doc


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


Callback = Callable[[ItemResult], None]


class _Stopped(Exception):
    """Ctrl-C during an item: carries the item's (interrupted) result out of the loop."""

    def __init__(self, result: ItemResult) -> None:
        super().__init__("interrupted")
        self.result = result


def run_mirror(
    config: MirrorConfig,
    *,
    wait: bool = False,
    progress_factory: Callable[[], ProgressSink] | None = None,
    on_start: Callback | None = None,
    on_done: Callback | None = None,
    dry_run: bool = False,
) -> MirrorReport:
    """Refresh every item of `config` once, under the config's lock (LockedError, exit 8, when
    another run holds it, unless `wait`). Item failures are in the report, never raised.

    `dry_run`: each item's plan (`ItemResult.planned`) and nothing written anywhere — no
    lock, state, log or metrics file, no snapshot folder — so it can run beside a real run."""
    what = f"the mirror config {config.path}"
    if dry_run:
        guard: contextlib.AbstractContextManager = contextlib.nullcontext()
    elif wait:
        guard = _wait_for_lock(config.lock_path)
    else:
        guard = lock_file(config.lock_path, what)
    with guard:
        report = MirrorReport(str(config.path), started=time.time(), dry_run=dry_run)
        token = _read_token(config)
        parallel = min(config.parallel, len(config.items)) or 1
        whole = TransferConfig.for_connections(config.connections, bwlimit=config.bwlimit)
        client = HubClient(config.endpoint, token, pool_size=whole.most_connections + 4)
        transfer = whole.shared_by(parallel)
        state = metrics.read_state(config.state_path)
        earlier = metrics.previous_successes(config.metrics_file)

        def one(item: MirrorItem) -> ItemResult:
            result = _prepare(item, state.get(item.key, {}), earlier)
            if on_start:
                on_start(result)
            factory = progress_factory if parallel == 1 else None
            try:
                _refresh(result, client, transfer, factory, client.token, dry_run=dry_run)
            except KeyboardInterrupt:
                raise _Stopped(result) from None
            if on_done:
                on_done(result)
            return result

        try:
            done, report.interrupted = _run_all(config.items, parallel, one)
        finally:
            client.close()
        report.items = [
            r if r is not None else _prepare(item, state.get(item.key, {}), earlier)
            for item, r in zip(config.items, done, strict=True)
        ]
        report.finished = time.time()
        if not dry_run:
            _write_outputs(config, report, state)
        return report


def _run_all(
    items: tuple[MirrorItem, ...], parallel: int, one: Callable[[MirrorItem], ItemResult]
) -> tuple[list[ItemResult | None], bool]:
    """Run `one` over the items; on Ctrl-C stop handing out work and report what finished."""
    results: list[ItemResult | None] = [None] * len(items)
    if parallel <= 1:
        for index, item in enumerate(items):
            try:
                results[index] = one(item)
            except _Stopped as stopped:
                results[index] = stopped.result
                return results, True
            except KeyboardInterrupt:
                return results, True
        return results, False
    todo = deque(enumerate(items))
    lock = threading.Lock()
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            with lock:
                if not todo:
                    return
                index, item = todo.popleft()
            results[index] = one(item)

    # Daemon threads: a Ctrl-C must end the process even while a worker is mid-download (its
    # part file and journal stay, and the next run resumes them).
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(parallel)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=1.0)
    except KeyboardInterrupt:
        stop.set()
        return results, True
    return results, False


def _prepare(
    item: MirrorItem, entry: dict[str, Any], earlier: dict[tuple[tuple[str, str], ...], float]
) -> ItemResult:
    """An item's result before it runs: what the state (or the last metrics file) remembers."""
    result = ItemResult(item, str(item.dest) if item.dest is not None else _cache_desc(item))
    result.last_success = _float(entry.get("last_success")) or earlier.get(
        metrics.label_set(result)
    )
    result.files = int(entry.get("files") or 0)
    result.size_bytes = int(entry.get("size_bytes") or 0)
    result.commit_before = _commit_before(item, entry)
    result.commit_after = result.commit_before
    return result


def _refresh(
    result: ItemResult,
    client: HubClient,
    transfer: TransferConfig,
    progress_factory: Callable[[], ProgressSink] | None,
    token: str | None,
    *,
    dry_run: bool = False,
) -> None:
    """One item's sync; any failure becomes the result's status, code and message."""
    item = result.item
    result.started = time.time()
    began = time.monotonic()
    progress = progress_factory() if progress_factory and not dry_run else None
    try:
        if dry_run and item.atomic:
            synced = snapshots.plan_refresh(item, client=client)
        elif item.atomic:
            synced = snapshots.refresh(item, client=client, config=transfer, progress=progress)
        else:
            synced = sync(
                item.repo_id,
                item.dest,
                repo_type=item.repo_type,
                revision=item.revision,
                include=item.include,
                exclude=item.exclude,
                delete=item.delete,
                max_delete=item.max_delete,
                dry_run=dry_run,
                config=transfer,
                cache_dir=item.cache_dir,
                progress=progress,
                client=client,
            )
        if dry_run:
            _record_plan(result, synced)
        else:
            _record_success(result, synced)
    except (KeyboardInterrupt, Interrupted):
        # The executor turns Ctrl-C into Interrupted (its workers stopped, parts kept): either
        # way the user asked the whole run to stop, not just this item.
        result.status, result.exit_code = INTERRUPTED, 130
        result.error, result.error_kind = "interrupted", "Interrupted"
        raise KeyboardInterrupt from None
    except Exception as exc:  # noqa: BLE001 - one item's failure must never stop the rest
        result.status, result.exit_code = FAILED, exit_code_of(exc)
        message = (
            str(exc) if isinstance(exc, HfsyncError) else f"unexpected {type(exc).__name__}: {exc}"
        )
        result.error, result.error_kind = redact(message, token), type(exc).__name__
    finally:
        if progress is not None:
            progress.close()
        result.finished = time.time()
        result.duration = time.monotonic() - began


def _record_success(result: ItemResult, synced: SyncResult) -> None:
    held = [
        i for i in synced.plan.items if i.action in (Action.NEW, Action.UPDATE, Action.UNCHANGED)
    ]
    result.status, result.exit_code = OK, 0
    result.commit_after = synced.commit
    result.files_changed = len(synced.plan.transfers) + len(synced.deleted)
    result.bytes = synced.bytes_transferred
    result.files = len(held)
    result.size_bytes = sum(i.size for i in held)
    result.last_success = time.time()


def _record_plan(result: ItemResult, planned: SyncResult) -> None:
    """A dry run's item: what would change; `last_success` and the held files stay as they
    were, since nothing was done."""
    result.status, result.exit_code = OK, 0
    result.planned = planned
    result.commit_after = planned.commit
    result.files_changed = len(planned.plan.transfers) + len(planned.plan.deletes)


def _commit_before(item: MirrorItem, entry: dict[str, Any]) -> str | None:
    """The commit the destination held before this run: `current` of an atomic folder, the
    cache's ref, else what the state file remembers of the last success."""
    if item.atomic and item.dest is not None:
        return snapshots.current_commit(item.dest)
    if item.dest is None:
        from ..targets.cache import CacheTarget

        try:
            target = CacheTarget(item.repo_id, item.repo_type, item.cache_dir)
            ref = target.read_ref(item.revision)
            if ref is None and target.snapshots_dir.joinpath(item.revision).is_dir():
                ref = item.revision  # a pinned commit: its snapshot is the state
            return ref
        except HfsyncError:
            return None
    commit = entry.get("last_commit")
    return commit if isinstance(commit, str) else None


def _write_outputs(config: MirrorConfig, report: MirrorReport, state: dict) -> None:
    """State first (monitoring's memory), then the log and the metrics; a failure to write
    one is reported (exit 6) but never loses the others."""
    for result in report.items:
        entry = dict(state.get(result.item.key, {}))
        entry.update(last_run=result.finished or None, last_status=result.exit_code)
        if result.status == OK:
            entry.update(
                last_success=result.last_success,
                last_commit=result.commit_after,
                files=result.files,
                size_bytes=result.size_bytes,
            )
        elif result.last_success and not entry.get("last_success"):
            entry["last_success"] = result.last_success  # recovered from the metrics file
        state[result.item.key] = entry
    writers: list[Callable[[], None]] = [lambda: metrics.write_state(config.state_path, state)]
    if config.log_file is not None:
        log_file = config.log_file
        writers.append(lambda: metrics.append_log(log_file, report))
    if config.metrics_file is not None:
        metrics_file = config.metrics_file
        writers.append(lambda: metrics.write_metrics(metrics_file, report))
    for write in writers:
        try:
            write()
        except HfsyncError as exc:
            report.output_errors.append(exc)


def _read_token(config: MirrorConfig) -> str | None:
    if config.token_file is None:
        return None  # the usual chain: HF_TOKEN, then `hf auth login`'s token file
    try:
        token = config.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(
            f"{config.where('token_file')}: token_file: cannot read {config.token_file}: "
            f"{exc.strerror or exc}"
        ) from exc
    if not token:
        raise UsageError(f"{config.where('token_file')}: token_file: {config.token_file} is empty")
    return token


@contextlib.contextmanager
def _wait_for_lock(path: Path) -> Iterator[None]:
    """`--wait`: block until the running mirror finishes, then hold its lock (with our pid)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DiskError(f"cannot create lock file {path}: {exc.strerror}") from exc
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                break
            except OSError as exc:
                if exc.errno != errno.EINTR:
                    raise DiskError(f"cannot lock {path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _cache_desc(item: MirrorItem) -> str:
    from ..targets.cache import cache_root, repo_folder_name

    return str(cache_root(item.cache_dir) / repo_folder_name(item.repo_id, item.repo_type))


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and value else None
