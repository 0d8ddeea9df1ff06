"""Pure parts of the executor: ranges, journal, content ids, token bucket, space check."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from hfsync.errors import DiskError, IntegrityError
from hfsync.transfer.fetch import parse_content_range
from hfsync.transfer.journal import Journal, journal_path
from hfsync.transfer.ranges import RangeSet, split
from hfsync.transfer.ratelimit import TokenBucket
from hfsync.transfer.space import check_free_space
from hfsync.transfer.verify import PrefixHasher


def test_rangeset_merges_and_reports_prefix_and_gaps() -> None:
    r = RangeSet([(10, 20), (30, 40)])
    assert r.prefix_end() == 0 and r.total() == 20
    r.add(0, 10)
    assert list(r) == [(0, 20), (30, 40)] and r.prefix_end() == 20
    r.add(15, 35)
    assert list(r) == [(0, 40)]
    r.add(50, 50)
    assert list(r) == [(0, 40)]
    assert RangeSet([(5, 7), (9, 12)]).missing(15) == [(0, 5), (7, 9), (12, 15)]
    assert RangeSet([(0, 15)]).missing(15) == []
    assert split([(0, 10), (12, 13)], 4) == [(0, 4), (4, 8), (8, 10), (12, 13)]


def test_journal_roundtrip_torn_line_and_version_mismatch(tmp_path: Path) -> None:
    part = tmp_path / "f.incomplete"
    j = Journal(part, 100, "a" * 64)
    assert j.path == journal_path(part) and j.load() is None
    j.open(fresh=True)
    j.record(0, 10)
    j.record(20, 30)
    j.close()
    with open(j.path, "a") as fh:
        fh.write("30 4")  # torn by a kill
    assert list(j.load() or []) == [(0, 10), (20, 30)]
    assert Journal(part, 101, "a" * 64).load() is None
    assert Journal(part, 100, "b" * 64).load() is None
    j.open(fresh=False)
    j.reset()
    j.close()
    loaded = j.load()
    assert loaded is not None and list(loaded) == []
    j.path.write_text(j.path.read_text() + "garbage here\n")
    assert j.load() is None
    j.remove()
    assert not j.path.exists()


def test_content_ids() -> None:
    data = b"hello world\n" * 1000
    sha = PrefixHasher(hashlib.sha256(data).hexdigest(), len(data))
    git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    blob = PrefixHasher(git.upper(), len(data))
    for h in (sha, blob):
        h.update(data[:5000])
        assert not h.matches()
        h.update(data[5000:])
        assert h.matches()
    wrong = PrefixHasher("0" * 64, len(data))
    wrong.update(data)
    assert not wrong.matches()
    off = PrefixHasher("0" * 64, len(data), enabled=False)
    off.skip_to(len(data))
    assert off.matches()
    with pytest.raises(IntegrityError, match="not a content id"):  # never a size-only check
        PrefixHasher("not-a-content-id", 3)


def test_content_range_parsing() -> None:
    assert parse_content_range("bytes 0-99/1000") == (0, 99, 1000)
    assert parse_content_range("bytes 5-9/*") == (5, 9, None)
    assert parse_content_range(None) is None
    assert parse_content_range("items 0-1/2") is None


def test_token_bucket_sleeps_off_debt() -> None:
    slept: list[float] = []
    bucket = TokenBucket(1000.0, burst=0.1)
    bucket.consume(100, slept.append)  # the burst allowance
    assert slept == []
    bucket.consume(500, slept.append)
    assert slept and 0.45 < slept[0] <= 0.5
    assert bucket.read_size(1 << 20) == 16 * 1024
    assert TokenBucket(1e9).read_size(1 << 20) == 1 << 20
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_free_space_sums_per_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two parts that each fit but together do not fail; the free space is pinned, because
    other processes filling or emptying this disk meanwhile made the real figure flaky."""
    free = 10 << 30
    monkeypatch.setattr(
        os, "statvfs", lambda _p: SimpleNamespace(f_bavail=free >> 12, f_frsize=4096)
    )
    check_free_space([(tmp_path / "a" / "b" / "part", free // 4)] * 2)
    with pytest.raises(DiskError, match="not enough disk space"):
        check_free_space([(tmp_path / "x", free // 2 + 1), (tmp_path / "y" / "z", free // 2 + 1)])


def test_journal_survives_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.write may write fewer bytes than asked (signal, nearly full disk): every byte of every
    line must still land, or the next line glues onto a torn one and the journal is lost."""
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    j = Journal(tmp_path / "f.incomplete", 10**6, "a" * 64)
    j.open(fresh=True)
    for start in range(0, 500_000, 100_000):
        j.record(start, start + 50_000)
    j.close()
    monkeypatch.undo()
    assert list(j.load() or []) == [(s, s + 50_000) for s in range(0, 500_000, 100_000)]


def test_failed_journal_append_leaves_only_whole_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append that stops half-way is cut back off, so later appends stay readable."""
    real_write = os.write
    j = Journal(tmp_path / "f.incomplete", 1000, "a" * 64)
    j.open(fresh=True)
    j.record(0, 100)
    calls = iter([4, 0])  # 4 bytes of "100 200\n", then no progress at all

    def stalling(fd: int, data: bytes) -> int:
        n = next(calls, None)
        return real_write(fd, bytes(data[:n])) if n else 0

    monkeypatch.setattr(os, "write", stalling)
    with pytest.raises(OSError, match="short write"):
        j.record(100, 200)
    monkeypatch.undo()
    j.record(300, 400)
    j.close()
    assert list(j.load() or []) == [(0, 100), (300, 400)]


def test_journal_ranges_beyond_the_file_are_clipped(tmp_path: Path) -> None:
    """A hand-edited or foreign journal cannot claim bytes the file does not have."""
    j = Journal(tmp_path / "f.incomplete", 100, "a" * 64)
    j.path.write_text(f"hfsync-journal 1 size=100 etag={'a' * 64}\n0 10\n50 99999999999\n200 300\n")
    loaded = j.load()
    assert loaded is not None and list(loaded) == [(0, 10), (50, 100)]
    assert loaded.total() == 60 and loaded.missing(100) == [(10, 50)]
    j.path.write_text(f"hfsync-journal 1 size=100 etag={'a' * 64}\n٣ 5\n")  # non-ASCII digit
    assert j.load() is None
