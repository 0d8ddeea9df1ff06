"""In-order bytes of big files written past the page cache (`O_DIRECT`): exact, aligned, and
buffered wherever direct does not fit (a filesystem, a switch, an unaligned piece)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from hfsync.transfer import TransferConfig, direct
from hfsync.transfer.partfile import PartFile

from .test_transfer_engine import CHUNK, MiB, Setup, make_setup, payload

SIZE = 4 * MiB + 777  # an unaligned tail: always buffered


def direct_supported(folder: Path) -> bool:
    probe = folder / "probe"
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        other = direct.open_direct(probe, fd)
        if other is None:
            return False
        os.close(other)
        return True
    finally:
        os.close(fd)
        probe.unlink()


@pytest.fixture
def setup(hub: HubEmulator, tmp_path: Path) -> Setup:
    if not direct_supported(tmp_path):
        pytest.skip("no O_DIRECT on this filesystem (hfsync then writes everything buffered)")
    return make_setup(hub, tmp_path, {"model.safetensors": payload(SIZE, 21)})


@pytest.fixture
def direct_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(offset, bytes taken) of every direct write, through the real one."""
    seen: list[tuple[int, int]] = []
    real = PartFile._write_direct

    def spy(self: PartFile, data: memoryview, offset: int) -> int:
        n = real(self, data, offset)
        seen.append((offset, n))
        return n

    monkeypatch.setattr(PartFile, "_write_direct", spy)
    return seen


ONE_STREAM = TransferConfig(connections=1, chunk_size=CHUNK, max_tries=4)


def test_one_stream_writes_all_but_the_unaligned_tail_directly(
    setup: Setup, direct_writes: list
) -> None:
    report = setup.run(ONE_STREAM)
    assert [o.ok for o in report.outcomes] == [True], report.outcomes
    setup.assert_exact()
    assert sum(n for _, n in direct_writes) == SIZE - SIZE % direct.ALIGN
    assert all(offset % direct.ALIGN == 0 for offset, _ in direct_writes)


def test_a_cut_at_an_unaligned_byte_realigns_and_only_its_block_goes_buffered(
    setup: Setup, direct_writes: list
) -> None:
    setup.hub.faults.drop_next(100_001)
    report = setup.run(ONE_STREAM)
    assert [o.ok for o in report.outcomes] == [True], report.outcomes
    setup.assert_exact()
    # the block holding byte 100,001 is written in two buffered pieces, the rest directly
    assert sum(n for _, n in direct_writes) == SIZE - SIZE % direct.ALIGN - direct.ALIGN
    assert all(offset % direct.ALIGN == 0 and n > 0 for offset, n in direct_writes)


def test_the_switch_turns_direct_writes_off(
    setup: Setup, direct_writes: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HFSYNC_DIRECT_IO", "0")
    report = setup.run(ONE_STREAM)
    assert [o.ok for o in report.outcomes] == [True], report.outcomes
    setup.assert_exact()
    assert direct_writes == []


def test_many_streams_mix_direct_and_buffered_writes_exactly(
    setup: Setup, direct_writes: list
) -> None:
    setup.hub.faults.rate_per_conn = 20e6  # every stream opens: most chunks land out of order
    report = setup.run(TransferConfig(connections=8, chunk_size=CHUNK, max_tries=4))
    assert [o.ok for o in report.outcomes] == [True], report.outcomes
    setup.assert_exact()
    assert 0 < sum(n for _, n in direct_writes) < SIZE


def test_a_refused_direct_write_falls_back_to_buffered_for_good(tmp_path: Path) -> None:
    if not direct_supported(tmp_path):
        pytest.skip("no O_DIRECT on this filesystem")
    part = PartFile(tmp_path / "f.incomplete", 3 * direct.ALIGN)
    part.open(fresh=True)
    part.open_direct()
    assert part.direct_fd is not None
    data = payload(3 * direct.ALIGN + 1, 5)
    # a buffer one byte off its page: the kernel refuses it (EINVAL), the bytes still land
    part.write(memoryview(bytearray(data))[1:], 0, direct=True)
    assert part.direct_fd is None
    part.write(memoryview(bytearray(data[:10])), 0, direct=True)  # buffered from now on
    part.close()
    assert (tmp_path / "f.incomplete").read_bytes() == data[:10] + data[11:]


def test_no_direct_descriptor_for_another_file_swapped_in_at_the_name(tmp_path: Path) -> None:
    if not direct_supported(tmp_path):
        pytest.skip("no O_DIRECT on this filesystem")
    path = tmp_path / "f.incomplete"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.rename(path, tmp_path / "moved")
        path.write_bytes(b"someone else's")
        assert direct.open_direct(path, fd) is None
        path.unlink()
        path.symlink_to(tmp_path / "moved")
        assert direct.open_direct(path, fd) is None  # O_NOFOLLOW: never through a link
    finally:
        os.close(fd)


def test_filesystems_outside_the_list_get_no_direct_descriptor() -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or direct._fstype(os.stat(shm).st_dev) != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    path = shm / f"hfsync-direct-{os.getpid()}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert direct.open_direct(path, fd) is None
    finally:
        os.close(fd)
        path.unlink()
