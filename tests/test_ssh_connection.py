"""hfsync.remote.connection against a real OpenSSH sshd on 127.0.0.1 (tests/sshd.py)."""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from hfsync.errors import SSHError
from hfsync.remote import hostkeys
from hfsync.remote.channel import send_stream
from hfsync.remote.connection import (
    ConnectionLostError,
    HostKeyError,
    RemoteClosedError,
    SSHAuthError,
    SSHConnectError,
    connect,
    remote_shell_quote,
)
from hfsync.remote.sshcmd import parse_ssh_command
from tests.sshd import LoginUser, SSHServer, free_port, keygen
from tests.tcpproxy import TCPProxy

pytest_plugins = ["tests.sshd"]  # fixtures: sshd_server, ssh_home, second_login_user

TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def _isolated_home(ssh_home: Path) -> Path:
    return ssh_home


def _connect(command: str):
    return connect(parse_ssh_command(command), timeout=TIMEOUT)


def _other_host_key_line() -> str:
    """A fresh ed25519 public key, as ``type base64``: "the host key that was known before"."""
    with tempfile.TemporaryDirectory() as d:
        keygen(Path(d) / "k")
        kind, b64 = (Path(d) / "k.pub").read_text().split()[:2]
    return f"{kind} {b64}"


# -- commands and streams ----------------------------------------------------------------


def test_run_returns_status_stdout_and_stderr(sshd_server: SSHServer) -> None:
    with _connect(sshd_server.command()) as conn:
        status, out, err = conn.run("echo hello; echo oops >&2; exit 3", timeout=TIMEOUT)
        assert (status, out, err) == (3, b"hello\n", b"oops\n")
        assert conn.transport is not None
        assert conn.transport.remote_cipher == "aes128-gcm@openssh.com"
        assert conn.host_key_fingerprint == sshd_server.host_key_fingerprint


def test_stdin_round_trip_with_busy_stderr_does_not_deadlock(sshd_server: SSHServer) -> None:
    data = os.urandom(3 << 20)
    with _connect(sshd_server.command()) as conn:
        status, out, err = conn.run("head -c 3000000 /dev/zero >&2; cat", data, timeout=TIMEOUT)
    assert status == 0
    assert out == data
    assert err == b"\0" * 3_000_000


