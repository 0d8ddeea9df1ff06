"""CacheTarget's layout rules, without a network: scan states, placement, refs, path safety.

The end-to-end proofs against the emulator and the official client are in test_cache_target.py;
these pin the decisions behind them with plain files.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from hfsync.cache_scan import prune, scan_cache
from hfsync.errors import LockedError, RemotePathError, UsageError
from hfsync.files import RemoteFile
from hfsync.plan import Action, make_plan
from hfsync.targets import cache as cache_module
from hfsync.targets import cache_locks
from hfsync.targets.cache import CacheTarget, cache_root, repo_folder_name
from hfsync.transfer.jobs import FileJob
from hfsync.transfer.journal import MAGIC, journal_path

REPO = "org/model"
C1 = "1" * 40
C2 = "2" * 40


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def small(path: str, data: bytes) -> RemoteFile:
    return RemoteFile(path, len(data), git_sha1(data))


def lfs(path: str, data: bytes) -> RemoteFile:
    return RemoteFile(path, len(data), "f" * 40, hashlib.sha256(data).hexdigest())


@pytest.fixture(autouse=True)
def fresh_symlink_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "_symlink_support", {})
    monkeypatch.delenv("HF_HUB_DISABLE_SYMLINKS", raising=False)


def download(target: CacheTarget, remote: RemoteFile, data: bytes, commit: str) -> None:
    """What the executor does: write the part file, then call finalize with it."""
    job = target.job(remote, commit, "http://unused")
    job.part_path.parent.mkdir(parents=True, exist_ok=True)
    job.part_path.write_bytes(data)
    job.finalize(job.part_path)


def sync_files(target: CacheTarget, files: dict[str, bytes], commit: str, revision: str) -> list:
    """Plan against the cache, place everything, write the ref; returns the transferred paths."""
    remote = {
        path: (lfs if path.endswith(".bin") else small)(path, data) for path, data in files.items()
    }
    state = target.scan(remote, checksum=False, all_files=False, commit=commit)
    plan = make_plan(commit, remote.values(), state)
    for item in plan.refreshes:
        target.mark_current(remote[item.path], commit, item.held)
    for item in plan.transfers:
        download(target, remote[item.path], files[item.path], commit)
    target.finish(commit, revision)
    return [item.path for item in plan.transfers]


def test_cache_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "legacy"))
    assert cache_root() == tmp_path / "legacy"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "new"))
    assert cache_root() == tmp_path / "new"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert repo_folder_name("gpt2", "model") == "models--gpt2"
    assert repo_folder_name("org/data", "dataset") == "datasets--org--data"
    assert repo_folder_name("org/app", "space") == "spaces--org--app"
    for bad in ("../x", "a/b/c", "a--b", ""):
        with pytest.raises(UsageError):
            repo_folder_name(bad, "model")


def test_layout_matches_the_official_client(tmp_path: Path) -> None:
    target = CacheTarget(REPO, "model", tmp_path)
    files = {"config.json": b"{}\n", "sub/dir/w.bin": os.urandom(1000), "e1": b"", "e2": b""}
    assert sorted(sync_files(target, files, C1, "main")) == sorted(files)
    storage = tmp_path / "models--org--model"
    assert (storage / "refs" / "main").read_bytes() == C1.encode()  # no newline, as hf does
    nested = storage / "snapshots" / C1 / "sub" / "dir" / "w.bin"
    etag = hashlib.sha256(files["sub/dir/w.bin"]).hexdigest()
    assert os.readlink(nested) == f"../../../../blobs/{etag}"
    assert os.readlink(storage / "snapshots" / C1 / "config.json") == (
        f"../../blobs/{git_sha1(b'{}' + bytes([10]))}"
    )
    # Two files of the same content: one blob, two links, no leftover part file.
    assert os.readlink(storage / "snapshots" / C1 / "e1") == os.readlink(
        storage / "snapshots" / C1 / "e2"
    )
    assert sorted(p.name for p in (storage / "blobs").iterdir()) == sorted(
        {git_sha1(b"{}\n"), etag, git_sha1(b"")}
    )
    with target.lock():
        assert (tmp_path / ".locks" / "models--org--model" / "hfsync.lock").is_file()
    assert (tmp_path / "CACHEDIR.TAG").is_file()


def test_scan_states_drive_the_plan(tmp_path: Path) -> None:
    target = CacheTarget(REPO, "model", tmp_path)
    files = {"a.txt": b"aaa\n", "b.txt": b"bbb\n", "w.bin": os.urandom(500)}
    sync_files(target, files, C1, "main")
    remote = {p: (lfs if p.endswith(".bin") else small)(p, d) for p, d in files.items()}

    # Same commit: everything linked and current, nothing to refresh.
    state = target.scan(remote, checksum=False, all_files=False, commit=C1)
    plan = make_plan(C1, remote.values(), state)
    assert [i.action for i in plan.items] == [Action.UNCHANGED] * 3
    assert not plan.refreshes

    # Another commit with the same blobs: current, but needs linking (mark_current), no bytes.
    state = target.scan(remote, checksum=False, all_files=False, commit=C2)
    plan = make_plan(C2, remote.values(), state)
    assert not plan.transfers and len(plan.refreshes) == 3
    for item in plan.refreshes:
        target.mark_current(remote[item.path], C2, item.held)
    assert (tmp_path / "models--org--model" / "snapshots" / C2 / "w.bin").read_bytes() == files[
        "w.bin"
    ]

    # A corrupted blob is only noticed with --checksum (as with the official client).
    blob = tmp_path / "models--org--model" / "blobs" / remote["a.txt"].etag
    blob.write_bytes(b"AAA\n")
    quick = target.scan(remote, checksum=False, all_files=False, commit=C1)
    assert make_plan(C1, remote.values(), quick).transfers == []
    full = target.scan(remote, checksum=True, all_files=False, commit=C1)
    assert [i.path for i in make_plan(C1, remote.values(), full).transfers] == ["a.txt"]
    download(target, remote["a.txt"], files["a.txt"], C1)
    assert blob.read_bytes() == files["a.txt"]

    # A dangling link counts as absent; a wrong-size entry as an update.
    blob.unlink()
    (tmp_path / "models--org--model" / "snapshots" / C1 / "b.txt").unlink()
    (tmp_path / "models--org--model" / "snapshots" / C1 / "b.txt").write_bytes(b"x")
    state = target.scan(remote, checksum=False, all_files=False, commit=C1)
    plan = {i.path: i for i in make_plan(C1, remote.values(), state).items}
    assert plan["a.txt"].action is Action.NEW
    assert plan["b.txt"].action is Action.UPDATE and plan["b.txt"].reason == "size differs"


def test_finalize_race_and_stale_entries(tmp_path: Path) -> None:
    target = CacheTarget(REPO, "model", tmp_path)
    remote = small("x.txt", b"hello\n")
    snap = tmp_path / "models--org--model" / "snapshots" / C1
    snap.mkdir(parents=True)
    # A concurrent writer already created the right link: EEXIST with the right target is fine.
    (tmp_path / "models--org--model" / "blobs").mkdir()
    os.symlink(f"../../blobs/{remote.etag}", snap / "x.txt")
    download(target, remote, b"hello\n", C1)
    assert os.readlink(snap / "x.txt") == f"../../blobs/{remote.etag}"
    # A wrong link or a stale plain file is replaced, atomically.
    os.unlink(snap / "x.txt")
    os.symlink("../../blobs/" + "0" * 40, snap / "x.txt")
    download(target, remote, b"hello\n", C1)
    assert (snap / "x.txt").read_bytes() == b"hello\n"
    os.unlink(snap / "x.txt")
    (snap / "x.txt").write_bytes(b"stale\n")
    download(target, remote, b"hello\n", C1)
    assert os.readlink(snap / "x.txt") == f"../../blobs/{remote.etag}"


def official_opens(name: str, etag: str) -> bool:
    """Whether some huggingface_hub version stages a download of `etag` under `name` in blobs/.

    0.x: `<etag>.incomplete` (resumed by appending; trusted as finished at full size);
    2.x: `<etag>.<uuid4 hex[:8]>.incomplete`.
    """
    return name == f"{etag}.incomplete" or re.fullmatch(rf"{etag}\.[0-9a-f]{{8}}\.incomplete", name)


def test_part_files_are_deterministic_distinct_and_never_an_official_name(tmp_path: Path) -> None:
    target = CacheTarget(REPO, "model", tmp_path)
    a, b = small("a", b""), small("b", b"")
    first, second = target.job(a, C1, "u"), target.job(b, C1, "u")
    blobs = tmp_path / "models--org--model" / "blobs"
    assert first.part_path == blobs / f"{a.etag}.hfsync.incomplete"
    assert second.part_path == blobs / f"{a.etag}.hfsync-1.incomplete"
    assert CacheTarget(REPO, "model", tmp_path).job(a, C1, "u").part_path == first.part_path
    for job in (first, second):
        assert not official_opens(job.part_path.name, a.etag)
        assert not official_opens(journal_path(job.part_path).name, a.etag)
        assert job.part_path.name.endswith(".incomplete")  # what `hf cache` counts as partial


def plan_download(cache: Path, remote: RemoteFile) -> FileJob:
    """The job a sync creates for `remote`, inside the sync's lock (which ends with it)."""
    target = CacheTarget(REPO, "model", cache)
    with target.lock():
        return target.job(remote, C1, "u")


