"""The executor through the real command: SIGKILL mid-download, then a rerun resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files
from tests.test_transfer_engine import CHUNK, MiB, cdn_gets, payload, resolves

REPO = "org/model"
SIZE = 6 * MiB + 99


def test_sigkill_then_rerun_fetches_only_what_the_journal_lacks(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    files = {"model.safetensors": payload(SIZE, 21), "config.json": b'{"a": 1}\n'}
    hub.commit(REPO, files)
    etag = hub.files(REPO)["model.safetensors"].lfs_sha256
    dest = tmp_path / "dest"
    journal = (
        dest / f".cache/huggingface/download/model.safetensors.{etag}.hfsync.incomplete.journal"
    )
    args = ["sync", REPO, dest, "--connections", "4", "--chunk-size", "256K", "--quiet"]
    hub.faults.rate_per_conn = 1e6  # ~1.5 s for the whole file: time to kill it mid-way
    env = dict(os.environ, HFSYNC_BACKOFF_BASE="0.01")
    proc = subprocess.Popen([sys.executable, "-m", "hfsync", *map(str, args)], env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and len(journal.read_text().splitlines()) > 8:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    lines = journal.read_text().splitlines()[1:]
    have = sum(int(b) - int(a) for a, b in (line.split() for line in lines if " " in line))
    assert 8 * CHUNK <= have < SIZE
    assert not (dest / "model.safetensors").exists()

    hub.faults.rate_per_conn = None
    t0 = time.time()
    result = hfsync(*args)
    assert result.returncode == 0, result.stderr
    got = user_files(dest)
    assert {p: got[p] for p in files} == files
    assert sum(r.body_bytes for r in cdn_gets(hub, t0)) == SIZE - have
    assert len([r for r in resolves(hub, "model.safetensors") if r.time >= t0]) == 1
    assert not journal.exists()
