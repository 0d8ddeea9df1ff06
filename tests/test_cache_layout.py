"""CacheTarget's layout rules, without a network: scan states, placement, refs, path safety.

The end-to-end proofs against the emulator and the official client are in test_cache_target.py;
these pin the decisions behind them with plain files.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from hfsync.cache_scan import prune, scan_cache
from hfsync.errors import RemotePathError, UsageError
from hfsync.files import RemoteFile
from hfsync.plan import Action, make_plan
from hfsync.targets import cache as cache_module
from hfsync.targets.cache import CacheTarget, cache_root, repo_folder_name

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


def test_part_files_are_deterministic_and_distinct(tmp_path: Path) -> None:
    target = CacheTarget(REPO, "model", tmp_path)
    a, b = small("a", b""), small("b", b"")
    first, second = target.job(a, C1, "u"), target.job(b, C1, "u")
    blobs = tmp_path / "models--org--model" / "blobs"
    assert first.part_path == blobs / f"{a.etag}.incomplete"
    assert second.part_path == blobs / f"{a.etag}.1.incomplete"
    assert CacheTarget(REPO, "model", tmp_path).job(a, C1, "u").part_path == first.part_path


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
