"""`hfsync to-remote` when things go wrong: host keys, a held lock, a push killed midway, a cut
connection, a private repo's token. Real CLI, Hub emulator, real sshd, and a byte-counting
TCP proxy in front of sshd to prove what crossed the SSH connection."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files
from tests.sshd import SSHServer
from tests.tcpproxy import TCPProxy

pytest_plugins = ["tests.sshd"]

REPO = "org/model"
BIG = 24 * 1024 * 1024
DEADLINE = 60.0


@pytest.fixture(autouse=True)
def _isolated_home(ssh_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HFSYNC_VIA", "push")  # these are the push path's tests (default: auto)
    return ssh_home


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    files = {"config.json": b'{"a": 1}\n', "model.safetensors": os.urandom(BIG)}
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def via_proxy(server: SSHServer, proxy: TCPProxy, tmp_path: Path) -> str:
    known = tmp_path / f"known_hosts_{proxy.port}"
    known.write_text(server.known_hosts_entry(port=proxy.port))
    return server.command(port=proxy.port, known_hosts=known)


def wait_for(predicate, what: str, timeout: float = DEADLINE) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def lock_is_free(dest: Path) -> bool:
    path = dest / ".cache/huggingface/hfsync.lock"
    if not path.exists():
        return True
    with open(path, "rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def part_files(dest: Path) -> list[Path]:
    return sorted((dest / ".cache/huggingface/download").rglob("*.hfsync-part"))


def start(*args: object) -> subprocess.Popen[str]:
    env = dict(os.environ, HFSYNC_BACKOFF_BASE="0.01")
    return subprocess.Popen(
        [sys.executable, "-m", "hfsync", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


# -- host keys ---------------------------------------------------------------------------


def test_unknown_host_key_is_refused_with_fingerprint(
    repo: dict, sshd_server: SSHServer, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    result = hfsync("to-remote", REPO, sshd_server.command(known_hosts=known), tmp_path / "dest")
    assert result.returncode == 7
    assert result.stderr.count("\n") == 1
    assert sshd_server.host_key_fingerprint in result.stderr
    assert "StrictHostKeyChecking=accept-new" in result.stderr and "ssh-keyscan" in result.stderr
    assert not known.exists() and not (tmp_path / "dest").exists()


def test_accept_new_records_the_key_and_a_changed_key_is_always_refused(
    repo: dict, sshd_server: SSHServer, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    cmd = sshd_server.command("-o", "StrictHostKeyChecking=accept-new", known_hosts=known)
    first = hfsync("to-remote", REPO, cmd, tmp_path / "dest")
    assert first.returncode == 0, first.stderr
    assert "permanently added" in first.stderr
    assert known.read_text() == sshd_server.known_hosts_entry()
    assert user_files(tmp_path / "dest") == repo

    other = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")],
        check=True,
        capture_output=True,
    )
    assert other.returncode == 0
    kind, b64 = (tmp_path / "other.pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{sshd_server.port} {kind} {b64}\n")
    for mode in ("accept-new", "no"):
        cmd = sshd_server.command("-o", f"StrictHostKeyChecking={mode}", known_hosts=known)
        changed = hfsync("to-remote", REPO, cmd, tmp_path / "dest2")
        assert changed.returncode == 7
        assert "HOST KEY CHANGED" in changed.stderr and changed.stderr.count("\n") == 1
        assert not (tmp_path / "dest2").exists()


# -- the lock ----------------------------------------------------------------------------


def test_a_second_run_on_the_same_remote_folder_exits_8_naming_the_holder(
    repo: dict, sshd_server: SSHServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    with TCPProxy(sshd_server.host, sshd_server.port, rate=4e6) as proxy:
        first = start("to-remote", REPO, via_proxy(sshd_server, proxy, tmp_path), dest)
        try:
            wait_for(lambda: not lock_is_free(dest), "the first run to take the lock")
            proxy.pause()  # the first run stays mid-push, holding the lock, until released
            second = hfsync("to-remote", REPO, sshd_server.command(), dest)
            assert second.returncode == 8, second.stderr
            assert f"local {os.uname().nodename} pid {first.pid}" in second.stderr
            assert "remote pid" in second.stderr
        finally:
            proxy.resume()
            first.kill()
            first.communicate()
    wait_for(lambda: lock_is_free(dest), "the killed run's lock to be released")


# -- interruptions -----------------------------------------------------------------------


def test_a_push_killed_midway_resumes_without_resending_what_arrived(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    assert hfsync("sync", REPO).returncode == 0  # a warm local cache: only the push is measured
    with TCPProxy(sshd_server.host, sshd_server.port, rate=6e6) as proxy:
        run = start("to-remote", REPO, via_proxy(sshd_server, proxy, tmp_path), dest)
        try:
            wait_for(
                lambda: any(p.stat().st_size >= 6 << 20 for p in part_files(dest)),
                "6 MiB of the big file to arrive",
            )
        finally:
            run.send_signal(signal.SIGKILL)
            run.communicate()
    wait_for(lambda: lock_is_free(dest), "the remote helper to notice the dead client")
    (part,) = part_files(dest)
    kept = part.stat().st_size
    assert 6 << 20 <= kept < BIG
    assert not (dest / "model.safetensors").exists(), "nothing unverified at a final path"

    with TCPProxy(sshd_server.host, sshd_server.port) as proxy:
        again = hfsync("to-remote", REPO, via_proxy(sshd_server, proxy, tmp_path), dest, "--json")
        up = proxy.bytes_up
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    big = next(f for f in doc["files"] if f["path"] == "model.safetensors")
    assert big["resumed_from"] == kept and big["bytes_pushed"] == BIG - kept
    assert up < BIG - kept + 512 * 1024  # the rest of the file plus protocol, nothing more
    assert user_files(dest) == repo
    assert part_files(dest) == []


def test_a_connection_cut_midway_reconnects_and_finishes_in_the_same_run(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    assert hfsync("sync", REPO).returncode == 0
    with TCPProxy(sshd_server.host, sshd_server.port) as proxy:
        proxy.cut_after(10 << 20)
        result = hfsync("to-remote", REPO, via_proxy(sshd_server, proxy, tmp_path), dest, "--json")
        up, cuts, connections = proxy.bytes_up, proxy.cuts, proxy.connections
    assert result.returncode == 0, result.stderr
    assert cuts == 1 and connections == 2
    doc = json.loads(result.stdout)
    assert doc["reconnects"] == 1
    assert user_files(dest) == repo
    # Resumed where the remote part stood: at most what was in flight is sent twice.
    assert up < BIG + (4 << 20), up


def test_sigterm_exits_130_and_keeps_the_part(
    repo: dict, sshd_server: SSHServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    assert hfsync("sync", REPO).returncode == 0
    with TCPProxy(sshd_server.host, sshd_server.port, rate=6e6) as proxy:
        run = start("to-remote", REPO, via_proxy(sshd_server, proxy, tmp_path), dest)
        wait_for(
            lambda: any(p.stat().st_size >= 1 << 20 for p in part_files(dest)), "bytes to arrive"
        )
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=DEADLINE)
    assert run.returncode == 130, err
    assert "Traceback" not in err and err.count("\n") == 1
    wait_for(lambda: lock_is_free(dest), "the lock to be released")
    assert part_files(dest) and not (dest / "model.safetensors").exists()


# -- the token ---------------------------------------------------------------------------


def test_the_token_is_in_no_argv_and_no_remote_file(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, tmp_path: Path
) -> None:
    token = "hf_" + "s3cr3t" * 6
    hub.create_repo("org/private", private=True)
    hub.commit("org/private", files={"w.bin": os.urandom(2 << 20), "c.json": b"{}"})
    hub.add_token(token, grants=["org/private"])
    dest = tmp_path / "dest"
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        seen.append(
                            Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                        )
                    except OSError:
                        pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = hfsync(
            "to-remote", "org/private", sshd_server.command(), dest, env={"HF_TOKEN": token}
        )
    finally:
        stop.set()
        watcher.join()
    assert result.returncode == 0, result.stderr
    assert (dest / "w.bin").exists()
    assert any("hfsync-agent" in cmd for cmd in seen), "the watcher saw the remote helper run"
    assert not [cmd for cmd in seen if token in cmd]
    for path in dest.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    assert token not in result.stdout + result.stderr


def test_remote_disk_full_is_exit_6_with_the_part_kept(
    repo: dict, sshd_server: SSHServer, tmpfs: Path
) -> None:
    dest = tmpfs / "dest"  # a real 4 MiB filesystem: the 24 MiB file cannot fit
    result = hfsync("to-remote", REPO, sshd_server.command(), dest)
    assert result.returncode == 6, result.stderr
    assert "No space left on device" in result.stderr and result.stderr.count("\n") == 1
    assert not (dest / "model.safetensors").exists()
    assert part_files(dest), "the partial file is kept for the next run"