def test_a_part_left_under_the_official_name_is_taken_away_from_the_old_client(
    tmp_path: Path,
) -> None:
    """An hfsync before the new naming left `<etag>.incomplete` preallocated (zeros):
    huggingface_hub 0.x would move it into blobs/ unhashed. The next sync makes it ours."""
    data = os.urandom(3 * 1024 * 1024)
    remote = lfs("w.bin", data)
    blobs = tmp_path / "models--org--model" / "blobs"
    blobs.mkdir(parents=True)
    legacy = blobs / f"{remote.etag}.incomplete"
    legacy.write_bytes(data[:1024] + bytes(len(data) - 1024))
    journal_path(legacy).write_text(f"{MAGIC} size={len(data)} etag={remote.etag}\n0 1024\n")
    job = plan_download(tmp_path, remote)
    assert not legacy.exists() and not journal_path(legacy).exists()
    assert job.part_path.read_bytes()[:1024] == data[:1024]
    assert journal_path(job.part_path).read_text().endswith("0 1024\n")  # resumes, hash decides

    # Full size without our journal: nothing vouches for it; moved aside, never resumed.
    job.part_path.unlink()
    journal_path(job.part_path).write_text("stale")
    legacy.write_bytes(bytes(len(data)))
    job = plan_download(tmp_path, remote)
    assert not legacy.exists() and not journal_path(job.part_path).exists()

    # Shorter and no journal of ours: the official client's own resume state, left alone.
    job.part_path.unlink()
    legacy.write_bytes(data[:5000])
    plan_download(tmp_path, remote)
    assert legacy.read_bytes() == data[:5000]


