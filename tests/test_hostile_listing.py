"""A listing hfsync could not verify against is refused with exit 5, before anything is written.

Through the real CLI: the emulator serves a broken or hostile tree listing (non-hex ids,
negative sizes, duplicate paths, `a` beside `a/b`) or a tampered `trees/<commit>.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files

REPO = "org/hostile"
FILES = {
    "model.safetensors": os.urandom(1024 * 1024 + 17),  # LFS (over the test threshold)
    "config.json": b'{"a": 1}\n',
}


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    hub.commit(REPO, files=FILES)
    return {**FILES, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def test_non_hex_ids_with_a_corrupting_cdn_exit_5_and_place_nothing(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    """The reproduction: non-hex ids used to turn verification off, so corrupt bodies landed."""
    hub.faults.tree_overrides = {
        "config.json": {"oid": "not-a-content-id"},
        ".gitattributes": {"oid": "G" * 40},
        "model.safetensors": {"lfs": {"oid": "Z" * 64}},
    }
    hub.faults.corrupt_next(count=None)
    dest = tmp_path / "dest"
    result = hfsync("sync", REPO, dest)
    assert result.returncode == 5, result.stderr
    assert "unverifiable listing" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not dest.exists() or user_files(dest) == {}
    assert not [r for r in hub.log if "/resolve/" in r.path or r.server == "cdn"]


def entry(path: str, oid: str) -> dict:
    return {"type": "file", "path": path, "oid": oid, "size": 1}


HOSTILE = {
    "negative size": ({"config.json": {"size": -5}}, []),
    "float size": ({"config.json": {"size": 9.0}}, []),
    "bool size": ({"config.json": {"size": True}}, []),
    "missing id": ({"config.json": {"oid": None}}, []),
    "uppercase hex id": ({"config.json": {"oid": "A" * 40}}, []),
    "sha1 where sha256 belongs": ({"model.safetensors": {"lfs": {"oid": "a" * 40}}}, []),
    "duplicate path": ({}, [entry("config.json", "b" * 40)]),
    "file and folder": ({}, [entry("config.json/x", "c" * 40)]),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_listing_is_refused_before_writing(
    case: str, hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    hub.faults.tree_overrides, hub.faults.tree_extra = HOSTILE[case]
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "config.json").write_bytes(b"precious")
    result = hfsync("sync", REPO, dest, "--delete")
    assert result.returncode == 5, result.stderr
    assert "unverifiable listing" in result.stderr
    assert "config.json" in result.stderr or "model.safetensors" in result.stderr
    assert user_files(dest) == {"config.json": b"precious"}, "nothing written or deleted"
    assert not list((dest / ".cache").rglob("trees/*.json")), "a refused listing is not cached"


def test_tampered_cached_listing_is_discarded_and_refetched(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    assert hfsync("sync", REPO, dest).returncode == 0
    [cached] = (dest / ".cache/huggingface/trees").glob("*.json")
    data = json.loads(cached.read_text())
    data["files"]["config.json"]["blob_id"] = "x"  # verification would be off for it
    data["files"]["config.json"]["size"] = -1
    cached.write_text(json.dumps(data))
    (dest / "config.json").write_bytes(b"changed locally")
    hub.clear_log()

    result = hfsync("sync", REPO, dest)
    assert result.returncode == 0, result.stderr
    assert user_files(dest) == repo
    assert any("/tree/" in r.path for r in hub.log), "listing fetched again"
    assert json.loads(cached.read_text())["files"]["config.json"]["size"] == len(
        FILES["config.json"]
    ), "the good listing replaced the tampered one"
