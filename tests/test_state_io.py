"""State files under real-world conditions: power loss (fsync order), caches shared between
users (lock files of another owner), and systems without `posix_fallocate` (macOS)."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import hfsync
from hfsync.errors import DiskError
from hfsync.safeio import open_state_file, write_all, write_atomic
from hfsync.testing.hub import HubEmulator
from hfsync.transfer import TransferConfig
from tests.clirun import user_files

REPO = "org/model"
KiB = 1024


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    files = {
        "weights/model.safetensors": os.urandom(2 * 1024 * 1024 + 3),
        "config.json": b'{"a": 1}\n',
    }
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def small_chunks() -> TransferConfig:
    return TransferConfig(connections=4, chunk_size=256 * KiB)


# -- 11: durability --------------------------------------------------------------------------


def _record_fsyncs_and_renames(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, str]]:
    """(thread, "fsync" | "replace", path) of every fsync and rename, in order."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name fsynced descriptors")
    events: list[tuple[int, str, str]] = []  # workers interleave: the thread says whose
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append((threading.get_ident(), "fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: object, dst: object, **kw: object) -> None:
        real_replace(src, dst, **kw)
        events.append((threading.get_ident(), "replace", os.fspath(dst)))  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def _around(events: list[tuple[int, str, str]], path: Path) -> tuple[tuple[str, str], ...]:
    """What the thread that renamed onto `path` did just before and just after it."""
    [thread] = [t for t, w, p in events if (w, p) == ("replace", str(path))]
    mine = [(w, p) for t, w, p in events if t == thread]
    j = mine.index(("replace", str(path)))
    return mine[j - 1], (mine[j + 1] if j + 1 < len(mine) else ("", ""))


def test_new_files_are_flushed_before_placed_and_their_folders_before_the_run_ends(
    hub: HubEmulator, repo: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file's bytes are on disk before its name is (the part is fsynced before the rename);
    a new name's folder is fsynced once after the last rename into it, before sync returns;
    a new metadata file is created in place (nothing to keep: see LocalTarget._place)."""
    events = _record_fsyncs_and_renames(monkeypatch)
    dest = (tmp_path / "dest").resolve()
    hfsync.sync(REPO, dest, endpoint=hub.endpoint, config=small_chunks())
    monkeypatch.undo()
    assert user_files(dest) == repo
    flat = [(w, p) for _, w, p in events]
    for path in repo:
        final = dest / path
        before, _ = _around(events, final)
        assert before[0] == "fsync" and before[1].endswith(".hfsync.incomplete"), before
        assert Path(before[1]).name.startswith(final.name + ".")  # this file's own part
        meta = dest / ".cache/huggingface/download" / f"{path}.metadata"
        info = hub.files(REPO)[path]
        assert meta.read_text().split("\n")[1] == (info.lfs_sha256 or info.blob_sha1)
        placed = flat.index(("replace", str(final)))  # the metadata is created after this
        for folder in (final.parent, meta.parent):
            assert ("fsync", str(folder)) in flat[placed + 1 :], f"{folder} never fsynced"
    assert not [p for w, p in flat if w == "replace" and p.endswith(".metadata")]
    assert ("fsync", str(dest)) in flat  # a folder created this run is a new name in DEST


def test_replacing_a_file_syncs_its_folder_before_its_metadata_names_it(
    hub: HubEmulator, repo: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replaced content: the folder is fsynced right after the rename, before the metadata
    (otherwise a power loss could keep the old bytes under the new id); metadata that is
    replaced goes through a fsynced temp file and its folder is fsynced after the rename."""
    dest = (tmp_path / "dest").resolve()
    hfsync.sync(REPO, dest, endpoint=hub.endpoint, config=small_chunks())
    hub.commit(REPO, files={"config.json": b'{"a": 2}\n'})
    events = _record_fsyncs_and_renames(monkeypatch)
    hfsync.sync(REPO, dest, endpoint=hub.endpoint, config=small_chunks())
    monkeypatch.undo()
    assert (dest / "config.json").read_bytes() == b'{"a": 2}\n'
    final = dest / "config.json"
    meta = dest / ".cache/huggingface/download/config.json.metadata"
    assert _around(events, final)[1] == ("fsync", str(final.parent))
    before, after = _around(events, meta)
    assert after == ("fsync", str(meta.parent))
    assert before[0] == "fsync" and before[1].startswith(f"{meta}.")  # its temp's data
    flat = [(w, p) for _, w, p in events]
    assert flat.index(("replace", str(final))) < flat.index(("replace", str(meta)))


def test_write_atomic_leaves_old_content_and_no_temp_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "x.metadata"
    target.write_bytes(b"old\n")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        write_atomic(target, b"new\n")
    monkeypatch.undo()
    assert target.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.metadata"]
    write_atomic(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.metadata"]


# -- safeio itself ---------------------------------------------------------------------------


def test_open_state_file_refuses_links_and_never_truncates_their_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "sym").symlink_to(victim)
    os.link(victim, tmp_path / "hard")
    for name in ("sym", "hard"):
        with pytest.raises(DiskError, match=f"refusing to use .*{name}"):
            open_state_file(tmp_path / name, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    assert victim.read_bytes() == b"keep"
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(DiskError, match="not a regular file"):
        open_state_file(tmp_path / "fifo", os.O_RDONLY)
    with pytest.raises(DiskError, match="not a regular file"):
        open_state_file(tmp_path, os.O_RDONLY)
    fd = open_state_file(tmp_path / "new", os.O_RDWR | os.O_CREAT)
    try:
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
    finally:
        os.close(fd)


def test_write_all_survives_short_writes_and_fails_without_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
        write_all(fd, b"0123456789")
        monkeypatch.setattr(os, "write", lambda fd, data: 0)
        with pytest.raises(OSError, match="short write"):
            write_all(fd, b"more")
    finally:
        monkeypatch.undo()
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"0123456789"


# -- 12: caches shared between users ---------------------------------------------------------


def other_user_cmd() -> list[str]:
    """A prefix that runs a command without the right to write other users' files.

    As root, dropping CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH makes root obey file modes like
    any user (the interpreter under /root stays reachable, unlike for a real second user).
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot act as another user")
    drop = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}"]


def foreign_lock(lock: Path) -> None:
    """Make `lock` a 0o644 lock file of another user (or, unprivileged, one we cannot write)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("12345\n")
    if os.geteuid() == 0:
        os.chown(lock, 65534, 65534)  # nobody
        lock.chmod(0o644)
    else:
        lock.chmod(0o444)
    probe = subprocess.run(
        [*other_user_cmd(), sys.executable, "-c", f"open({str(lock)!r}, 'r+')"],
        capture_output=True,
        text=True,
    )
    if probe.returncode == 0 or "PermissionError" not in probe.stderr:
        pytest.skip("cannot make a lock file that this user may not write")


def run_as_other(*args: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, HFSYNC_BACKOFF_BASE="0.01")
    proc = subprocess.run(
        [*other_user_cmd(), sys.executable, "-m", "hfsync", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.mark.parametrize("kind", ["local", "cache"])
def test_lock_file_of_another_user_can_still_be_taken(
    hub: HubEmulator, repo: dict, tmp_path: Path, kind: str
) -> None:
    root = tmp_path / kind
    if kind == "local":
        args: list[object] = [root]
        lock = root / ".cache/huggingface/hfsync.lock"
        check_root = root
    else:
        args = ["--cache-dir", root]
        lock = root / ".locks/models--org--model/hfsync.lock"
        check_root = None
    foreign_lock(lock)

    proc = run_as_other("sync", REPO, *args)
    assert proc.returncode == 0, proc.stderr
    if check_root is not None:
        assert user_files(check_root) == repo
    assert lock.stat().st_uid == (65534 if os.geteuid() == 0 else os.geteuid())

    # Held by another run: the other user gets the clear "locked" exit, not a disk error.
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = run_as_other("sync", REPO, *args)
    finally:
        os.close(fd)
    assert busy.returncode == 8, busy.stderr
    assert "another hfsync" in busy.stderr and len(busy.stderr.strip().splitlines()) == 1


def test_new_lock_files_follow_the_umask_so_a_group_can_share_them(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    """With a group-sharing umask (002) the lock is group-writable, like the official client's
    files; the old fixed 0o644 locked the group out of writing it."""
    old = os.umask(0o002)
    try:
        hfsync.sync(REPO, tmp_path / "dest", endpoint=hub.endpoint)
    finally:
        os.umask(old)
    lock = tmp_path / "dest/.cache/huggingface/hfsync.lock"
    assert lock.stat().st_mode & 0o777 == 0o664


# -- 14: no posix_fallocate ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["missing", "unsupported"])
def test_without_posix_fallocate_files_are_still_written(
    hub: HubEmulator, repo: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """macOS has no os.posix_fallocate; ZFS/NFS refuse it: both fall back to ftruncate."""
    if how == "missing":
        monkeypatch.delattr(os, "posix_fallocate", raising=False)
    else:

        def refuse(fd: int, offset: int, length: int) -> None:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")

        monkeypatch.setattr(os, "posix_fallocate", refuse)
    dest = tmp_path / "dest"
    hfsync.sync(REPO, dest, endpoint=hub.endpoint, config=small_chunks())
    assert user_files(dest) == repo
