"""Start-up stays cheap: `hfsync --version`, `--help` and a no-op re-sync import only what they
use (issue 12). Each run is a real `python -m hfsync` subprocess whose loaded modules are
written out at exit, so a new top-level import anywhere on those paths fails here instead of
silently costing every run its import time. No timings: which modules load is the contract.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hfsync.cli import COMMANDS, main
from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync

# Never needed by a command that moves no bytes (and the heaviest imports hfsync has).
HEAVY = (
    "requests",
    "urllib3",
    "charset_normalizer",
    "paramiko",
    "tqdm",
    "hfsync.hub_session",
    "hfsync.transfer.engine",
    "hfsync.mirror",
    "hfsync.remote",
    "hfsync.fleet",
    "hfsync.remote_sync",
)
# Also never needed to print the version or the command list.
NOT_FOR_VERSION = (
    *HEAVY,
    "hfsync.hub",
    "hfsync.orchestrate",
    "hfsync.plan",
    "hfsync.targets",
    # What only a command uses (the listing rules and their dataclasses, the token lookup):
    # `cli.common` imports them where a command needs them.
    "hfsync.files",
    "hfsync.auth",
    # stdlib modules only hfsync's own code would bring in here (origin(), the SIGTERM handler)
    "urllib.parse",
    "signal",
    *(f"hfsync.cli{entry.module}" for entry in COMMANDS.values()),
)

# Runs `python -m hfsync ARGS` and writes the names in sys.modules at exit to the file named
# by argv[1] (atexit: click ends every command with sys.exit).
_WRAPPER = """
import atexit, json, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "hfsync"
runpy.run_module("hfsync", run_name="__main__", alter_sys=True)
"""


def loaded_modules(
    tmp_path: Path, *args: object, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, set[str]]:
    out = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(out), *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, set(json.loads(out.read_text()))


def imported(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of `names` (or their submodules) were loaded."""
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_version_imports_no_command_and_no_library(tmp_path: Path) -> None:
    proc, modules = loaded_modules(tmp_path, "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == "hfsync, version 0.1.0"
    assert imported(modules, NOT_FOR_VERSION) == []


def test_help_lists_every_command_without_importing_one(tmp_path: Path) -> None:
    proc, modules = loaded_modules(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.split("Commands:")[1].splitlines() if line]
    assert listed == sorted(COMMANDS)
    assert imported(modules, NOT_FOR_VERSION) == []


def test_command_summaries_are_the_commands_own() -> None:
    """`hfsync --help` shows COMMANDS' summaries without importing the commands: they must be
    what each command's docstring says (edit both, or this fails)."""
    for name, entry in COMMANDS.items():
        assert main.commands[name].get_short_help_str(limit=10_000) == entry.summary, name


def test_a_command_loads_only_its_own_module(tmp_path: Path) -> None:
    proc, modules = loaded_modules(tmp_path, "sync", "--help")
    assert proc.returncode == 0 and "Usage: hfsync sync" in proc.stdout
    others = tuple(f"hfsync.cli{e.module}" for n, e in COMMANDS.items() if n != "sync")
    assert imported(modules, (*HEAVY, *others)) == []


@pytest.fixture
def synced(hub: HubEmulator, hf_env: Path, tmp_path: Path) -> Path:
    """A folder already holding a small repo (so the next sync of it has nothing to do)."""
    files = {f"data/{i:03d}.txt": f"file {i}\n".encode() for i in range(50)}
    hub.commit("org/noop", files={"README.md": b"# noop\n", **files})
    dest = tmp_path / "dest"
    first = hfsync("sync", "org/noop", dest, "--endpoint", hub.endpoint, "-q")
    assert first.returncode == 0, first.stderr
    return dest


def test_noop_resync_makes_one_request_without_requests_or_hashing(
    hub: HubEmulator, synced: Path, tmp_path: Path
) -> None:
    before = {p: p.read_bytes() for p in synced.rglob("*.txt")}
    hub.clear_log()
    args = ("sync", "org/noop", synced, "--endpoint", hub.endpoint, "-q")
    proc, modules = loaded_modules(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    assert [(r.method, r.path) for r in hub.log] == [
        ("GET", "/api/models/org/noop/revision/main")
    ], "a no-op re-sync asks for the commit only (its listing is cached)"
    assert imported(modules, (*HEAVY, "hfsync.cli.render")) == []
    assert {p: p.read_bytes() for p in synced.rglob("*.txt")} == before


def test_a_proxy_setting_routes_api_calls_through_requests(
    hub: HubEmulator, synced: Path, tmp_path: Path
) -> None:
    """With a proxy configured the API calls take the requests session (which applies the
    proxy variables); NO_PROXY lets this one reach the emulator directly."""
    proxy = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    env = {**proxy, "NO_PROXY": "127.0.0.1,localhost"}
    args = ("sync", "org/noop", synced, "--endpoint", hub.endpoint, "-q")
    proc, modules = loaded_modules(tmp_path, *args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "requests" in modules


def test_a_sync_that_downloads_never_imports_requests_without_a_proxy(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    """Bodies come through `transfer/wire`; the `requests` session is built only for a proxied
    origin, so a download run pays none of its import (~0.14 s of CPU before the first GET)."""
    files = {f"data/{i:03d}.txt": f"file {i}\n".encode() for i in range(20)}
    hub.commit("org/fresh", files={"model.safetensors": b"\0" * 4096, **files})
    dest = tmp_path / "dest"
    args = ("sync", "org/fresh", dest, "--endpoint", hub.endpoint, "-q")
    proc, modules = loaded_modules(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    assert (dest / "data/007.txt").read_bytes() == b"file 7\n"
    assert imported(modules, ("requests", "urllib3")) == []
