"""`hfsync to-remote ... --host ... --hosts-file ...`: many hosts in one run. Two login users with
their own homes are two hosts; a port nobody listens on is a dead one."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files
from tests.sshd import LoginUser, SSHServer, create_login_user, free_port, remove_login_user

pytest_plugins = ["tests.sshd"]
pytestmark = pytest.mark.usefixtures("pull_home")  # one archive build per session

REPO = "org/model"


@pytest.fixture
def users(sshd_server: SSHServer) -> Iterator[list[LoginUser]]:
    made = [create_login_user(sshd_server.client_key.with_suffix(".pub")) for _ in range(2)]
    yield made
    for u in made:
        subprocess.run(["pkill", "-KILL", "-u", u.name], check=False)
        remove_login_user(u)


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    files = {
        "config.json": b'{"model_type": "demo"}\n',
        "model.safetensors": os.urandom(3 * 1024 * 1024),
        "deep/notes.txt": b"nested\n",
    }
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


@pytest.mark.parametrize("via", ["pull", "push"])
def test_two_live_hosts_complete_and_a_dead_one_makes_it_exit_7(
    via: str,
    hub: HubEmulator,
    repo: dict,
    sshd_server: SSHServer,
    users: list[LoginUser],
    tmp_path: Path,
) -> None:
    a, b = users
    dead = sshd_server.command(user=a.name, port=free_port())
    hosts_file = tmp_path / "hosts.txt"
    hosts_file.write_text(f"# the fleet\n\n{sshd_server.command(user=b.name)}  # box 2\n{dead}\n")
    hub.clear_log()
    result = hfsync(
        "to-remote", REPO, sshd_server.command(user=a.name), "models/m",
        "--hosts-file", hosts_file, "--via", via, "--json",
    )  # fmt: skip
    assert result.returncode == 7, result.stderr
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 7 and not doc["ok"]
    statuses = [(h["status"], h["exit_code"], h["via"]) for h in doc["hosts"]]
    assert statuses[:2] == [("ok", 0, via), ("ok", 0, via)]
    assert statuses[2][:2] == ("failed", 7)
    assert "refused" in doc["hosts"][2]["error"]["message"]
    for u in users:  # relative REMOTE_DIR: each login user's own home
        assert user_files(u.home / "models/m") == repo
    fetched = Counter(
        r.file_path for r in hub.log if r.server == "cdn" and r.method == "GET" and r.body_bytes
    )
    if via == "pull":
        assert fetched["model.safetensors"] == 2  # each host from the CDN
    else:
        assert fetched["model.safetensors"] == 1  # once into the local cache, pushed to both
    assert "1 of 3 hosts failed" in result.stderr


def test_table_and_exit_0_when_all_hosts_are_fine(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, users: list[LoginUser]
) -> None:
    a, b = users
    result = hfsync(
        "to-remote", REPO, sshd_server.command(user=a.name), "m",
        "--host", sshd_server.command(user=b.name), "--parallel-hosts", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["HOST", "VIA", "STATUS"]
    assert sum(1 for line in lines if " pull " in line and " ok " in line) == 2
    assert lines[-1].startswith("2/2 hosts in sync at ")
    for u in users:
        assert user_files(u.home / "m") == repo


def test_a_bad_host_line_is_a_usage_error_before_any_connection(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, tmp_path: Path
) -> None:
    result = hfsync(
        "to-remote", REPO, sshd_server.command(), str(tmp_path / "x"), "--host", "ssh -W x:1 h"
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "x").exists()
