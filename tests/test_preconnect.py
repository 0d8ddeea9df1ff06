"""The connection `hfsync to-remote` starts before its CLI is imported (hfsync.remote.preconnect).

* The guess is taken only from the documented shape `to-remote REPO 'SSH COMMAND' DIR ...`,
  and never when an option changes where or how to connect.
* A real run through a byte-counting proxy makes exactly one SSH connection: the early one is
  the run's (a second connection would mean the guess was thrown away and paid twice).
* A command that fails its usage checks exits at once with click's message, even while the
  guessed host has not answered (the early connection never holds the exit).
* The end of every command (hfsync.launch, which skips the interpreter's teardown): the exit
  status `sys.exit` would have given (every other subprocess test checks its own command's).
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from hfsync.launch import _exit_status
from hfsync.remote.preconnect import guess
from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files
from tests.sshd import SSHServer
from tests.tcpproxy import TCPProxy

pytest_plugins = ["tests.sshd"]

REPO = "org/model"
SSH = "ssh -p 2222 -i /keys/id root@10.0.0.5"


@pytest.fixture(autouse=True)
def _isolated_home(ssh_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HFSYNC_VIA", "push")
    return ssh_home


# -- the guess -----------------------------------------------------------------------------


def test_the_documented_shape_is_guessed() -> None:
    spec = guess(["to-remote", REPO, SSH, "/workspace/m", "--via", "push", "-q"])
    assert spec is not None
    assert (spec.host, spec.port, spec.user, spec.identity_files) == (
        "10.0.0.5",
        2222,
        "root",
        ("/keys/id",),
    )
    assert guess(["--debug", "to-remote", REPO, SSH, "/w"]) == spec


@pytest.mark.parametrize(
    "argv",
    [
        ["sync", REPO, SSH, "/w"],  # another command
        ["to-remote", REPO, SSH],  # no REMOTE_DIR: a usage error, no network
        ["to-remote", "--revision", "v1", REPO, SSH, "/w"],  # options first: click's job
        ["to-remote", REPO, SSH, "/w", "--host", "ssh other"],  # many hosts
        ["to-remote", REPO, SSH, "/w", "--hosts-file=hosts.txt"],
        ["to-remote", REPO, SSH, "/w", "--connect-timeout", "5"],  # another timeout
        ["to-remote", REPO, SSH, "/w", "--help"],
        ["to-remote", REPO, SSH, "/w", "--", "x"],
        ["to-remote", REPO, "ssh -p nope host", "/w"],  # reported by the run, as usage
        ["to-remote", REPO, "ssh host uptime", "/w"],  # a remote command: refused by the run
    ],
)
def test_anything_else_is_not_guessed(argv: list[str]) -> None:
    assert guess(argv) is None


# -- end to end ----------------------------------------------------------------------------


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    files = {f"d/{i}.txt": f"line {i}\n".encode() * (i + 1) for i in range(20)}
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def test_a_push_makes_one_connection_the_early_one(
    repo: dict[str, bytes], sshd_server: SSHServer, tmp_path: Path
) -> None:
    with TCPProxy(sshd_server.host, sshd_server.port) as proxy:
        known = tmp_path / "known_hosts"
        known.write_text(sshd_server.known_hosts_entry(port=proxy.port))
        command = sshd_server.command(port=proxy.port, known_hosts=known)
        dest = tmp_path / "dest"
        assert guess(["to-remote", REPO, command, str(dest)]) is not None  # this run guesses
        result = hfsync("to-remote", REPO, command, dest, "--via", "push")
        assert result.returncode == 0, result.stderr
        assert user_files(dest) == repo
        assert proxy.connections == 1


class SilentHost:
    """A TCP port that accepts connections and never says a word (a host whose sshd hangs)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


def test_a_usage_error_exits_at_once_while_the_guessed_host_is_silent(tmp_path: Path) -> None:
    host = SilentHost()
    try:
        command = f"ssh -p {host.port} -o UserKnownHostsFile={tmp_path / 'kh'} root@127.0.0.1"
        # The default ConnectTimeout is 30 s: an exit that waited for the early connection
        # would outlive the subprocess timeout (a hang guard, not a measurement).
        result = hfsync(
            "to-remote", REPO, command, tmp_path / "dest", "--no-such-option", timeout=20
        )
    finally:
        host.close()
    assert result.returncode == 2
    assert "No such option '--no-such-option'" in result.stderr
    assert not (tmp_path / "dest").exists()


def test_a_silent_host_is_the_connect_timeout_line(repo: dict[str, bytes], tmp_path: Path) -> None:
    host = SilentHost()
    try:
        command = (
            f"ssh -p {host.port} -o ConnectTimeout=1 "
            f"-o UserKnownHostsFile={tmp_path / 'kh'} root@127.0.0.1"
        )
        result = hfsync("to-remote", REPO, command, tmp_path / "dest", timeout=60)
    finally:
        host.close()
    assert result.returncode == 7, result.stderr
    assert result.stderr.count("\n") == 1 and "127.0.0.1" in result.stderr


# -- the exit ------------------------------------------------------------------------------


def test_the_exit_status_is_what_sys_exit_would_give() -> None:
    assert _exit_status(None) == 0
    assert _exit_status(6) == 6
    assert _exit_status(256 + 7) == 7
    assert _exit_status(True) == 1
