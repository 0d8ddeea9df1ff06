"""Every option a cron job or systemd unit sets once for all runs also comes from an `HFSYNC_*`
variable (issue 11), for `sync`, `mirror`, `verify` and `doctor`; an option beats its variable."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from hfsync.cli import main
from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync

# option name -> the variable that sets it, wherever a command has the option
GLOBAL = {
    "--endpoint": "HFSYNC_ENDPOINT",
    "--json": "HFSYNC_JSON",
    "--quiet": "HFSYNC_QUIET",
    "--debug": "HFSYNC_DEBUG",
    "--connections": "HFSYNC_CONNECTIONS",
    "--bwlimit": "HFSYNC_BWLIMIT",
    "--chunk-size": "HFSYNC_CHUNK_SIZE",
    "--token-file": "HFSYNC_TOKEN_FILE",
    "--state-dir": "HFSYNC_STATE_DIR",
    "--parallel": "HFSYNC_PARALLEL",
    "--log-file": "HFSYNC_LOG_FILE",
    "--metrics-file": "HFSYNC_METRICS_FILE",
    "--wait": "HFSYNC_WAIT",
}


@pytest.mark.parametrize("command", ["sync", "mirror", "verify", "doctor", "to-remote", "info"])
def test_global_options_have_their_variable(command: str) -> None:
    cmd = main.commands[command]
    found = {}
    for param in cmd.params:
        if isinstance(param, click.Option):
            for name in param.opts:
                if name in GLOBAL:
                    found[name] = param.envvar
    assert found, f"{command} has none of the global options?"
    assert found == {name: GLOBAL[name] for name in found}, command


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path, monkeypatch: pytest.MonkeyPatch) -> HubEmulator:
    hub.commit("org/env", files={"config.json": b'{"e": 1}\n', "big.bin": b"b" * 300_000})
    monkeypatch.delenv("HF_ENDPOINT")  # only HFSYNC_ENDPOINT points at the emulator below
    return hub


def test_sync_takes_endpoint_json_and_transfer_knobs_from_the_environment(
    repo: HubEmulator, tmp_path: Path
) -> None:
    env = {"HFSYNC_ENDPOINT": repo.endpoint, "HFSYNC_JSON": "1", "HFSYNC_CONNECTIONS": "2",
           "HFSYNC_CHUNK_SIZE": "64K", "HFSYNC_BWLIMIT": "100M"}  # fmt: skip
    run = hfsync("sync", "org/env", tmp_path / "a", env=env)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["commit"] == repo.resolve_revision("org/env")
    assert (tmp_path / "a" / "big.bin").read_bytes() == b"b" * 300_000
    # the variables are really read: a bad one is the option's usage error
    bad = hfsync("sync", "org/env", tmp_path / "b", env={**env, "HFSYNC_BWLIMIT": "fast"})
    assert bad.returncode == 2 and "--bwlimit" in bad.stderr, bad.stderr
    # and an option beats its variable
    text = hfsync("sync", "org/env", tmp_path / "a", "--endpoint", repo.endpoint, env=env)
    assert text.returncode == 0 and json.loads(text.stdout)["counts"]["unchanged"] == 3


def test_quiet_and_debug_from_the_environment(repo: HubEmulator, tmp_path: Path) -> None:
    env = {"HFSYNC_ENDPOINT": repo.endpoint, "HFSYNC_QUIET": "1"}
    run = hfsync("sync", "org/env", tmp_path / "a", env=env)
    assert run.returncode == 0 and run.stdout == "" and run.stderr == ""
    loud = hfsync("sync", "org/env", tmp_path / "a", env={**env, "HFSYNC_DEBUG": "1"})
    assert loud.returncode == 0 and "hfsync: http: GET" in loud.stderr
    verify = hfsync("verify", tmp_path / "a", env={"HFSYNC_QUIET": "1"})
    assert verify.returncode == 0 and verify.stdout == "", verify.stdout
