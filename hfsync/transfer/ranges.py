"""A set of byte ranges: what part of a file is already on disk.

The journal and the scheduler both think in half-open `[start, end)` ranges; keeping them merged
and sorted makes "the contiguous prefix" (what the hasher may consume) and "what is missing"
(what a resumed run must fetch) one cheap question each.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator


class RangeSet:
    """Disjoint, sorted, merged half-open byte ranges."""

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in ranges:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        """Add `[start, end)`, merging with any range it touches or overlaps."""
        if end <= start:
            return
        lo = bisect.bisect_left(self._ends, start)  # first range that ends at/after start
        hi = bisect.bisect_right(self._starts, end)  # ranges starting after end stay apart
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    def prefix_end(self) -> int:
        """End of the range that starts at 0 (0 when byte 0 is missing)."""
        if self._starts and self._starts[0] == 0:
            return self._ends[0]
        return 0

    def total(self) -> int:
        """Number of bytes covered."""
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    def missing(self, size: int) -> list[tuple[int, int]]:
        """The gaps in `[0, size)`."""
        gaps: list[tuple[int, int]] = []
        pos = 0
        for start, end in self:
            if start >= size:
                break
            if start > pos:
                gaps.append((pos, start))
            pos = max(pos, end)
        if pos < size:
            gaps.append((pos, size))
        return gaps

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends, strict=True))

    def __len__(self) -> int:
        return len(self._starts)

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"


def split(ranges: Iterable[tuple[int, int]], chunk_size: int) -> list[tuple[int, int]]:
    """Cut ranges into pieces of at most `chunk_size` bytes, in order."""
    pieces: list[tuple[int, int]] = []
    for start, end in ranges:
        for offset in range(start, end, chunk_size):
            pieces.append((offset, min(offset + chunk_size, end)))
    return pieces


def guided_piece(size: int, queued: int, streams: int, minimum: int) -> int:
    """How much of a `size`-byte range a stream should take now (guided self-scheduling).

    Why: with whole chunks to the last byte, the run ends with a few streams finishing their
    last chunk alone -- each at the per-connection cap (25 MB/s at a CDN) while the link has
    room for ten of them (measured: 0.25 s of a capped 2 GiB download at well under link
    speed). Taking `queued / streams` (all queued bytes, this range included) shrinks pieces
    only near the end of the queue, so the streams run out of work at nearly the same time;
    never below `minimum` (each piece costs a request), rounded down to a multiple of it so
    piece boundaries stay block-aligned.
    """
    if streams <= 0 or minimum <= 0 or size <= minimum:
        return size
    share = queued // streams
    if share >= size:  # work is plenty: the whole range
        return size
    return max(minimum, share // minimum * minimum)  # < size: share < size, minimum < size
