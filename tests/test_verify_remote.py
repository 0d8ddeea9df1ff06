"""`hfsync verify --remote 'SSH' REMOTE_DIR` (issue 11): a copy on an SSH host is hashed on the
host against the Hub's ids; `--fix` pushes exactly the broken files. Real CLI, Hub emulator and
a real OpenSSH sshd (tests/sshd.py); the "remote" folder is a local temp dir reached via sshd."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import downloads, hfsync, user_files
from tests.sshd import SSHServer
from tests.tcpproxy import TCPProxy

pytest_plugins = ["tests.sshd"]  # fixtures: sshd_server, ssh_home, second_login_user

REPO = "org/model"
BIG = os.urandom(3 * 1024 * 1024 + 17)  # LFS (over the 1 MiB test threshold)


@pytest.fixture(autouse=True)
def _isolated_home(ssh_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HFSYNC_VIA", "push")
    return ssh_home


@pytest.fixture
def pushed(hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, tmp_path: Path) -> Path:
    """REPO pushed to a folder on the host; returns that folder."""
    hub.create_repo(REPO)
    hub.commit(REPO, files={
        "config.json": b'{"model_type": "demo"}\n',
        "model.safetensors": BIG,
        "onnx/model.onnx": os.urandom(40_000),
        "notes.txt": b"nested\n" * 30,
    })  # fmt: skip
    dest = tmp_path / "remote" / "model"
    run = hfsync("to-remote", REPO, sshd_server.command(), dest)
    assert run.returncode == 0, run.stderr
    return dest


def flip_a_byte_keeping_size_and_mtime(path: Path, offset: int) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def verify(server: SSHServer, dest: Path, *args: object, command: str | None = None):  # noqa: ANN201
    return hfsync("verify", "--remote", command or server.command(), dest, "--repo", REPO, *args)


def test_a_clean_copy_verifies_hashing_on_the_host(
    pushed: Path, sshd_server: SSHServer, tmp_path: Path, hub: HubEmulator
) -> None:
    known = tmp_path / "known_proxy"
    with TCPProxy(sshd_server.host, sshd_server.port) as proxy:
        known.write_text(sshd_server.known_hosts_entry(port=proxy.port))
        run = verify(sshd_server, pushed, "--json",
                     command=sshd_server.command(port=proxy.port, known_hosts=known))  # fmt: skip
        crossed = proxy.bytes_up + proxy.bytes_down
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["ok"] and doc["checked"] == 5 and doc["mismatched"] == doc["missing"] == []
    assert doc["bytes_hashed"] >= len(BIG), "the host reports what it hashed"
    assert doc["commit"] == hub.resolve_revision(REPO)
    assert crossed < len(BIG) // 4, f"{crossed} bytes over SSH: file bytes must stay on the host"


def test_a_flipped_byte_and_a_deleted_file_exit_5_and_fix_pushes_exactly_them(
    pushed: Path, sshd_server: SSHServer, hub: HubEmulator
) -> None:
    before = user_files(pushed)
    flip_a_byte_keeping_size_and_mtime(pushed / "model.safetensors", len(BIG) // 2)
    (pushed / "onnx" / "model.onnx").unlink()

    run = verify(sshd_server, pushed)
    assert run.returncode == 5, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert any(line.startswith("MISMATCH") and "model.safetensors" in line for line in lines)
    assert any(line.startswith("MISSING") and "onnx/model.onnx" in line for line in lines)
    assert "1 mismatched, 1 missing" in run.stderr and run.stderr.count("\n") == 1

    hub.clear_log()
    fixed = verify(sshd_server, pushed, "--fix", "--json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    doc = json.loads(fixed.stdout)
    assert sorted(doc["fixed"]) == ["model.safetensors", "onnx/model.onnx"]
    assert doc["fix"]["pushed"] == ["model.safetensors", "onnx/model.onnx"]
    want = len(BIG) + len(before["onnx/model.onnx"])
    assert doc["fix"]["bytes_pushed"] == want, "exactly the broken files' bytes, nothing else"
    # the local cache held both already (the first push staged them): nothing downloaded
    assert doc["fix"]["bytes_downloaded"] == 0 and downloads(hub) == []
    assert user_files(pushed) == before

    again = verify(sshd_server, pushed)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 mismatched, 0 missing" in again.stdout


def test_extra_files_are_reported_only_with_extra(pushed: Path, sshd_server: SSHServer) -> None:
    (pushed / "stray.bin").write_bytes(b"not from the hub")
    assert verify(sshd_server, pushed).returncode == 0
    run = verify(sshd_server, pushed, "--extra", "--json")
    assert run.returncode == 5
    assert json.loads(run.stdout)["extra"] == ["stray.bin"]
    (pushed / "evil\x1b[2J\nname").write_bytes(b"a name made to mess up a terminal")
    text = verify(sshd_server, pushed, "--extra")
    assert text.returncode == 5 and "\x1b" not in text.stdout
    assert len([line for line in text.stdout.splitlines() if line.startswith("EXTRA")]) == 2


def test_an_older_revision_is_what_the_folder_records_unless_revision_is_given(
    pushed: Path, sshd_server: SSHServer, hub: HubEmulator
) -> None:
    hub.commit(REPO, files={"config.json": b'{"model_type": "v2"}\n'})
    run = verify(sshd_server, pushed, "--json")
    assert run.returncode == 0, run.stderr  # the folder holds the first commit, intact
    newer = verify(sshd_server, pushed, "--revision", "main", "--json")
    assert newer.returncode == 5
    assert json.loads(newer.stdout)["mismatched"] == ["config.json"]


def test_an_unknown_host_key_is_exit_7_and_bad_usage_is_exit_2(
    pushed: Path, sshd_server: SSHServer, tmp_path: Path
) -> None:
    known = tmp_path / "empty_known_hosts"
    run = verify(sshd_server, pushed, command=sshd_server.command(known_hosts=known))
    assert run.returncode == 7, run.stderr
    assert run.stderr.count("\n") == 1 and sshd_server.host_key_fingerprint in run.stderr
    no_repo = hfsync("verify", "--remote", sshd_server.command(), pushed)
    assert no_repo.returncode == 2 and "--repo" in no_repo.stderr
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    unrecorded = verify(sshd_server, empty)
    assert unrecorded.returncode == 2 and "--revision" in unrecorded.stderr, unrecorded.stderr
