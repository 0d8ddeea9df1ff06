"""Resume after an interruption, journals that do not match, and disk problems."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from hfsync.errors import DiskError, Interrupted
from hfsync.testing.hub import HubEmulator
from hfsync.transfer import TransferConfig
from hfsync.transfer.journal import journal_path
from tests.test_transfer_engine import (
    CHUNK,
    CallbackProgress,
    KiB,
    MiB,
    Setup,
    cdn_gets,
    make_setup,
    ok,
    payload,
    resolves,
)

SIZE = 4 * MiB + 777


@pytest.fixture
def big(hub: HubEmulator, tmp_path: Path) -> Setup:
    return make_setup(hub, tmp_path, {"model.safetensors": payload(SIZE, 11)})


def part_and_journal(s: Setup) -> tuple[Path, Path]:
    [job] = s.jobs()
    return job.part_path, journal_path(job.part_path)


def journaled(journal: Path) -> int:
    lines = journal.read_text().splitlines()[1:]
    return sum(int(b) - int(a) for a, b in (line.split() for line in lines))


def interrupt(s: Setup, after: int, *, from_main: bool) -> None:
    """Run until `after` bytes arrived, then Ctrl-C (in the main thread, or from the sink)."""

    def ctrl_c() -> None:
        if from_main:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        else:
            raise KeyboardInterrupt

    # a slow link so the interrupt lands mid-file
    s.hub.faults.rate_per_conn = 2e6
    with pytest.raises(Interrupted):
        s.run(progress=CallbackProgress(after, ctrl_c))
    s.hub.faults.rate_per_conn = None


@pytest.mark.parametrize("from_main", [True, False])
def test_interrupted_download_resumes_only_missing_ranges(big: Setup, from_main: bool) -> None:
    interrupt(big, 1536 * KiB, from_main=from_main)
    part, journal = part_and_journal(big)
    assert part.exists() and journal.exists() and big.finalized == []
    have = journaled(journal)
    assert 1536 * KiB <= have < SIZE
    t0 = time.time()
    report = big.run()
    ok(report)
    big.assert_exact()
    fetched = sum(r.body_bytes for r in cdn_gets(big.hub, t0))
    assert fetched == SIZE - have  # Ctrl-C journals even the partial chunks in flight
    assert report.bytes_transferred == fetched
    assert not journal.exists() and not part.exists()


def test_resume_after_kill_refetches_at_most_unjournaled_chunks(big: Setup) -> None:
    """SIGKILL leaves no chance to journal chunks in flight: simulate by truncating the journal."""
    interrupt(big, 2 * MiB, from_main=False)
    _, journal = part_and_journal(big)
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:3]) + "12")  # plus a torn last line
    have = journaled_lines(lines[:3])
    t0 = time.time()
    ok(big.run())
    big.assert_exact()
    assert sum(r.body_bytes for r in cdn_gets(big.hub, t0)) == SIZE - have


def journaled_lines(lines: list[str]) -> int:
    return sum(int(b) - int(a) for a, b in (line.split() for line in lines[1:]))


def test_journal_of_another_version_means_start_over(big: Setup) -> None:
    part, journal = part_and_journal(big)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\xff" * SIZE)
    journal.write_text(f"hfsync-journal 1 size={SIZE} etag={'0' * 64}\n0 {SIZE}\n")
    ok(big.run())
    big.assert_exact()
    assert sum(r.body_bytes for r in cdn_gets(big.hub)) == SIZE


def test_journal_claiming_bad_bytes_is_caught_by_the_hash(big: Setup) -> None:
    """Power loss can leave journaled ranges that never reached the disk: the hash catches it."""
    interrupt(big, 2 * MiB, from_main=False)
    part, _ = part_and_journal(big)
    with open(part, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\0" * 10)
    t0 = time.time()
    ok(big.run())
    big.assert_exact()
    fetched = sum(r.body_bytes for r in cdn_gets(big.hub, t0))
    assert SIZE < fetched < 2 * SIZE  # the missing part, then everything once more


def test_complete_part_from_a_killed_run_is_verified_and_finalized(big: Setup) -> None:
    part, journal = part_and_journal(big)
    part.parent.mkdir(parents=True)
    part.write_bytes(big.contents["model.safetensors"])
    [job] = big.jobs()
    journal.write_text(f"hfsync-journal 1 size={SIZE} etag={job.etag}\n0 {SIZE}\n")
    ok(big.run())
    big.assert_exact()
    assert big.hub.log == []


def test_not_enough_space_fails_before_any_request(
    big: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.statvfs

    class Tiny:
        def __init__(self, st: os.statvfs_result) -> None:
            self.f_frsize = st.f_frsize
            self.f_bavail = (SIZE // 2) // st.f_frsize

    monkeypatch.setattr("hfsync.transfer.space.os.statvfs", lambda p: Tiny(real(p)))
    with pytest.raises(DiskError) as info:
        big.run()
    assert "need 4.0 MiB" in str(info.value) and "available 2.0 MiB" in str(info.value)
    assert big.hub.log == []
    assert big.leftovers() == []


def test_enospc_mid_way_is_a_disk_error_and_resumable(
    big: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.pwrite
    calls = [0]

    def full_disk(fd: int, data, offset: int) -> int:  # noqa: ANN001
        calls[0] += 1
        if calls[0] > 6:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr("hfsync.transfer.partfile.os.pwrite", full_disk)
    [outcome] = big.run(TransferConfig(connections=2, chunk_size=CHUNK)).outcomes
    monkeypatch.setattr("hfsync.transfer.partfile.os.pwrite", real)
    assert isinstance(outcome.error, DiskError)
    assert "no space left on device" in str(outcome.error)
    assert "model.safetensors" in str(outcome.error)
    _, journal = part_and_journal(big)
    have = journaled(journal)
    assert have > 0
    t0 = time.time()
    ok(big.run())
    big.assert_exact()
    assert sum(r.body_bytes for r in cdn_gets(big.hub, t0)) <= SIZE - have + CHUNK


def test_real_full_filesystem(hub: HubEmulator, tmp_path: Path, tmpfs: Path) -> None:
    files = {"a.safetensors": payload(MiB + 5, 12), "b.safetensors": payload(2 * MiB, 13)}
    s = make_setup(hub, tmp_path, files)
    s.dest = tmpfs / "dest"

    def fill() -> None:
        (tmpfs / "filler").write_bytes(b"\0" * int(2.5 * MiB))

    report = s.run(TransferConfig(connections=1, chunk_size=CHUNK), CallbackProgress(1, fill))
    outcome = {o.job.path: o for o in report.outcomes}
    assert outcome["a.safetensors"].ok
    assert isinstance(outcome["b.safetensors"].error, DiskError)
    (tmpfs / "filler").unlink()
    ok(s.run(paths=["b.safetensors"]))
    s.assert_exact()


def test_bandwidth_limit_caps_throughput(big: Setup) -> None:
    start = time.monotonic()
    ok(big.run(TransferConfig(connections=4, chunk_size=CHUNK, bwlimit=4e6)))
    elapsed = time.monotonic() - start
    assert 0.85 <= elapsed < 6, elapsed  # 4.2 MB at 4 MB/s, minus a 0.1 s burst
    big.assert_exact()


def test_files_over_50gb_are_refused_by_name(big: Setup) -> None:
    from hfsync.transfer import run_transfers

    [job] = big.jobs()
    job.size = 60 * 1000**3
    [outcome] = run_transfers([job], big.client, TransferConfig()).outcomes
    assert not outcome.ok and "model.safetensors" in str(outcome.error)
    assert "50 GB" in str(outcome.error) and "Xet" in str(outcome.error)
    assert big.hub.log == []


def test_progress_never_exceeds_total(big: Setup) -> None:
    big.hub.faults.body_faults_on = "cdn"
    big.hub.faults.corrupt_next(count=1)
    big.hub.faults.drop_next(after_bytes=10 * KiB, count=3)
    seen = CallbackProgress(10**12, lambda: None)
    ok(big.run(progress=seen))
    assert seen.seen == SIZE
    assert len(resolves(big.hub)) == 1


def test_ctrl_c_stops_promptly_even_with_a_stalled_connection(big: Setup) -> None:
    big.hub.faults.body_faults_on = "cdn"
    big.hub.faults.stall_next(after_bytes=64 * KiB, count=None)  # every body hangs
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    start = time.monotonic()
    with pytest.raises(Interrupted):
        big.run(TransferConfig(connections=4, chunk_size=CHUNK, read_timeout=60))
    assert time.monotonic() - start < 3
    _, journal = part_and_journal(big)
    assert journaled(journal) == 4 * 64 * KiB  # what each stalled chunk had received


# -- journals that must not be trusted (hand-edited, foreign, or left by a crash) ----------


def test_journal_claiming_bytes_beyond_the_file_is_clipped(big: Setup) -> None:
    """A journal reaching past the end (hand-edited, foreign) must not make the hasher read
    beyond the file ("part file is shorter than expected") or progress pass 100%."""
    part, journal = part_and_journal(big)
    part.parent.mkdir(parents=True)
    part.write_bytes(big.contents["model.safetensors"])
    [job] = big.jobs()
    journal.write_text(
        f"hfsync-journal 1 size={SIZE} etag={job.etag}\n0 {SIZE * 10}\n{SIZE + 5} {SIZE * 3}\n"
    )
    progress = CallbackProgress(SIZE * 100, lambda: None)  # counts what is reported
    ok(big.run(progress=progress))
    big.assert_exact()
    assert big.hub.log == [] and progress.seen == SIZE


def test_journal_without_its_part_file_is_not_trusted(big: Setup) -> None:
    """A crash between removing the part and its journal leaves a journal alone: start over."""
    part, journal = part_and_journal(big)
    journal.parent.mkdir(parents=True)
    [job] = big.jobs()
    journal.write_text(f"hfsync-journal 1 size={SIZE} etag={job.etag}\n0 {SIZE}\n")
    ok(big.run())
    big.assert_exact()
    assert sum(r.body_bytes for r in cdn_gets(big.hub)) == SIZE
    assert not journal.exists() and not part.exists()


def test_part_file_without_journal_is_fetched_again(big: Setup) -> None:
    """A full-size part without a journal (killed before the header landed) proves nothing."""
    part, journal = part_and_journal(big)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\xee" * SIZE)
    ok(big.run())
    big.assert_exact()
    assert sum(r.body_bytes for r in cdn_gets(big.hub)) == SIZE
    assert not journal.exists() and not part.exists()


@pytest.mark.parametrize("size_delta", [-1, +1])
def test_journal_of_a_part_with_the_wrong_size_is_not_trusted(big: Setup, size_delta: int) -> None:
    part, journal = part_and_journal(big)
    part.parent.mkdir(parents=True)
    content = big.contents["model.safetensors"]
    part.write_bytes(content[:-1] if size_delta < 0 else content + b"x")
    [job] = big.jobs()
    journal.write_text(f"hfsync-journal 1 size={SIZE} etag={job.etag}\n0 {SIZE}\n")
    ok(big.run())
    big.assert_exact()
    assert sum(r.body_bytes for r in cdn_gets(big.hub)) == SIZE


def test_journal_with_a_torn_header_is_not_trusted(big: Setup) -> None:
    part, journal = part_and_journal(big)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\xee" * SIZE)
    [job] = big.jobs()
    journal.write_text(f"hfsync-journal 1 size={SIZE} etag={job.etag[:20]}")
    ok(big.run())
    big.assert_exact()
    assert sum(r.body_bytes for r in cdn_gets(big.hub)) == SIZE


def test_journal_write_that_makes_no_progress_is_a_disk_error(
    big: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.write returning 0 (a broken filesystem) is one clear disk error, not a silent gap
    in the journal, a busy loop or an "unexpected" error."""
    import hfsync.safeio as safeio

    real_write = os.write

    def stuck(fd: int, data: bytes) -> int:
        if (
            os.readlink(f"/proc/self/fd/{fd}").endswith(".journal")
            and b"hfsync-journal" not in data
        ):
            return 0
        return real_write(fd, data)

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to tell the journal's descriptor")
    monkeypatch.setattr(safeio.os, "write", stuck)
    report = big.run()
    [outcome] = report.outcomes
    assert not outcome.ok and isinstance(outcome.error, DiskError), outcome.error
    assert "resume journal" in str(outcome.error) and "short write" in str(outcome.error)


def test_a_journal_whose_header_cannot_be_written_is_closed_and_tried_again(tmpfs: Path) -> None:
    """A full disk at the header: the error each time, and no descriptor left open per try (a
    run failing thousands of files this way would otherwise run out of descriptors)."""
    from hfsync.transfer.journal import Journal

    filler = tmpfs / "filler"
    with open(filler, "wb") as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
    journal = Journal(tmpfs / "x.incomplete", SIZE, "ab" * 32)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(OSError) as info:
            journal.open(fresh=True)
        assert info.value.errno == errno.ENOSPC
    assert len(os.listdir("/proc/self/fd")) == before
    filler.unlink()
    journal.open(fresh=True)  # room again: the header is written this time
    journal.close()
    assert (tmpfs / "x.incomplete.journal").read_text().startswith("hfsync-journal 1")
