"""Private, gated and missing repos: right exit codes, clear messages, the token never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files

TOKEN = "hf_SeCrEtTokenValue1234567890"
FILES = {"config.json": b"{}\n", "weights.bin": b"\1" * 1000}


@pytest.fixture
def repos(hub: HubEmulator, hf_env: Path) -> None:
    hub.create_repo("org/private", private=True)
    hub.commit("org/private", files=FILES)
    hub.create_repo("org/gated", gated=True)
    hub.commit("org/gated", files=FILES)
    hub.create_repo("org/public")
    hub.commit("org/public", files=FILES)
    hub.add_token(TOKEN, grants=["org/private"])


def assert_no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


def test_private_repo_needs_a_token(repos: None, tmp_path: Path) -> None:
    denied = hfsync("sync", "org/private", tmp_path / "a")
    assert denied.returncode == 3
    assert "not found" in denied.stderr and "token" in denied.stderr

    by_flag = hfsync("sync", "org/private", tmp_path / "b", "--token", TOKEN, "--debug")
    assert by_flag.returncode == 0, by_flag.stderr
    assert {k: v for k, v in user_files(tmp_path / "b").items() if k in FILES} == FILES
    assert_no_token(by_flag.stdout, by_flag.stderr)

    by_env = hfsync("sync", "org/private", tmp_path / "c", "--json", env={"HF_TOKEN": TOKEN})
    assert by_env.returncode == 0, by_env.stderr
    assert_no_token(by_env.stdout, by_env.stderr)
    for path in (tmp_path / "b").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), f"token written to {path}"


def test_token_file_is_used(repos: None, hf_env: Path, tmp_path: Path) -> None:
    (hf_env / "token").write_text(TOKEN + "\n")
    result = hfsync("sync", "org/private", tmp_path / "d")
    assert result.returncode == 0, result.stderr


def test_invalid_token_is_rejected_without_echoing_it(repos: None, tmp_path: Path) -> None:
    bad = "hf_NotARealTokenAtAll0000000"
    result = hfsync("sync", "org/public", tmp_path / "e", "--token", bad)
    assert result.returncode == 3
    assert bad not in result.stderr + result.stdout
    assert "token" in result.stderr


def test_gated_repo(repos: None, tmp_path: Path) -> None:
    result = hfsync("sync", "org/gated", tmp_path / "f", "--token", TOKEN)
    assert result.returncode == 3
    assert "gated" in result.stderr
    assert_no_token(result.stderr, result.stdout)


def test_unknown_repo_and_revision(repos: None, tmp_path: Path) -> None:
    missing = hfsync("sync", "org/nope", tmp_path / "g")
    assert missing.returncode == 3 and "not found" in missing.stderr
    rev = hfsync("sync", "org/public", tmp_path / "h", "--revision", "no-such-branch")
    assert rev.returncode == 3 and "revision not found" in rev.stderr
    assert len(rev.stderr.strip().splitlines()) == 1, "one clear line"
    # nothing is created for a repo or revision that does not exist: no DEST, no state folder
    assert not (tmp_path / "g").exists() and not (tmp_path / "h").exists()
