"""The SSH host as a target: the promises of tests/test_target_contract.py, kept by
`hfsync.remote.state.RemoteTarget` against a real sshd.

Why not a HARNESSES entry there: that suite places files through `Placement.job()` (a local
part path plus `finalize`), which an SSH host deliberately does not have (docs/architecture.md,
"The seams"); here the same scenarios place files the way the host really receives them,
through `hfsync.remote.push.Pusher`. The pure rules (part names, metadata trust) are checked
with plain data at the end.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from hfsync.errors import LockedError
from hfsync.files import RemoteFile
from hfsync.plan import Action, PlanOptions, make_plan
from hfsync.remote.connection import connect
from hfsync.remote.host import RemoteHost
from hfsync.remote.push import Pusher, PushJob
from hfsync.remote.sshcmd import parse_ssh_command
from hfsync.remote.state import RemoteTarget, file_state, parse_metadata, part_name
from tests.sshd import SSHServer

pytest_plugins = ["tests.sshd"]

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


@pytest.fixture(autouse=True)
def _isolated_home(ssh_home: Path) -> Path:
    return ssh_home


class Opened:
    """A RemoteTarget on the fixture's sshd, locked, with its sources staged locally."""

    def __init__(self, server: SSHServer, tmp_path: Path) -> None:
        self.root = tmp_path / "remote"
        self.src = tmp_path / "src"
        self.conn = connect(parse_ssh_command(server.command()), timeout=10)
        self.host = RemoteHost(self.conn, str(self.root))
        self.target = RemoteTarget(self.host)

    def plan(self, *, delete: bool = False):  # noqa: ANN201
        state = self.target.scan(REMOTE, checksum=False, all_files=delete, commit=COMMIT)
        return make_plan(COMMIT, REMOTE.values(), state, PlanOptions(delete=delete))

    def place(self, paths: list[str]) -> None:
        pusher = Pusher(self.host, COMMIT)
        pusher.start([REMOTE[p] for p in paths])
        for path in paths:
            source = self.src / path
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_bytes(FILES[path])
            pusher.put(PushJob(REMOTE[path], source, offset=0))
        outcomes = pusher.finish()
        assert all(o.ok for o in outcomes.values()), outcomes

    def close(self) -> None:
        self.host.close()


@pytest.fixture
def opened(sshd_server: SSHServer, tmp_path: Path):  # noqa: ANN201
    o = Opened(sshd_server, tmp_path)
    with o.target.lock():
        yield o
    o.close()


def actions(plan) -> dict[str, Action]:  # noqa: ANN001
    return {item.path: item.action for item in plan.items}


def test_an_empty_target_needs_every_file(opened: Opened) -> None:
    assert set(actions(opened.plan()).values()) == {Action.NEW}


def test_a_partial_then_complete_target(opened: Opened) -> None:
    opened.place(["config.json"])
    got = actions(opened.plan())
    assert got == {
        "config.json": Action.UNCHANGED,
        "weights/model.bin": Action.NEW,
        "tokenizer.json": Action.NEW,
    }
    opened.place(["weights/model.bin", "tokenizer.json"])
    plan = opened.plan()
    assert set(actions(plan).values()) == {Action.UNCHANGED} and not plan.refreshes
    for path, data in FILES.items():
        assert (opened.root / path).read_bytes() == data


def test_content_present_but_unrecorded_is_marked_current_without_bytes(opened: Opened) -> None:
    path = opened.root / "weights/model.bin"
    path.parent.mkdir(parents=True)
    path.write_bytes(FILES["weights/model.bin"])
    plan = opened.plan()
    assert actions(plan)["weights/model.bin"] is Action.UNCHANGED
    assert [item.path for item in plan.refreshes] == ["weights/model.bin"]
    opened.target.record_many([REMOTE[i.path] for i in plan.refreshes], COMMIT)
    again = opened.plan()
    assert actions(again)["weights/model.bin"] is Action.UNCHANGED and not again.refreshes


def test_delete_removes_the_file_and_its_metadata(opened: Opened) -> None:
    opened.place(list(FILES))
    opened.target.delete("tokenizer.json", COMMIT)
    assert not (opened.root / "tokenizer.json").exists()
    assert not (opened.root / ".cache/huggingface/download/tokenizer.json.metadata").exists()
    got = actions(opened.plan())
    assert got["tokenizer.json"] is Action.NEW and got["config.json"] is Action.UNCHANGED


def test_a_symlinked_folder_escaping_the_root_is_refused(opened: Opened, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (opened.root / "weights").symlink_to(outside)
    pusher = Pusher(opened.host, COMMIT)
    pusher.start([REMOTE["weights/model.bin"]])
    source = tmp_path / "model.bin"
    source.write_bytes(FILES["weights/model.bin"])
    pusher.put(PushJob(REMOTE["weights/model.bin"], source, offset=0))
    outcome = pusher.finish()["weights/model.bin"]
    assert not outcome.ok and outcome.error.exit_code == 5
    assert "outside" in str(outcome.error)
    assert list(outside.iterdir()) == []


def test_a_lock_held_by_another_run_is_refused_naming_it(
    opened: Opened, sshd_server: SSHServer
) -> None:
    other = Opened(sshd_server, opened.root.parent)
    try:
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
            with other.target.lock():
                pass
    finally:
        other.close()


def test_the_lock_is_released_when_the_holder_goes_away(
    sshd_server: SSHServer, tmp_path: Path
) -> None:
    first = Opened(sshd_server, tmp_path)
    with first.target.lock():
        first.conn.close()  # the laptop vanished: the remote holder sees EOF and exits
        second = Opened(sshd_server, tmp_path)
        deadline = time.monotonic() + 30
        while True:
            try:
                with second.target.lock():
                    break
            except LockedError:
                assert time.monotonic() < deadline, "the lock was never released"
                second.close()
                second = Opened(sshd_server, tmp_path)
        second.close()


# -- the pure rules ----------------------------------------------------------------------


def test_part_names_encode_the_content_id_and_stay_under_name_max() -> None:
    small = RemoteFile("a/b.bin", 1, "0" * 40, "1" * 64)
    assert part_name(small) == "a/b.bin." + "1" * 64 + ".hfsync-part"
    long = RemoteFile("d/" + "x" * 250, 1, "0" * 40)
    name = part_name(long)
    assert name.startswith("d/") and len(name.split("/")[-1]) <= 255
    assert part_name(RemoteFile("d/" + "x" * 250, 1, "2" * 40)) != name


def test_metadata_trust_is_the_local_rule() -> None:
    text = f"{COMMIT}\n{'e' * 40}\n1000.0\n"
    assert parse_metadata(text, 1000.9) is not None  # written within the second
    assert parse_metadata(text, 1001.5) is None  # modified after the metadata
    assert parse_metadata("garbage", 0) is None
    held = file_state("p", 5, 1000.0, text, None)
    assert (held.etag, held.needs_record, held.commit) == ("e" * 40, False, COMMIT)
    hashed = file_state("p", 5, 2000.0, text, "f" * 40)
    assert (hashed.etag, hashed.needs_record) == ("f" * 40, True)
