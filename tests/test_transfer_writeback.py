"""Early disk write-out of verified prefixes (a head start for the fsync before the rename)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from hfsync.transfer import download
from hfsync.transfer.download import WRITEBACK_STEP, FileDownload, start_writeback

MiB = 1024 * 1024


def _file(size: int, fd: int = 7) -> SimpleNamespace:
    return SimpleNamespace(size=size, _written_back=0, part=SimpleNamespace(fd=fd))


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


def test_real_write_out_keeps_the_bytes(tmp_path: Path) -> None:
    """The real call (libc where it exists, a no-op elsewhere) never changes the file."""
    path = tmp_path / "part"
    data = os.urandom(2 * MiB)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data, 0)
        start_writeback(fd, 0, len(data))
        start_writeback(fd, 0, 10 * len(data))  # past the end: harmless
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == data
