"""`hfsync sync REPO` into the HF cache, judged by the official `huggingface_hub` client.

Each test syncs from the emulator and then asks `huggingface_hub` (offline) whether it sees a
complete, correct snapshot — or, the other way round, lets the official client fill the cache
and checks that hfsync downloads nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hfsync.cli import main
from hfsync.targets import cache as cache_module
from hfsync.testing.hub import HubEmulator
from tests.clirun import downloads, hfsync

REPO = "org/model"
STORAGE = "models--org--model"

# Runs in a fresh interpreter because huggingface_hub reads HF_HUB_OFFLINE at import time.
OFFLINE_CHECK = r"""
import hashlib, json, os, sys
from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download
cache, repo, repo_type = sys.argv[1:4]
snap = snapshot_download(repo, repo_type=repo_type, cache_dir=cache, local_files_only=True)
# What `from_pretrained` does offline: no local_files_only, HF_HUB_OFFLINE=1 makes it fall back.
assert snapshot_download(repo, repo_type=repo_type, cache_dir=cache) == snap
files = {}
for dirpath, _, names in os.walk(snap):
    for name in names:
        full = os.path.join(dirpath, name)
        rel = os.path.relpath(full, snap).replace(os.sep, "/")
        via_file = hf_hub_download(repo, rel, repo_type=repo_type, cache_dir=cache,
                                   local_files_only=True)
        assert os.path.samefile(via_file, full), (via_file, full)
        files[rel] = hashlib.sha256(open(via_file, "rb").read()).hexdigest()
info = scan_cache_dir(cache)
repos = [
    {"repo_id": r.repo_id, "repo_type": r.repo_type, "nb_files": r.nb_files,
     "revisions": sorted([[sorted(v.refs), v.commit_hash, v.nb_files] for v in r.revisions])}
    for r in info.repos
]
print(json.dumps({"snapshot": snap, "files": files, "repos": repos,
                  "warnings": [str(w) for w in info.warnings]}))
"""


def official_offline_view(cache: Path, repo: str = REPO, repo_type: str = "model") -> dict:
    """What `huggingface_hub` sees with HF_HUB_OFFLINE=1 (the `transformers` offline path)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_CHECK, str(cache), repo, repo_type],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def sha256s(files: dict[str, bytes]) -> dict[str, str]:
    return {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}