def lock_is_free(path: Path) -> bool:
    """What the official client's filelock sees: can it take `path` right now?"""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    lock.release()
    return True


def test_the_official_blob_lock_is_held_while_a_blob_downloads_and_is_placed(
    tmp_path: Path,
) -> None:
    data = os.urandom(2 * 1024 * 1024)
    big, tiny = lfs("big.bin", data), small("tiny.txt", b"tiny\n")
    target = CacheTarget(REPO, "model", tmp_path)
    locks = tmp_path / ".locks" / "models--org--model"
    with target.lock():
        job = target.job(big, C1, "u")
        small_job = target.job(tiny, C1, "u")
        assert not lock_is_free(locks / f"{big.etag}.lock"), "held for the whole download"
        assert lock_is_free(locks / f"{tiny.etag}.lock"), "small files: only while placed"
        job.part_path.parent.mkdir(parents=True, exist_ok=True)
        job.part_path.write_bytes(data)
        job.finalize(job.part_path)
        assert lock_is_free(locks / f"{big.etag}.lock")
        assert (tmp_path / "models--org--model" / "blobs" / big.etag).read_bytes() == data
        target.job(lfs("again.bin", os.urandom(1024 * 1024 + 1)), C1, "u")
    assert small_job.part_path.name.endswith(".hfsync.incomplete")
    assert all(lock_is_free(path) for path in locks.glob("*.lock")), "released with the sync"


