"""Many small files are made durable a batch at a time (hfsync/transfer/settle.py): one syncfs
after their bytes are written and before any of their names exists, instead of an fsync each.

A power cut cannot be staged in a test, so the order of the system calls is recorded instead:
every part's last write, the syncfs calls and the renames. The filesystem checks of
`syncfs.may_serve` (kernel 5.8+, a local disk's filesystem) are replaced where a test is about
the engine's order, so it asserts on any CI machine (overlayfs, an older kernel); the checks
themselves are unit-tested at the end against given kernel releases and this machine's
mountinfo."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

import hfsync
from hfsync.errors import DiskError, HfsyncError
from hfsync.testing.hub import HubEmulator
from hfsync.transfer import TransferConfig, settle, syncfs
from tests.clirun import user_files

REPO = "org/many-small"
PART = ".hfsync.incomplete"


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    files = {f"data/{i:03d}.json": os.urandom(100 + 37 * i) for i in range(settle.MIN_FILES * 3)}
    files["weights.bin"] = os.urandom(settle.MAX_SIZE + 5)  # too big: fsynced by its worker
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def _path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(what, path) of every pwrite, fsync, syncfs and rename, in order; syncfs may serve
    here whatever the machine (it is a real `sync` of everything, so as durable)."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name written descriptors")
    log: list[tuple[str, str]] = []
    lock = threading.Lock()
    real_pwrite, real_fsync, real_replace = os.pwrite, os.fsync, os.replace

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        n = real_pwrite(fd, data, offset)
        with lock:
            log.append(("write", _path(fd)))
        return n

    def fsync(fd: int) -> None:
        real_fsync(fd)
        with lock:
            log.append(("fsync", _path(fd)))

    def replace(src: object, dst: object, **kw: object) -> None:
        real_replace(src, dst, **kw)  # type: ignore[arg-type]
        with lock:
            log.append(("replace", os.fspath(src)))  # type: ignore[arg-type]

    def fake_syncfs(fd: int) -> None:
        os.sync()
        with lock:
            log.append(("syncfs", _path(fd)))

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(syncfs, "syncfs_call", lambda: fake_syncfs)
    monkeypatch.setattr(syncfs, "may_serve", lambda dev: True)
    monkeypatch.setattr(syncfs, "dirty_bytes", lambda: 0)
    # batches close when every open file waits (or MAX_BATCH), never by the clock: a loaded
    # machine must not split them into ones too small for a syncfs
    monkeypatch.setattr(settle, "MAX_AGE", 60.0)
    return log


def config() -> TransferConfig:
    return TransferConfig(connections=4)


def test_small_files_are_on_disk_before_their_names_with_one_syncfs_per_batch(
    hub: HubEmulator, repo: dict, tmp_path: Path, events: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "dest"
    hfsync.sync(REPO, dest, endpoint=hub.endpoint, config=config())
    monkeypatch.undo()
    assert user_files(dest) == repo
    parts = [p for what, p in events if what == "replace" and p.endswith(PART)]
    assert len(parts) == len(repo)  # every file came through a part
    synced = [i for i, (what, _) in enumerate(events) if what == "syncfs"]
    assert synced, "no syncfs: every small file was fsynced on its own"
    assert len(synced) < len(repo) // 4  # batches, not one per file
    for part in parts:
        last_write = max(i for i, e in enumerate(events) if e == ("write", part))
        renamed = events.index(("replace", part))
        fsynced = ("fsync", part) in events[last_write:renamed]
        assert fsynced or any(last_write < i < renamed for i in synced), (
            f"{part} renamed with its bytes possibly still in memory"
        )
    small_fsynced = [p for what, p in events if what == "fsync" and ".json." in p]
    assert not small_fsynced  # the point: no per-file flush for them
    assert ("fsync", str(next(p for p in parts if "weights.bin" in p))) in events


def test_a_failed_syncfs_leaves_every_file_of_its_batch_a_part_and_is_a_disk_error(
    hub: HubEmulator, repo: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(syncfs, "syncfs_call", lambda: failing)
    monkeypatch.setattr(syncfs, "may_serve", lambda dev: True)
    monkeypatch.setattr(syncfs, "dirty_bytes", lambda: 0)
    monkeypatch.setattr(settle, "MAX_AGE", 60.0)  # one batch: see `events`
    dest = tmp_path / "dest"
    with pytest.raises(DiskError, match="cannot flush: Input/output error"):
        hfsync.sync(REPO, dest, endpoint=hub.endpoint, config=config())
    monkeypatch.undo()
    placed = set(user_files(dest))
    small = {p for p in repo if p.startswith("data/")}
    assert len(small - placed) >= settle.MIN_BATCH  # at least one whole batch never placed
    for path in placed:
        assert (dest / path).read_bytes() == repo[path]  # what has a name is complete
    # the next run (syncfs working) finishes the job from the parts left behind
    result = hfsync.sync(REPO, dest, endpoint=hub.endpoint, config=config())
    assert user_files(dest) == repo
    assert result.report is not None and not result.report.failures


def test_with_much_dirty_data_each_small_file_is_fsynced_instead(
    hub: HubEmulator, repo: dict, tmp_path: Path, events: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """syncfs would also wait for other programs' unwritten data (a checkpoint being saved)."""
    monkeypatch.setattr(syncfs, "dirty_bytes", lambda: syncfs.MAX_DIRTY + 1)
    dest = tmp_path / "dest"
    hfsync.sync(REPO, dest, endpoint=hub.endpoint, config=config())
    monkeypatch.undo()
    assert user_files(dest) == repo
    assert not [e for e in events if e[0] == "syncfs"]
    for what, part in events:
        if what == "replace" and part.endswith(PART):
            renamed = events.index(("replace", part))
            assert ("fsync", part) in events[:renamed]


