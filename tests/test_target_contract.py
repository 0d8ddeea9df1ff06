"""One behaviour suite for every target class: the same promises, whatever the layout.

Each target is driven the way the orchestration drives it (scan -> plan -> place / mark current
/ delete -> finish), with plain files and no network. A new target (the SSH host) joins by
adding a `Harness` to `HARNESSES`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from hfsync.errors import LockedError
from hfsync.files import RemoteFile
from hfsync.plan import Action, PlanOptions, make_plan
from hfsync.targets import Target, open_target

COMMIT = "c" * 40
FILES = {
    "config.json": b'{"hidden_size": 8}\n',
    "weights/model.bin": os.urandom(64 * 1024),
    "tokenizer.json": b"{}\n",
}


def remote_file(path: str, data: bytes) -> RemoteFile:
    if path.endswith(".bin"):
        return RemoteFile(path, len(data), "f" * 40, hashlib.sha256(data).hexdigest())
    return RemoteFile(path, len(data), hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())


REMOTE = {path: remote_file(path, data) for path, data in FILES.items()}


@dataclass
class Harness:
    """How to open a target of one kind, and how to plant content it has not recorded yet."""

    name: str
    open: Callable[[Path], Target]
    plant_unrecorded: Callable[[Path, Target, RemoteFile, bytes], None]
    lock_snippet: str  # Python that opens the same target in another process and holds its lock


def _plant_local(root: Path, target: Target, remote: RemoteFile, data: bytes) -> None:
    # A copy made with `cp -r`: right bytes, no metadata.
    path = root / "dest" / remote.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _plant_cache(root: Path, target: Target, remote: RemoteFile, data: bytes) -> None:
    # The blob is in the cache (another revision, or the official client), unlinked here.
    blob = root / "cache" / "models--org--model" / "blobs" / remote.etag
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)


HARNESSES = [
    Harness(
        "local-folder",
        lambda root: open_target(root / "dest", repo_id="org/model", repo_type="model"),
        _plant_local,
        "open_target(root / 'dest', repo_id='org/model', repo_type='model')",
    ),
    Harness(
        "hf-cache",
        lambda root: open_target(
            None, repo_id="org/model", repo_type="model", cache_dir=root / "cache"
        ),
        _plant_cache,
        "open_target(None, repo_id='org/model', repo_type='model', cache_dir=root / 'cache')",
    ),
]


@pytest.fixture(params=HARNESSES, ids=lambda h: h.name)
def harness(request: pytest.FixtureRequest) -> Harness:
    return request.param


def plan_for(target: Target, *, delete: bool = False, remote: dict | None = None):  # noqa: ANN201
    remote = REMOTE if remote is None else remote
    state = target.scan(remote, checksum=False, all_files=delete, commit=COMMIT)
    return make_plan(COMMIT, remote.values(), state, PlanOptions(delete=delete))


def place(target: Target, paths: list[str]) -> None:
    """What the executor does for each planned file: stage the bytes, then finalize."""
    for path in paths:
        job = target.job(REMOTE[path], COMMIT, "http://unused")
        job.part_path.parent.mkdir(parents=True, exist_ok=True)
        job.part_path.write_bytes(FILES[path])
        job.finalize(job.part_path)


def actions(plan) -> dict[str, Action]:  # noqa: ANN001
    return {item.path: item.action for item in plan.items}


def test_an_empty_target_needs_every_file(harness: Harness, tmp_path: Path) -> None:
    target = harness.open(tmp_path)
    assert set(actions(plan_for(target)).values()) == {Action.NEW}


def test_a_partial_target_needs_only_what_it_lacks(harness: Harness, tmp_path: Path) -> None:
    target = harness.open(tmp_path)
    place(target, ["config.json"])
    target.finish(COMMIT, "main")
    got = actions(plan_for(harness.open(tmp_path)))
    assert got == {
        "config.json": Action.UNCHANGED,
        "weights/model.bin": Action.NEW,
        "tokenizer.json": Action.NEW,
    }


def test_a_complete_target_is_unchanged_and_needs_no_record(
    harness: Harness, tmp_path: Path
) -> None:
    target = harness.open(tmp_path)
    place(target, list(FILES))
    target.finish(COMMIT, "main")
    plan = plan_for(harness.open(tmp_path))
    assert set(actions(plan).values()) == {Action.UNCHANGED}
    assert not plan.refreshes


def test_content_present_but_unrecorded_is_marked_current_without_bytes(
    harness: Harness, tmp_path: Path
) -> None:
    target = harness.open(tmp_path)
    harness.plant_unrecorded(
        tmp_path, target, REMOTE["weights/model.bin"], FILES["weights/model.bin"]
    )
    plan = plan_for(target)
    assert actions(plan)["weights/model.bin"] is Action.UNCHANGED
    assert [item.path for item in plan.refreshes] == ["weights/model.bin"]
    for item in plan.refreshes:
        target.mark_current(REMOTE[item.path], COMMIT, item.held)
    again = plan_for(harness.open(tmp_path))
    assert actions(again)["weights/model.bin"] is Action.UNCHANGED
    assert not again.refreshes


def test_delete_removes_the_file_from_what_the_target_holds(
    harness: Harness, tmp_path: Path
) -> None:
    target = harness.open(tmp_path)
    place(target, list(FILES))
    target.finish(COMMIT, "main")
    target.delete("tokenizer.json", COMMIT)
    plan = plan_for(harness.open(tmp_path))
    got = actions(plan)
    # Gone from its place: planned again, as a download or (the HF cache, whose blob other
    # revisions may share) as a record that relinks it; never as an already-placed file.
    refreshed = {item.path for item in plan.refreshes}
    assert got["tokenizer.json"] is Action.NEW or "tokenizer.json" in refreshed
    assert got["config.json"] is Action.UNCHANGED and "config.json" not in refreshed


def test_a_lock_held_by_another_process_is_refused_naming_its_pid(
    harness: Harness, tmp_path: Path
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from pathlib import Path
                from hfsync.targets import open_target
                root = Path({str(tmp_path)!r})
                with {harness.lock_snippet}.lock():
                    print("held", flush=True)
                    sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"pid {holder.pid}"):
            with harness.open(tmp_path).lock():
                pass
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    with harness.open(tmp_path).lock():  # released when the holder exits
        pass
