"""Pushing many small files: frames batched by the sender, replies written in bursts by the
agent, each folder checked and made once (hfsync/remote/push.py, hfsync/remote/agent.py).

What a user relies on, pinned here: every file lands byte-exact with metadata that makes it
current; a stream cut after some files still reports every file that was put in place (its
reply is not lost in the agent's buffer); a folder that a symlink carries out of the remote
folder is refused even after files went into its siblings; and a push of many small files
through a real sshd puts them all in place, current for the next run, moving each byte once.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hfsync.remote import agent, push
from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files
from tests.sshd import SSHServer
from tests.tcpproxy import TCPProxy

pytest_plugins = ["tests.sshd"]

AGENT = Path(agent.__file__)
COMMIT = "c" * 40


def frame(path: str, data: bytes) -> bytes:
    etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # a git (non-LFS) file
    header = {"p": path, "s": len(data), "e": etag, "c": COMMIT, "o": 0}
    header["q"] = f"{path}.{etag}.hfsync-part"
    return json.dumps(header).encode() + b"\n" + data


def recv(root: Path, stdin: bytes) -> tuple[int, list[dict]]:
    proc = subprocess.run(
        [sys.executable, str(AGENT), "recv", str(root)], input=stdin, capture_output=True
    )
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]


def small_files(count: int) -> dict[str, bytes]:
    return {f"d{i % 7}/f{i:04d}.txt": os.urandom(1 + (i * 37) % 3000) for i in range(count)}


def test_many_small_frames_land_with_current_metadata(tmp_path: Path) -> None:
    files = small_files(600)  # more than Replies.MAX_HELD: bursts, not one reply at the end
    root = tmp_path / "host"
    status, replies = recv(root, b"".join(frame(p, d) for p, d in files.items()))
    assert status == 0
    assert sorted(r["p"] for r in replies) == sorted(files)
    assert all(r["ok"] and r["n"] == len(files[r["p"]]) for r in replies)
    for path, data in files.items():
        assert (root / path).read_bytes() == data
        meta = (root / ".cache/huggingface/download" / f"{path}.metadata").read_text()
        commit, etag, stamp = meta.splitlines()
        assert commit == COMMIT
        assert etag == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        assert float(stamp) >= (root / path).stat().st_mtime - 1  # vouches for the file
    assert not list(root.rglob("*.hfsync-part"))
    assert not list(root.rglob("*.tmp"))


def test_a_cut_stream_still_reports_every_file_it_put_in_place(tmp_path: Path) -> None:
    files = small_files(50)
    stream = b"".join(frame(p, d) for p, d in files.items())
    cut = stream[: len(stream) - 10]  # the last frame loses its tail
    root = tmp_path / "host"
    status, replies = recv(root, cut)
    assert status == 0
    placed = {p for p in files if (root / p).exists()}
    assert len(placed) == len(files) - 1
    assert {r["p"] for r in replies if r.get("ok")} == placed


def test_a_symlinked_folder_is_refused_after_files_went_into_its_siblings(
    tmp_path: Path,
) -> None:
    """The refused frame's body is read past, so the stream goes on with the next file (a
    stream inside the control session must not end over one file: the lock would go too)."""
    root = tmp_path / "host"
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "d").mkdir(parents=True)
    (root / "d" / "escape").symlink_to(outside)
    frames = [frame("d/a.txt", b"first"), frame("d/b.txt", b"second")]
    frames.append(frame("d/escape/c.txt", b"third"))
    frames.append(frame("d/after.txt", b"fourth"))
    status, replies = recv(root, b"".join(frames))
    assert status == 0
    by_path = {r["p"]: r for r in replies}  # replies come in bursts, not in frame order
    assert {p: r.get("ok") for p, r in by_path.items()} == {
        "d/a.txt": True, "d/b.txt": True, "d/escape/c.txt": False, "d/after.txt": True
    }  # fmt: skip
    refused = by_path["d/escape/c.txt"]
    assert refused["kind"] == "path" and "outside" in refused["error"]
    assert not refused.get("fatal")
    assert list(outside.iterdir()) == []
    assert (root / "d/a.txt").read_bytes() == b"first"
    assert (root / "d/after.txt").read_bytes() == b"fourth"


@pytest.fixture
def _push_home(ssh_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HFSYNC_VIA", "push")
    return ssh_home


@pytest.mark.usefixtures("_push_home")
def test_many_small_files_push_once_and_are_current_after(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, tmp_path: Path
) -> None:
    files = small_files(400)
    files["big.bin"] = os.urandom(push.SMALL_FRAME + 12345)  # not batched, between batches
    hub.create_repo("org/small")
    hub.commit("org/small", files=files)
    files[".gitattributes"] = hub.read_file("org/small", ".gitattributes", "main")
    dest = tmp_path / "remote"
    total = sum(len(v) for v in files.values())
    with TCPProxy(sshd_server.host, sshd_server.port) as proxy:
        known = tmp_path / f"known_hosts_{proxy.port}"
        known.write_text(sshd_server.known_hosts_entry(port=proxy.port))
        ssh = sshd_server.command(port=proxy.port, known_hosts=known)
        first = hfsync("to-remote", "org/small", ssh, dest, "--json")
        assert first.returncode == 0, first.stderr
        up_first = proxy.bytes_up
        assert user_files(dest) == files
        assert json.loads(first.stdout)["bytes_pushed"] == total
        # Each byte once: beyond the files, only the agent, the handshake and ~200 B a header.
        assert total <= up_first < total + 64 * 1024 + 300 * len(files)
        second = hfsync("to-remote", "org/small", ssh, dest, "--json")
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["bytes_pushed"] == 0
        # No file bytes the second time: the agent, the handshake and the scan request.
        assert proxy.bytes_up - up_first < 64 * 1024 + 100 * len(files)


def test_a_file_shorter_than_planned_is_refused_not_padded_from_the_reused_batch(
    tmp_path: Path,
) -> None:
    """The batch buffer is reused from frame to frame: a file that shrank since the plan
    must raise, never leave the previous frame's bytes standing in for its missing tail."""
    source = tmp_path / "f.bin"
    source.write_bytes(b"new" * 100)
    room = memoryview(bytearray(b"old" * 200))
    with pytest.raises(push.SourceShrankError) as caught:
        push._read_into(source, 0, room[:400])
    assert caught.value.args and "100 bytes early" in str(caught.value)
    push._read_into(source, 10, room[:290])
    assert bytes(room[:290]) == (b"new" * 100)[10:]
