"""`hfsync verify --remote 'SSH' REMOTE_DIR`: hash a folder on an SSH host against the Hub's ids.

The copy on a GPU box is checked against the Hub, not against its own bookkeeping: the listing
of the commit the folder's metadata records (the one most of its files name; `--revision`
overrides) says which files must be there and what each must hash to. The hashing runs on the
host, in the agent's `scan` with `checksum` (hfsync/remote/agent.py): one remote process hashes
every listed file with hashlib and sends only digests and its progress, so no file's bytes cross
the link. `--fix` removes exactly the broken files on the host and runs the ordinary push
(`remote_sync.to_remote`) restricted to those paths, so only their bytes are sent, verified on
the host as they arrive.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError
from .files import RemoteFile, check_listing, validate_repo_id
from .plan import selected
from .remote.host import RemoteHost, check_remote_dir
from .remote.sshcmd import parse_ssh_command
from .remote.state import parse_metadata
from .verify import (
    EXTRA,
    MISMATCH,
    MISSING,
    HashProgress,
    NullHashProgress,
    Problem,
    VerifyReport,
    escape_glob,
)

if TYPE_CHECKING:
    from .remote_sync import RemoteSyncResult
    from .transfer.jobs import ProgressSink


@dataclass(frozen=True)
class RemoteVerify:
    """What a remote verify checked against: the report plus the commit and listing used."""

    report: VerifyReport
    commit: str
    files: dict[str, RemoteFile]


def verify_remote(
    repo_id: str,
    ssh_command: str,
    remote_dir: str,
    *,
    repo_type: str = "model",
    revision: str | None = None,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    extra: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    cache_dir: Path | str | None = None,
    progress: HashProgress | None = None,
    connect_timeout: float | None = None,
) -> RemoteVerify:
    """Hash every file the commit lists (after the filters) on the host; nothing is written
    there (the control session runs without the lock, as a dry run's does)."""
    from .hub import HubClient
    from .remote.connection import connect
    from .targets.cache import CacheTarget

    validate_repo_id(repo_id)
    check_remote_dir(remote_dir)
    spec = parse_ssh_command(ssh_command)  # usage errors before any network
    progress = progress or NullHashProgress()
    client = HubClient(endpoint, token)
    try:
        commit = client.resolve_revision(repo_id, repo_type, revision) if revision else None
        host = RemoteHost(connect(spec, timeout=connect_timeout), remote_dir)
        try:
            host.open(lock=False)
            recorded = host.call("scan", files={}, checksum=False, all_files=True)
            commit = commit or recorded_commit(recorded.get("files", []), host.description)
            cache = CacheTarget(repo_id, repo_type, cache_dir)
            listing = cache.read_listing(commit)
            if listing is None:
                listing = client.list_files(repo_id, repo_type, commit)
            check_listing(listing)
            files = {f.path: f for f in listing if selected(f.path, include, exclude)}
            report = VerifyReport(host.description, extra_checked=extra)
            progress.start(sum(f.size for f in files.values()), len(files))
            ticks = _Ticks(progress)
            try:
                doc = host.call_with_progress(
                    "scan",
                    ticks,
                    files={p: [f.size, f.etag] for p, f in files.items()},
                    checksum=True,
                    all_files=extra,
                )
                ticks(*doc.get("hashed", [0, 0]))  # the last stretch, after the last tick
            finally:
                progress.close()
        finally:
            host.close()
    finally:
        client.close()
    report.bytes_hashed = int((doc.get("hashed") or [0, ticks.bytes])[1])
    judge(report, files, doc.get("files", []), {f.path for f in listing}, commit)
    return RemoteVerify(report, commit, files)


class _Ticks:
    """Turns the agent's running totals into HashProgress advances."""

    def __init__(self, progress: HashProgress) -> None:
        self.progress = progress
        self.bytes = 0

    def __call__(self, files: int, nbytes: int) -> None:
        if nbytes > self.bytes:
            self.progress.advance(nbytes - self.bytes)
            self.bytes = nbytes


def recorded_commit(scanned: list, where: str) -> str:
    """The commit most of the folder's metadata names (what it was last synced to)."""
    commits = Counter()
    for _path, _size, mtime, meta_text, _digest in scanned:
        meta = parse_metadata(meta_text, float(mtime))
        if meta is None and meta_text:
            first = meta_text.splitlines()[:1]
            meta_commit = first[0].strip() if first else ""
        else:
            meta_commit = meta.commit if meta else ""
        if len(meta_commit) == 40:
            commits[meta_commit] += 1
    if not commits:
        raise UsageError(
            f"{where} records no synced commit (no hfsync / hf download metadata); "
            "give --revision to verify it against"
        )
    return commits.most_common(1)[0][0]


def judge(
    report: VerifyReport,
    files: dict[str, RemoteFile],
    scanned: list,
    listed: set[str],
    commit: str,
) -> None:
    """Compare the host's sizes and digests with the listing's; problems go into `report`."""
    found = {str(row[0]): row for row in scanned}
    for path, remote in sorted(files.items()):
        row = found.get(path)
        if row is None:
            report.problems.append(Problem(path, MISSING, "file is missing", commit, remote.etag))
            continue
        size, digest = int(row[1]), row[4]
        report.checked += 1
        if size != remote.size:
            detail = f"size {size}, expected {remote.size}"
        elif digest is None:
            detail = "could not be read on the host"
        elif str(digest).lower() != remote.etag.lower():
            detail = "content does not hash to its id"
        else:
            continue
        report.problems.append(Problem(path, MISMATCH, detail, commit, remote.etag))
    if report.extra_checked:
        for path in sorted(found):
            if path not in listed:
                report.problems.append(Problem(path, EXTRA, f"not in commit {commit[:12]}"))
    report.problems.sort(key=lambda p: (p.kind, p.path))


def fix_remote(
    repo_id: str,
    ssh_command: str,
    remote_dir: str,
    checked: RemoteVerify,
    *,
    repo_type: str = "model",
    token: str | None = None,
    endpoint: str | None = None,
    cache_dir: Path | str | None = None,
    push_progress: ProgressSink | None = None,
) -> RemoteSyncResult | None:
    """Refetch exactly the broken files onto the host: remove them there (under the folder's
    lock), then push just those paths at the verified commit. Bytes come from the local HF
    cache, downloaded first where it lacks them; each lands verified, as any push does."""
    from .remote.connection import connect
    from .remote_sync import to_remote

    broken = [p.path for p in checked.report.broken]
    if not broken:
        return None
    host = RemoteHost(connect(parse_ssh_command(ssh_command)), remote_dir)
    try:
        host.open(lock=True)
        host.call("delete", items=broken)
    finally:
        host.close()
    return to_remote(
        repo_id,
        ssh_command,
        remote_dir,
        repo_type=repo_type,
        revision=checked.commit,
        include=tuple(escape_glob(p) for p in broken),
        token=token,
        endpoint=endpoint,
        cache_dir=cache_dir,
        push_progress=push_progress,
    )
