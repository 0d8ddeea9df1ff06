"""The connection `hfsync to-remote` starts before its CLI is imported (hfsync.remote.preconnect).

* The guess is taken only from the documented shape `to-remote REPO 'SSH COMMAND' DIR ...`,
  and never when an option changes where or how to connect.
* A real run through a byte-counting proxy makes exactly one SSH connection: the early one is
  the run's (a second connection would mean the guess was thrown away and paid twice).
* Its TCP connection starts before paramiko is imported only where nothing can send the run
  elsewhere (a numeric address; no ssh config file, proxy or jump host), and it is used only
  when it goes where the resolved settings go.
* A command that fails its usage checks exits at once with click's message, even while the
  guessed host has not answered (the early connection never holds the exit).
* The end of every command (hfsync.launch, which skips the interpreter's teardown): the exit
  status `sys.exit` would have given (every other subprocess test checks its own command's).
"""

from __future__ import annotations

import select
import socket
import threading
from pathlib import Path

import pytest

from hfsync.launch import _exit_status
from hfsync.remote.channel import SSHConnectError
from hfsync.remote.connection import resolve
from hfsync.remote.preconnect import _connected, early_socket, guess
from hfsync.remote.sshcmd import parse_ssh_command
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


# -- the early TCP connection --------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "ssh -p {port} root@localhost",  # a name: resolving it could block, or differ
        "ssh -p {port} -J jump@10.0.0.9 root@127.0.0.1",
        "ssh -p {port} -o ProxyCommand='nc %h %p' root@127.0.0.1",
        "ssh -p {port} -F {home}/other_config root@127.0.0.1",
    ],
)
def test_no_early_tcp_connection_where_the_run_could_go_elsewhere(
    command: str, _isolated_home: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        spec = parse_ssh_command(command.format(port=port, home=_isolated_home))
        assert early_socket(spec) is None


def test_no_early_tcp_connection_when_an_ssh_config_may_apply(_isolated_home: Path) -> None:
    (_isolated_home / ".ssh" / "config").write_text("Host 127.0.0.1\n  Port 2222\n")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert early_socket(parse_ssh_command(f"ssh -p {port} root@127.0.0.1")) is None
        early = early_socket(parse_ssh_command(f"ssh -F none -p {port} root@127.0.0.1"))
        assert early is not None  # `-F none`: no config file is read
        early[0].close()


def test_the_early_tcp_connection_is_used_only_where_the_settings_go() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        spec = parse_ssh_command(f"ssh -p {port} root@127.0.0.1")
        early = early_socket(spec)
        assert early is not None
        sock = _connected(early, resolve(spec))
        assert sock is not None
        accepted, _ = listener.accept()
        sock.sendall(b"SSH-2.0-x\r\n")
        assert accepted.recv(64) == b"SSH-2.0-x\r\n"
        accepted.close()
        sock.close()

        elsewhere = resolve(parse_ssh_command(f"ssh -p {port + 1} root@127.0.0.1"))
        early = early_socket(spec)
        assert early is not None
        assert _connected(early, elsewhere) is None
        assert early[0].fileno() == -1  # closed: the run connects where its settings say


def test_an_early_connect_that_hangs_is_the_timeout_error_not_a_second_wait() -> None:
    """A host that drops the SYN (here: a listener whose accept queue is full) times out
    once, with the line a fresh connect gives; a second connect would double the wait."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        port = listener.getsockname()[1]
        queued = []
        while True:  # fill the accept queue until a connect no longer completes
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            queued.append(s)
            if not select.select([], [s], [], 0.5)[1] or len(queued) > 16:
                break
        try:
            spec = parse_ssh_command(f"ssh -p {port} -o ConnectTimeout=1 root@127.0.0.1")
            early = early_socket(spec)
            assert early is not None
            with pytest.raises(SSHConnectError, match="timed out after 1 s connecting to"):
                _connected(early, resolve(spec))
            assert early[0].fileno() == -1
        finally:
            for s in queued:
                s.close()


def test_an_early_connect_that_is_refused_is_the_refused_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    spec = parse_ssh_command(f"ssh -p {port} root@127.0.0.1")  # nothing listens there now
    early = early_socket(spec)
    assert early is not None
    with pytest.raises(SSHConnectError, match="connection refused by 127.0.0.1"):
        _connected(early, resolve(spec))


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
