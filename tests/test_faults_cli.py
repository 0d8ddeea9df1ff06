"""Every fault a long download meets, survived byte-exact through the real CLI (issue 3).

The emulator runs in the test process and misbehaves on cue; `hfsync sync` runs as a user
would run it, in a subprocess, with small chunks so one file spans many requests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files

REPO = "org/faulty"
KiB = 1024
CHUNK_ARGS = ("--chunk-size", "256K", "--connections", "4")


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    files = {
        "model.safetensors": os.urandom(3 * 1024 * 1024 + 123),
        "config.json": b'{"a": 1}\n',
    }
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def resolves_of(hub: HubEmulator, path: str) -> int:
    return sum(1 for r in hub.log if "/resolve/" in r.path and r.path.endswith(path))


def drop_twice(hub: HubEmulator) -> None:
    hub.faults.body_faults_on = "cdn"
    hub.faults.drop_next(after_bytes=100 * KiB, count=2)


def server_errors(hub: HubEmulator) -> None:
    hub.faults.inject(503, count=2, server="cdn")
    hub.faults.inject(502, count=1, server="api")


def rate_limited(hub: HubEmulator) -> None:
    hub.faults.inject(429, count=1, server="api", retry_after=1)
    hub.faults.inject(429, count=1, server="cdn", ratelimit_header=0)


def expires_mid_download(hub: HubEmulator) -> None:
    hub.faults.expire_after_cdn_requests = 4


def ignores_range(hub: HubEmulator) -> None:
    hub.faults.ignore_range = True


def mirror(hub: HubEmulator) -> None:
    hub.faults.mirror_mode = True


def corrupts_once(hub: HubEmulator) -> None:
    hub.faults.body_faults_on = "cdn"
    hub.faults.corrupt_next(count=1)


FAULTS: dict[str, Callable[[HubEmulator], None]] = {
    "dropped connection mid-body": drop_twice,
    "5xx": server_errors,
    "429 with Retry-After / RateLimit": rate_limited,
    "signed URL expires mid-download": expires_mid_download,
    "server ignores Range": ignores_range,
    "mirror: 200 chunked, no length, no redirect, no Range": mirror,
    "one corrupted byte in transit": corrupts_once,
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_fault_is_survived_byte_exact(
    fault: str, hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    FAULTS[fault](hub)
    dest = tmp_path / "dest"
    result = hfsync("sync", REPO, dest, *CHUNK_ARGS)
    assert result.returncode == 0, result.stderr
    assert user_files(dest) == repo
    assert not list((dest / ".cache/huggingface/download").glob("*.incomplete*"))
    if fault == "signed URL expires mid-download":
        assert resolves_of(hub, "model.safetensors") == 2, "re-resolved once, then continued"
        assert any(r.server == "cdn" and r.status == 403 for r in hub.log)


def test_persistent_corruption_fails_with_exit_5_and_no_file(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    hub.faults.body_faults_on = "cdn"
    hub.faults.corrupt_next(count=None)
    dest = tmp_path / "dest"
    result = hfsync("sync", REPO, dest, *CHUNK_ARGS)
    assert result.returncode == 5, result.stderr
    assert "model.safetensors" in result.stderr
    assert not (dest / "model.safetensors").exists()
    assert (dest / "config.json").read_bytes() == repo["config.json"], "other files still land"


def test_network_that_keeps_failing_exits_4_then_a_rerun_completes(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    hub.faults.inject(503, count=None, server="cdn")
    result = hfsync("sync", REPO, dest, *CHUNK_ARGS)
    assert result.returncode == 4, result.stderr
    assert "tries" in result.stderr
    assert not (dest / "model.safetensors").exists()

    hub.reset_faults()
    hub.clear_log()
    again = hfsync("sync", REPO, dest, *CHUNK_ARGS)
    assert again.returncode == 0, again.stderr
    assert user_files(dest) == repo


def test_not_enough_space_exits_6_before_downloading(
    hub: HubEmulator, hf_env: Path, tmpfs: Path
) -> None:
    hub.commit("org/big", files={"weights.safetensors": os.urandom(6 * 1024 * 1024)})
    result = hfsync("sync", "org/big", tmpfs / "dest")
    assert result.returncode == 6, result.stderr
    assert "space" in result.stderr
    assert not [r for r in hub.log if r.server == "cdn"], "nothing downloaded"
