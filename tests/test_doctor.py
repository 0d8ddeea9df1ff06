"""`hfsync doctor` (issue 11): one line per check; a dead endpoint and a bad token are named
clearly, with the exit code a sync would have, and the token is never printed."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync

TOKEN = "hf_DoctorValidToken000111222"


@pytest.fixture
def healthy(hub: HubEmulator, hf_env: Path) -> HubEmulator:
    hub.commit("org/probe", files={"config.json": b"{}", "model.bin": b"\1" * (1100 * 1024)})
    hub.add_token(TOKEN)
    return hub


def lines_by_check(stdout: str) -> dict[str, str]:
    return {line.split()[1]: line for line in stdout.splitlines()}


def test_a_healthy_setup_passes_every_check(healthy: HubEmulator, tmp_path: Path) -> None:
    run = hfsync("doctor", "--repo", "org/probe", "--dest", tmp_path, "--min-free", "1K",
                 env={"HF_TOKEN": TOKEN})  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    checks = lines_by_check(run.stdout)
    assert set(checks) == {"proxy", "offline", "endpoint", "clock", "token", "download", "disk"}
    assert all(line.startswith("ok") for line in checks.values()), run.stdout
    assert "valid, user emulator" in checks["token"] and "HF_TOKEN" in checks["token"]
    assert "redirects to another host (a CDN)" in checks["download"]
    assert "Range honoured" in checks["download"]
    assert str(tmp_path) in checks["disk"] and "free" in checks["disk"]
    assert TOKEN not in run.stdout + run.stderr


def test_a_dead_endpoint_is_reported_with_exit_4(hf_env: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = f"http://127.0.0.1:{port}"
    run = hfsync("doctor", "--endpoint", dead, "--dest", tmp_path, "--min-free", "1K")
    assert run.returncode == 4, run.stdout + run.stderr
    checks = lines_by_check(run.stdout)
    assert checks["endpoint"].startswith("FAIL") and f"cannot reach {dead}" in checks["endpoint"]
    assert checks["clock"].startswith("skip")
    doc = json.loads(hfsync("doctor", "--endpoint", dead, "--json").stdout)
    endpoint = next(c for c in doc["checks"] if c["check"] == "endpoint")
    assert (doc["ok"], endpoint["status"], endpoint["exit_code"]) == (False, "fail", 4)


def test_a_bad_token_is_rejected_clearly_without_being_shown(
    healthy: HubEmulator, tmp_path: Path
) -> None:
    bad = "hf_ThisTokenIsNotKnown999999"
    token_file = tmp_path / "token"
    token_file.write_text(bad + "\n")
    run = hfsync("doctor", "--token-file", token_file, "--dest", tmp_path, "--min-free", "1K")
    assert run.returncode == 3, run.stdout + run.stderr
    checks = lines_by_check(run.stdout)
    assert checks["endpoint"].startswith("ok")
    assert checks["token"].startswith("FAIL") and "rejected" in checks["token"]
    assert bad not in run.stdout + run.stderr


def test_too_little_disk_and_offline_mode_fail(healthy: HubEmulator, tmp_path: Path) -> None:
    run = hfsync("doctor", "--dest", tmp_path / "not/yet", "--min-free", "1000T",
                 env={"HF_HUB_OFFLINE": "1"})  # fmt: skip
    checks = lines_by_check(run.stdout)
    assert checks["disk"].startswith("FAIL") and "want at least" in checks["disk"]
    assert checks["offline"].startswith("FAIL")
    assert run.returncode == 6, "disk outranks network (errors.SEVERITY)"


@pytest.mark.parametrize("skew", [3600.0, -900.0])
def test_a_skewed_server_clock_is_reported_and_fails(
    healthy: HubEmulator, tmp_path: Path, skew: float
) -> None:
    healthy.faults.clock_skew = skew
    run = hfsync("doctor", "--dest", tmp_path, "--min-free", "1K", env={"HF_TOKEN": TOKEN})
    assert run.returncode == 1, run.stdout + run.stderr
    clock = lines_by_check(run.stdout)["clock"]
    # The server is ahead by `skew`, so the local clock is behind it (or ahead, for a negative).
    side = "behind" if skew > 0 else "ahead of"
    found = re.search(r"local clock is (\d+) s (behind|ahead of) the server", clock)
    assert clock.startswith("FAIL") and found, clock
    # `Date` has one-second resolution: the reported skew is within a second or two of it.
    assert abs(int(found.group(1)) - abs(skew)) <= 2 and found.group(2) == side, clock
    assert "signed download URLs will be refused" in clock
    others = {k: v for k, v in lines_by_check(run.stdout).items() if k != "clock"}
    assert all(line.startswith("ok") for line in others.values()), run.stdout


def test_a_small_skew_passes_and_a_moderate_one_only_warns(
    healthy: HubEmulator, tmp_path: Path
) -> None:
    healthy.faults.clock_skew = 5.0  # under SKEW_WARN: normal NTP jitter and request time
    run = hfsync("doctor", "--dest", tmp_path, "--min-free", "1K", env={"HF_TOKEN": TOKEN})
    assert run.returncode == 0, run.stdout + run.stderr
    assert lines_by_check(run.stdout)["clock"].startswith("ok")
    healthy.faults.clock_skew = 120.0
    run = hfsync("doctor", "--dest", tmp_path, "--min-free", "1K", env={"HF_TOKEN": TOKEN})
    assert run.returncode == 0, run.stdout + run.stderr
    assert lines_by_check(run.stdout)["clock"].startswith("WARN")
