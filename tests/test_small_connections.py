"""Small files over more connections than big files' chunks, unless `--connections` says.

A small file costs a request, whose time is the link's latency, not its bandwidth: by default
up to DEFAULT_SMALL_CONNECTIONS of them are fetched at once, while a big file's chunk streams
stay at DEFAULT_CONNECTIONS. An explicit `--connections N` (or HFSYNC_CONNECTIONS) caps both.
Each worker owns its keep-alive connection, so distinct connection ids count the workers that
fetched; the emulator's 20 ms per request keeps every worker busy at once.
"""

from __future__ import annotations

from pathlib import Path

from hfsync.defaults import DEFAULT_CONNECTIONS, DEFAULT_SMALL_CONNECTIONS
from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files
from tests.test_transfer_engine import MiB, cdn_gets, payload

REPO = "org/many-configs"
SMALL_COUNT = 3 * DEFAULT_SMALL_CONNECTIONS


def _repo(hub: HubEmulator) -> dict[str, bytes]:
    files = {f"shards/part-{i:03d}.json": payload(2000 + 37 * i, i) for i in range(SMALL_COUNT)}
    files["model.safetensors"] = payload(8 * MiB + 5, 99)  # 32 chunks of 256 KiB
    hub.commit(REPO, files)
    return files


def _small_file_connections(hub: HubEmulator) -> set[int]:
    return {
        r.conn_id
        for r in hub.log
        if r.server == "api"
        and r.method == "GET"
        and r.file_path
        and r.file_path.startswith("shards/")
        and ("/resolve-cache/" in r.path or "/resolve/" in r.path)
    }


def _sync(hub: HubEmulator, tmp_path: Path, *args: str, env: dict | None = None) -> None:
    """Commit the repo, sync it with 20 ms per request, check every file arrived exactly."""
    files = _repo(hub)
    hub.faults.latency = 0.02
    dest = tmp_path / "dest"
    result = hfsync("sync", REPO, dest, "-q", *args, env=env)
    assert result.returncode == 0, result.stderr
    got = user_files(dest)
    assert {p: got.get(p) for p in files} == files


def test_default_fetches_small_files_over_more_connections_than_chunks(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    _sync(hub, tmp_path, "--chunk-size", "256K")
    small = _small_file_connections(hub)
    assert DEFAULT_CONNECTIONS < len(small) <= DEFAULT_SMALL_CONNECTIONS, len(small)
    chunk_connections = {r.conn_id for r in cdn_gets(hub)}
    assert 1 <= len(chunk_connections) <= DEFAULT_CONNECTIONS, len(chunk_connections)


def test_explicit_connections_cap_small_files_too(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    _sync(hub, tmp_path, "--chunk-size", "256K", "--connections", "4")
    assert 1 <= len(_small_file_connections(hub)) <= 4
    assert len({r.conn_id for r in cdn_gets(hub)}) <= 4


def test_connections_from_the_environment_cap_small_files(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    _sync(hub, tmp_path, env={"HFSYNC_CONNECTIONS": "3"})
    assert 1 <= len(_small_file_connections(hub)) <= 3
