"""The batched AES-GCM packet path (hfsync/remote/batchsend.py) against a real OpenSSH sshd.

It writes paramiko's packets itself, so what matters is that sshd accepts every one of them and
the bytes arrive exact: across key re-exchanges (forced every 256 KiB here), mixed with
paramiko's own packets on the same transport, and with a cipher it must leave to paramiko.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import paramiko
import pytest

from hfsync.remote import batchsend
from hfsync.remote.channel import RemoteClosedError, send_stream
from hfsync.remote.connection import connect
from hfsync.remote.sshcmd import parse_ssh_command
from tests.sshd import SSHServer

pytest_plugins = ["tests.sshd"]

TIMEOUT = 30.0
HASH_STDIN = (
    "python3 -c 'import hashlib, sys; h = hashlib.sha256(); "
    '[h.update(b) for b in iter(lambda: sys.stdin.buffer.read(1 << 16), b"")]; '
    "print(h.hexdigest(), h.name)'"
)


@pytest.fixture(autouse=True)
def _isolated_home(ssh_home: Path) -> Path:
    return ssh_home


def _hashed_on_remote(channel: paramiko.Channel) -> str:
    out = channel.makefile("rb").read().decode().split()
    assert channel.recv_exit_status() == 0
    return out[0]


def test_batched_packets_arrive_exact_across_rekeys(sshd_server: SSHServer, tmp_path: Path) -> None:
    data = os.urandom((3 << 20) + 4321)  # not a multiple of a packet, a batch or the buffer
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    with connect(parse_ssh_command(sshd_server.command()), timeout=TIMEOUT) as conn:
        transport = conn.transport
        assert transport is not None and transport.local_cipher == "aes128-gcm@openssh.com"
        pk = transport.packetizer
        pk.REKEY_BYTES = 256 << 10  # a key exchange asked for every 256 KiB sent
        rekeys: list[int] = []
        trigger = pk._trigger_rekey
        pk._trigger_rekey = lambda: (rekeys.append(1), trigger())[1]  # type: ignore[method-assign]
        channel = conn.open_exec(HASH_STDIN)
        sender = batchsend.batch_sender(channel)
        assert isinstance(getattr(sender, "__self__", None), batchsend._BatchSender)
        # paramiko's own packets interleave with batched ones on the same channel
        channel.send(data[:100])
        sent = send_stream(channel, src, offset=100, buffer_size=1_000_003)
        assert sent == len(data) - 100
        assert _hashed_on_remote(channel) == hashlib.sha256(data).hexdigest()
        assert len(rekeys) >= 2  # each completes asynchronously, a round trip later
        assert conn.run("echo still here", timeout=TIMEOUT)[1] == b"still here\n"


def test_other_ciphers_go_through_paramiko(sshd_server: SSHServer) -> None:
    data = os.urandom(1 << 20)
    key = paramiko.Ed25519Key.from_private_key_file(str(sshd_server.client_key))
    transport = paramiko.Transport(socket.create_connection((sshd_server.host, sshd_server.port)))
    try:
        transport.get_security_options().ciphers = ("aes128-ctr",)
        transport.start_client(timeout=TIMEOUT)
        transport.auth_publickey(sshd_server.user, key)
        channel = transport.open_session()
        channel.exec_command(HASH_STDIN)
        assert batchsend.batch_sender(channel) == channel.send
        send_stream(channel, _BytesFile(data))
        assert _hashed_on_remote(channel) == hashlib.sha256(data).hexdigest()
    finally:
        transport.close()


def test_a_remote_that_stops_reading_stops_a_batched_send(sshd_server: SSHServer) -> None:
    with connect(parse_ssh_command(sshd_server.command()), timeout=TIMEOUT) as conn:
        channel = conn.open_exec("head -c 100000 > /dev/null; echo 'disk full' >&2; exit 5")
        with pytest.raises(RemoteClosedError) as info:
            send_stream(channel, _BytesFile(bytes(64 << 20)))
        assert info.value.exit_status == 5
        assert "disk full" in str(info.value)
        assert 100_000 <= info.value.sent < 64 << 20


class _BytesFile:
    """A readinto-capable source that is not a real file."""

    def __init__(self, data: bytes) -> None:
        self.view, self.pos = memoryview(data), 0

    def readinto(self, buf: memoryview) -> int:
        n = min(len(buf), len(self.view) - self.pos)
        buf[:n] = self.view[self.pos : self.pos + n]
        self.pos += n
        return n