def test_a_few_small_files_are_fsynced_by_their_workers(
    hub: HubEmulator, hf_env: Path, tmp_path: Path, events: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"{i}.json": b"{}" * i for i in range(2, settle.MIN_FILES)}  # 15 with .gitattributes
    hub.create_repo("org/few")
    hub.commit("org/few", files=files)
    dest = tmp_path / "dest"
    hfsync.sync("org/few", dest, endpoint=hub.endpoint, config=config())
    monkeypatch.undo()
    assert {p: (dest / p).read_bytes() for p in files} == files
    assert not [e for e in events if e[0] == "syncfs"]
    for what, part in events:
        if what == "replace" and part.endswith(PART):
            assert ("fsync", part) in events[: events.index(("replace", part))]


@pytest.mark.parametrize(
    ("release", "reports"),
    [("5.7.19", False), ("5.8.0", True), ("6.18.44-fc-v1147", True), ("4.19.0-amd64", False)],
)
def test_syncfs_counts_only_on_kernels_that_report_its_errors(release: str, reports: bool) -> None:
    on_linux = os.uname().sysname == "Linux"
    assert syncfs.kernel_reports_errors(release) is (reports and on_linux)


def test_fs_type_names_the_filesystem_of_a_device_from_mountinfo() -> None:
    if not Path("/proc/self/mountinfo").is_file():
        pytest.skip("no /proc/self/mountinfo")
    root_type = syncfs.fs_type(os.stat("/proc").st_dev)
    assert root_type == "proc"
    assert syncfs.fs_type(os.makedev(4095, 4095)) is None  # no such device mounted
    assert not syncfs.may_serve(os.stat("/proc").st_dev)  # not a local disk's filesystem


def test_parts_waiting_to_settle_stay_within_a_low_descriptor_limit(
    hub: HubEmulator, hf_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each waiting part holds a descriptor: workers that outran the settler must wait for
    room instead of piling up hundreds (EMFILE would fail files that were downloaded fine)."""
    resource = pytest.importorskip("resource")
    files = {f"f/{i:04d}.txt": os.urandom(64 + i % 50) for i in range(900)}
    hub.create_repo("org/lots")
    hub.commit("org/lots", files=files)
    monkeypatch.setattr(syncfs, "may_serve", lambda dev: True)
    monkeypatch.setattr(syncfs, "dirty_bytes", lambda: 0)
    slow = threading.Event()

    def slow_syncfs(fd: int) -> None:
        slow.wait(0.2)  # a slow disk: the workers outrun the settler
        os.sync()

    monkeypatch.setattr(syncfs, "syncfs_call", lambda: slow_syncfs)
    in_use = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").is_dir() else 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = in_use + 2 * settle.MAX_BATCH + 120  # two batches, workers, sockets, the emulator's
    if limit > soft:
        pytest.skip(f"the descriptor limit here ({soft}) is already below {limit}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        hfsync.sync("org/lots", tmp_path / "d", endpoint=hub.endpoint, config=config())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert {p: (tmp_path / "d" / p).read_bytes() for p in files} == files


def test_a_bug_in_the_settler_fails_its_files_instead_of_hanging_the_run(
    hub: HubEmulator, repo: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> int:
        raise ValueError("boom")

    monkeypatch.setattr(syncfs, "may_serve", lambda dev: True)
    monkeypatch.setattr(syncfs, "dirty_bytes", broken)
    monkeypatch.setattr(settle, "MAX_AGE", 60.0)  # one batch: see `events`
    dest = tmp_path / "dest"
    with pytest.raises(HfsyncError, match=r"files failed; most severe: \S+: ValueError: boom"):
        hfsync.sync(REPO, dest, endpoint=hub.endpoint, config=config())
    assert not {p for p in user_files(dest) if p.startswith("data/")}  # none placed unsynced


def test_the_push_agent_keeps_the_same_syncfs_rules_in_its_own_copy() -> None:
    """The agent runs alone on the host's python3 and cannot import syncfs.py: its copy of the
    rules must not drift from this one (which filesystems, how much dirty, how big a batch)."""
    from hfsync.remote import agent

    assert agent.SYNCFS_TYPES == syncfs.LOCAL_TYPES
    assert agent.SYNCFS_MAX_DIRTY == syncfs.MAX_DIRTY
    assert agent.SYNCFS_MIN_FILES == settle.MIN_BATCH
    assert (agent.batch_syncfs() is None) is (syncfs.syncfs_call() is None)
    for dev in {os.stat(p).st_dev for p in ("/", "/proc", str(Path.cwd()))}:
        assert agent.fs_type(dev) == syncfs.fs_type(dev)
