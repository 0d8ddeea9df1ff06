"""Links and odd files planted in hfsync's own state folders are never followed.

Every state file has a predictable name, so a symlink (or hard link, or FIFO) planted at one
must not make hfsync write through it: the run refuses with one line and exit 6 (the local
state is unsafe, see `hfsync/safeio.py`), and the file the link points to stays byte-identical.
Names hfsync only ever creates fresh (temp files) are simply never reused.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hfsync.files import RemoteFile
from hfsync.targets.local import LocalTarget
from hfsync.testing.hub import HubEmulator
from hfsync.transfer.journal import journal_path
from tests.clirun import hfsync, user_files

REPO = "org/model"
BIG = "weights/model.safetensors"  # over the chunk size below: it gets a resume journal
VICTIM = b"precious bytes that must survive\n" * 100
CHUNK = ["--chunk-size", "256K"]


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    files = {BIG: os.urandom(3 * 1024 * 1024 + 5), "config.json": b'{"a": 1}\n'}
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside DEST that a followed link would overwrite."""
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_bytes(VICTIM)
    return path


def remote_file(hub: HubEmulator, path: str) -> RemoteFile:
    info = hub.files(REPO)[path]
    return RemoteFile(path, info.size, info.blob_sha1, info.lfs_sha256)


def state(dest: Path) -> Path:
    return dest / ".cache" / "huggingface"


def plant(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def assert_refused(proc, planted: Path) -> None:  # noqa: ANN001 - CompletedProcess
    assert proc.returncode == 6, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "refusing to use" in lines[0] or "refusing to write" in lines[0], lines[0]
    assert str(planted) in lines[0], lines[0]


def part_of(hub: HubEmulator, dest: Path, path: str = BIG) -> Path:
    return LocalTarget(dest).part_path(remote_file(hub, path))


def test_symlinked_part_file_is_refused(hub: HubEmulator, repo: dict, victim: Path, tmp_path):
    dest = tmp_path / "dest"
    part = part_of(hub, dest)
    plant(part, victim)
    proc = hfsync("sync", REPO, dest, *CHUNK)
    assert_refused(proc, part)
    assert victim.read_bytes() == VICTIM
    assert not (dest / BIG).exists()


def test_hard_linked_part_file_is_refused(hub: HubEmulator, repo: dict, victim: Path, tmp_path):
    dest = tmp_path / "dest"
    part = part_of(hub, dest)
    part.parent.mkdir(parents=True)
    os.link(victim, part)
    proc = hfsync("sync", REPO, dest, *CHUNK)
    assert_refused(proc, part)
    assert victim.read_bytes() == VICTIM


def test_symlinked_journal_is_refused(hub: HubEmulator, repo: dict, victim: Path, tmp_path):
    dest = tmp_path / "dest"
    journal = journal_path(part_of(hub, dest))
    plant(journal, victim)
    proc = hfsync("sync", REPO, dest, *CHUNK)
    assert_refused(proc, journal)
    assert victim.read_bytes() == VICTIM


def test_fifo_at_the_journal_neither_hangs_nor_is_used(hub: HubEmulator, repo: dict, tmp_path):
    dest = tmp_path / "dest"
    journal = journal_path(part_of(hub, dest))
    journal.parent.mkdir(parents=True)
    os.mkfifo(journal)
    proc = hfsync("sync", REPO, dest, *CHUNK, timeout=60)
    assert_refused(proc, journal)


def test_symlinked_lock_file_is_refused(hub: HubEmulator, repo: dict, victim: Path, tmp_path):
    dest = tmp_path / "dest"
    lock = state(dest) / "hfsync.lock"
    plant(lock, victim)
    proc = hfsync("sync", REPO, dest)
    assert_refused(proc, lock)
    assert victim.read_bytes() == VICTIM


@pytest.mark.parametrize("name", [".gitignore", "CACHEDIR.TAG"])
def test_symlinked_state_markers_are_refused(
    hub: HubEmulator, repo: dict, victim: Path, tmp_path: Path, name: str
) -> None:
    dest = tmp_path / "dest"
    marker = state(dest) / name
    plant(marker, victim)
    proc = hfsync("sync", REPO, dest)
    assert_refused(proc, marker)
    assert victim.read_bytes() == VICTIM


def test_dangling_symlinked_marker_creates_nothing(hub: HubEmulator, repo: dict, tmp_path):
    """`exists()` is False for a dangling link; writing it would create the link's target."""
    dest = tmp_path / "dest"
    target = tmp_path / "elsewhere" / "created-by-hfsync"
    target.parent.mkdir()
    plant(state(dest) / ".gitignore", target)
    proc = hfsync("sync", REPO, dest)
    assert proc.returncode == 6, proc.stderr
    assert not target.exists()


def test_planted_metadata_tmp_link_is_never_written(
    hub: HubEmulator, repo: dict, victim: Path, tmp_path: Path
) -> None:
    """Temp names are unique, so the old fixed `<path>.metadata.tmp` is just never used."""
    dest = tmp_path / "dest"
    tmp = state(dest) / "download" / "config.json.metadata.tmp"
    plant(tmp, victim)
    proc = hfsync("sync", REPO, dest)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_bytes() == VICTIM
    assert user_files(dest) == repo
    meta = (state(dest) / "download" / "config.json.metadata").read_text().splitlines()
    assert meta[1] == remote_file(hub, "config.json").etag
    assert not [p for p in (state(dest) / "download").iterdir() if p.name.endswith(".tmp")][1:]


def test_symlinked_metadata_is_refused(hub: HubEmulator, repo: dict, victim: Path, tmp_path):
    dest = tmp_path / "dest"
    assert hfsync("sync", REPO, dest).returncode == 0
    meta = state(dest) / "download" / "config.json.metadata"
    meta.unlink()
    plant(meta, victim)
    proc = hfsync("sync", REPO, dest)
    assert_refused(proc, meta)
    assert victim.read_bytes() == VICTIM


def test_state_folder_symlinked_out_of_dest_is_refused(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_bytes(VICTIM)
    (dest / ".cache").symlink_to(other)
    proc = hfsync("sync", REPO, dest)
    assert proc.returncode == 6, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "outside" in proc.stderr and str(dest) in proc.stderr
    assert sorted(p.name for p in other.rglob("*")) == ["keep.txt"]
    assert (other / "keep.txt").read_bytes() == VICTIM
    assert user_files(dest) == {}


def test_download_subfolder_symlinked_out_is_refused(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    """A link deeper in the state folder (`download/weights` → elsewhere) is caught too."""
    dest = tmp_path / "dest"
    other = tmp_path / "other"
    other.mkdir()
    plant(state(dest) / "download" / "weights", other)
    proc = hfsync("sync", REPO, dest, *CHUNK)
    assert proc.returncode == 6, proc.stderr
    assert "outside" in proc.stderr
    assert list(other.iterdir()) == []


def test_a_clean_run_after_removing_the_link_succeeds(
    hub: HubEmulator, repo: dict, victim: Path, tmp_path: Path
) -> None:
    """The refusal is not sticky: remove what it names and the next run syncs."""
    dest = tmp_path / "dest"
    lock = state(dest) / "hfsync.lock"
    plant(lock, victim)
    assert hfsync("sync", REPO, dest).returncode == 6
    lock.unlink()
    proc = hfsync("sync", REPO, dest, *CHUNK)
    assert proc.returncode == 0, proc.stderr
    assert user_files(dest) == repo
    assert victim.read_bytes() == VICTIM
