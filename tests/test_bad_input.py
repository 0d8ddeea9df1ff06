"""Bad input: one clear line on stderr, a distinct exit code, no traceback, nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync


@pytest.mark.parametrize("repo_id", ["../../etc", "a/b/c", "org/na--me", "", "org/bad name"])
def test_invalid_repo_ids_are_usage_errors(repo_id: str, tmp_path: Path) -> None:
    result = hfsync("sync", repo_id, tmp_path / "d", "--endpoint", "http://127.0.0.1:9")
    assert result.returncode == 2, result.stderr
    assert "invalid repo id" in result.stderr
    assert not (tmp_path / "d").exists()


def test_destination_that_is_a_file_is_a_disk_error(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    hub.commit("org/m", files={"a.txt": b"a\n"})
    dest = tmp_path / "file"
    dest.write_text("precious")
    result = hfsync("sync", "org/m", dest)
    assert result.returncode == 6, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert dest.read_text() == "precious"


def test_unreachable_endpoint_is_a_network_error(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    result = hfsync("info", "org/m", "--endpoint", "http://127.0.0.1:9")
    assert result.returncode == 4, result.stderr
    assert "giving up" in result.stderr


def test_dest_and_cache_dir_together_is_a_usage_error(tmp_path: Path) -> None:
    result = hfsync("sync", "org/m", tmp_path / "d", "--cache-dir", tmp_path / "c")
    assert result.returncode == 2
    assert "not both" in result.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["--help"], ["--version"], ["sync", "--help"]])
def test_output_that_cannot_be_written_is_one_line_not_a_traceback(args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "hfsync", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 120
    assert proc.stderr == "hfsync: cannot write the output: No space left on device\n"
