"""`to-remote` for one host or many: pick pull or push per host, run hosts concurrently.

docs/architecture.md, "Remote pull and many hosts". Per host (`sync_host`):

    connect -> [--via push: push] | probe (python3, cached archive, endpoint reachable from
    the host) -> pull (the host runs hfsync itself) | push (--via auto, when it cannot pull)

For many hosts (`sync_hosts`) the revision is pinned once here, so every host gets the same
commit; `parallel` hosts run at a time, each with its own connection and result; a failing
host never stops the others, and the run's exit code is the most severe of all hosts
(`errors.most_severe_code`). In pull mode each host downloads from the Hub's CDN (the CDN is
the distribution system; none is built here), and the listing and each file's signed CDN URL
are fetched here once and handed to every host on its channel's stdin (`Handoffs`), so the
Hub's request budget is spent once per run, not once per host (docs/scale-out.md). A dry run
that would pull is planned from the host's state without sending the archive. Push hosts
share one local staging: the first
one fills the local HF cache once, the others wait for it, then all push in parallel.

This module sits above both `orchestrate` (the cache fill) and `remote_sync` (one push).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import env
from .auth import resolve_token
from .errors import (
    HfsyncError,
    Interrupted,
    NetworkError,
    UsageError,
    exit_code_of,
    most_severe_code,
)
from .files import REPO_TYPES, RemoteFile, validate_repo_id
from .hub import HubClient
from .plan import selected
from .remote.handoff import Handoff
from .remote.host import check_remote_dir
from .remote.sshcmd import SSHSpec, parse_ssh_command
from .transfer.jobs import NullProgress, ProgressSink, TransferConfig

VIA = ("push", "pull", "auto")
DEFAULT_PARALLEL_HOSTS = 8  # each pull host opens its own --connections to the CDN
RESOLVE_THREADS = 8  # HEADs in flight while resolving a fleet's files once (gate-limited)
# Signed URLs live about an hour; hosts that start later than this after the resolve get
# freshly resolved ones (once per file again), so few of them ever meet an expired URL.
HANDOFF_MAX_AGE = 20 * 60.0


@dataclass(frozen=True)
class RunOptions:
    """Everything about the sync that is the same for every host."""

    repo_id: str
    remote_dir: str
    repo_type: str = "model"
    revision: str = "main"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    delete: bool = False
    max_delete: int | None = None
    dry_run: bool = False
    checksum: bool = False
    token: str | None = None
    endpoint: str | None = None
    config: TransferConfig = field(default_factory=TransferConfig)
    cache_dir: Path | str | None = None
    via: str = "auto"
    connect_timeout: float | None = None
    streams: int = 1  # push: parallel agent sessions on the host's connection


@dataclass
class Sinks:
    """Where one host's progress goes: the pull's bars, or the push's download and push bars."""

    pull: ProgressSink = field(default_factory=NullProgress)
    download: ProgressSink = field(default_factory=NullProgress)
    push: ProgressSink = field(default_factory=NullProgress)


@dataclass
class HostOutcome:
    """One host's part of the run: how (via, why), what (result) or why not (error)."""

    ssh_command: str
    display: str
    via: str = ""
    via_reason: str = ""
    result: Any = None  # RemoteSyncResult (push) | PullResult (pull)
    error: BaseException | None = None
    duration: float = 0.0
    status: str = "pending"  # pending | running | ok | failed | interrupted

    @property
    def exit_code(self) -> int:
        return exit_code_of(self.error) if self.error is not None else 0


def check_options(opts: RunOptions) -> None:
    """Usage errors before any network."""
    if opts.repo_type not in REPO_TYPES:
        raise UsageError(f"--repo-type must be one of {', '.join(REPO_TYPES)}")
    if opts.via not in VIA:
        raise UsageError(f"--via must be one of {', '.join(VIA)}, not {opts.via!r}")
    validate_repo_id(opts.repo_id)
    check_remote_dir(opts.remote_dir)