def test_placing_waits_a_bounded_time_for_the_official_client_then_keeps_the_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(2 * 1024 * 1024)
    remote = lfs("big.bin", data)
    target = CacheTarget(REPO, "model", tmp_path)
    blob = tmp_path / "models--org--model" / "blobs" / remote.etag
    official = FileLock(str(tmp_path / ".locks" / "models--org--model" / f"{remote.etag}.lock"))
    official.acquire(timeout=0)  # huggingface_hub is downloading the same blob
    try:
        job = target.job(remote, C1, "u")  # does not wait: the bytes go to our own part
        job.part_path.parent.mkdir(parents=True, exist_ok=True)
        job.part_path.write_bytes(data)
        monkeypatch.setattr(cache_locks, "PLACE_WAIT", 0.2)
        with pytest.raises(LockedError) as caught:
            job.finalize(job.part_path)
        assert caught.value.exit_code == 8 and "big.bin" in str(caught.value)
        assert not blob.exists() and job.part_path.read_bytes() == data, "nothing half-placed"
    finally:
        official.release()
    job.finalize(job.part_path)
    assert blob.read_bytes() == data
    assert (tmp_path / "models--org--model" / "snapshots" / C1 / "big.bin").read_bytes() == data


def test_folders_are_fsynced_before_the_ref_names_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = tmp_path / "models--org--model"
    ref = storage / "refs" / "main"
    synced: list[tuple[str, bool]] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), ref.exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    target = CacheTarget(REPO, "model", tmp_path)
    files = {"a.txt": b"a", "sub/deeper/b.bin": b"B" * 300}
    remote = {
        "a.txt": small("a.txt", b"a"),
        "sub/deeper/b.bin": lfs("sub/deeper/b.bin", b"B" * 300),
    }
    for path, data in files.items():
        download(target, remote[path], data, C1)
    assert not ref.exists()
    target.finish(C1, "main")
    snap = storage / "snapshots" / C1
    before_ref = {path for path, ref_existed in synced if not ref_existed}
    for folder in (storage / "blobs", snap, snap / "sub", snap / "sub" / "deeper",
                   storage / "snapshots", storage):  # fmt: skip
        assert str(folder) in before_ref, f"{folder} not fsynced before the ref was written"
    after = [path for path, ref_existed in synced if ref_existed]
    assert str(storage / "refs") in after, "the ref's own folder is fsynced after the rename"
    # the ref's content is flushed before its rename: one fsync of a refs/ temp file
    assert any(path.startswith(str(storage / "refs" / "main.")) for path in before_ref)


def test_prune_incomplete_removes_parts_of_both_clients_but_not_one_being_written(
    tmp_path: Path,
) -> None:
    blobs = tmp_path / "models--org--model" / "blobs"
    blobs.mkdir(parents=True)
    (tmp_path / "models--org--model" / "snapshots").mkdir()
    ours, theirs, busy = "a" * 64, "b" * 64, "c" * 64
    names = [f"{ours}.hfsync.incomplete", f"{ours}.hfsync.incomplete.journal",
             f"{theirs}.incomplete", f"{theirs}.0123abcd.incomplete", f"{busy}.hfsync.incomplete",
             "copy-0123abcd.hfsync.incomplete"]  # fmt: skip
    for name in names:
        (blobs / name).write_bytes(b"part")
    (repo,) = scan_cache(tmp_path).repos
    assert sorted(part.path.name for part in repo.incomplete) == sorted(names)
    assert repo.blobs == () and repo.size_on_disk == 0
    official = FileLock(str(tmp_path / ".locks" / "models--org--model" / f"{busy}.lock"))
    official.acquire(timeout=0)
    try:
        done = prune(tmp_path, dry_run=False, include_incomplete=True)
    finally:
        official.release()
    assert [p.name for p in blobs.iterdir()] == [f"{busy}.hfsync.incomplete"]
    assert [part.path.name for part in done.kept_incomplete] == [f"{busy}.hfsync.incomplete"]


def test_refs_are_safe_and_only_for_names(tmp_path: Path) -> None:
    target = CacheTarget(REPO, "model", tmp_path)
    sync_files(target, {"a": b"a"}, C1, C1)  # revision given as the commit: no ref
    assert not (tmp_path / "models--org--model" / "refs").exists()
    target.finish(C1, "refs/pr/1")
    assert (tmp_path / "models--org--model" / "refs" / "refs" / "pr" / "1").read_text() == C1
    for bad in ("../escape", "/abs", "a//b", ""):
        with pytest.raises(UsageError):
            target.finish(C1, bad)
    with pytest.raises(RemotePathError):
        target.finish("../../" + "a" * 34, "main")
    with pytest.raises(RemotePathError):
        target.job(small("../evil", b"x"), C1, "u")
    assert not list(tmp_path.rglob("escape")) and not (tmp_path / "evil").exists()


