"""hfsync and an older official client (`huggingface_hub` 0.34.x) sharing one HF cache.

0.x resumes `blobs/<etag>.incomplete` by appending and takes one of full size as finished,
moving it into `blobs/<etag>` without hashing. A killed hfsync used to leave exactly that name,
preallocated and partly zero-filled, so the old client returned a zero-filled model file. These
tests kill one client midway and let the other one finish, with real processes against the
emulator, and judge the bytes each of them ends up with.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from hfsync.files import RemoteFile
from hfsync.testing.hub import HubEmulator
from hfsync.transfer.journal import journal_path
from tests.clirun import hfsync
from tests.oldhub import OldHub, build_old_hub, old_client_env

pytestmark = pytest.mark.slow

REPO = "org/model"
STORAGE = "models--org--model"
MiB = 1024 * 1024

# The old client fetches one file, then the whole snapshot; prints what it returned.
OLD_DOWNLOAD = r"""
import hashlib, json, os, sys
import huggingface_hub
from huggingface_hub import hf_hub_download, snapshot_download
repo, cache = sys.argv[1:3]
one = hf_hub_download(repo, "model.safetensors", cache_dir=cache)
snap = snapshot_download(repo, cache_dir=cache)
files = {}
for dirpath, _, names in os.walk(snap):
    for name in names:
        full = os.path.join(dirpath, name)
        files[os.path.relpath(full, snap)] = hashlib.sha256(open(full, "rb").read()).hexdigest()
print(json.dumps({"version": huggingface_hub.__version__, "one": hashlib.sha256(
    open(one, "rb").read()).hexdigest(), "files": files}))
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def old_hub() -> OldHub:
    """huggingface_hub 0.34.x in its own venv (built once per machine, then reused)."""
    return build_old_hub()


@pytest.fixture
def repo(hub: HubEmulator) -> dict[str, bytes]:
    files = {"model.safetensors": os.urandom(4 * MiB + 11), "config.json": b'{"a": 1}\n'}
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes")}


def lock_is_free(path: Path) -> bool:
    """What the official client's filelock sees: could it take `path` now?"""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    lock.release()
    return True


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 60) -> None:
    """SIGKILL `proc` as soon as `ready()` holds (polled, bounded); fail if it never did."""
    deadline = time.monotonic() + timeout
    seen = False
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ready():
                seen = True
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert seen and proc.returncode == -signal.SIGKILL, "the download ended before it was killed"


def journaled_bytes(part: Path) -> int:
    try:
        lines = journal_path(part).read_text().splitlines()[1:]
    except OSError:
        return 0
    return sum(int(b) - int(a) for a, b in (line.split() for line in lines if " " in line))


