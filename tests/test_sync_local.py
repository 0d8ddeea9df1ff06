"""`hfsync sync REPO DEST` into a local folder, end to end through the CLI and the emulator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import downloads, hfsync, tree, user_files

REPO = "org/model"


def model_files() -> dict[str, bytes]:
    """Nested folders, LFS files (by size and by pattern) and small git files."""
    big = os.urandom(3 * 1024 * 1024 + 17)  # over the fixture's 1 MiB LFS threshold
    return {
        "config.json": b'{"model_type": "demo", "hidden_size": 64}\n',
        "tokenizer.json": b'{"vocab": {"a": 1, "b": 2}}\n' * 50,
        "README.md": b"# demo\n",
        "model.safetensors": big,
        "onnx/model.onnx": os.urandom(40_000),  # LFS by pattern although small
        "deep/er/notes.txt": b"nested\n",
    }


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    files = model_files()
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def test_fresh_sync_then_nothing_to_do(hub: HubEmulator, repo: dict, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    first = hfsync("sync", REPO, dest)
    assert first.returncode == 0, first.stderr
    assert user_files(dest) == repo
    assert f"{len(repo)} files: {len(repo)} new, 0 updated, 0 unchanged" in first.stdout

    hub.clear_log()
    second = hfsync("sync", REPO, dest)
    assert second.returncode == 0, second.stderr
    assert downloads(hub) == []
    assert not [r for r in hub.log if "/resolve" in r.path or r.server == "cdn"]
    # One API call: the commit is resolved, its listing comes from trees/<commit>.json.
    assert [r.path for r in hub.log] == [f"/api/models/{REPO}/revision/main"]
    assert f"{len(repo)} files: 0 new, 0 updated, {len(repo)} unchanged" in second.stdout


def test_new_commit_fetches_only_changes_and_deletes_only_when_asked(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    assert hfsync("sync", REPO, dest).returncode == 0
    changed = os.urandom(3 * 1024 * 1024)
    hub.commit(
        REPO,
        files={"model.safetensors": changed, "added/extra.txt": b"new file\n"},
        delete=["README.md"],
    )
    hub.clear_log()
    result = hfsync("sync", REPO, dest)
    assert result.returncode == 0, result.stderr
    assert downloads(hub) == ["added/extra.txt", "model.safetensors"]
    assert (dest / "model.safetensors").read_bytes() == changed
    assert (dest / "README.md").exists(), "deleted upstream, kept without --delete"

    hub.clear_log()
    result = hfsync("sync", REPO, dest, "--delete")
    assert result.returncode == 0, result.stderr
    assert downloads(hub) == []
    assert not (dest / "README.md").exists()
    assert not (dest / ".cache/huggingface/download/README.md.metadata").exists()
    assert "1 deleted" in result.stdout


def test_checksum_catches_same_size_corruption(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    assert hfsync("sync", REPO, dest).returncode == 0
    target = dest / "model.safetensors"
    stat = target.stat()
    data = bytearray(target.read_bytes())
    data[1000] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # hide it from the mtime check

    hub.clear_log()
    assert hfsync("sync", REPO, dest).returncode == 0
    assert downloads(hub) == [], "metadata is trusted without --checksum"

    result = hfsync("sync", REPO, dest, "--checksum")
    assert result.returncode == 0, result.stderr
    assert downloads(hub) == ["model.safetensors"]
    assert target.read_bytes() == repo["model.safetensors"]


def test_edited_file_is_noticed_without_checksum(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    assert hfsync("sync", REPO, dest).returncode == 0
    config = dest / "config.json"
    config.write_bytes(b"x" * len(repo["config.json"]))
    os.utime(config, (config.stat().st_atime, config.stat().st_mtime + 5))
    hub.clear_log()
    assert hfsync("sync", REPO, dest).returncode == 0
    assert downloads(hub) == ["config.json"]
    assert config.read_bytes() == repo["config.json"]


def test_dry_run_lists_exactly_what_the_run_does_and_touches_nothing(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    assert hfsync("sync", REPO, dest).returncode == 0
    hub.commit(
        REPO, files={"config.json": b'{"v": 2}\n', "new.bin": b"\0" * 10}, delete=["README.md"]
    )
    (dest / "local-only.txt").write_text("mine")
    before = {p: (d, (dest / p).stat().st_mtime_ns) for p, d in tree(dest).items()}

    hub.clear_log()
    dry = hfsync("sync", REPO, dest, "--dry-run", "--delete", "--json")
    assert dry.returncode == 0, dry.stderr
    assert downloads(hub) == []
    after = {p: (d, (dest / p).stat().st_mtime_ns) for p, d in tree(dest).items()}
    assert after == before, "a dry run changes nothing, not even metadata"
    planned = {f["path"]: f["action"] for f in json.loads(dry.stdout)["files"]}
    assert planned["config.json"] == "update"
    assert planned["new.bin"] == "new"
    assert planned["README.md"] == "delete"
    assert planned["local-only.txt"] == "delete"
    assert planned["model.safetensors"] == "unchanged"

    human = hfsync("sync", REPO, dest, "--dry-run", "--delete")
    assert "update" in human.stdout and "config.json" in human.stdout
    assert "would download" in human.stdout

    real = hfsync("sync", REPO, dest, "--delete", "--json")
    assert real.returncode == 0, real.stderr
    doc = json.loads(real.stdout)
    assert {f["path"]: f["action"] for f in doc["files"]} == planned
    assert sorted(downloads(hub)) == ["config.json", "new.bin"]
    assert doc["bytes_transferred"] == doc["bytes_planned"] == len(b'{"v": 2}\n') + 10
    assert sorted(doc["deleted"]) == ["README.md", "local-only.txt"]


def test_folder_made_by_huggingface_hub_is_current(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    from huggingface_hub import snapshot_download

    dest = tmp_path / "by-hf"
    snapshot_download(REPO, local_dir=dest, endpoint=hub.endpoint)
    hub.clear_log()
    result = hfsync("sync", REPO, dest)
    assert result.returncode == 0, result.stderr
    assert downloads(hub) == []
    assert f"0 new, 0 updated, {len(repo)} unchanged" in result.stdout


def test_folder_made_by_hfsync_is_current_for_huggingface_hub(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    from huggingface_hub import snapshot_download

    dest = tmp_path / "by-hfsync"
    assert hfsync("sync", REPO, dest).returncode == 0
    hub.clear_log()
    snapshot_download(REPO, local_dir=dest, endpoint=hub.endpoint)
    assert downloads(hub) == []
    assert user_files(dest) == repo


def test_include_and_exclude_select_files(hub: HubEmulator, repo: dict, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    result = hfsync(
        "sync", REPO, dest, "--include", "*.json", "--include", "onnx/", "--exclude", "tok*"
    )
    assert result.returncode == 0, result.stderr
    assert sorted(user_files(dest)) == ["config.json", "onnx/model.onnx"]


def test_listing_over_many_pages_is_complete(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    hub.page_size = 3
    files = {f"shard/{i:03d}.txt": f"file {i}\n".encode() for i in range(11)}
    hub.create_repo("org/paged", repo_type="dataset")
    hub.commit("org/paged", files=files, repo_type="dataset")
    dest = tmp_path / "dest"
    result = hfsync("sync", "org/paged", dest, "--repo-type", "dataset")
    assert result.returncode == 0, result.stderr
    pages = [r for r in hub.log if "/tree/" in r.path]
    assert len(pages) >= 4, "11 files + .gitattributes at 3 per page"
    assert {k: v for k, v in user_files(dest).items() if k.startswith("shard/")} == files


def test_hostile_listing_is_refused_and_nothing_written(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    for hostile in ("../evil.txt", "/etc/passwd-hfsync", "a\\b.txt"):
        hub.faults.hostile_paths = [hostile]
        outer = tmp_path / f"outer-{abs(hash(hostile))}"
        dest = outer / "dest"
        result = hfsync("sync", REPO, dest)
        assert result.returncode == 5, result.stderr
        assert "unsafe path" in result.stderr
        assert not (outer / "evil.txt").exists()
        assert user_files(dest) == {} if dest.exists() else True
    assert not Path("/etc/passwd-hfsync").exists()


def test_symlinked_folder_cannot_carry_writes_outside(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "deep").symlink_to(outside)
    result = hfsync("sync", REPO, dest)
    assert result.returncode == 5, result.stderr
    assert "symlink" in result.stderr
    assert list(outside.iterdir()) == []


def test_second_sync_on_the_same_target_is_refused(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    from hfsync.targets.base import lock_file

    dest = tmp_path / "dest"
    with lock_file(dest / ".cache/huggingface/hfsync.lock", str(dest)):
        result = hfsync("sync", REPO, dest)
    assert result.returncode == 8
    assert f"pid {os.getpid()}" in result.stderr


def test_info_shows_commit_files_and_total(hub: HubEmulator, repo: dict) -> None:
    result = hfsync("info", REPO)
    assert result.returncode == 0, result.stderr
    assert "model.safetensors" in result.stdout and "LFS" in result.stdout
    assert f"{len(repo)} files" in result.stdout
    doc = json.loads(hfsync("info", REPO, "--json").stdout)
    assert doc["total_size"] == sum(len(v) for v in repo.values())
    assert {f["path"] for f in doc["files"]} == set(repo)


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = hfsync("sync", "x/y", tmp_path, "--chunk-size", "lots")
    assert result.returncode == 2
    assert "--chunk-size" in result.stderr
    assert hfsync("sync", "x/y", tmp_path, "--repo-type", "bucket").returncode == 2


def test_library_api_without_the_cli(hub: HubEmulator, repo: dict, tmp_path: Path) -> None:
    import hfsync

    result = hfsync.sync(REPO, tmp_path / "lib", endpoint=hub.endpoint)
    assert isinstance(result, hfsync.SyncResult)
    assert result.plan.counts()["new"] == len(repo)
    assert result.bytes_transferred == sum(len(v) for v in repo.values())
    assert user_files(tmp_path / "lib") == repo
