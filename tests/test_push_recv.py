"""The push path's receive loop and `--streams`: the agent (`agent.py recv`) run as the host
runs it, fed framed files on stdin, and the CLI pushing with several streams to a real sshd.

The agent reads each frame through one reused buffer (RECV_BUFFER) in as many pieces as the
pipe delivers; these tests pin what a user relies on: bytes that cross buffer boundaries land
exactly, a stream cut mid-frame leaves only the part file (never a final file), and the next
push resumes from that part and verifies the whole file."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from hfsync.remote import agent
from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files
from tests.sshd import SSHServer

pytest_plugins = ["tests.sshd"]

AGENT = Path(agent.__file__)
COMMIT = "c" * 40


def frame(path: str, data: bytes, offset: int = 0) -> bytes:
    etag = hashlib.sha256(data).hexdigest()
    header = {"p": path, "s": len(data), "e": etag, "c": COMMIT, "o": offset}
    header["q"] = f"{path}.{etag[:16]}.hfsync-part"
    return json.dumps(header).encode() + b"\n" + data[max(offset, 0) :]


def recv(root: Path, stdin: bytes) -> list[dict]:
    root = root / "host"  # not tmp_path itself: ssh_home puts a HOME there
    proc = subprocess.run(
        [sys.executable, str(AGENT), "recv", str(root)], input=stdin, capture_output=True
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_files_larger_and_smaller_than_the_buffer_land_byte_exact(tmp_path: Path) -> None:
    big = os.urandom(agent.RECV_BUFFER * 3 + 12345)  # crosses buffer boundaries, odd tail
    files = {
        "model.safetensors": big,
        "a/tiny.json": b"{}",
        "a/b/edge.bin": os.urandom(agent.RECV_BUFFER),
    }
    replies = recv(tmp_path, b"".join(frame(p, d) for p, d in files.items()))
    assert [r["ok"] for r in replies] == [True] * 3
    for path, data in files.items():
        assert (tmp_path / "host" / path).read_bytes() == data
    assert not list(tmp_path.rglob("*.hfsync-part"))


def test_cut_mid_frame_keeps_only_the_part_and_the_next_push_resumes(tmp_path: Path) -> None:
    data = os.urandom(agent.RECV_BUFFER * 2 + 777)
    cut = agent.RECV_BUFFER + 100  # inside the second buffer's worth
    assert recv(tmp_path, frame("w.bin", data)[: -(len(data) - cut)]) == []
    assert not (tmp_path / "host" / "w.bin").exists()  # nothing unverified at the final path
    (part,) = tmp_path.rglob("*.hfsync-part")
    assert part.read_bytes() == data[:cut]
    # The next run asks where the part stands (offset -1) and sends only the rest.
    header, _, _ = frame("w.bin", data, -1).partition(b"\n")
    replies = recv(tmp_path, header + b"\n" + data[cut:])
    assert replies[0] == {"p": "w.bin", "at": cut}
    assert replies[1]["ok"] and replies[1]["n"] == len(data) - cut
    assert (tmp_path / "host" / "w.bin").read_bytes() == data


def test_corrupt_bytes_are_refused_and_leave_no_file(tmp_path: Path) -> None:
    data = os.urandom(agent.RECV_BUFFER + 5)
    framed = bytearray(frame("x.bin", data))
    framed[-3] ^= 0xFF
    (reply,) = recv(tmp_path, bytes(framed))
    assert reply["ok"] is False and reply["kind"] == "integrity"
    assert not (tmp_path / "host" / "x.bin").exists()
    assert not list(tmp_path.rglob("*.hfsync-part"))


@pytest.fixture(autouse=True)
def _isolated_home(ssh_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HFSYNC_VIA", "push")
    return ssh_home


# The agent as the control session runs it (`serve`, no lock), its bursts allowed to wait a
# minute for more input: a wait that long shows as a timeout, not as a slow test.
PATIENT_SERVE = (
    "import importlib.util, sys; "
    "spec = importlib.util.spec_from_file_location('agent', sys.argv[1]); "
    "agent = importlib.util.module_from_spec(spec); spec.loader.exec_module(agent); "
    "agent.Replies.MAX_AGE = 60.0; "
    "sys.exit(agent.main(['serve', sys.argv[2], '-1']))"
)


def test_frames_already_read_are_placed_without_waiting_for_more_input(tmp_path: Path) -> None:
    """A stream's last frames and its end header, sent in one write, sit in the agent's read
    buffer where select cannot see them, while the sender waits for the replies: the agent
    must place them and answer at once, not wait out the burst's age for input that will
    never come (the input stays open: the control session lives on)."""
    files = {f"f{i}.txt": os.urandom(100 + i) for i in range(5)}
    proc = subprocess.Popen(
        [sys.executable, "-c", PATIENT_SERVE, str(AGENT), str(tmp_path / "host")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        stream = b"".join(frame(p, d) for p, d in files.items())
        proc.stdin.write(b'{"op": "recv"}\n' + stream + b'{"end": true}\n')
        proc.stdin.flush()  # ... and no more input
        out = b""  # read off the pipe itself: a buffered reader would hide lines from select
        while b'{"recv": "end"}' not in out:
            ready, _, _ = select.select([proc.stdout.fileno()], [], [], 20)
            assert ready, f"no answer within 20 s; got {out!r}"
            chunk = os.read(proc.stdout.fileno(), 1 << 16)
            assert chunk, f"the agent ended; got {out!r}"
            out += chunk
        replies = [json.loads(line) for line in out.splitlines()]
    finally:
        proc.kill()
        proc.wait()
    assert replies[0]["ready"] and replies[-1] == {"recv": "end"}
    assert sorted(r["p"] for r in replies[1:-1]) == sorted(files)
    assert all(r["ok"] for r in replies[1:-1])
    for path, data in files.items():
        assert (tmp_path / "host" / path).read_bytes() == data


def test_push_with_several_streams_is_byte_exact(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, tmp_path: Path
) -> None:
    files = {f"data/{i:03d}.bin": os.urandom(1000 + 997 * i) for i in range(40)}
    files["model.safetensors"] = os.urandom(2 * 1024 * 1024 + 3)
    hub.create_repo("org/many")
    hub.commit("org/many", files=files)
    files[".gitattributes"] = hub.read_file("org/many", ".gitattributes", "main")
    dest = tmp_path / "remote"
    result = hfsync(
        "to-remote", "org/many", sshd_server.command(), dest, "--streams", "3", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert user_files(dest) == files
    doc = json.loads(result.stdout)
    assert doc["bytes_pushed"] == sum(len(v) for v in files.values())


def test_streams_out_of_range_is_a_usage_error(sshd_server: SSHServer, tmp_path: Path) -> None:
    result = hfsync(
        "to-remote", "org/many", sshd_server.command(), tmp_path / "r", "--streams", "0"
    )
    assert result.returncode == 2
    assert "--streams" in result.stderr
    assert "Traceback" not in result.stderr


COUNT_REPLACES = (
    "import os, sys; calls = []; real = os.replace\n"
    "def counted(*a, **k):\n    calls.append(a[1]); return real(*a, **k)\n"
    "os.replace = counted\n"
    "sys.argv = ['agent.py', 'recv', sys.argv[1]]\n"
    "try:\n    exec(compile(open({agent!r}).read(), 'agent', 'exec'))\n"
    "finally:\n    sys.stderr.write(repr(calls))\n"
)


def recv_counting(root: Path, stdin: bytes) -> tuple[list[dict], list[str]]:
    """`recv` as above, plus the destinations of every os.replace the agent made."""
    code = COUNT_REPLACES.format(agent=str(AGENT))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(root / "host")], input=stdin, capture_output=True
    )
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    return replies, ast.literal_eval(proc.stderr.decode())


def test_new_metadata_is_created_in_place_and_old_metadata_replaced_whole(tmp_path: Path) -> None:
    """A file placed where nothing was costs one rename (its part), not two: its metadata is
    created in place. Metadata that exists is still replaced through a temp file."""
    files = {"a.txt": b"one\n", "d/b.txt": b"two\n"}
    replies, renamed = recv_counting(tmp_path, b"".join(frame(p, d) for p, d in files.items()))
    assert [r["ok"] for r in replies] == [True, True]
    host = tmp_path / "host"
    assert sorted(renamed) == sorted(str(host / p) for p in files)  # the parts only
    for path, data in files.items():
        meta = (host / ".cache/huggingface/download" / f"{path}.metadata").read_text()
        assert meta.splitlines()[:2] == [COMMIT, hashlib.sha256(data).hexdigest()]
    new = b"changed\n"
    replies, renamed = recv_counting(tmp_path, frame("a.txt", new))
    meta_path = host / ".cache/huggingface/download/a.txt.metadata"
    assert renamed == [str(host / "a.txt"), str(meta_path)]
    assert meta_path.read_text().splitlines()[1] == hashlib.sha256(new).hexdigest()
    assert not list(meta_path.parent.glob("*.tmp"))