def test_old_client_after_a_killed_hfsync_returns_the_right_bytes(
    hub: HubEmulator, hf_env: Path, repo: dict[str, bytes], old_hub: OldHub, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    etag = sha(repo["model.safetensors"])
    blobs = cache / STORAGE / "blobs"
    part = blobs / f"{etag}.hfsync.incomplete"
    lock = cache / ".locks" / STORAGE / f"{etag}.lock"
    args = ["sync", REPO, "--cache-dir", cache, "-j", "2", "--chunk-size", "256K", "--quiet"]
    hub.faults.rate_per_conn = 1e6  # ~2 s per connection for the file: time to kill it mid-way
    env = dict(os.environ, HFSYNC_BACKOFF_BASE="0.01")
    proc = subprocess.Popen([sys.executable, "-m", "hfsync", *map(str, args)], env=env)
    held_while_running: list[bool] = []

    def midway() -> bool:  # whatever the part is called: some of it is journaled
        if max(map(journaled_bytes, blobs.glob("*.incomplete")), default=0) < 512 * 1024:
            return False
        held_while_running.append(not lock_is_free(lock))
        return True

    kill_when(proc, midway)
    hub.faults.rate_per_conn = None

    old = old_hub.run(OLD_DOWNLOAD, REPO, cache, env=old_client_env(hub.endpoint, hf_env, cache))
    assert old.returncode == 0, old.stderr
    seen = json.loads(old.stdout)
    assert seen["version"] == old_hub.version
    assert seen["one"] == etag, "the old client returned wrong bytes for the model file"
    assert seen["files"] == {path: sha(data) for path, data in repo.items()}
    assert held_while_running == [True], "hfsync holds the official blob lock while downloading"
    assert 0 < journaled_bytes(part) < len(repo["model.safetensors"]), "our part is still there"

    result = hfsync("sync", REPO, "--cache-dir", cache, "--json")
    assert result.returncode == 0, result.stderr
    assert {f["action"] for f in json.loads(result.stdout)["files"]} == {"unchanged"}
    snap = cache / STORAGE / "snapshots" / hub.resolve_revision(REPO)
    assert {p: sha((snap / p).read_bytes()) for p in repo} == {p: sha(d) for p, d in repo.items()}
    checked = hfsync("sync", REPO, "--cache-dir", cache, "--checksum", "--json")
    assert checked.returncode == 0, checked.stderr
    assert {f["action"] for f in json.loads(checked.stdout)["files"]} == {"unchanged"}


OLD_ONE_FILE = r"""
import sys
from huggingface_hub import hf_hub_download
hf_hub_download(sys.argv[1], "model.safetensors", cache_dir=sys.argv[2])
"""


def test_hfsync_after_a_killed_old_client_never_trusts_its_partial(
    hub: HubEmulator, hf_env: Path, repo: dict[str, bytes], old_hub: OldHub, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    # 0.34 writes in 10 MiB pieces: a file over that shows a partial before it completes.
    data = os.urandom(14 * MiB + 5)
    repo = {**repo, "model.safetensors": data}
    hub.commit(REPO, files={"model.safetensors": data})
    etag = sha(data)
    theirs = cache / STORAGE / "blobs" / f"{etag}.incomplete"
    env = old_client_env(hub.endpoint, hf_env, cache)
    hub.faults.rate_per_conn = 4e6
    proc = old_hub.popen(OLD_ONE_FILE, REPO, cache, env=env)

    def midway() -> bool:
        try:
            return theirs.stat().st_size >= 256 * 1024
        except FileNotFoundError:
            return False

    kill_when(proc, midway)
    hub.faults.rate_per_conn = None
    size = theirs.stat().st_size
    assert 0 < size < len(data)
    # Whatever a crash left in it must not reach the cache: make its bytes wrong on purpose.
    theirs.write_bytes(b"\xff" * size)

    hub.clear_log()
    result = hfsync("sync", REPO, "--cache-dir", cache, "--chunk-size", "256K")
    assert result.returncode == 0, result.stderr
    snap = cache / STORAGE / "snapshots" / hub.resolve_revision(REPO)
    assert sha((snap / "model.safetensors").read_bytes()) == etag
    assert (cache / STORAGE / "blobs" / etag).read_bytes() == data

    again = old_hub.run(OLD_DOWNLOAD, REPO, cache, env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["files"] == {path: sha(d) for path, d in repo.items()}


def test_a_part_left_under_the_shared_name_by_an_older_hfsync_is_not_handed_to_the_old_client(
    hub: HubEmulator, hf_env: Path, repo: dict[str, bytes], old_hub: OldHub, tmp_path: Path
) -> None:
    """Caches written before the new naming may still hold `<etag>.incomplete` preallocated by
    hfsync; a dry run leaves it, a real sync takes it over, so the old client gets right bytes."""
    cache = tmp_path / "cache"
    data = repo["model.safetensors"]
    etag = sha(data)
    blobs = cache / STORAGE / "blobs"
    blobs.mkdir(parents=True)
    legacy = blobs / f"{etag}.incomplete"
    legacy.write_bytes(data[: 256 * 1024] + bytes(len(data) - 256 * 1024))  # preallocated
    journal_path(legacy).write_text(f"hfsync-journal 1 size={len(data)} etag={etag}\n0 262144\n")
    result = hfsync("sync", REPO, "--cache-dir", cache, "--include", "config.json")
    assert result.returncode == 0, result.stderr
    hub.faults.rate_per_conn = 1e6
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hfsync",
            "sync",
            REPO,
            "--cache-dir",
            str(cache),
            "-j",
            "1",
            "--chunk-size",
            "256K",
            "--quiet",
        ],  # fmt: skip
        env=dict(os.environ, HFSYNC_BACKOFF_BASE="0.01"),
    )
    part = blobs / f"{etag}.hfsync.incomplete"
    # Killed while it works on the part it took over (the blob is not there yet).
    kill_when(proc, lambda: journaled_bytes(part) > 256 * 1024 and not (blobs / etag).exists())
    assert not legacy.exists()
    hub.faults.rate_per_conn = None
    old = old_hub.run(OLD_DOWNLOAD, REPO, cache, env=old_client_env(hub.endpoint, hf_env, cache))
    assert old.returncode == 0, old.stderr
    assert json.loads(old.stdout)["one"] == etag


# -- part names of a local folder, against the names every official version opens ------------


def official_local_parts(name: str, etag: str) -> list[re.Pattern[str]]:
    """The `--local-dir` staging names of huggingface_hub 0.23-0.2x, 0.3x+ and 2.x."""
    short = base64.urlsafe_b64encode(hashlib.sha1(f"{name}.metadata".encode()).digest()).decode()
    return [
        re.compile(re.escape(f"{name}.{etag}.incomplete")),  # 0.23: metadata.with_suffix()
        re.compile(re.escape(f"{short}.{etag}") + r"(\.[0-9a-f]{8})?\.incomplete"),  # 0.3x, 2.x
    ]


@pytest.mark.parametrize("name", ["model.safetensors", "n" * 236 + ".bin", "ü" * 110 + ".bin"])
def test_local_part_names_are_never_an_official_name_and_fit_name_max(
    tmp_path: Path, name: str
) -> None:
    from hfsync.targets.local import LocalTarget

    etag = "e" * 64
    part = LocalTarget(tmp_path).part_path(RemoteFile(f"dir/{name}", 5, "f" * 40, etag))
    assert part.parent == tmp_path / ".cache" / "huggingface" / "download" / "dir"
    for pattern in official_local_parts(name, etag):
        assert not pattern.fullmatch(part.name)
    assert len(os.fsencode(journal_path(part).name)) <= 255
    assert part.name.endswith(".incomplete") and etag in part.name
