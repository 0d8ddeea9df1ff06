"""`--include/--exclude` select files *before* the scan: an excluded file is never hashed.

A folder copied with `cp -r` (or fed `--checksum`) has no trustworthy metadata, so every file
the scan looks at is hashed. Filtering only after the scan used to hash excluded multi-GB
weights a user had asked to skip. These run the real CLI in-process (click's runner) so that
the hashing function can be observed; the plan must still show excluded files as skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from hfsync import hashing
from hfsync.cli import main
from hfsync.targets import cache as cache_module
from hfsync.targets import local as local_module
from hfsync.testing.hub import HubEmulator
from tests.clirun import downloads

REPO = "org/filtered"
FILES = {
    "config.json": b'{"a": 1}\n',
    "model.safetensors": os.urandom(1024 * 1024 + 11),
    "weights.bin": os.urandom(2 * 1024 * 1024 + 5),
    "extra/opt.bin": os.urandom(1024 * 1024 + 3),
}


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> None:
    hub.create_repo(REPO)
    hub.commit(REPO, files=FILES)


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of every file the targets hash during the test."""
    seen: list[str] = []

    def spy(path: Path, like_etag: str) -> str:
        seen.append(Path(path).name)
        return hashing.hash_file(path, like_etag)

    monkeypatch.setattr(local_module, "hash_file", spy)
    monkeypatch.setattr(cache_module, "hash_file", spy)
    return seen


def run(*args: object) -> tuple[int, dict]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def copied_folder(root: Path) -> Path:
    """The repo's files as `cp -r` leaves them: right bytes, no `.cache/huggingface` state."""
    for path, data in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


@pytest.mark.parametrize("delete", [False, True], ids=["plain", "with-delete"])
def test_checksum_never_hashes_excluded_files_of_a_copied_folder(
    hub: HubEmulator, repo: None, hashed: list[str], tmp_path: Path, delete: bool
) -> None:
    dest = copied_folder(tmp_path / "dest")
    flags = ["--delete"] if delete else []
    code, doc = run("sync", REPO, dest, "--checksum", "--exclude", "*.bin", "--json", *flags)
    assert code == 0, doc
    assert "weights.bin" not in hashed and "opt.bin" not in hashed, hashed
    assert {"config.json", "model.safetensors"} <= set(hashed), "selected files still checked"
    actions = {f["path"]: (f["action"], f["reason"]) for f in doc["files"]}
    assert actions["weights.bin"] == ("skipped", "excluded")
    assert actions["extra/opt.bin"] == ("skipped", "excluded")
    assert actions["model.safetensors"] == ("unchanged", "identical")
    assert doc["deleted"] == []
    assert (dest / "weights.bin").read_bytes() == FILES["weights.bin"], "excluded copy kept"
    assert downloads(hub) == [".gitattributes"]


def test_dry_run_still_lists_excluded_files_without_hashing_them(
    repo: None, hashed: list[str], tmp_path: Path
) -> None:
    dest = copied_folder(tmp_path / "dest")
    result = CliRunner().invoke(
        main, ["sync", REPO, str(dest), "-n", "-c", "--exclude", "weights.bin"]
    )
    assert result.exit_code == 0, result.output
    assert "weights.bin" not in hashed
    assert any(
        line.startswith("skip") and "weights.bin  (excluded)" in line
        for line in result.stdout.splitlines()
    ), result.stdout


def test_cache_checksum_never_hashes_excluded_blobs(
    repo: None, hashed: list[str], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    code, _ = run("sync", REPO, "--cache-dir", cache, "--json")
    assert code == 0
    hashed.clear()
    code, doc = run(
        "sync", REPO, "--cache-dir", cache, "--checksum", "--include", "*.json", "--json"
    )
    assert code == 0, doc
    assert hashed == ["config.json"], hashed
    assert {f["path"]: f["action"] for f in doc["files"]}["weights.bin"] == "skipped"
