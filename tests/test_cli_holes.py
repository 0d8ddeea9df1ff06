"""Smaller holes, each one clear line and its exit code: never "unexpected …", a crash or a hang.

An unreadable folder under `--delete`, local names with control characters, listings with
characters a terminal would act on, and SIGTERM (handled like Ctrl-C), through the real CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import body_bytes, hfsync, user_files

REPO = "org/model"
FILES = {"config.json": b'{"a": 1}\n', "sub/notes.txt": b"notes\n"}


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> None:
    hub.create_repo(REPO)
    hub.commit(REPO, files=FILES)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# -- an unreadable folder under --delete -------------------------------------------------------


def without_dac_override() -> list[str]:
    """A command prefix under which permission bits apply (as root they do not)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root and setpriv is missing: chmod 000 cannot stop reads")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


def test_unreadable_folder_under_delete_is_a_disk_error_naming_it(
    repo: None, tmp_path: Path
) -> None:
    """Root ignores chmod, so the run drops CAP_DAC_OVERRIDE/READ_SEARCH (setpriv): then the
    walk's scandir meets a real EACCES, as an ordinary user's would."""
    dest = tmp_path / "dest"
    assert hfsync("sync", REPO, dest).returncode == 0
    (dest / "stale.txt").write_bytes(b"would be deleted\n")
    locked = dest / "private"
    locked.mkdir()
    (locked / "mine.txt").write_bytes(b"mine\n")
    locked.chmod(0)
    try:
        proc = subprocess.run(
            [
                *without_dac_override(),
                sys.executable,
                "-m",
                "hfsync",
                "sync",
                REPO,
                dest,
                "--delete",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        locked.chmod(0o755)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 6, proc.stderr
    line = one_line(proc.stderr)
    assert f"cannot read folder {locked}" in line and "Permission denied" in line, line
    assert (dest / "stale.txt").exists(), "a run that could not see everything deletes nothing"
    assert (locked / "mine.txt").read_bytes() == b"mine\n"


# -- local names that are not valid remote paths -------------------------------------------------


def test_local_names_with_control_characters_are_deleted_and_shown_escaped(
    repo: None, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    assert hfsync("sync", REPO, dest).returncode == 0
    (dest / "bad\nname").write_bytes(b"x")
    (dest / "sub" / "esc\x1b[2Jape").write_bytes(b"y")
    (dest / "back\\slash").write_bytes(b"z")

    plan = hfsync("sync", REPO, dest, "--delete", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "\x1b" not in plan.stdout
    lines = plan.stdout.splitlines()
    assert any(line.startswith("delete") and "bad\\nname  (not in source" in line for line in lines)
    assert any("sub/esc\\x1b[2Jape  (not in source" in line for line in lines), plan.stdout

    result = hfsync("sync", REPO, dest, "--delete")
    assert result.returncode == 0, result.stderr
    assert "3 deleted" in result.stdout
    assert sorted(user_files(dest)) == [".gitattributes", "config.json", "sub/notes.txt"]


# -- a listing with characters a terminal acts on ----------------------------------------------


def test_info_escapes_terminal_controls_from_the_listing(hub: HubEmulator, repo: None) -> None:
    """C1 controls (`\\x9b` is CSI), DEL and bidi overrides pass the path rules (they are not
    ASCII controls) but must not reach a terminal raw."""
    hostile = "evil\x9b2J\x7f\u202etxt.exe"
    hub.faults.tree_extra = [{"type": "file", "path": hostile, "oid": "1" * 40, "size": 1}]
    result = hfsync("info", REPO)
    assert result.returncode == 0, result.stderr
    assert all(ch.isprintable() for line in result.stdout.splitlines() for ch in line)
    assert "evil\\x9b2J\\x7f\\u202etxt.exe" in result.stdout
    as_json = hfsync("info", REPO, "--json")
    assert hostile in [f["path"] for f in json.loads(as_json.stdout)["files"]], "JSON is exact"


# -- SIGTERM is Ctrl-C ------------------------------------------------------------------------


def test_sigterm_mid_download_exits_130_and_the_rerun_resumes(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    size = 6 * 1024 * 1024 + 7
    hub.create_repo(REPO)
    hub.commit(REPO, files={"model.safetensors": os.urandom(size)})
    dest = tmp_path / "dest"
    args = ["sync", REPO, dest, "--connections", "4", "--chunk-size", "256K", "--quiet"]
    hub.faults.rate_per_conn = 1e6  # ~1.5 s for the file: time to stop it mid-way
    env = dict(os.environ, HFSYNC_BACKOFF_BASE="0.01")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hfsync", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            journals = list((dest / ".cache/huggingface/download").glob("*.journal"))
            if journals and len(journals[0].read_text().splitlines()) > 4:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "finished before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in stderr
    assert proc.returncode == 130, stderr
    assert "interrupted; partial downloads were kept" in one_line(stderr)
    assert stdout == ""
    assert not (dest / "model.safetensors").exists()

    hub.faults.rate_per_conn = None
    hub.clear_log()
    rerun = hfsync(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert len((dest / "model.safetensors").read_bytes()) == size
    assert 0 < body_bytes(hub) < size, "the rerun resumed instead of starting over"
