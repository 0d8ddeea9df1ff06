"""Channel data as batches of AES-GCM packets: paramiko's send path without its per-packet cost.

Why: sshd accepts at most 32 KiB of data per SSH packet, so a GiB pushed is 32,768 packets, and
``Channel.send`` costs ~110 us of Python per packet (a Message built in a BytesIO, the
clear-to-send event, three lock round trips, a packet assembled by concatenation and sliced
again for the cipher, an int round trip for the IV). That made paramiko, not the link or the
host, the limit of a push: 4.7 s of local CPU per GiB into ``cat > /dev/null`` on this 2-core
box, against 2.4 s with this module (a hand-run loop into a hashing remote); in
`scripts/bench --scenario push` a 2 GiB push went from 127 to 231 MB/s (docs/benchmarks.md).

What it does: for one ``send(view)`` it reserves up to :data:`BATCH` bytes of the channel's
window, takes paramiko's own locks in paramiko's order (channel lock for the window, then
``clear_to_send_lock`` so no packet goes out during a key exchange, then the packetizer's write
lock), builds every packet of the batch into one reused buffer with ``encrypt_into`` (the length
field is the AEAD's associated data, as RFC 5647 and paramiko do), writes the batch with one
socket send loop, and then advances paramiko's sequence number, IV counter, byte counters and
rekey trigger exactly as ``Packetizer.send_message`` would have, packet by packet.

It reads paramiko's private packetizer state, so it is used only where that state is exactly
as expected (:func:`batch_sender` checks every attribute, the cipher is AES-GCM, no
compression, no packet dump, a real socket underneath: not a ProxyCommand or a jump channel);
anywhere else, and whenever the state changes under it (a rekey that picked another cipher),
it falls back to ``Channel.send``. Both paths share paramiko's locks and counters, so they may
interleave on one transport (headers go through ``Channel.send``, bodies through here).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable

import paramiko

BATCH = 512 << 10  # bytes of channel data per batch: 16 packets, the socket keeps sending meanwhile
MSG_CHANNEL_DATA = 94
TAG = 16  # AES-GCM tag
_P = "_Packetizer__"  # paramiko.packet.Packetizer's private (name-mangled) attributes
_STATE = (
    "write_lock", "block_engine_out", "aead_out", "etm_out", "compress_engine_out", "iv_out",
    "sequence_number_out", "sent_bytes", "sent_packets", "need_rekey", "block_size_out",
    "socket", "closed", "keepalive_last", "dump_packets", "received_bytes_overflow",
    "received_packets_overflow",
)  # fmt: skip
_LENGTH = struct.Struct(">I")
_HEAD = struct.Struct(">BBII")  # padding length, SSH_MSG_CHANNEL_DATA, recipient channel, length

Sender = Callable[[memoryview], int]
# One per channel, kept on the channel: a push stream sends file after file on one channel,
# and each send_stream would otherwise allocate (and fault in) a fresh ~0.5 MiB buffer.
_CACHED = "_hfsync_batch_sender"


def batch_sender(channel: paramiko.Channel) -> Sender:
    """A ``send(view) -> bytes sent`` for ``channel``: batched when paramiko's state allows it,
    else ``channel.send`` itself. Same contract as ``Channel.send``: 0 once the channel is
    closed or at EOF, ``TimeoutError`` after ``channel.settimeout`` seconds without window."""
    sender: _BatchSender | None = getattr(channel, _CACHED, None)
    if sender is not None:
        return sender.send
    transport = channel.get_transport()
    if transport is None or not _usable(transport.packetizer):
        return channel.send
    sender = _BatchSender(channel, transport)
    setattr(channel, _CACHED, sender)  # a cycle with the channel: both go together
    return sender.send


def _usable(pk: object) -> bool:
    if not all(hasattr(pk, _P + name) for name in _STATE):
        return False
    for name in ("REKEY_PACKETS", "REKEY_BYTES", "_trigger_rekey"):
        if not hasattr(pk, name):
            return False
    return _aead_ready(pk)


def _aead_ready(pk: object) -> bool:
    """Whether the outbound cipher is one this module can drive (checked again per batch)."""
    g = pk.__dict__
    return (
        g[_P + "aead_out"] is True
        and not g[_P + "etm_out"]
        and g[_P + "compress_engine_out"] is None
        and not g[_P + "dump_packets"]
        and g[_P + "block_size_out"] == 16
        and isinstance(g[_P + "iv_out"], bytes)
        and len(g[_P + "iv_out"]) == 12
        and hasattr(g[_P + "block_engine_out"], "encrypt_into")
        and type(g[_P + "socket"]) is socket.socket
    )


class _BatchSender:
    def __init__(self, channel: paramiko.Channel, transport: paramiko.Transport) -> None:
        self.channel = channel
        self.transport = transport
        self.pk = transport.packetizer
        self.chunk = max(1024, channel.out_max_packet_size - 64)  # what Channel.send would use
        packets = -(-BATCH // self.chunk)
        self.out = bytearray(packets * (4 + 1 + 9 + self.chunk + 32 + TAG))
        self.plain = bytearray(1 + 9 + self.chunk + 32)

    def send(self, view: memoryview) -> int:
        size = self._reserve(len(view))
        if size == 0:
            return 0
        self._clear_to_send()
        try:
            with self.pk.__dict__[_P + "write_lock"]:
                if not _aead_ready(self.pk):  # a rekey changed the cipher: paramiko's way
                    pos = 0
                    while pos < size:
                        pos += self._slow(view[pos : min(size, pos + self.chunk)])
                    return size
                self._write_batch(view, size)
        finally:
            self.transport.clear_to_send_lock.release()
        return size

    def _slow(self, view: memoryview) -> int:
        """One packet through paramiko's own packetizer (its window already reserved)."""
        m = paramiko.Message()
        m.add_byte(bytes([MSG_CHANNEL_DATA]))
        m.add_int(self.channel.remote_chanid)
        m.add_string(bytes(view))
        self.pk.send_message(m)  # the write lock is re-entrant (RLock)
        return len(view)

    def _reserve(self, want: int) -> int:
        """Take up to ``want`` bytes (and at most BATCH) of send window, waiting like
        ``Channel._wait_for_send_window`` does, but not capped at one packet."""
        ch = self.channel
        with ch.lock:
            if ch.closed:
                raise OSError("Socket is closed")
            timeout = ch.timeout
            while ch.out_window_size == 0:
                if ch.closed or ch.eof_sent:
                    return 0
                if timeout == 0.0:
                    raise TimeoutError()
                then = time.monotonic()
                ch.out_buffer_cv.wait(timeout)
                if timeout is not None:
                    timeout -= time.monotonic() - then
                    if timeout <= 0.0 and ch.out_window_size == 0:
                        raise TimeoutError()
            if ch.closed or ch.eof_sent:
                return 0
            size = min(want, ch.out_window_size, BATCH)
            ch.out_window_size -= size
            return size

    def _clear_to_send(self) -> None:
        """Take ``clear_to_send_lock`` once no key exchange runs (Transport._send_user_message)."""
        t = self.transport
        start = time.monotonic()
        while True:
            t.clear_to_send.wait(0.1)
            if not t.active:
                raise EOFError("SSH transport closed")
            t.clear_to_send_lock.acquire()
            if t.clear_to_send.is_set():
                return
            t.clear_to_send_lock.release()
            if time.monotonic() > start + t.clear_to_send_timeout:
                raise paramiko.SSHException("Key-exchange timed out waiting for key negotiation")

    def _write_batch(self, view: memoryview, size: int) -> None:
        g = self.pk.__dict__
        aead = g[_P + "block_engine_out"]
        iv = g[_P + "iv_out"]
        fixed, counter = iv[:4], int.from_bytes(iv[4:], "big")
        out, plain = memoryview(self.out), memoryview(self.plain)
        recipient = self.channel.remote_chanid
        chunk = self.chunk
        npackets = -(-size // chunk)
        noise = os.urandom(npackets * 19)  # padding is 4..19 bytes; paramiko's is random too
        o = pos = 0
        for i in range(npackets):
            n = min(chunk, size - pos)
            padding = 3 + 16 - ((9 + n + 4) % 16)
            length = 1 + 9 + n + padding  # SSH packet_length: padding byte, payload, padding
            _LENGTH.pack_into(out, o, length)
            _HEAD.pack_into(plain, 0, padding, MSG_CHANNEL_DATA, recipient, n)
            plain[10 : 10 + n] = view[pos : pos + n]
            plain[10 + n : length] = noise[i * 19 : i * 19 + padding]
            nonce = fixed + ((counter + i) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
            aead.encrypt_into(
                nonce, plain[:length], out[o : o + 4], out[o + 4 : o + 4 + length + TAG]
            )
            o += 4 + length + TAG
            pos += n
        self._sendall(out[:o])
        g[_P + "iv_out"] = fixed + ((counter + npackets) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
        g[_P + "sequence_number_out"] = (g[_P + "sequence_number_out"] + npackets) & 0xFFFFFFFF
        g[_P + "sent_bytes"] += o
        g[_P + "sent_packets"] += npackets
        pk = self.pk
        too_much = (
            g[_P + "sent_packets"] >= pk.REKEY_PACKETS or g[_P + "sent_bytes"] >= pk.REKEY_BYTES
        )
        if too_much and not g[_P + "need_rekey"]:  # as Packetizer.send_message: ask once
            g[_P + "received_bytes_overflow"] = 0
            g[_P + "received_packets_overflow"] = 0
            pk._trigger_rekey()

    def _sendall(self, data: memoryview) -> None:
        """Packetizer.write_all over a memoryview: its socket has a 0.1 s timeout, which only
        means "try again" unless the packetizer was closed meanwhile."""
        g = self.pk.__dict__
        g[_P + "keepalive_last"] = time.time()
        sock: socket.socket = g[_P + "socket"]
        while data:
            try:
                n = sock.send(data)
            except TimeoutError:
                if g[_P + "closed"]:
                    raise EOFError("SSH transport closed") from None
                continue
            except OSError:
                raise EOFError("SSH connection lost") from None
            data = data[n:]
