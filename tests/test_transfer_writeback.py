"""Early disk write-out of verified prefixes (a head start for the fsync before the rename)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from hfsync.testing.hub import HubEmulator
from hfsync.transfer import TransferConfig, download
from hfsync.transfer.download import (
    DROP_LAG,
    DROP_STEP,
    WRITEBACK_STEP,
    FileDownload,
    start_writeback,
)

from .test_transfer_engine import make_setup, payload

MiB = 1024 * 1024


def _file(size: int, fd: int = 7) -> SimpleNamespace:
    return SimpleNamespace(
        size=size, _written_back=0, part=SimpleNamespace(fd=fd), drop_behind=lambda verified: None
    )


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    seen: list[tuple[int, int, int]] = []
    monkeypatch.setattr(download, "start_writeback", lambda *args: seen.append(args))
    return seen


def test_big_file_is_handed_to_the_disk_in_steps_and_to_its_end(calls: list) -> None:
    size = 3 * WRITEBACK_STEP + 5 * MiB
    f = _file(size)
    for verified in range(MiB, size + 1, MiB):
        FileDownload.write_back(f, verified)  # type: ignore[arg-type]
    FileDownload.write_back(f, size)  # type: ignore[arg-type] # repeated end: nothing new
    assert calls == [
        (7, 0, WRITEBACK_STEP),
        (7, WRITEBACK_STEP, WRITEBACK_STEP),
        (7, 2 * WRITEBACK_STEP, WRITEBACK_STEP),
        (7, 3 * WRITEBACK_STEP, 5 * MiB),
    ]


def test_small_files_skip_the_extra_call(calls: list) -> None:
    f = _file(WRITEBACK_STEP)
    FileDownload.write_back(f, WRITEBACK_STEP)  # type: ignore[arg-type]
    assert calls == []


def test_closed_part_file_is_skipped(calls: list) -> None:
    f = _file(4 * WRITEBACK_STEP, fd=None)  # type: ignore[arg-type]
    FileDownload.write_back(f, 2 * WRITEBACK_STEP)  # type: ignore[arg-type]
    assert calls == []


# -- drop-behind: verified bytes leave the page cache, never bytes the hasher still needs ----


def _dropping(fd: int | None = 7) -> SimpleNamespace:
    import threading

    return SimpleNamespace(_dropped=0, write_lock=threading.Lock(), part=SimpleNamespace(fd=fd))


@pytest.fixture
def drops(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(download, "_drop", lambda part, start, end: seen.append((start, end)))
    return seen


def test_drops_trail_the_hasher_by_the_lag_in_whole_steps(drops: list) -> None:
    f = _dropping()
    for verified in range(0, DROP_LAG + 3 * DROP_STEP + MiB + 1, MiB):
        FileDownload.drop_behind(f, verified)  # type: ignore[arg-type]
    assert drops == [(0, DROP_STEP), (DROP_STEP, 2 * DROP_STEP), (2 * DROP_STEP, 3 * DROP_STEP)]
    FileDownload.drop_behind(f, DROP_LAG + 3 * DROP_STEP + MiB)  # type: ignore[arg-type]
    assert len(drops) == 3  # each range once


def test_nothing_is_dropped_within_the_lag(drops: list) -> None:
    f = _dropping()
    FileDownload.drop_behind(f, DROP_LAG + DROP_STEP - 1)  # type: ignore[arg-type]
    assert drops == []


HINTS = {
    "write-out": lambda fd, start, end: start_writeback(fd, start, end - start),
    "drop": lambda fd, start, end: download._drop(SimpleNamespace(fd=fd), start, end),
}


@pytest.mark.parametrize("hint", HINTS.values(), ids=list(HINTS))
def test_real_hints_keep_the_bytes(tmp_path: Path, hint: Callable[[int, int, int], None]) -> None:
    """The real calls (sync_file_range, posix_fadvise DONTNEED where they exist, no-ops
    elsewhere) never change the file: on dirty pages, past the end, and on clean pages (which a
    drop really drops)."""
    path = tmp_path / "part"
    data = os.urandom(4 * MiB)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data, 0)
        hint(fd, 0, len(data))  # dirty pages
        hint(fd, 0, 10 * len(data))  # past the end: harmless
        os.fsync(fd)
        hint(fd, 0, len(data))  # clean now
        assert os.pread(fd, len(data), 0) == data
    finally:
        os.close(fd)
    assert path.read_bytes() == data


@pytest.mark.parametrize("ignore_range", [False, True])
def test_a_big_download_drops_only_hashed_bytes_and_stays_exact(
    hub: HubEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ignore_range: bool
) -> None:
    """Every dropped range lies behind the hasher when dropped; the file is exact either way
    (ranged streams, and one stream when the server ignores Range)."""
    lag, step = 2 * MiB, MiB
    monkeypatch.setattr(download, "DROP_LAG", lag)
    monkeypatch.setattr(download, "DROP_STEP", step)
    seen: list[tuple[int, int, int]] = []  # (start, end, bytes hashed when dropped)
    real = FileDownload.drop_behind

    def spy(self: FileDownload, verified: int) -> None:
        # ranged: the file's hasher; one stream: the stream's own (`verified` is its offset)
        hashed = verified if self.streaming else self.hasher.offset
        assert verified <= hashed
        before = self._dropped
        real(self, verified)
        if self._dropped > before:
            seen.append((before, self._dropped, hashed))

    monkeypatch.setattr(FileDownload, "drop_behind", spy)
    size = WRITEBACK_STEP + 8 * MiB + 123
    s = make_setup(hub, tmp_path, {"model.safetensors": payload(size, 11)})
    hub.faults.ignore_range = ignore_range
    report = s.run(TransferConfig(connections=4, chunk_size=4 * MiB, max_tries=4))
    assert all(o.ok for o in report.outcomes), [o.error for o in report.outcomes]
    s.assert_exact()
    assert seen, "nothing was dropped"
    assert all(end <= hashed - lag for _, end, hashed in seen)
    assert sorted(seen)[0][0] == 0
    assert max(end for _, end, _ in seen) > size - lag - 2 * step  # up to the end
