"""The end of a big download: pieces shrink as the queue runs dry, ranged writes start write-out.

Both are about the last second of a capped download: without the first, a few streams finish
whole chunks alone at the per-connection cap; without the second, the fsync before the rename
writes out what the hasher had not reached yet (up to a chunk per stream).
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import pytest

from hfsync.hub import HubClient
from hfsync.retry import RetryPolicy
from hfsync.testing.hub import HubEmulator
from hfsync.transfer import TransferConfig, download, engine
from hfsync.transfer.download import WRITEBACK_STEP, WRITEOUT_BLOCK, FileDownload, Task
from hfsync.transfer.jobs import FileJob
from hfsync.transfer.ramp import StreamRamp
from tests.test_transfer_engine import REPO, Setup, cdn_gets, payload

KiB = 1024
MiB = 1024 * 1024


def _drain(queue: engine._TaskQueue) -> list[tuple[int, int]]:
    out = []
    while queue._items:
        task = queue.get()
        assert task is not None
        out.append((task.start, task.end))
    return out


def test_queue_cuts_only_the_last_chunks_and_keeps_the_order() -> None:
    f = SimpleNamespace(size=64 * MiB)
    queue = engine._TaskQueue(lambda: 4, 4 * MiB, 1 * MiB)
    queue.put(Task(f, s, s + 4 * MiB, 0) for s in range(0, f.size, 4 * MiB))  # type: ignore[arg-type]
    pieces = _drain(queue)
    # contiguous, in order, the whole file exactly once
    assert pieces[0][0] == 0 and pieces[-1][1] == f.size
    assert all(a_end == b_start for (_, a_end), (b_start, _) in pairwise(pieces))
    sizes = [e - s for s, e in pieces]
    # whole chunks while 4 streams have a chunk each queued (16 MiB), then a quarter of what
    # is queued, in whole MiB, the rest of a cut chunk going first
    assert sizes == [4 * MiB] * 13 + [n * MiB for n in (3, 1, 2, 1, 1, 1, 1, 1, 1)]


def test_queue_never_cuts_single_chunk_files_or_hasher_tasks() -> None:
    small = SimpleNamespace(size=4 * MiB)  # one chunk: arrives as one request
    big = SimpleNamespace(size=8 * MiB)
    queue = engine._TaskQueue(lambda: 16, 4 * MiB, 1 * MiB)
    queue.put([Task(small, 0, 4 * MiB, 0), Task(big, 0, 0, 0), Task(big, 4 * MiB, 8 * MiB, 0)])  # type: ignore[arg-type]
    assert _drain(queue) == [(0, 4 * MiB), (0, 0), (4 * MiB, 5 * MiB), (5 * MiB, 6 * MiB),
                             (6 * MiB, 7 * MiB), (7 * MiB, 8 * MiB)]  # fmt: skip


def test_queue_without_a_minimum_never_cuts() -> None:
    f = SimpleNamespace(size=64 * MiB)
    queue = engine._TaskQueue(lambda: 16, 4 * MiB)
    queue.put(Task(f, s, s + 4 * MiB, 0) for s in range(0, f.size, 4 * MiB))  # type: ignore[arg-type]
    assert [e - s for s, e in _drain(queue)] == [4 * MiB] * 16


def test_engine_fetches_the_cut_pieces_exactly(
    hub: HubEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: the cut pieces are what the CDN is asked for, and the bytes are exact."""
    monkeypatch.setattr(engine, "MIN_PIECE", 256 * KiB)
    # all streams from the start, so the pieces do not depend on the ramp's probe
    monkeypatch.setattr(engine, "StreamRamp", lambda n, start=1: StreamRamp(n, start=n))
    files = {"model.safetensors": payload(4 * MiB, 7)}
    commit = hub.commit(REPO, files)
    client = HubClient(hub.endpoint, None, pool_size=20, retry=RetryPolicy(base_delay=0.01))
    s = Setup(hub, client, commit, tmp_path / "dest", files)
    report = s.run(TransferConfig(connections=4, chunk_size=1 * MiB, max_tries=4))
    assert [o.ok for o in report.outcomes] == [True], report.outcomes
    s.assert_exact()
    pieces = sorted(
        (int(a), int(b) + 1) for a, b in (r.range.split("=")[1].split("-") for r in cdn_gets(hub))
    )
    assert pieces[0][0] == 0 and pieces[-1][1] == 4 * MiB  # each byte asked for once
    assert all(a_end == b_start for (_, a_end), (b_start, _) in pairwise(pieces))
    sizes = [b - a for a, b in pieces]
    assert sizes[0] == 1 * MiB and min(sizes) == 256 * KiB and len(sizes) > 4
    assert s.leftovers() == []


# -- write-out of ranged writes ---------------------------------------------------------------


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    seen: list[tuple[int, int, int]] = []
    monkeypatch.setattr(download, "start_writeback", lambda *args: seen.append(args))
    return seen


def _download(tmp_path: Path, size: int) -> FileDownload:
    job = FileJob("big.bin", size, "ab" * 32, "http://127.0.0.1:9/x", tmp_path / "big.part",
                  lambda _: None)  # fmt: skip
    return FileDownload(job, 0, None, True, 16 * MiB)  # type: ignore[arg-type]


def _write_range(f: FileDownload, start: int, end: int, step: int = 512 * KiB) -> None:
    for offset in range(start, end, step):
        f.write(memoryview(b"x" * min(step, end - offset)), offset)


def test_ranged_writes_start_write_out_of_each_block_they_complete(
    tmp_path: Path, calls: list
) -> None:
    f = _download(tmp_path, 3 * WRITEBACK_STEP)
    with f.lease():
        fd = f.part.fd
        start, end = 16 * MiB + 256 * KiB, 16 * MiB + 5 * MiB + 100  # neither end aligned
        _write_range(f, start, end, 768 * KiB)
        blocks = [(fd, 18 * MiB - WRITEOUT_BLOCK, WRITEOUT_BLOCK),
                  (fd, 20 * MiB - WRITEOUT_BLOCK, WRITEOUT_BLOCK)]  # fmt: skip
        assert calls == blocks
        assert f.complete(Task(f, start, end, 0))  # the range's unaligned tail goes too
        assert calls == [*blocks, (fd, 20 * MiB, end - 20 * MiB)]


def test_write_out_skips_small_files_and_single_stream_mode(tmp_path: Path, calls: list) -> None:
    small = _download(tmp_path, WRITEBACK_STEP)
    with small.lease():
        _write_range(small, 0, WRITEBACK_STEP)
        small.complete(Task(small, 0, WRITEBACK_STEP, 0))
    assert calls == []
    big = _download(tmp_path / "b", 3 * WRITEBACK_STEP)
    (tmp_path / "b").mkdir()
    generation = big.claim_stream()
    assert generation is not None
    with big.lease():
        _write_range(big, 0, 8 * MiB)  # `write_back`, behind the hasher, does it there
    assert calls == []
