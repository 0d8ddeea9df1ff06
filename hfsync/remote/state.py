"""An SSH host's folder as a `TargetState` (docs/architecture.md, "The seams").

The scan is one agent command; what it reports is turned into `TargetFile`s here by the same
rule the local folder applies (docs/architecture.md, "File identity"), so the one pure planner
decides for both. The host has no Placement: bytes arrive through `hfsync.remote.push`. Part
files are reported with the scan so a push can resume them without another round trip.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from hfsync.files import RemoteFile, TargetFile, check_remote_path
from hfsync.remote.host import RemoteHost

PART_SUFFIX = ".hfsync-part"
NAME_MAX = 255


def part_name(remote: RemoteFile) -> str:
    """The part file of `remote`, relative to `.cache/huggingface/download/`.

    The content id is in the name, so a leftover part of another version is never resumed;
    a name that would pass NAME_MAX is replaced by its hash (the folder part stays)."""
    folder, _, name = remote.path.rpartition("/")
    tail = f".{remote.etag}{PART_SUFFIX}"
    if len(name.encode()) + len(tail) > NAME_MAX:
        name = hashlib.sha256(name.encode()).hexdigest()[:32]
    return f"{folder}/{name}{tail}" if folder else f"{name}{tail}"


@dataclass(frozen=True)
class Metadata:
    commit: str
    etag: str
    timestamp: float


def parse_metadata(text: str | None, mtime: float) -> Metadata | None:
    """`<path>.metadata` if it parses and the file was not modified after it was written
    (the local folder's rule, hfsync.targets.local.read_metadata: mtime - 1 <= timestamp)."""
    if text is None:
        return None
    lines = text.splitlines()
    try:
        meta = Metadata(lines[0].strip(), lines[1].strip(), float(lines[2]))
    except (IndexError, ValueError):
        return None
    if mtime - 1 > meta.timestamp:
        return None
    return meta


def file_state(
    path: str,
    size: int,
    mtime: float,
    meta_text: str | None,
    digest: str | None,
) -> TargetFile:
    """What the host holds at `path`: the metadata's etag when it vouches, else the hash the
    agent computed (then only the record is missing: `needs_record`), else unknown."""
    meta = parse_metadata(meta_text, mtime)
    commit = meta.commit if meta else None
    if digest is not None:
        return TargetFile(path, size, digest, True, commit)
    return TargetFile(path, size, meta.etag if meta else None, commit=commit)


@dataclass
class ScanResult:
    files: dict[str, TargetFile] = field(default_factory=dict)
    parts: dict[str, int] = field(default_factory=dict)  # part name -> bytes already there
    exists: bool = False


class RemoteTarget:
    """TargetState of REMOTE_DIR on an SSH host. The listing cache lives in the local HF
    cache (the staging area), so `read_listing`/`write_listing` keep nothing remote."""

    def __init__(self, host: RemoteHost) -> None:
        self.host = host
        self.description = host.description
        self.last_scan = ScanResult()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Open the control session holding the folder's lock; LockedError names the holder."""
        self.host.open(lock=True)
        yield

    def open_unlocked(self) -> None:
        """The control session without the lock and without creating anything (dry runs)."""
        self.host.open(lock=False)

    def read_listing(self, commit: str) -> list[RemoteFile] | None:
        return None

    def write_listing(self, commit: str, files: list[RemoteFile]) -> None:
        return None

    def scan(
        self,
        remote: Mapping[str, RemoteFile],
        *,
        checksum: bool,
        all_files: bool,
        commit: str | None = None,
    ) -> dict[str, TargetFile]:
        doc = self.host.call(
            "scan",
            files={path: [f.size, f.etag] for path, f in remote.items()},
            checksum=checksum,
            all_files=all_files,
        )
        result = ScanResult(exists=bool(doc.get("exists")))
        for path, size, mtime, meta, digest in doc.get("files", []):
            if path not in remote:
                try:
                    check_remote_path(path)
                except Exception:  # noqa: BLE001 - a name we could never have written
                    continue
            result.files[path] = file_state(path, int(size), float(mtime), meta, digest)
        result.parts = {str(name): int(size) for name, size in doc.get("parts", [])}
        self.last_scan = result
        return result.files

    def mark_current(self, remote: RemoteFile, commit: str, held: TargetFile | None) -> None:
        self.record_many([remote], commit)

    def record_many(self, remotes: list[RemoteFile], commit: str) -> None:
        """Write the metadata of content the scan found right (one command for all)."""
        if remotes:
            self.host.call("record", items=[[r.path, commit, r.etag] for r in remotes])

    def delete(self, path: str, commit: str) -> None:
        self.delete_many([path])

    def delete_many(self, paths: list[str]) -> None:
        if paths:
            self.host.call("delete", items=paths)

    def finish(self, commit: str, revision: str) -> None:
        return None
