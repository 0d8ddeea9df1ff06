"""The resume journal: which byte ranges of a part file are known to be written.

An append-only text file next to the part file (`<part>.journal`). Its first line names the file
version (size and content id) so a journal left by another version is ignored instead of trusted;
each further line is `start end` of a range whose bytes were `pwrite`-ten before the line was
appended. After SIGKILL the page cache still holds those bytes, so a rerun fetches only what is
missing. A torn last line (killed mid-append) is simply ignored. Power loss could lose data the
journal claims; the end-of-file hash catches that and triggers a refetch.
"""

from __future__ import annotations

import os
from pathlib import Path

from .ranges import RangeSet

MAGIC = "hfsync-journal 1"


def journal_path(part_path: Path) -> Path:
    """Where the journal of a part file lives."""
    return part_path.with_name(part_path.name + ".journal")


class Journal:
    """Reads and appends the journal of one part file. Not thread-safe: callers hold a lock.

    `enabled=False` makes every method a no-op: a file fetched in one request gains nothing from
    a journal, and skipping it saves a create, two writes and an unlink per small file.
    """

    def __init__(self, part_path: Path, size: int, etag: str, *, enabled: bool = True) -> None:
        self.path = journal_path(part_path)
        self.enabled = enabled
        self._header = f"{MAGIC} size={size} etag={etag}\n"
        self._fd: int | None = None

    def load(self) -> RangeSet | None:
        """The journaled ranges, or None when there is no journal or it is for another version."""
        if not self.enabled:
            return None
        try:
            text = self.path.read_text(encoding="ascii", errors="replace")
        except OSError:
            return None
        if not text.startswith(self._header):
            return None
        ranges = RangeSet()
        for line in text[len(self._header) :].splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # torn last line
            fields = line.split()
            if len(fields) != 2 or not all(f.isdigit() for f in fields):
                return None  # garbage: do not trust any of it
            ranges.add(int(fields[0]), int(fields[1]))
        return ranges

    def open(self, *, fresh: bool) -> None:
        """Open for appending; `fresh` starts a new journal (header only)."""
        if self._fd is not None or not self.enabled:
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._fd = os.open(self.path, flags | (os.O_TRUNC if fresh else 0), 0o644)
        if fresh or os.fstat(self._fd).st_size == 0:
            os.write(self._fd, self._header.encode())

    def record(self, start: int, end: int) -> None:
        """Append one finished range (its bytes must already be written)."""
        if self._fd is not None and end > start:
            os.write(self._fd, f"{start} {end}\n".encode())

    def reset(self) -> None:
        """Forget every range (the part is being refetched from scratch)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.write(self._fd, self._header.encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        """Delete the journal (the file was finalized or discarded)."""
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