def test_empty_selection_still_makes_a_snapshot(tmp_path: Path) -> None:
    target = CacheTarget(REPO, "model", tmp_path)
    target.finish(C1, "main")
    assert (tmp_path / "models--org--model" / "snapshots" / C1).is_dir()
    (repo,) = scan_cache(tmp_path).repos
    assert repo.revisions[0].refs == ("main",) and not repo.problems


def test_degraded_mode_moves_new_copies_existing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = CacheTarget(REPO, "model", tmp_path)
    # One blob already exists (e.g. from a machine with symlinks), one file is new.
    keep = small("keep.txt", b"kept\n")
    blobs = tmp_path / "models--org--model" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / keep.etag).write_bytes(b"kept\n")
    monkeypatch.setenv("HF_HUB_DISABLE_SYMLINKS", "1")
    moved = sync_files(target, {"keep.txt": b"kept\n", "new.bin": b"N" * 300}, C1, "main")
    assert moved == ["new.bin"]
    snap = tmp_path / "models--org--model" / "snapshots" / C1
    for name in ("keep.txt", "new.bin"):
        assert (snap / name).is_file() and not (snap / name).is_symlink()
    assert (blobs / keep.etag).is_file(), "an existing blob is copied, never moved away"
    assert [p.name for p in blobs.iterdir()] == [keep.etag], "a new blob is moved, not kept twice"

    # A rerun recognises the plain files as current; the next commit copies them from there.
    again = {"keep.txt": b"kept\n", "new.bin": b"N" * 300}
    assert sync_files(target, again, C1, "main") == []
    (tmp_path / "models--org--model" / "trees").mkdir(exist_ok=True)
    target.write_listing(C1, [small("keep.txt", b"kept\n"), lfs("new.bin", b"N" * 300)])
    (blobs / keep.etag).unlink()
    assert sync_files(target, {**again, "extra.txt": b"+"}, C2, "main") == ["extra.txt"]
    assert (tmp_path / "models--org--model" / "snapshots" / C2 / "new.bin").read_bytes() == (
        b"N" * 300
    )
    assert (snap / "new.bin").read_bytes() == b"N" * 300


def test_symlink_probe_failure_means_degraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_symlinks(*args: object, **kwargs: object) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    target = CacheTarget(REPO, "model", tmp_path)
    assert not target.symlinks()
    sync_files(target, {"a.txt": b"a"}, C1, "main")
    assert (tmp_path / "models--org--model" / "snapshots" / C1 / "a.txt").read_bytes() == b"a"
    assert not list(tmp_path.glob(".hfsync-symlink-probe-*"))


def test_prune_detached_and_unreferenced(tmp_path: Path) -> None:
    target = CacheTarget(REPO, "model", tmp_path)
    sync_files(target, {"same.txt": b"same", "old.txt": b"old content"}, C1, "main")
    sync_files(target, {"same.txt": b"same", "new.txt": b"new"}, C2, "main")
    blobs = tmp_path / "models--org--model" / "blobs"
    (blobs / ("9" * 40)).write_bytes(b"orphan")
    (blobs / f"{'8' * 64}.incomplete").write_bytes(b"part")
    (repo,) = scan_cache(tmp_path).repos
    assert [(r.refs, r.commit) for r in repo.revisions] == [(("main",), C2), ((), C1)]
    assert [b.path.name for b in repo.unreferenced] == ["9" * 40]
    victims, freed = repo.reclaimable()
    assert [v.commit for v in victims] == [C1] and freed == len(b"old content") + len(b"orphan")

    kept = prune(tmp_path, dry_run=False, keep_detached=True)
    assert kept.bytes_freed == len(b"orphan") and not kept.revisions
    dry = prune(tmp_path, dry_run=True)
    assert dry.bytes_freed == len(b"old content") and (tmp_path / "models--org--model").exists()
    assert (blobs / git_sha1(b"old content")).exists()
    done = prune(tmp_path, dry_run=False)
    assert done.revisions == [("model", REPO, C1)]
    assert not (blobs / git_sha1(b"old content")).exists()
    assert (blobs / git_sha1(b"same")).exists() and (blobs / f"{'8' * 64}.incomplete").exists()
    with target.lock():  # a running sync: prune leaves the repo alone
        assert prune(tmp_path, dry_run=False).busy == ["model/org/model"]
