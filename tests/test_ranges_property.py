"""Properties of the resume bookkeeping: RangeSet, split and the journal, for any input.

The journal decides which bytes a resumed run does *not* fetch, so its invariants are checked
against a brute-force model (a set of byte offsets) over arbitrary sequences of ranges,
including ranges past the end, a torn last line, resets and short writes.
"""

from __future__ import annotations

import os
import tempfile
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hfsync.transfer.journal import Journal
from hfsync.transfer.ranges import RangeSet, guided_piece, split

SIZE = 300
ETAG = "ab" * 32

offsets = st.integers(min_value=0, max_value=2 * SIZE)
ranges = st.lists(st.tuples(offsets, offsets), max_size=30)


def covered(pairs: list[tuple[int, int]], size: int | None = None) -> set[int]:
    """The model: every byte offset the ranges cover (optionally only those below `size`).

    Clipped before it is expanded: a hand-edited journal line may name a range of 10^14
    bytes, and expanding that first filled the machine's memory (pytest OOM-killed)."""
    return {
        i for start, end in pairs for i in range(start, end if size is None else min(end, size))
    }


def check_canonical(r: RangeSet) -> None:
    """Sorted, non-empty, and merged: a gap of at least one byte between neighbours."""
    items = list(r)
    assert all(start < end for start, end in items)
    assert all(a_end < b_start for (_, a_end), (b_start, _) in pairwise(items))


@given(ranges)
def test_rangeset_is_the_union_of_what_was_added(pairs: list[tuple[int, int]]) -> None:
    r = RangeSet()
    for start, end in pairs:
        r.add(start, end)
    check_canonical(r)
    model = covered(pairs)
    assert covered(list(r)) == model
    assert r.total() == len(model)
    prefix = 0
    while prefix in model:
        prefix += 1
    assert r.prefix_end() == prefix
    assert list(RangeSet(pairs)) == list(r)  # order of adds does not matter: same result
    assert list(RangeSet(reversed(pairs))) == list(r)


@given(ranges, st.integers(min_value=0, max_value=2 * SIZE))
def test_missing_is_exactly_the_complement(pairs: list[tuple[int, int]], size: int) -> None:
    r = RangeSet(pairs)
    gaps = r.missing(size)
    check_canonical(RangeSet(gaps))
    assert all(0 <= start < end <= size for start, end in gaps)
    assert covered(gaps) == set(range(size)) - covered(pairs)


@given(ranges, st.integers(min_value=1, max_value=64))
def test_split_keeps_the_bytes_and_bounds_each_piece(
    pairs: list[tuple[int, int]], chunk: int
) -> None:
    gaps = RangeSet(pairs).missing(SIZE)
    pieces = split(gaps, chunk)
    assert all(0 < end - start <= chunk for start, end in pieces)
    assert pieces == sorted(pieces)
    assert covered(pieces) == covered(gaps) and sum(e - s for s, e in pieces) == len(covered(gaps))


def journal_in(folder: str) -> Journal:
    return Journal(Path(folder) / "f.incomplete", SIZE, ETAG)


@settings(max_examples=60, deadline=None)
@given(ranges, st.text(alphabet="0123456789 ", max_size=12))
def test_journal_replay_with_a_torn_last_line_is_the_clipped_union(
    pairs: list[tuple[int, int]], torn: str
) -> None:
    """Whatever was recorded, replayed after a kill mid-append, is the union clipped to SIZE."""
    with tempfile.TemporaryDirectory() as folder:
        j = journal_in(folder)
        j.open(fresh=True)
        for start, end in pairs:
            j.record(start, end)
        j.close()
        with open(j.path, "a", encoding="ascii") as fh:
            fh.write(torn)  # no newline: the append a SIGKILL interrupted
        loaded = j.load()
        assert loaded is not None
        check_canonical(loaded)
        assert covered(list(loaded)) == covered(pairs, SIZE)
        assert all(end <= SIZE for _, end in loaded)
        assert loaded.total() <= SIZE


@settings(max_examples=40, deadline=None)
@given(ranges, ranges)
def test_journal_reset_forgets_everything_before_it(
    before: list[tuple[int, int]], after: list[tuple[int, int]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        j = journal_in(folder)
        j.open(fresh=True)
        for start, end in before:
            j.record(start, end)
        j.reset()
        for start, end in after:
            j.record(start, end)
        j.close()
        j.open(fresh=False)  # reopening appends, it does not restart
        j.record(0, 1)
        j.close()
        loaded = j.load()
        assert loaded is not None
        assert covered(list(loaded)) == covered([*after, (0, 1)], SIZE)


@settings(max_examples=40, deadline=None)
@given(ranges, st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=10))
def test_journal_survives_any_pattern_of_short_writes(
    pairs: list[tuple[int, int]], sizes: list[int]
) -> None:
    """os.write writing only a few bytes per call, in any pattern, loses nothing."""
    real_write = os.write
    pattern = iter(sizes * 1000)

    def short(fd: int, data: bytes) -> int:
        return real_write(fd, bytes(data[: next(pattern, 7)]))

    with tempfile.TemporaryDirectory() as folder:
        j = journal_in(folder)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(os, "write", short)
            j.open(fresh=True)
            for start, end in pairs:
                j.record(start, end)
            j.close()
        loaded = j.load()
        assert loaded is not None
        assert covered(list(loaded)) == covered(pairs, SIZE)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="0123456789 x-\n", max_size=15), max_size=6))
def test_journal_never_claims_more_than_its_lines_say(lines: list[str]) -> None:
    """Hand-edited journals: either distrusted entirely (None) or exactly the valid lines,
    clipped to the file. Never a range that no line names."""
    body = "".join(lines)
    with tempfile.TemporaryDirectory() as folder:
        j = journal_in(folder)
        j.path.write_text(f"hfsync-journal 1 size={SIZE} etag={ETAG}\n{body}", encoding="ascii")
        loaded = j.load()
        if loaded is None:
            return
        named = []
        for line in body.splitlines(keepends=True):
            if line.endswith("\n"):
                start, end = (int(f) for f in line.split())
                named.append((start, end))
        assert covered(list(loaded)) == covered(named, SIZE)


@given(
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=10**8),
    st.integers(min_value=0, max_value=64),
    st.integers(min_value=0, max_value=10**5),
)
def test_guided_piece_is_a_bounded_aligned_share(
    size: int, queued: int, streams: int, minimum: int
) -> None:
    """Never more than the range, never a sliver below `minimum`, whole while work is plenty."""
    piece = guided_piece(size, queued, streams, minimum)
    assert 0 <= piece <= size
    if piece < size:  # a cut: a multiple of `minimum`, at least one, and at most the share
        assert piece >= minimum > 0 and piece % minimum == 0
        assert piece <= max(minimum, queued // streams)
    if streams > 0 and queued // streams >= size:
        assert piece == size
