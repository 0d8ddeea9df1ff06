"""`--json` on a failure: stdout is exactly one JSON document carrying the error, because
scripts parse stdout; the human line still goes to stderr, and the exit code is the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> None:
    hub.create_repo("org/model")
    hub.commit("org/model", files={"config.json": b"{}\n"})


def error_doc(*args: object, code: int, kind: str) -> dict:
    result = hfsync(*args, "--json")
    assert result.returncode == code, result.stderr
    doc = json.loads(result.stdout)  # the whole of stdout: one document, nothing else
    assert doc["ok"] is False
    assert set(doc["error"]) == {"kind", "message", "exit_code"}
    assert doc["error"]["exit_code"] == code
    assert doc["error"]["kind"] == kind
    [line] = result.stderr.strip().splitlines()
    assert line == f"hfsync: error: {doc['error']['message']}"
    return doc["error"]


def test_sync_repo_not_found(repo: None, tmp_path: Path) -> None:
    error = error_doc("sync", "org/missing", tmp_path / "dest", code=3, kind="RepoNotFoundError")
    assert "org/missing" in error["message"] and "not found" in error["message"]
    assert not (tmp_path / "dest").exists() or user_files(tmp_path / "dest") == {}


def test_sync_revision_not_found_and_disk_error(repo: None, tmp_path: Path) -> None:
    error = error_doc(
        "sync",
        "org/model",
        tmp_path / "a",
        "--revision",
        "nope",
        code=3,
        kind="RevisionNotFoundError",
    )
    assert "revision not found" in error["message"]
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a folder")
    error_doc("sync", "org/model", blocker, code=6, kind="DiskError")
    assert blocker.read_bytes() == b"not a folder"


def test_sync_usage_error(tmp_path: Path) -> None:
    error = error_doc("sync", "bad--id", tmp_path / "d", code=2, kind="UsageError")
    assert "invalid repo id" in error["message"]


def test_info_repo_not_found_and_network_failure(repo: None, tmp_path: Path) -> None:
    error_doc("info", "org/missing", code=3, kind="RepoNotFoundError")
    error = error_doc(
        "info", "org/model", "--endpoint", "http://127.0.0.1:9", code=4, kind="NetworkError"
    )
    assert "127.0.0.1:9" in error["message"]


def test_cache_ls_errors(tmp_path: Path) -> None:
    missing = tmp_path / "no-cache-here"
    error = error_doc("cache", "ls", "--cache-dir", missing, code=3, kind="NotFoundError")
    assert str(missing) in error["message"]
    error_doc("cache", "ls", "org/bad--id", "--cache-dir", tmp_path, code=2, kind="UsageError")
