"""The first push stream rides in the control session (hfsync/remote/host.py, ControlStream).

What a user relies on, pinned here: a push costs the host one remote process (one login shell,
one python3 start) however many files it moves, and the run's later requests (deletes) still
go through that session, under its lock; a stream whose frames broke midway ends that session
and the next request opens a new one that takes the lock again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hfsync.remote.connection import SSHConnection, connect
from hfsync.remote.host import RemoteHost
from hfsync.remote.sshcmd import parse_ssh_command
from hfsync.remote_sync import to_remote
from hfsync.testing.hub import HubEmulator
from tests.clirun import user_files
from tests.sshd import SSHServer

pytest_plugins = ["tests.sshd"]

REPO = "org/control"


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every remote command hfsync starts (one exec channel each)."""
    seen: list[str] = []
    real = SSHConnection.open_exec

    def spy(self: SSHConnection, command: str):  # noqa: ANN202
        seen.append(command)
        return real(self, command)

    monkeypatch.setattr(SSHConnection, "open_exec", spy)
    return seen


def modes(commands: list[str]) -> list[str]:
    """The agent mode of each command (`serve`, `recv`)."""
    return [word for c in commands for word in ("serve", "recv") if f" {word} " in c]


@pytest.mark.usefixtures("ssh_home")
def test_a_push_and_its_deletes_cost_the_host_one_session(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, tmp_path: Path, commands: list[str]
) -> None:
    files = {f"d/{i}.txt": f"file {i}\n".encode() * (i + 1) for i in range(30)}
    files["model.bin"] = os.urandom(1_500_000)  # a long body between the small ones
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    dest = tmp_path / "remote"
    cache = tmp_path / "cache"

    first = to_remote(REPO, sshd_server.command(), str(dest), cache_dir=cache)
    assert all(o.ok for o in first.pushed.values()) and len(first.pushed) == len(files) + 1
    assert modes(commands) == ["serve"]
    files[".gitattributes"] = hub.read_file(REPO, ".gitattributes", "main")
    assert user_files(dest) == files

    commands.clear()
    hub.commit(REPO, files={"d/0.txt": b"changed\n"}, delete=["d/1.txt"])
    second = to_remote(REPO, sshd_server.command(), str(dest), cache_dir=cache, delete=True)
    assert sorted(second.pushed) == ["d/0.txt"] and second.deleted == ["d/1.txt"]
    assert modes(commands) == ["serve"]
    files["d/0.txt"] = b"changed\n"
    del files["d/1.txt"]
    assert user_files(dest) == files


@pytest.mark.usefixtures("ssh_home")
def test_a_stream_broken_midway_hands_the_next_request_a_new_locked_session(
    sshd_server: SSHServer, tmp_path: Path
) -> None:
    dest = tmp_path / "remote"
    host = RemoteHost(connect(parse_ssh_command(sshd_server.command())), str(dest))
    try:
        host.open(lock=True)
        first_pid = lock_holder_pid(dest)
        stream = host.stream()
        header = {"p": "a.txt", "s": 1000, "e": "0" * 40, "c": "c" * 40, "o": 0}
        header["q"] = f"a.txt.{'0' * 40}.hfsync-part"
        stream.send(json.dumps(header).encode() + b"\n" + b"x" * 10)  # 990 bytes short
        stream.close()  # the frames are out of step: the session goes
        reply = host.call("scan", files={})
        assert reply["exists"] is True
        assert lock_holder_pid(dest) != first_pid  # the new session holds the lock
        assert not (dest / "a.txt").exists()
    finally:
        host.close()


def lock_holder_pid(root: Path) -> str:
    return (root / ".cache/huggingface/hfsync.lock").read_text().split()[0]
