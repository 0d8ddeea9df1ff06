"""`hfsync to-remote REPO 'SSH COMMAND' REMOTE_DIR` end to end: the real CLI in a subprocess,
the Hub emulator, and a real OpenSSH sshd on 127.0.0.1 (tests/sshd.py). The "remote" folder
is a local temp dir reached only through sshd, so its bytes can be compared directly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import downloads, hfsync, tree, user_files
from tests.sshd import SSHServer
from tests.tcpproxy import TCPProxy

pytest_plugins = ["tests.sshd"]  # fixtures: sshd_server, ssh_home, second_login_user

REPO = "org/model"


@pytest.fixture(autouse=True)
def _isolated_home(ssh_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HFSYNC_VIA", "push")  # these are the push path's tests (default: auto)
    return ssh_home


def model_files() -> dict[str, bytes]:
    return {
        "config.json": b'{"model_type": "demo", "hidden_size": 64}\n',
        "tokenizer.json": b'{"vocab": {"a": 1}}\n' * 40,
        "model.safetensors": os.urandom(3 * 1024 * 1024 + 17),  # LFS (over 1 MiB)
        "onnx/model.onnx": os.urandom(40_000),
        "deep/er/notes.txt": b"nested\n",
    }


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    files = model_files()
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def push(server: SSHServer, dest: Path | str, *args: object, command: str | None = None):  # noqa: ANN201
    return hfsync("to-remote", REPO, command or server.command(), dest, *args)


def via_proxy(server: SSHServer, proxy: TCPProxy, tmp_path: Path) -> str:
    """The ssh line through `proxy`, with the host key known under the proxy's port."""
    known = tmp_path / f"known_hosts_{proxy.port}"
    known.write_text(server.known_hosts_entry(port=proxy.port))
    return server.command(port=proxy.port, known_hosts=known)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every file under root, state included (the lock file, which
    names its holder, excepted): "rewrote nothing"."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "hfsync.lock":
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_ino, st.st_mtime_ns)
    return out


def test_first_push_is_byte_exact_and_current_for_huggingface_hub(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, tmp_path: Path
) -> None:
    dest = tmp_path / "remote" / "llama"
    result = push(sshd_server, dest, "--json")
    assert result.returncode == 0, result.stderr
    assert user_files(dest) == repo
    doc = json.loads(result.stdout)
    assert doc["counts"]["new"] == len(repo)
    assert doc["bytes_pushed"] == sum(len(v) for v in repo.values())
    assert all(f["ok"] and f["bytes_pushed"] == f["size"] for f in doc["files"])
    # No part file or temp name is left; metadata exists for every file.
    names = set(tree(dest))
    assert not [n for n in names if n.endswith((".hfsync-part", ".tmp"))]
    for path in repo:
        meta = (dest / ".cache/huggingface/download" / (path + ".metadata")).read_text()
        assert meta.splitlines()[0] == doc["commit"]

    # huggingface_hub sees the remote folder as current: it downloads nothing.
    from huggingface_hub import snapshot_download

    hub.clear_log()
    snapshot_download(REPO, local_dir=dest)
    assert downloads(hub) == []
    assert user_files(dest) == repo


def test_second_push_moves_nothing_and_rewrites_nothing(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    assert push(sshd_server, dest).returncode == 0
    before = snapshot(dest)
    hub.clear_log()
    with TCPProxy(sshd_server.host, sshd_server.port) as proxy:
        again = push(sshd_server, dest, "--json", command=via_proxy(sshd_server, proxy, tmp_path))
        up = proxy.bytes_up
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["counts"]["unchanged"] == len(repo) and doc["bytes_pushed"] == 0
    assert snapshot(dest) == before
    assert downloads(hub) == []
    assert up < 64 * 1024  # the agent, the listing and the SSH handshake: no file bytes


def test_a_changed_file_moves_alone(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    assert push(sshd_server, dest).returncode == 0
    changed = os.urandom(2 * 1024 * 1024)
    hub.commit(REPO, files={"model.safetensors": changed})
    hub.clear_log()
    result = push(sshd_server, dest, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    moved = {f["path"]: f["bytes_pushed"] for f in doc["files"] if f.get("bytes_pushed")}
    assert moved == {"model.safetensors": len(changed)}
    assert downloads(hub) == ["model.safetensors"]
    assert (dest / "model.safetensors").read_bytes() == changed
    assert user_files(dest) == {**repo, "model.safetensors": changed}


def test_dry_run_touches_nothing_remote(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    result = push(sshd_server, dest, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert not dest.exists()
    assert "new" in result.stdout and "model.safetensors" in result.stdout
    assert f"dry run: {len(repo)} files: {len(repo)} new" in result.stdout
    assert downloads(hub) == []

    assert push(sshd_server, dest).returncode == 0
    (dest / "config.json").write_bytes(b"{}")
    before = snapshot(dest)
    result = push(sshd_server, dest, "--dry-run", "--delete")
    assert result.returncode == 0, result.stderr
    assert "update" in result.stdout
    assert snapshot(dest) == before


def test_delete_include_and_checksum(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    result = push(sshd_server, dest, "--include", "*.json")
    assert result.returncode == 0, result.stderr
    assert set(user_files(dest)) == {"config.json", "tokenizer.json"}
    (dest / "stray.txt").write_text("not in the repo")
    refused = push(sshd_server, dest, "--delete", "--max-delete", "0")
    assert refused.returncode == 1 and "--max-delete" in refused.stderr
    assert (dest / "stray.txt").exists()
    assert push(sshd_server, dest, "--delete").returncode == 0
    assert not (dest / "stray.txt").exists()
    assert user_files(dest) == repo

    # Same size, different bytes, metadata untouched and mtime not newer: only --checksum sees it.
    target = dest / "onnx/model.onnx"
    st = target.stat()
    target.write_bytes(os.urandom(st.st_size))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert push(sshd_server, dest).returncode == 0
    assert (dest / "onnx/model.onnx").read_bytes() != repo["onnx/model.onnx"]
    result = push(sshd_server, dest, "--checksum", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [f["path"] for f in doc["files"] if f["action"] == "update"] == ["onnx/model.onnx"]
    assert user_files(dest) == repo


def test_files_copied_without_metadata_are_hashed_not_pushed(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    for path, data in repo.items():  # `scp -r` of the model: right bytes, no metadata
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        (dest / path).write_bytes(data)
    result = push(sshd_server, dest, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["bytes_pushed"] == 0 and doc["counts"]["unchanged"] == len(repo)
    assert (dest / ".cache/huggingface/download/model.safetensors.metadata").exists()


def test_remote_dir_relative_to_the_remote_home(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, second_login_user
) -> None:
    command = sshd_server.command(user=second_login_user.name)
    for where, folder in (("models/a", "models/a"), ("~/models/b", "models/b")):
        result = push(sshd_server, where, command=command)
        assert result.returncode == 0, result.stderr
        assert user_files(second_login_user.home / folder) == repo


def test_bad_input_is_one_line(hub: HubEmulator, repo: dict, sshd_server: SSHServer) -> None:
    bad = hfsync("to-remote", REPO, "ssh -W x:1 root@h", "/tmp/x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    bad = hfsync("to-remote", REPO, sshd_server.command(), "/tmp/x", "--via", "rsync")
    assert bad.returncode == 2 and "rsync" in bad.stderr
    refused = hfsync("to-remote", REPO, sshd_server.command(port=1), "/tmp/x")
    assert refused.returncode == 7 and "refused" in refused.stderr
    assert refused.stderr.count("\n") == 1
