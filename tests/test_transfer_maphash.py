"""Hashing a part file's finished bytes straight from the page cache (`PartFile.hash_range`).

Chunks that land ahead of the hasher (several streams) are hashed from a read-only mapping of
the part file instead of being read back into a buffer; the mapping is gone once the call
returns, and a filesystem that refuses mmap gets the old read-back.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from pathlib import Path

import pytest

from hfsync.transfer import partfile
from hfsync.transfer.partfile import MAP_WINDOW, PartFile


def _part(tmp_path: Path, content: bytes) -> PartFile:
    part = PartFile(tmp_path / "f.part", len(content))
    part.open(fresh=True)
    part.write(memoryview(content), 0)
    return part


def _mapped(path: Path) -> bool:
    """True when this process has `path` mapped now (/proc/self/maps names mapped files)."""
    with open("/proc/self/maps") as fh:
        return any(line.rstrip().endswith(str(path)) for line in fh)


def _hash_all(part: PartFile, start: int, buf: memoryview) -> tuple[bytes, list[int]]:
    """sha256 of the part from `start` to its end through `hash_range`; the step sizes."""
    h = hashlib.sha256()
    steps = []
    offset = start
    while offset < part.size:
        n = part.hash_range(h.update, offset, part.size - offset, buf)
        assert n > 0
        steps.append(n)
        offset += n
    return h.digest(), steps


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
def test_hash_range_hashes_exact_bytes_from_unaligned_offsets_and_unmaps(tmp_path: Path) -> None:
    content = os.urandom(MAP_WINDOW + 3 * mmap.ALLOCATIONGRANULARITY + 123)
    part = _part(tmp_path, content)
    buf = memoryview(bytearray(64 * 1024))
    try:
        for start in (0, 1, mmap.ALLOCATIONGRANULARITY - 1, MAP_WINDOW + 5):
            digest, steps = _hash_all(part, start, buf)
            assert digest == hashlib.sha256(content[start:]).digest(), start
            assert max(steps) <= MAP_WINDOW
            assert not _mapped(part.path), "a mapping outlived hash_range (RSS would grow)"
        # never past the size the part was opened with, whatever length is asked for
        h = hashlib.sha256()
        assert part.hash_range(h.update, len(content) - 10, 1 << 30, buf) == 10
        assert h.digest() == hashlib.sha256(content[-10:]).digest()
        assert part.hash_range(h.update, len(content), 1 << 20, buf) == 0
        # the mapped path was taken: the buffer was never written
        assert bytes(buf) == bytes(len(buf))
    finally:
        part.close()


def test_hash_range_falls_back_to_reading_where_mmap_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = os.urandom(3 * 100_000 + 7)
    part = _part(tmp_path, content)

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(19, "No such device")  # ENODEV: what a filesystem without mmap says

    monkeypatch.setattr(partfile.mmap, "mmap", refuse)
    reads: list[int] = []
    real = PartFile.read_into
    monkeypatch.setattr(
        PartFile, "read_into", lambda self, b, o: reads.append(o) or real(self, b, o)
    )
    buf = memoryview(bytearray(100_000))
    try:
        digest, steps = _hash_all(part, 0, buf)
    finally:
        part.close()
    assert digest == hashlib.sha256(content).digest()
    assert reads == [0, 100_000, 200_000, 300_000] and steps[-1] == 7


def test_out_of_order_chunks_are_hashed_mapped_and_still_verified(
    hub,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001 - fixtures
) -> None:
    """Four streams: chunks land ahead of the hasher and are hashed through `hash_range`, never
    read back with `read_into`; a corrupted byte in such a chunk is still caught (refetch)."""
    from hfsync.hub import HubClient
    from hfsync.transfer import FileJob, TransferConfig, engine, run_transfers
    from hfsync.transfer.ramp import StreamRamp

    # every stream from the start, each paced: chunks 2-4 land while chunk 1 is being hashed
    monkeypatch.setattr(engine, "StreamRamp", lambda n, start=1: StreamRamp(n, start=n))
    hub.faults.rate_per_conn = 40e6
    content = os.urandom(6 * (1 << 20) + 12345)
    commit = hub.commit("org/m", {"w.bin": content})
    info = hub.files("org/m", commit)["w.bin"]
    client = HubClient(hub.endpoint, None)
    reads: list[int] = []
    mapped: list[int] = []
    real_read, real_hash = PartFile.read_into, PartFile.hash_range
    monkeypatch.setattr(
        PartFile, "read_into", lambda self, b, o: reads.append(o) or real_read(self, b, o)
    )

    def hash_range(self: PartFile, update, offset: int, length: int, buf) -> int:  # noqa: ANN001
        n = real_hash(self, update, offset, length, buf)
        mapped.append(n)
        return n

    monkeypatch.setattr(PartFile, "hash_range", hash_range)
    placed: list[bytes] = []
    job = FileJob(
        "w.bin",
        info.size,
        info.lfs_sha256,
        client.resolve_url("org/m", "model", commit, "w.bin"),
        tmp_path / "w.bin.part",
        lambda part: placed.append(part.read_bytes()),
    )
    hub.faults.corrupt_next(count=1, offset=4 * (1 << 20) + 777)  # in a chunk past the first
    config = TransferConfig(connections=4, chunk_size=1 << 20)
    report = run_transfers([job], client, config)
    assert all(o.ok for o in report.outcomes), [o.error for o in report.outcomes]
    assert placed == [content]
    assert report.outcomes[0].bytes_transferred > len(content), "the corruption went unnoticed"
    assert reads == [], "finished chunks were read back instead of hashed from the mapping"
    assert sum(mapped) > 0, "no chunk landed ahead of the hasher: the test proves nothing"


def test_a_part_file_shorter_than_its_size_is_read_not_mapped(tmp_path: Path) -> None:
    """Mapping past the end of a file and touching it is a SIGBUS: a part file cut short
    behind hfsync's back is read instead, and the short read reaches the caller."""
    content = os.urandom(3 * mmap.ALLOCATIONGRANULARITY)
    part = _part(tmp_path, content)
    buf = memoryview(bytearray(len(content)))
    try:
        assert part.fd is not None
        os.ftruncate(part.fd, mmap.ALLOCATIONGRANULARITY + 10)
        h = hashlib.sha256()
        n = part.hash_range(h.update, 0, len(content), buf)
        assert n == mmap.ALLOCATIONGRANULARITY + 10  # what is there, nothing past it
        assert h.digest() == hashlib.sha256(content[:n]).digest()
        assert part.hash_range(h.update, n, len(content), buf) == 0
    finally:
        part.close()
