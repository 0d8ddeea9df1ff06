"""The executor's input and output types: what to fetch, where to stage it, who to tell.

Kept apart from the engine so targets, the sync orchestration and the CLI can speak about
transfers without importing any of the machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ..defaults import (
    CONNECT_TIMEOUT,
    DEFAULT_CHUNK,
    DEFAULT_CONNECTIONS,
    DEFAULT_SMALL_CONNECTIONS,
    READ_TIMEOUT,
)


@dataclass
class FileJob:
    """One file to download and verify.

    `etag` is the expected content id: 64 hex chars = sha256 of the content (LFS files),
    40 hex chars = git blob sha1 (`sha1(b"blob %d\\0" % size + content)`, regular files).
    `part_path` is where the target wants the bytes staged (same filesystem as the final path);
    a resume journal lives beside it. `finalize(part_path)` is called once the file is complete
    and verified; the target moves it into place atomically and records metadata.
    `cached_url` is a data URL someone already resolved `url` to (a fleet's driving machine
    resolves each file once for every host, docs/scale-out.md): the first chunk goes there
    directly, and a 403 from it re-resolves `url`, as for an expired signed URL.
    """

    path: str
    size: int
    etag: str
    url: str
    part_path: Path
    finalize: Callable[[Path], None]
    cached_url: str | None = None


@dataclass
class TransferConfig:
    """Knobs of the executor; defaults are chosen by `scripts/bench`."""

    connections: int = DEFAULT_CONNECTIONS
    # Workers for whole small files (up to SMALL_FILE) beyond `connections`: their time is
    # latency, not bandwidth. None: `connections` (an explicit `--connections N` caps both).
    small_connections: int | None = None
    chunk_size: int = DEFAULT_CHUNK
    max_tries: int = 6
    bwlimit: float | None = None  # bytes per second across all connections
    verify: bool = True  # hash every file against its content id (size is always checked)
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT

    @classmethod
    def for_connections(cls, connections: int | None, **knobs: Any) -> TransferConfig:
        """The `--connections` policy: None is the default (DEFAULT_CONNECTIONS chunk streams,
        DEFAULT_SMALL_CONNECTIONS for small files, whose time is latency), a number caps both."""
        return cls(
            connections=connections or DEFAULT_CONNECTIONS,
            small_connections=connections or DEFAULT_SMALL_CONNECTIONS,
            **knobs,
        )

    @property
    def most_connections(self) -> int:
        """Connections open at once at most: what a shared HTTP pool must hold."""
        return max(self.connections, self.small_connections or 0)

    def shared_by(self, parts: int) -> TransferConfig:
        """This config's connections and rate split between `parts` transfers at once."""
        small = self.small_connections
        return replace(
            self,
            connections=max(1, self.connections // parts),
            small_connections=None if small is None else max(1, small // parts),
            bwlimit=self.bwlimit / parts if self.bwlimit else None,
        )


@dataclass
class FileOutcome:
    """What happened to one FileJob."""

    job: FileJob
    ok: bool
    bytes_transferred: int = 0
    error: Exception | None = None


@dataclass
class TransferReport:
    """All outcomes of one executor run."""

    outcomes: list[FileOutcome] = field(default_factory=list)

    @property
    def bytes_transferred(self) -> int:
        return sum(o.bytes_transferred for o in self.outcomes)

    @property
    def failures(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if not o.ok]


class ProgressSink(Protocol):
    """Receives progress events; the CLI renders them (tqdm), the library stays silent."""

    def start(self, total_bytes: int, jobs: list[FileJob]) -> None: ...

    def advance(self, job: FileJob, nbytes: int) -> None: ...

    def file_done(self, job: FileJob, ok: bool) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    """A ProgressSink that shows nothing (`--quiet`, `--json`, library use)."""

    def start(self, total_bytes: int, jobs: list[FileJob]) -> None:
        pass

    def advance(self, job: FileJob, nbytes: int) -> None:
        pass

    def file_done(self, job: FileJob, ok: bool) -> None:
        pass

    def close(self) -> None:
        pass