def test_send_stream_is_byte_exact(sshd_server: SSHServer, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    data = os.urandom((5 << 20) + 12345)
    src.write_bytes(data)
    dest = tmp_path / "remote dir" / "it's.bin"
    dest.parent.mkdir()
    progress: list[int] = []
    with _connect(sshd_server.command()) as conn:
        channel = conn.open_exec("cat > " + remote_shell_quote(str(dest)))
        sent = conn.send_stream(channel, src, on_progress=progress.append)
        assert channel.recv_exit_status() == 0
        assert sent == len(data) == sum(progress)
        assert dest.read_bytes() == data
        # A range from an open file, with a small buffer to exercise the loop.
        channel = conn.open_exec("cat > " + remote_shell_quote(str(dest)))
        with open(src, "rb") as f:
            send_stream(channel, f, offset=1000, length=3 << 20, buffer_size=100_000)
        assert channel.recv_exit_status() == 0
    assert dest.read_bytes() == data[1000 : 1000 + (3 << 20)]


def test_remote_command_that_stops_reading_reports_its_stderr(sshd_server: SSHServer) -> None:
    with _connect(sshd_server.command()) as conn:
        channel = conn.open_exec("echo 'No space left on device' >&2; exit 4")
        with pytest.raises(RemoteClosedError) as info:
            conn.send_stream(channel, _ZeroFile(64 << 20), length=64 << 20)
        assert info.value.exit_status == 4
        assert "No space left on device" in str(info.value)
        assert conn.run("true")[0] == 0  # the connection itself is fine


def test_run_timeout_is_an_ssh_error(sshd_server: SSHServer) -> None:
    with _connect(sshd_server.command()) as conn:
        with pytest.raises(SSHError, match="produced nothing"):
            conn.run("sleep 5", timeout=0.3)


class _ZeroFile:
    """A readinto() source of zeros, so big sends need no big files."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readinto(self, view: memoryview) -> int:
        n = min(len(view), self.left)
        view[:n] = bytes(n)
        self.left -= n
        return n


# -- host keys ---------------------------------------------------------------------------


def test_unknown_host_is_refused_with_fingerprint(sshd_server: SSHServer, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    with pytest.raises(HostKeyError) as info:
        _connect(sshd_server.command(known_hosts=kh))
    msg = str(info.value)
    assert info.value.exit_code == 7
    assert f"[127.0.0.1]:{sshd_server.port}" in msg
    assert "ssh-ed25519" in msg and sshd_server.host_key_fingerprint in msg
    assert f"ssh-keyscan -p {sshd_server.port} 127.0.0.1" in msg
    assert "StrictHostKeyChecking=accept-new" in msg
    assert not kh.exists()


@pytest.mark.parametrize("mode", ["accept-new", "no"])
def test_accept_new_and_no_record_the_key(
    sshd_server: SSHServer, tmp_path: Path, mode: str
) -> None:
    kh = tmp_path / "sub" / "known_hosts"
    with _connect(sshd_server.command("-o", f"StrictHostKeyChecking={mode}", known_hosts=kh)) as c:
        assert c.run("true")[0] == 0
        assert any("permanently added" in n for n in c.notes)
    assert kh.read_text() == sshd_server.known_hosts_entry()
    with _connect(sshd_server.command(known_hosts=kh)) as c:  # default strictness now passes
        assert c.run("true")[0] == 0
    assert kh.read_text() == sshd_server.known_hosts_entry()  # not recorded twice


def test_accept_new_hashed(sshd_server: SSHServer, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    opts = ("-o", "StrictHostKeyChecking=accept-new", "-o", "HashKnownHosts=yes")
    _connect(sshd_server.command(*opts, known_hosts=kh)).close()
    line = kh.read_text()
    assert line.startswith("|1|") and "127.0.0.1" not in line
    _connect(sshd_server.command(known_hosts=kh)).close()


def test_hashed_entry_written_by_ssh_keygen_is_accepted(
    sshd_server: SSHServer, tmp_path: Path
) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("# comment\n" + sshd_server.known_hosts_entry())
    subprocess.run(["ssh-keygen", "-H", "-f", str(kh)], check=True, capture_output=True)
    assert "127.0.0.1" not in kh.read_text()
    _connect(sshd_server.command(known_hosts=kh)).close()


@pytest.mark.parametrize("mode", ["yes", "accept-new", "no", "off"])
def test_changed_key_is_always_refused(sshd_server: SSHServer, tmp_path: Path, mode: str) -> None:
    kh = tmp_path / "known_hosts"
    other = _other_host_key_line()
    kh.write_text(f"other.example {other}\n[127.0.0.1]:{sshd_server.port} {other}\n")
    before = kh.read_text()
    with pytest.raises(HostKeyError) as info:
        _connect(sshd_server.command("-o", f"StrictHostKeyChecking={mode}", known_hosts=kh))
    msg = str(info.value)
    assert "CHANGED" in msg
    expected_fp = hostkeys.fingerprint_blob(base64.b64decode(other.split()[1]))
    assert expected_fp in msg and sshd_server.host_key_fingerprint in msg
    assert f"line 2 of {kh}" in msg
    assert kh.read_text() == before


def test_revoked_key_is_refused(sshd_server: SSHServer, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(f"@revoked * {sshd_server.host_key_line}\n" + sshd_server.known_hosts_entry())
    with pytest.raises(HostKeyError, match="revoked"):
        _connect(sshd_server.command("-o", "StrictHostKeyChecking=no", known_hosts=kh))


def test_wildcard_entry_matches(sshd_server: SSHServer, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(f"!10.*,[127.0.0.?]:* {sshd_server.host_key_line}\n")
    _connect(sshd_server.command(known_hosts=kh)).close()


# -- authentication and connection failures ----------------------------------------------


def test_wrong_key_is_an_auth_error_without_secrets(sshd_server: SSHServer, tmp_path: Path) -> None:
    keygen(tmp_path / "wrong")
    with pytest.raises(SSHAuthError) as info:
        _connect(sshd_server.command(key=tmp_path / "wrong"))
    msg = str(info.value)
    assert info.value.exit_code == 7
    assert "authentication failed" in msg and str(tmp_path / "wrong") in msg
    secret = (tmp_path / "wrong").read_text().splitlines()[1]
    assert secret not in msg and "\n" not in msg


def test_missing_key_file_is_noted_then_auth_fails(sshd_server: SSHServer, tmp_path: Path) -> None:
    with pytest.raises(SSHAuthError, match="no keys found"):
        _connect(sshd_server.command(key=tmp_path / "absent"))


def test_refused_port(sshd_server: SSHServer) -> None:
    port = free_port()
    with pytest.raises(SSHConnectError, match=f"connection refused by 127.0.0.1:{port}") as info:
        _connect(sshd_server.command(port=port))
    assert info.value.exit_code == 7


def test_unresolvable_host() -> None:
    with pytest.raises(SSHConnectError, match="cannot resolve host name"):
        _connect("ssh root@no-such-host.invalid")


def test_connect_timeout_on_silent_server(sshd_server: SSHServer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts TCP, never says a word
        port = silent.getsockname()[1]
        with pytest.raises(SSHConnectError, match="timed out after 1 s"):
            _connect(sshd_server.command("-o", "ConnectTimeout=1", port=port))


def test_not_an_ssh_server(sshd_server: SSHServer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]

        def answer() -> None:
            c, _ = srv.accept()
            c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            c.close()

        threading.Thread(target=answer, daemon=True).start()
        with pytest.raises(SSHConnectError, match="handshake"):
            _connect(sshd_server.command(port=port))


# -- ~/.ssh/config, default keys, proxies ------------------------------------------------


def test_ssh_config_alias_and_cli_wins(sshd_server: SSHServer, ssh_home: Path) -> None:
    (ssh_home / ".ssh" / "config").write_text(
        "Host gpu\n"
        "  HostName 127.0.0.1\n"
        f"  Port {sshd_server.port}\n"
        f"  User {sshd_server.user}\n"
        f"  IdentityFile {sshd_server.client_key}\n"
        f"  UserKnownHostsFile {sshd_server.known_hosts}\n"
        "  ServerAliveInterval 7\n"
        "Host broken\n"
        "  HostName 127.0.0.1\n"
        f"  Port {free_port()}\n"
        "  User nobody-here\n"
    )
    with _connect("ssh gpu") as conn:
        assert conn.display == f"{sshd_server.user}@127.0.0.1:{sshd_server.port}"
        assert conn.settings.keepalive == 7
        assert conn.run("echo ok")[1] == b"ok\n"
    # Command-line values win over the config's wrong port and user.
    with _connect(sshd_server.command(host="broken")) as conn:
        assert conn.run("echo ok")[1] == b"ok\n"


def test_default_key_and_known_hosts_in_home(sshd_server: SSHServer, ssh_home: Path) -> None:
    shutil.copy(sshd_server.client_key, ssh_home / ".ssh" / "id_ed25519")
    (ssh_home / ".ssh" / "known_hosts").write_text(sshd_server.known_hosts_entry())
    with _connect(f"ssh -p {sshd_server.port} root@127.0.0.1") as conn:
        assert conn.run("echo ok")[1] == b"ok\n"


def test_proxy_command(sshd_server: SSHServer) -> None:
    if shutil.which("ssh") is None:
        pytest.skip("OpenSSH client not installed")
    inner = shlex.join(
        ["ssh", "-F", "none", "-i", str(sshd_server.client_key), "-p", str(sshd_server.port),
         "-o", f"UserKnownHostsFile={sshd_server.known_hosts}", "-o", "BatchMode=yes",
         "-W", "%h:%p", "root@127.0.0.1"]
    )  # fmt: skip
    cmd = sshd_server.command("-o", f"ProxyCommand={inner}")
    with _connect(cmd) as conn:
        assert conn.run("echo via-proxy")[1] == b"via-proxy\n"


def test_jump_host(sshd_server: SSHServer, ssh_home: Path) -> None:
    # Like OpenSSH, -J hops get only ~/.ssh/config and defaults, not the target's -i/-o.
    shutil.copy(sshd_server.client_key, ssh_home / ".ssh" / "id_ed25519")
    (ssh_home / ".ssh" / "known_hosts").write_text(sshd_server.known_hosts_entry())
    cmd = sshd_server.command("-J", f"root@127.0.0.1:{sshd_server.port}")
    with _connect(cmd) as conn:
        assert conn.run("echo via-jump")[1] == b"via-jump\n"
        assert conn._jump is not None and conn._jump.is_alive()
    assert conn._jump is None


def test_second_login_user(sshd_server: SSHServer, second_login_user: LoginUser) -> None:
    with _connect(sshd_server.command(user=second_login_user.name)) as conn:
        status, out, _ = conn.run('id -un; echo "$HOME"')
    assert status == 0
    assert out.decode().split() == [second_login_user.name, str(second_login_user.home)]


# -- the byte-counting proxy and dropped connections -------------------------------------


def test_proxy_counts_bytes_of_a_push(sshd_server: SSHServer, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    with TCPProxy("127.0.0.1", sshd_server.port) as proxy:
        kh.write_text(sshd_server.known_hosts_entry(proxy.port))
        with _connect(sshd_server.command(port=proxy.port, known_hosts=kh)) as conn:
            handshake_up = proxy.bytes_up
            channel = conn.open_exec("cat > /dev/null")
            conn.send_stream(channel, _ZeroFile(4 << 20))
            assert channel.recv_exit_status() == 0
        assert proxy.connections == 1
        pushed = proxy.bytes_up - handshake_up
        assert 4 << 20 < pushed < (4 << 20) * 1.05  # payload plus modest framing
        assert proxy.bytes_down < 1 << 20


def test_cut_connection_surfaces_as_lost_then_reconnects(
    sshd_server: SSHServer, tmp_path: Path
) -> None:
    kh = tmp_path / "known_hosts"
    with TCPProxy("127.0.0.1", sshd_server.port) as proxy:
        kh.write_text(sshd_server.known_hosts_entry(proxy.port))
        with _connect(sshd_server.command(port=proxy.port, known_hosts=kh)) as conn:
            channel = conn.open_exec("cat > /dev/null")
            proxy.cut_after(1 << 20)
            with pytest.raises(ConnectionLostError) as info:
                conn.send_stream(channel, _ZeroFile(32 << 20))
            assert info.value.exit_code == 7
            assert "lost" in str(info.value)
            assert not conn.is_alive()
            with pytest.raises(ConnectionLostError):
                conn.run("true")
            conn.reconnect(tries=2, backoff=0)
            assert conn.run("echo back")[1] == b"back\n"
        assert proxy.connections == 2 and proxy.cuts >= 1


def test_cut_during_run_is_lost(sshd_server: SSHServer, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    with TCPProxy("127.0.0.1", sshd_server.port) as proxy:
        kh.write_text(sshd_server.known_hosts_entry(proxy.port))
        with _connect(sshd_server.command(port=proxy.port, known_hosts=kh)) as conn:
            proxy.cut_after(100_000)
            with pytest.raises(ConnectionLostError):
                conn.run("cat > /dev/null", stdin=bytes(4 << 20), timeout=TIMEOUT)


def test_reconnect_does_not_retry_host_key_errors(sshd_server: SSHServer, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd_server.known_hosts_entry())
    conn = _connect(sshd_server.command(known_hosts=kh))
    kh.write_text(f"[127.0.0.1]:{sshd_server.port} {_other_host_key_line()}\n")
    with pytest.raises(HostKeyError):
        conn.reconnect(tries=5, backoff=30)  # would take minutes if it retried
    assert not conn.is_alive()


def test_stalled_receiver_with_channel_timeout_counts_as_lost(sshd_server: SSHServer) -> None:
    with _connect(sshd_server.command()) as conn:
        channel = conn.open_exec("sleep 5")  # never reads stdin: the window closes
        channel.settimeout(0.5)
        with pytest.raises(ConnectionLostError, match="no progress"):
            conn.send_stream(channel, _ZeroFile(16 << 20))
