"""Small files read ahead while the host starts (hfsync/remote_sync.py `_prefetch`), and the
agent's folder checks that a fresh push remembers (hfsync/remote/agent.py `Folders`).

What is pinned: only files the local cache vouches for are read, in push order, small ones
only, and never once the host is open (the read-ahead must not delay the push); a file pushed
from a resumed part does not use the bytes read ahead; and a folder the agent checked before
it existed is checked again when it is made, so a symlink that appears meanwhile is refused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from hfsync import remote_sync
from hfsync.files import RemoteFile, TargetFile
from hfsync.plan import Action, PlanItem
from hfsync.remote import agent
from hfsync.remote.push import SMALL_FRAME
from hfsync.remote.state import part_name
from hfsync.targets.cache import CacheTarget

COMMIT = "c" * 40


def remote(path: str, data: bytes) -> RemoteFile:
    return RemoteFile(path, len(data), hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())


class Opening:
    """A HostOpening stand-in: open after `after` calls of done()."""

    def __init__(self, after: int) -> None:
        self.calls, self.after = 0, after

    def done(self) -> bool:
        self.calls += 1
        return self.calls > self.after


def cache_with(tmp_path: Path, files: dict[str, bytes]) -> tuple[CacheTarget, dict]:
    cache = CacheTarget("org/repo", "model", tmp_path / "cache")
    held = {}
    for path, data in files.items():
        target = cache.snapshot_path(COMMIT, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        held[path] = TargetFile(path, len(data), remote(path, data).etag)
    return cache, held


def test_only_small_files_the_cache_vouches_for_are_read_ahead(tmp_path: Path) -> None:
    files = {"a.txt": b"alpha", "big.bin": os.urandom(SMALL_FRAME + 1), "c.txt": b"gamma"}
    cache, held = cache_with(tmp_path, files)
    held["c.txt"] = TargetFile("c.txt", 5, "0" * 40)  # the cache holds other content
    listing = [remote(p, d) for p, d in files.items()]
    early = remote_sync._prefetch(cache, COMMIT, listing, held, Opening(after=100))
    assert early["a.txt"] == (cache.snapshot_path(COMMIT, "a.txt"), b"alpha")
    assert early["big.bin"] == (cache.snapshot_path(COMMIT, "big.bin"), None)  # where, no bytes
    assert "c.txt" not in early


def test_nothing_more_is_read_once_the_host_is_open(tmp_path: Path) -> None:
    files = {f"f{i}.txt": b"x" * (i + 1) for i in range(5)}
    cache, held = cache_with(tmp_path, files)
    listing = [remote(p, d) for p, d in files.items()]
    early = remote_sync._prefetch(cache, COMMIT, listing, held, Opening(after=2))
    assert list(early) == ["f0.txt", "f1.txt"]


def test_a_resumed_part_is_pushed_from_the_file_not_the_bytes_read_ahead(tmp_path: Path) -> None:
    file = remote("a.txt", b"alpha")
    item = PlanItem(file.path, Action.NEW, "new", file.size, remote=file)
    source = tmp_path / "a.txt"
    fresh = remote_sync._push_job(item, source, {}, b"alpha")
    assert fresh.offset == 0 and fresh.data == b"alpha"
    resumed = remote_sync._push_job(item, source, {part_name(file): 2}, b"alpha")
    assert resumed.offset == 2 and resumed.data is None


def test_a_folder_checked_before_it_existed_is_checked_again_when_made(tmp_path: Path) -> None:
    root, outside = tmp_path / "host", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    folders = agent.Folders(str(root), os.path.realpath(root))
    assert folders.inside(str(root / "d" / "a.txt"))  # "d" does not exist yet
    (root / "d").symlink_to(outside)  # appears before the file is placed
    with pytest.raises(agent.Refused):
        folders.make(str(root / "d"))
    assert not folders.inside(str(root / "d" / "b.txt"))
    assert list(outside.iterdir()) == []
