"""`hfsync to-remote --via pull|auto`: the host runs hfsync itself (its zipapp) and downloads
from the Hub. Real OpenSSH sshd (tests/sshd.py), the Hub emulator on 127.0.0.1 (which the
"remote" hfsync reaches at the same URL), a byte-counting proxy in front of sshd, and a fresh
login user per test so each "host" starts with an empty home (no cached archive)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hfsync.remote.zipapp import build_zipapp
from hfsync.testing.hub import HubEmulator
from tests.clirun import body_bytes, downloads, hfsync, user_files
from tests.procsample import ProcSampler
from tests.sshd import LoginUser, SSHServer, create_login_user, free_port, remove_login_user
from tests.tcpproxy import TCPProxy

pytest_plugins = ["tests.sshd"]
pytestmark = pytest.mark.usefixtures("pull_home")  # one archive build per session

REPO = "org/model"
TOKEN = "hf_pullSecretToken0123456789abcdef"


@pytest.fixture
def user(sshd_server: SSHServer) -> Iterator[LoginUser]:
    made = create_login_user(sshd_server.client_key.with_suffix(".pub"))
    yield made
    subprocess.run(["pkill", "-KILL", "-u", made.name], check=False)
    remove_login_user(made)


def make_repo(hub: HubEmulator, big: int = 12 * 1024 * 1024, private: bool = False) -> dict:
    files = {
        "config.json": b'{"model_type": "demo"}\n',
        "model.safetensors": os.urandom(big),
        "onnx/model.onnx": os.urandom(40_000),
    }
    hub.create_repo(REPO, private=private)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def to_remote(command: str, dest: str, *args: object, env: dict | None = None):  # noqa: ANN201
    return hfsync("to-remote", REPO, command, dest, *args, env=env)


def via_proxy(server: SSHServer, proxy: TCPProxy, tmp_path: Path, user: str) -> str:
    known = tmp_path / f"known_hosts_{proxy.port}"
    known.write_text(server.known_hosts_entry(port=proxy.port))
    return server.command(port=proxy.port, known_hosts=known, user=user)


def test_pull_moves_the_repo_from_the_hub_with_little_over_ssh_and_a_rerun_moves_nothing(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, user: LoginUser, tmp_path: Path
) -> None:
    repo = make_repo(hub)
    total = sum(len(v) for v in repo.values())
    archive = build_zipapp().size
    with TCPProxy(sshd_server.host, sshd_server.port) as proxy:
        command = via_proxy(sshd_server, proxy, tmp_path, user.name)
        first = to_remote(command, "models/m", "--via", "pull", "--json")
        over_ssh = proxy.bytes_up + proxy.bytes_down
        assert first.returncode == 0, first.stderr
        doc = json.loads(first.stdout)
        assert doc["via"] == "pull" and doc["archive_sent"] is True
        assert doc["counts"]["new"] == len(repo) and doc["bytes_transferred"] == total
        assert user_files(user.home / "models/m") == repo
        assert over_ssh < archive + 200_000, over_ssh  # the archive once, then control only
        assert over_ssh < total / 8

        hub.clear_log()
        before = proxy.bytes_up + proxy.bytes_down
        again = to_remote(command, "models/m", "--via", "pull", "--json")
        second = proxy.bytes_up + proxy.bytes_down - before
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["archive_sent"] is False and doc["counts"]["unchanged"] == len(repo)
    assert downloads(hub) == []
    assert second < 64 * 1024, second
    # The archive is cached under its content hash in the login user's home.
    assert list((user.home / ".cache/hfsync").glob("hfsync-*.pyz"))
    # A folder `hfsync sync` (and hf download) see as current: metadata for every file.
    meta = user.home / "models/m/.cache/huggingface/download/model.safetensors.metadata"
    assert meta.read_text().splitlines()[0] == doc["commit"]


def blocked_user(user: LoginUser) -> int:
    """Give `user` a login shell that routes HTTP through a dead proxy: python3 works, the
    Hub does not answer (a host behind a firewall). Returns the dead port."""
    dead = free_port()
    shell = user.home / "blocked-sh"
    shell.write_text(
        "#!/bin/sh\n"
        f"http_proxy=http://127.0.0.1:{dead} https_proxy=http://127.0.0.1:{dead}\n"
        'export http_proxy https_proxy\nunset no_proxy NO_PROXY\nexec /bin/sh "$@"\n'
    )
    shell.chmod(shell.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    subprocess.run(["usermod", "-s", str(shell), user.name], check=True, capture_output=True)
    return dead


def test_auto_pulls_where_the_host_can_and_pushes_where_it_cannot(
    hub: HubEmulator,
    hf_env: Path,
    sshd_server: SSHServer,
    user: LoginUser,
    second_login_user: LoginUser,
) -> None:
    repo = make_repo(hub, big=2 * 1024 * 1024)
    good = to_remote(sshd_server.command(user=second_login_user.name), "auto-a")
    assert good.returncode == 0, good.stderr
    assert "hfsync: via pull: the host has python3" in good.stderr
    assert user_files(second_login_user.home / "auto-a") == repo

    blocked_user(user)
    command = sshd_server.command(user=user.name)
    hub.clear_log()
    pushed = to_remote(command, "auto-b")
    assert pushed.returncode == 0, pushed.stderr
    assert "hfsync: via push: the host cannot pull: it cannot reach" in pushed.stderr
    assert user_files(user.home / "auto-b") == repo

    refused = to_remote(command, "pull-b", "--via", "pull")
    assert refused.returncode == 4, refused.stderr
    assert refused.stderr.count("\n") == 1
    assert "cannot reach" in refused.stderr and "--via push" in refused.stderr
    assert not (user.home / "pull-b").exists()


def _remote_pids(uid: int) -> dict[int, bytes]:
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                out[int(entry.name)] = (entry / "cmdline").read_bytes()
        except OSError:
            continue
    return out


def test_private_repo_token_is_in_no_remote_argv_environment_or_file(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, user: LoginUser
) -> None:
    repo = make_repo(hub, big=4 * 1024 * 1024, private=True)
    hub.add_token(TOKEN, grants=[REPO])
    hub.faults.rate_per_conn = 2_000_000  # ~2 s of download to sample during
    uid = user.home.stat().st_uid
    sampler = ProcSampler(
        {uid}, lambda: [TOKEN.encode()], lambda argv: b".pyz" in argv and b"sync" in argv
    )
    with sampler:
        result = to_remote(
            sshd_server.command(user=user.name), "private", "--via", "pull",
            env={"HF_TOKEN": TOKEN},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sampler.seen.is_set(), "the sampler saw the remote hfsync run"
    assert sampler.leaks == []
    assert user_files(user.home / "private") == repo
    for path in user.home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in result.stdout + result.stderr

    denied = to_remote(sshd_server.command(user=user.name), "private2", "--via", "pull")
    assert denied.returncode == 3, denied.stderr  # no token here: the host gets none either
    assert denied.stderr.startswith("hfsync: error: on ") and denied.stderr.count("\n") == 1


def test_killed_local_run_stops_the_remote_download_and_the_rerun_resumes(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, user: LoginUser
) -> None:
    size = 8 * 1024 * 1024
    repo = make_repo(hub, big=size)
    hub.faults.rate_per_conn = 1_000_000
    command = sshd_server.command(user=user.name)
    args = ["--via", "pull", "-j", "1", "--chunk-size", "1M"]
    env = {**os.environ, "HFSYNC_BACKOFF_BASE": "0.01"}
    local = subprocess.Popen(
        [sys.executable, "-m", "hfsync", "to-remote", REPO, command, "big", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    uid = user.home.stat().st_uid
    state = user.home / "big/.cache/huggingface/download"
    deadline = time.monotonic() + 60
    journaled = 0
    while time.monotonic() < deadline and journaled < 3:  # header + 2 finished MiB ranges
        journals = list(state.glob("*.journal")) if state.exists() else []
        journaled = len(journals[0].read_text().splitlines()) if journals else 0
        time.sleep(0.05)
    assert journaled >= 3, "the remote download got under way"
    running = [p for p, c in _remote_pids(uid).items() if b".pyz" in c]
    assert running, "the remote hfsync runs"
    local.send_signal(signal.SIGKILL)
    local.wait(10)
    killed = time.monotonic()
    while time.monotonic() - killed < 20 and any(b".pyz" in c for c in _remote_pids(uid).values()):
        time.sleep(0.05)
    assert not any(b".pyz" in c for c in _remote_pids(uid).values()), "the remote run stopped"
    assert time.monotonic() - killed < 15
    assert not (user.home / "big/model.safetensors").exists()

    hub.faults.rate_per_conn = None
    hub.clear_log()
    again = to_remote(command, "big", *args, "--json")
    assert again.returncode == 0, again.stderr
    assert user_files(user.home / "big") == repo
    assert body_bytes(hub) <= size - 1024 * 1024, "resumed from what the host had"


def test_bad_pull_options_are_one_line(hf_env: Path, sshd_server: SSHServer) -> None:
    bad = hfsync("to-remote", REPO, sshd_server.command(), "/tmp/x", "--via", "bogus")
    assert bad.returncode == 2 and "bogus" in bad.stderr