def run_cli(*args: object) -> object:
    """hfsync in-process (fast, and lets a test monkeypatch os.symlink)."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(autouse=True)
def isolated(hf_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_DISABLE_SHARED_BLOBS", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_SHARED_BLOBS", True, raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_SYMLINKS", raising=False)
    monkeypatch.setattr(cache_module, "_symlink_support", {})
    return hf_env


@pytest.fixture
def repo(hub: HubEmulator) -> dict[str, bytes]:
    files = {
        "config.json": b'{"model_type": "demo"}\n',
        "tokenizer/vocab.txt": b"a\nb\nc\n",
        "model.safetensors": os.urandom(2 * 1024 * 1024 + 5),  # LFS: over the 1 MiB threshold
        "extra/weights.bin": os.urandom(70_000),  # LFS by pattern
        "empty_a.py": b"",
        "empty_b.py": b"",  # same content as empty_a.py: one blob, two links
    }
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes")}


def test_sync_fills_the_cache_the_official_client_reads(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    result = hfsync("sync", REPO, "--cache-dir", cache)
    assert result.returncode == 0, result.stderr
    commit = hub.resolve_revision(REPO)
    storage = cache / STORAGE
    assert (storage / "refs" / "main").read_text() == commit
    link = storage / "snapshots" / commit / "tokenizer" / "vocab.txt"
    assert os.readlink(link).startswith("../../../blobs/")

    view = official_offline_view(cache)
    assert view["snapshot"] == str(storage / "snapshots" / commit)
    assert view["files"] == sha256s(repo)
    assert view["warnings"] == []
    assert view["repos"] == [
        {
            "repo_id": REPO,
            "repo_type": "model",
            "nb_files": len(repo) - 1,  # the two empty files share one blob
            "revisions": [[["main"], commit, len(repo)]],
        }
    ]

    hub.clear_log()
    again = hfsync("sync", REPO, "--cache-dir", cache)
    assert again.returncode == 0, again.stderr
    assert downloads(hub) == []
    assert [r.path for r in hub.log] == [f"/api/models/{REPO}/revision/main"]


def test_default_cache_is_hf_home_hub_and_datasets_get_their_prefix(
    hub: HubEmulator, isolated: Path
) -> None:
    files = {"data/train.csv": b"a,b\n1,2\n", "README.md": b"# data\n"}
    hub.create_repo("org/data", repo_type="dataset")
    hub.commit("org/data", files=files, repo_type="dataset")
    result = run_cli("sync", "org/data", "--repo-type", "dataset")
    assert result.exit_code == 0, result.output
    cache = isolated / "hub"
    assert (cache / "datasets--org--data" / "refs" / "main").is_file()
    view = official_offline_view(cache, "org/data", "dataset")
    expected = {
        **files,
        ".gitattributes": hub.read_file("org/data", ".gitattributes", "main", "dataset"),
    }
    assert view["files"] == sha256s(expected)

    shown = run_cli("info", "org/data", "--repo-type", "dataset", "--cache")
    assert shown.exit_code == 0 and "org/data" in shown.output and "main" in shown.output


def test_cache_filled_by_huggingface_hub_needs_no_download(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    from huggingface_hub import snapshot_download

    cache = tmp_path / "cache"
    snapshot_download(REPO, cache_dir=cache, endpoint=hub.endpoint)
    hub.clear_log()
    result = run_cli("sync", REPO, "--cache-dir", cache, "--json")
    assert result.exit_code == 0, result.output
    assert downloads(hub) == []
    assert not [r for r in hub.log if "/resolve" in r.path or r.server == "cdn"]
    doc = json.loads(result.output)
    assert doc["bytes_transferred"] == 0
    assert {f["action"] for f in doc["files"]} == {"unchanged"}


def test_second_revision_downloads_only_changed_blobs_and_prune_reclaims(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    storage = cache / STORAGE
    assert run_cli("sync", REPO, "--cache-dir", cache).exit_code == 0
    first = hub.resolve_revision(REPO)
    new_weights = os.urandom(2 * 1024 * 1024)
    second = hub.commit(
        REPO, files={"model.safetensors": new_weights, "added.txt": b"+\n"}, delete=["config.json"]
    )
    hub.clear_log()
    result = run_cli("sync", REPO, "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    assert downloads(hub) == ["added.txt", "model.safetensors"]
    assert (storage / "refs" / "main").read_text() == second
    # Shared files are links to the very same blob; the old snapshot is untouched.
    for path in ("tokenizer/vocab.txt", "extra/weights.bin"):
        old, new = storage / "snapshots" / first / path, storage / "snapshots" / second / path
        assert os.path.realpath(old) == os.path.realpath(new)
    assert not (storage / "snapshots" / second / "config.json").exists()
    assert (storage / "snapshots" / first / "model.safetensors").read_bytes() == repo[
        "model.safetensors"
    ]
    current = {p: d for p, d in repo.items() if p != "config.json"}
    current.update({"model.safetensors": new_weights, "added.txt": b"+\n"})
    assert official_offline_view(cache)["files"] == sha256s(current)

    listing = run_cli("cache", "ls", "--cache-dir", cache)
    assert "(detached)" in listing.output and "reclaimable" in listing.output
    doc = json.loads(run_cli("cache", "ls", "--cache-dir", cache, "--json").output)
    (entry,) = doc["repos"]
    freed = len(repo["config.json"]) + len(repo["model.safetensors"])
    assert entry["reclaimable_bytes"] == freed
    assert [r["detached"] for r in entry["revisions"]] == [False, True]

    dry = json.loads(run_cli("cache", "prune", "--dry-run", "--json", "--cache-dir", cache).output)
    assert dry["bytes_freed"] == freed and (storage / "snapshots" / first).is_dir()
    done = run_cli("cache", "prune", "--cache-dir", cache)
    assert done.exit_code == 0, done.output
    assert not (storage / "snapshots" / first).exists()
    view = official_offline_view(cache)
    assert view["files"] == sha256s(current) and view["warnings"] == []
    assert view["repos"][0]["revisions"] == [[["main"], second, len(current)]]


def test_ref_is_written_last_so_a_failed_sync_keeps_the_old_snapshot(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    assert run_cli("sync", REPO, "--cache-dir", cache).exit_code == 0
    first = hub.resolve_revision(REPO)
    second = hub.commit(REPO, files={"model.safetensors": os.urandom(1024 * 1024 + 1)})
    hub.faults.corrupt_next(count=None)
    failed = hfsync("sync", REPO, "--cache-dir", cache)
    assert failed.returncode == 5, failed.stderr
    assert (cache / STORAGE / "refs" / "main").read_text() == first
    assert official_offline_view(cache)["files"] == sha256s(repo)

    hub.reset_faults()
    hub.clear_log()
    assert run_cli("sync", REPO, "--cache-dir", cache).exit_code == 0
    assert downloads(hub) == ["model.safetensors"]
    assert (cache / STORAGE / "refs" / "main").read_text() == second


def test_without_symlinks_blobs_are_moved_or_copied_and_never_refetched(
    hub: HubEmulator, repo: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    storage = cache / STORAGE
    # Revision 1 with symlinks, so its blobs exist; then the filesystem loses symlinks.
    assert run_cli("sync", REPO, "--cache-dir", cache).exit_code == 0
    first = hub.resolve_revision(REPO)

    def no_symlinks(*args: object, **kwargs: object) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    monkeypatch.setattr(cache_module, "_symlink_support", {})
    new_weights = os.urandom(1024 * 1024 + 3)
    second = hub.commit(REPO, files={"model.safetensors": new_weights})
    hub.clear_log()
    result = run_cli("sync", REPO, "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    assert downloads(hub) == ["model.safetensors"]
    snap = storage / "snapshots" / second
    files = [p for p in snap.rglob("*") if not p.is_dir()]
    assert files and not any(p.is_symlink() for p in files)
    new_etag = hashlib.sha256(new_weights).hexdigest()
    assert not (storage / "blobs" / new_etag).exists(), "the fresh blob was moved, not copied"
    assert (storage / "blobs" / hashlib.sha256(repo["extra/weights.bin"]).hexdigest()).is_file()
    assert os.path.islink(storage / "snapshots" / first / "extra" / "weights.bin")

    current = {**repo, "model.safetensors": new_weights}
    view = official_offline_view(cache)
    assert view["files"] == sha256s(current) and view["warnings"] == []

    hub.clear_log()
    rerun = run_cli("sync", REPO, "--cache-dir", cache)
    assert rerun.exit_code == 0, rerun.output
    assert downloads(hub) == []

    # A third revision in the degraded cache copies unchanged files from the last snapshot.
    third = hub.commit(REPO, files={"added.txt": b"new\n"})
    hub.clear_log()
    assert run_cli("sync", REPO, "--cache-dir", cache).exit_code == 0
    assert downloads(hub) == ["added.txt"]
    assert (storage / "snapshots" / third / "model.safetensors").read_bytes() == new_weights


def test_dry_run_writes_nothing_to_the_cache(hub: HubEmulator, repo: dict, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = run_cli("sync", REPO, "--cache-dir", cache, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would download" in result.output
    assert not cache.exists()
    assert downloads(hub) == []


def test_degraded_cache_written_by_huggingface_hub_is_current(
    hub: HubEmulator, repo: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "HF_HUB_DISABLE_SYMLINKS": "1", "HF_HUB_DISABLE_SYMLINKS_WARNING": "1"}
    script = (
        "import sys; from huggingface_hub import snapshot_download as s; "
        "s(sys.argv[1], cache_dir=sys.argv[2])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, REPO, str(cache)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    snap = cache / STORAGE / "snapshots" / hub.resolve_revision(REPO)
    assert not any(p.is_symlink() for p in snap.rglob("*")), "the official degraded form"

    monkeypatch.setenv("HF_HUB_DISABLE_SYMLINKS", "1")
    hub.clear_log()
    result = run_cli("sync", REPO, "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    assert downloads(hub) == []
    assert f"{len(repo)} unchanged" in result.output


def kill_midway(args: list[object], part: Path, hub: HubEmulator) -> None:
    """Run `hfsync ARGS` throttled and SIGKILL it once `part` holds some journaled bytes."""
    hub.faults.rate_per_conn = 1e6
    env = dict(os.environ, HFSYNC_BACKOFF_BASE="0.01")
    proc = subprocess.Popen([sys.executable, "-m", "hfsync", *map(str, args)], env=env)
    journal = part.with_name(part.name + ".journal")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and len(journal.read_text().splitlines()) > 2:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        hub.faults.rate_per_conn = None
    assert proc.returncode == -signal.SIGKILL, "hfsync finished before it could be killed"


def test_a_killed_sync_leaves_a_part_both_cache_tools_report_and_the_next_sync_resumes(
    hub: HubEmulator, tmp_path: Path
) -> None:
    from huggingface_hub import scan_cache_dir

    weights = os.urandom(3 * 1024 * 1024)
    hub.create_repo(REPO)
    hub.commit(REPO, files={"model.safetensors": weights})
    etag = hashlib.sha256(weights).hexdigest()
    cache = tmp_path / "cache"
    blobs = cache / STORAGE / "blobs"
    part = blobs / f"{etag}.hfsync.incomplete"
    args: list[object] = ["sync", REPO, "--cache-dir", cache, "-j", "2", "--chunk-size", "256K"]
    kill_midway(args, part, hub)
    assert part.is_file() and not (blobs / f"{etag}.incomplete").exists()

    doc = json.loads(run_cli("cache", "ls", "--cache-dir", cache, "--json").output)
    (entry,) = doc["repos"]
    assert {Path(p["path"]).name for p in entry["incomplete"]} == {
        part.name,
        part.name + ".journal",
    }
    assert "partial download" in run_cli("cache", "ls", "--cache-dir", cache).output
    info = scan_cache_dir(cache)
    assert [str(w) for w in info.warnings] == []
    assert {f.file_path.name for f in info.incomplete_files} == {part.name}

    kept = run_cli("cache", "prune", "--cache-dir", cache)
    assert kept.exit_code == 0 and part.exists(), "partial downloads are kept by default"
    hub.clear_log()
    assert run_cli(*args).exit_code == 0
    assert official_offline_view(cache)["files"]["model.safetensors"] == etag
    assert sum(r.body_bytes for r in hub.log if r.server == "cdn") < len(weights), "resumed"
    assert not part.exists() and not list(blobs.glob("*.incomplete*"))


LONG_NAME = "n" * 236 + ".bin"  # 240 bytes: the part name would pass NAME_MAX unhashed


def test_a_file_name_near_name_max_syncs_to_the_cache_and_to_a_folder(
    hub: HubEmulator, tmp_path: Path
) -> None:
    data = os.urandom(1024 * 1024 + 17)
    files = {LONG_NAME: data, f"dir/{LONG_NAME}": b"small\n"}
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    cache = tmp_path / "cache"
    result = hfsync("sync", REPO, "--cache-dir", cache)
    assert result.returncode == 0, result.stderr
    view = official_offline_view(cache)
    assert view["files"][LONG_NAME] == hashlib.sha256(data).hexdigest()
    assert view["files"][f"dir/{LONG_NAME}"] == hashlib.sha256(b"small\n").hexdigest()

    dest = tmp_path / "dest"
    result = hfsync("sync", REPO, dest, "--chunk-size", "256K")
    assert result.returncode == 0, result.stderr
    assert (dest / LONG_NAME).read_bytes() == data
    assert (dest / "dir" / LONG_NAME).read_bytes() == b"small\n"
    again = hfsync("sync", REPO, dest, "--json")
    assert {f["action"] for f in json.loads(again.stdout)["files"]} == {"unchanged"}