def read_hosts_file(path: Path) -> list[str]:
    """One ssh command per line; blank lines and `#` comments (whole-line or trailing after
    whitespace) are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --hosts-file {path}: {exc}") from None
    hosts = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        hash_at = stripped.find(" #")
        hosts.append(stripped[:hash_at].strip() if hash_at >= 0 else stripped)
    return hosts


class _CacheFill:
    """The local HF cache filled once for every push host of a run (the first caller fills,
    the others wait and reuse the outcome, failure included)."""

    def __init__(self, opts: RunOptions, commit: str, progress: ProgressSink) -> None:
        self.opts, self.commit, self.progress = opts, commit, progress
        self._lock = threading.Lock()
        self._done = False
        self._error: BaseException | None = None

    def ensure(self) -> None:
        with self._lock:
            if not self._done:
                self._done = True
                try:
                    self._fill()
                except BaseException as exc:  # noqa: BLE001 - every push host reports it
                    self._error = exc
            if self._error is not None:
                raise self._error

    def _fill(self) -> None:
        from .orchestrate import sync

        o = self.opts
        sync(
            o.repo_id,
            None,
            repo_type=o.repo_type,
            revision=self.commit,
            include=o.include,
            exclude=o.exclude,
            token=o.token,
            endpoint=o.endpoint,
            config=o.config,
            cache_dir=o.cache_dir,
            progress=self.progress,
        )


class Handoffs:
    """The listing and data URLs every pulling host of a run is handed (docs/scale-out.md).

    Built lazily, by the first host that is about to pull (a run whose hosts all push, fail
    to connect or dry-run resolves nothing), then shared: one tree listing and one
    `/resolve` per selected file for the whole run instead of per host. All selected files
    are resolved, not only those a host lacks, because no host's state is known before it
    scans; so a fleet that is already current pays F resolves once (at most one host's cost,
    whatever the number of hosts). Best effort: if this machine cannot list or resolve (no
    route, no token for a private repo), `get` returns None and every host lists and
    resolves for itself as before. A file that fails to resolve is left to the host.
    """

    def __init__(self, opts: RunOptions, commit: str | None = None) -> None:
        self.opts = opts
        self.commit = commit
        self.resolves = 0  # HEADs this run sent (tests and docs count them)
        self._lock = threading.Lock()
        self._files: list[RemoteFile] | None = None
        self._urls: dict[str, str] = {}
        self._at = 0.0
        self._failed = False

    def get(self) -> Handoff | None:
        with self._lock:
            if self._failed:
                return None
            if self._files is None or time.monotonic() - self._at > HANDOFF_MAX_AGE:
                try:
                    self._build()
                except HfsyncError:
                    self._failed = True
                    return None
            assert self.commit is not None and self._files is not None
            return Handoff(self.commit, self._files, dict(self._urls))

    def _build(self) -> None:
        o = self.opts
        client = HubClient(o.endpoint, o.token, pool_size=RESOLVE_THREADS + 2)
        try:
            if self.commit is None:
                self.commit = client.resolve_revision(o.repo_id, o.repo_type, o.revision)
            if self._files is None:
                self._files = client.list_files(o.repo_id, o.repo_type, self.commit)
            wanted = [f for f in self._files if selected(f.path, o.include, o.exclude)]
            self._urls = self._resolve_all(client, self.commit, wanted)
            self._at = time.monotonic()
        finally:
            client.close()

    def _resolve_all(
        self, client: HubClient, commit: str, files: list[RemoteFile]
    ) -> dict[str, str]:
        o = self.opts
        unreachable = threading.Event()  # after a network failure, the rest is left to hosts

        predicting = threading.Event()  # the Hub sent one small file where it was predicted

        def one(f: RemoteFile) -> tuple[str, str | None]:
            if unreachable.is_set():
                return f.path, None
            url = client.resolve_url(o.repo_id, o.repo_type, commit, f.path)
            predicted = (
                None
                if f.is_lfs
                else client.resolve_cache_url(o.repo_id, o.repo_type, commit, f.path)
            )
            try:
                if predicted is not None and predicting.is_set():
                    if _answers(client, predicted):
                        return f.path, predicted
                    predicting.clear()  # a surprise: /resolve for the rest, as the engine does
                location = client.resolve_location(url, f.size)
                if predicted is not None and location == predicted:
                    predicting.set()
                return f.path, location
            except NetworkError:
                unreachable.set()
            except HfsyncError:
                pass  # this file's own problem: its host meets it and reports it
            return f.path, None

        before = client.api_calls
        small_first = sorted(files, key=lambda f: f.is_lfs)
        with ThreadPoolExecutor(RESOLVE_THREADS, thread_name_prefix="hfsync-resolve") as pool:
            found = [one(small_first[0])] if small_first else []  # may confirm the prediction
            found += pool.map(one, small_first[1:])
        self.resolves += client.api_calls - before
        return {path: url for path, url in found if url}


def _answers(client: HubClient, url: str) -> bool:
    """Whether a predicted resolve-cache URL serves the file (HEAD, no redirect followed).

    One request, and not a `/resolve` one: the Hub's scarcest bucket is spent on the first
    small file only (resolve_cache.py has the rule; a file still lands only once verified).
    """
    try:
        response = client.request("HEAD", url, what=f"resolve {url}", allow_redirects=False)
    except NetworkError:
        raise
    except HfsyncError:
        return False
    response.close()
    return response.status_code == 200


def sync_host(
    opts: RunOptions,
    ssh_command: str,
    *,
    sinks: Sinks | None = None,
    outcome: HostOutcome | None = None,
    revision: str | None = None,
    before_push: Callable[[], None] | None = None,
    on_connect: Callable[[Any], None] | None = None,
    zipapp: Any = None,
    handoffs: Handoffs | None = None,
) -> HostOutcome:
    """One host: connect, decide pull or push (`opts.via`), run it. Raises on failure; the
    outcome (`via`, `via_reason`, `result`) is filled in as far as the run got.

    A pull gets the listing and data URLs from `handoffs` (one per run, shared by its
    hosts). A single host gets none: it lists and resolves for itself, which costs the Hub
    the same for N = 1, and nothing at all when it is already current. A dry run that
    would pull plans through the push path's stdlib agent instead: the host's state is
    scanned, the archive is not sent and nothing is created there."""
    from .remote.connection import connect
    from .remote_sync import to_remote

    sinks = sinks or Sinks()
    spec = parse_ssh_command(ssh_command)
    out = outcome or HostOutcome(ssh_command, _display(spec))
    started = time.monotonic()
    rev = revision or opts.revision
    opened: list[Any] = []

    def connected() -> Any:
        conn = connect(spec, timeout=opts.connect_timeout)
        opened.append(conn)
        out.display = conn.display
        if on_connect is not None:
            on_connect(conn)
        return conn

    # --via push connects inside to_remote, on a thread, while the repo is listed
    conn = None if opts.via == "push" else connected()
    try:
        use_pull, out.via_reason, plan = False, "", None
        if opts.via == "push":  # the pull modules (the zipapp builder among them) stay unloaded
            out.via_reason = "--via push"
        else:
            from .remote.pull import PullOptions, prepare, pull, unreachable_error

            pull_opts = PullOptions(
                repo_type=opts.repo_type,
                revision=rev,
                include=opts.include,
                exclude=opts.exclude,
                delete=opts.delete,
                max_delete=opts.max_delete,
                dry_run=opts.dry_run,
                checksum=opts.checksum,
                config=opts.config,
            )
            endpoint = env.endpoint(opts.endpoint)
            plan = prepare(conn, opts.repo_id, pull_opts, endpoint, zipapp)
            blocker = plan.blocker
            if blocker and opts.via == "pull":
                raise unreachable_error(conn, blocker)
            use_pull = not blocker
            if use_pull:
                version = ".".join(map(str, (plan.probe.python or ())[:2]))
                out.via_reason = f"the host has python3 {version} and reaches {endpoint}"
            else:
                out.via_reason = f"the host cannot pull: {blocker}"
        out.via = "pull" if use_pull else "push"
        out.status = "running"
        if use_pull and not opts.dry_run:
            assert plan is not None
            handoff = handoffs.get() if handoffs is not None else None
            if handoff is not None:
                pull_opts = replace(pull_opts, revision=handoff.commit)
            result = pull(
                conn,
                opts.repo_id,
                opts.remote_dir,
                plan,
                pull_opts,
                token=resolve_token(opts.token),
                progress=sinks.pull,
                handoff=handoff,
            )
            result.via_reason = out.via_reason
            if result.doc.get("revision") == pull_opts.revision:
                result.doc["revision"] = opts.revision  # pinned here; show what was asked
        else:
            if before_push is not None and not opts.dry_run:
                before_push()
            result = to_remote(
                opts.repo_id,
                ssh_command,
                opts.remote_dir,
                repo_type=opts.repo_type,
                revision=rev,
                include=opts.include,
                exclude=opts.exclude,
                delete=opts.delete,
                max_delete=opts.max_delete,
                dry_run=opts.dry_run,
                checksum=opts.checksum,
                token=opts.token,
                endpoint=opts.endpoint,
                config=opts.config,
                cache_dir=opts.cache_dir,
                download_progress=sinks.download,
                push_progress=sinks.push,
                streams=opts.streams,
                connect_timeout=opts.connect_timeout,
                conn=conn,
                connector=connected,
            )
            result.revision = opts.revision
            result.via = out.via  # a dry run that would pull planned the push path's way
        out.result = result
        return out
    finally:
        for each in opened:
            each.close()
        out.duration = time.monotonic() - started


def _display(spec: SSHSpec) -> str:
    host = spec.host
    who = f"{spec.user}@{host}" if spec.user else host
    return f"{who}:{spec.port}" if spec.port else who


@dataclass
class FleetResult:
    hosts: list[HostOutcome]
    commit: str
    duration: float
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        codes = [h.exit_code for h in self.hosts]
        if self.interrupted:
            codes.append(130)
        return most_severe_code(codes)


def sync_hosts(
    opts: RunOptions,
    ssh_commands: Sequence[str],
    *,
    parallel: int | None = None,
    sinks: Callable[[int, str], Sinks] | None = None,
    cache_progress: ProgressSink | None = None,
    on_host_done: Callable[[int, HostOutcome], None] | None = None,
    client: HubClient | None = None,
) -> FleetResult:
    """Every host of `ssh_commands` gets REMOTE_DIR; see the module docstring."""
    check_options(opts)
    if not ssh_commands:
        raise UsageError("no hosts given")
    specs = [parse_ssh_command(c) for c in ssh_commands]  # all usage errors before any network
    parallel = max(1, min(parallel or DEFAULT_PARALLEL_HOSTS, len(specs)))
    started = time.monotonic()
    client = client or HubClient(opts.endpoint, opts.token)
    commit = client.resolve_revision(opts.repo_id, opts.repo_type, opts.revision)
    fill = _CacheFill(opts, commit, cache_progress or NullProgress())
    from .remote.zipapp import build_zipapp

    zipapp = build_zipapp() if opts.via != "push" else None
    handoffs = Handoffs(opts, commit)
    outcomes = [HostOutcome(c, _display(s)) for c, s in zip(ssh_commands, specs, strict=True)]
    conns: list[Any] = []
    lock = threading.Lock()
    next_index = [0]

    def on_connect(conn: Any) -> None:
        with lock:
            conns.append(conn)

    def worker() -> None:
        while True:
            with lock:
                i = next_index[0]
                if i >= len(outcomes) or stopping.is_set():
                    return
                next_index[0] += 1
            out = outcomes[i]
            out.status = "running"
            try:
                sync_host(
                    opts,
                    out.ssh_command,
                    sinks=sinks(i, out.display) if sinks else None,
                    outcome=out,
                    revision=commit,
                    before_push=fill.ensure if len(outcomes) > 1 else None,
                    on_connect=on_connect,
                    zipapp=zipapp,
                    handoffs=handoffs,
                )
                out.status = "ok"
            except BaseException as exc:  # noqa: BLE001 - one host's failure is its own
                out.error = exc
                out.status = "interrupted" if stopping.is_set() else "failed"
                if isinstance(exc, Interrupted):
                    out.status = "interrupted"
            if on_host_done is not None:
                on_host_done(i, out)

    stopping = threading.Event()
    threads = [
        threading.Thread(target=worker, name=f"hfsync-host-{n}", daemon=True)
        for n in range(parallel)
    ]
    for t in threads:
        t.start()
    interrupted = False
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.25)
    except KeyboardInterrupt:
        interrupted = True
        stopping.set()
        with lock:
            for conn in conns:
                conn.close()  # a pulling host sees EOF on stdin and stops within seconds
        for t in threads:
            t.join(5)
        for out in outcomes:
            if out.status in ("pending", "running"):
                out.status = "interrupted" if out.status == "running" else "skipped"
                if out.error is None and out.status == "interrupted":
                    out.error = Interrupted("interrupted")
    return FleetResult(outcomes, commit, time.monotonic() - started, interrupted)


def host_error_message(out: HostOutcome) -> str:
    error = out.error
    if error is None:
        return ""
    if isinstance(error, HfsyncError):
        return str(error)
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return f"unexpected {type(error).__name__}: {error}"
