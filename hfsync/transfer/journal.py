"""The resume journal: which byte ranges of a part file are known to be written.

An append-only text file next to the part file (`<part>.journal`). Its first line names the file
version (size and content id) so a journal left by another version is ignored instead of trusted;
each further line is `start end` of a range whose bytes were `pwrite`-ten before the line was
appended. After SIGKILL the page cache still holds those bytes, so a rerun fetches only what is
missing. A torn last line (killed mid-append) is simply ignored. Power loss could lose data the
journal claims; the end-of-file hash catches that and triggers a refetch.

A journal is a hint, never trusted beyond what the hash will check: ranges past the file's
size (a hand-edited or foreign journal) are clipped to it, any malformed line discards the
whole journal, and a journal whose part file is gone or has the wrong size is ignored by the
caller (`FileDownload.prepare`). It is opened through `safeio.open_state_file`, so a link
planted at its name is refused, never written through. Appends loop until every byte is
written, and a failed append is cut back off, so the file never holds a torn line in the middle.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ..safeio import open_state_file, read_state_file, write_all
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
        self._part_path = part_path
        self.enabled = enabled
        self.size = size
        self._header = f"{MAGIC} size={size} etag={etag}\n"
        self._fd: int | None = None
        self._length = 0  # bytes of whole lines in the file (what a failed append cuts back to)

    @functools.cached_property
    def path(self) -> Path:
        """The journal's name, made when first asked: a small file's journal is disabled and
        its name is then only ever needed in an error message (~10 us per file saved before
        the first byte of a 2,000-file sync moves)."""
        return journal_path(self._part_path)

    def load(self) -> RangeSet | None:
        """The journaled ranges, or None when there is no journal or it is for another version.

        Raises DiskError when a link (or a non-file) sits at the journal's name.
        """
        if not self.enabled:
            return None
        try:
            text = read_state_file(self.path, 64 << 20).decode("ascii", errors="replace")
        except OSError:
            return None
        if not text.startswith(self._header):
            return None
        ranges = RangeSet()
        for line in text[len(self._header) :].splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # torn last line
            fields = line.split()
            if len(fields) != 2 or not all(f.isascii() and f.isdigit() for f in fields):
                return None  # garbage: do not trust any of it
            # Clipped: bytes past the end do not exist, whatever a journal says.
            ranges.add(int(fields[0]), min(int(fields[1]), self.size))
        return ranges

    def open(self, *, fresh: bool) -> None:
        """Open for appending; `fresh` starts a new journal (header only)."""
        if self._fd is not None or not self.enabled:
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if fresh else 0)
        self._fd = fd = open_state_file(self.path, flags, 0o666)
        try:
            self._length = os.fstat(fd).st_size
            if self._length == 0:
                self._append(self._header)
        except BaseException:  # no header (a full disk): closed, so the next open tries again
            self._fd = None
            os.close(fd)
            raise

    def record(self, start: int, end: int) -> None:
        """Append one finished range (its bytes must already be written)."""
        if self._fd is not None and end > start:
            self._append(f"{start} {end}\n")

    def reset(self) -> None:
        """Forget every range (the part is being refetched from scratch)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            self._length = 0
            self._append(self._header)

    def _append(self, line: str) -> None:
        """Append all of `line`; on failure cut the journal back to its last whole line."""
        assert self._fd is not None
        data = line.encode()
        try:
            write_all(self._fd, data)
        except OSError:
            try:
                os.ftruncate(self._fd, self._length)
            except OSError:
                pass  # a torn line then ends the journal: load() discards what follows
            raise
        self._length += len(data)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        """Delete the journal (the file was finalized or discarded)."""
        self.close()
        if not self.enabled:
            return  # never written (a small file): no unlink per file
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
