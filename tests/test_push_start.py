"""How a push starts: the agents' interpreter and the connection opened beside the listing.

* The control session starts `python3 -S` (no `site`), reports its `sys.executable`, and the
  push stream starts that interpreter directly, so a version manager's shim (pyenv's python3
  is a bash script) runs once per push instead of once per session. Proved with a login user
  whose PATH python3 is a wrapper that logs every start.
* `remote_sync.to_remote` connects, authenticates and opens the control session on a thread
  while it resolves the revision and lists the repo: a client that will not answer until the
  connection exists would deadlock the old order. A run that fails in the listing closes the
  connection the thread opened.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hfsync.errors import HfsyncError
from hfsync.remote.connection import SSHConnection, connect
from hfsync.remote.host import agent_command, interpreter
from hfsync.remote.sshcmd import parse_ssh_command
from hfsync.remote_sync import to_remote
from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files
from tests.sshd import LoginUser, SSHServer, create_login_user, remove_login_user

pytest_plugins = ["tests.sshd"]

REPO = "org/model"
WAIT = 30.0  # bounded waits on events: a failure, never a measurement


@pytest.fixture(autouse=True)
def _isolated_home(ssh_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HFSYNC_VIA", "push")
    return ssh_home


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    files = {f"d/{i}.txt": f"file {i}\n".encode() * (i + 1) for i in range(5)}
    files["model.bin"] = os.urandom(300_000)
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


@pytest.fixture
def shimmed(sshd_server: SSHServer) -> Iterator[tuple[LoginUser, Path]]:
    """A login user whose PATH's python3 is a shim (as pyenv's is) that logs its argv."""
    real = "/usr/bin/python3"  # one every user may run (not a per-user install)
    if not os.access(real, os.X_OK):
        pytest.skip(f"{real} is needed as the host's python3")
    made = create_login_user(sshd_server.client_key.with_suffix(".pub"))
    bin_dir = made.home / "bin"
    bin_dir.mkdir()
    log = made.home / "starts.log"
    shim = bin_dir / "python3"
    shim.write_text(
        f'#!/bin/sh\necho "$*" | head -c 40 >> {log}; echo >> {log}\nexec {real} "$@"\n'
    )
    shell = made.home / "login-sh"
    shell.write_text(f'#!/bin/sh\nPATH={bin_dir}:/usr/bin:/bin\nexport PATH\nexec /bin/sh "$@"\n')
    for path in (shim, shell):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    subprocess.run(["usermod", "-s", str(shell), made.name], check=True, capture_output=True)
    yield made, log
    subprocess.run(["pkill", "-KILL", "-u", made.name], check=False)
    remove_login_user(made)


def test_the_push_stream_starts_the_interpreter_the_control_session_reported(
    repo: dict[str, bytes], sshd_server: SSHServer, shimmed: tuple[LoginUser, Path]
) -> None:
    user, log = shimmed
    result = hfsync(
        "to-remote", REPO, sshd_server.command(user=user.name), "models/m", "--via", "push"
    )
    assert result.returncode == 0, result.stderr
    assert user_files(user.home / "models/m") == repo
    starts = [line for line in log.read_text().splitlines() if line]
    assert len(starts) == 1, starts  # serve through the shim; recv straight to the binary
    assert starts[0].startswith("-S -c "), starts


def test_only_a_plain_absolute_path_is_taken_from_the_host() -> None:
    assert interpreter("/opt/py/bin/python3.11") == "/opt/py/bin/python3.11"
    for odd in (None, "", "python3", "rel/python", 3, "/bin/py\nthon", "/x" * 3000):
        assert interpreter(odd) == "python3"
    line = agent_command("recv", "/data", python="/opt/my py/python3")
    assert line.startswith("'/opt/my py/python3' -S -c ")  # quoted for the login shell


class _Client:
    """A HubClient stand-in whose resolve waits for `ready` (the connection being made)."""

    api_calls = 0

    def __init__(self, ready: threading.Event, fail: bool = False) -> None:
        self.ready, self.fail = ready, fail

    def resolve_revision(self, repo_id: str, repo_type: str, revision: str) -> str:
        assert self.ready.wait(WAIT), "the connection was not being opened during the listing"
        if self.fail:
            raise HfsyncError("repository not found")
        return "0" * 40

    def list_files(self, repo_id: str, repo_type: str, commit: str) -> list:
        return []


def test_the_host_connects_while_the_revision_is_resolved(
    sshd_server: SSHServer, tmp_path: Path
) -> None:
    ready = threading.Event()
    spec = parse_ssh_command(sshd_server.command())

    def connector() -> SSHConnection:
        ready.set()
        return connect(spec)

    result = to_remote(
        REPO, sshd_server.command(), str(tmp_path / "remote"), client=_Client(ready),
        connector=connector, cache_dir=tmp_path / "cache",
    )  # fmt: skip
    assert result.commit == "0" * 40 and not result.plan.transfers


def test_a_failed_listing_closes_the_connection_opened_beside_it(
    sshd_server: SSHServer, tmp_path: Path
) -> None:
    ready, opened = threading.Event(), threading.Event()
    spec = parse_ssh_command(sshd_server.command())
    transports: list[Any] = []

    def connector() -> SSHConnection:
        ready.set()
        conn = connect(spec)
        transports.append(conn.transport)
        opened.set()
        return conn

    with pytest.raises(HfsyncError, match="repository not found"):
        to_remote(
            REPO, sshd_server.command(), str(tmp_path / "remote"),
            client=_Client(ready, fail=True), connector=connector, cache_dir=tmp_path / "cache",
        )  # fmt: skip
    assert opened.wait(WAIT)
    transports[0].join(WAIT)  # closed by abandon() or by the opening thread once it is done
    assert not transports[0].is_active()
