"""One rate-limit gate per origin: a 429/503 wait holds off every worker and the API client.

Timing is read from the emulator's request log (arrival times), never from sleeps in the test.
"""

from __future__ import annotations

import datetime
import email.utils
import time
from pathlib import Path

import pytest

from hfsync.errors import NetworkError
from hfsync.gate import OriginGate
from hfsync.hub import HubClient
from hfsync.retry import RetryPolicy, server_wait
from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files

REPO = "org/limited"
SMALL = {f"f{i:02d}.txt": f"file {i}\n".encode() for i in range(12)}


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    hub.commit(REPO, files=SMALL)
    return {**SMALL, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def test_retry_after_on_one_resolve_holds_off_every_worker(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    """The reproduction: another worker used to hit /resolve 0.01 s after a 429 said wait 1 s."""
    latency = 0.1  # keeps requests flowing while the 429 is answered
    hub.faults.latency = latency
    hub.faults.inject(429, count=1, server="api", path_contains="/resolve/", retry_after=1)
    dest = tmp_path / "dest"
    result = hfsync("sync", REPO, dest, "--connections", "4", timeout=60)
    assert result.returncode == 0, result.stderr
    assert user_files(dest) == repo

    log = hub.log
    [limited] = [r for r in log if r.status == 429]
    answered = limited.time + latency  # the 429 left the server about then
    early = [r for r in log if r.server == "api" and answered + 0.05 < r.time < answered + 0.95]
    assert not early, f"{len(early)} requests during the server's wait: {[r.path for r in early]}"
    assert any(r.time >= answered + 0.95 for r in log), "the work resumed after the wait"


def test_server_waits_do_not_use_up_the_tries(hub: HubEmulator, repo: dict, tmp_path: Path) -> None:
    """More 429s than tries (6), each with a short Retry-After: paced, not a failure."""
    hub.faults.inject(429, count=8, server="api", path_contains="/revision/", retry_after=0.02)
    hub.faults.inject(503, count=8, server="api", path_contains="f03.txt", retry_after=0.02)
    dest = tmp_path / "dest"
    result = hfsync("sync", REPO, dest, "--connections", "2", timeout=60)
    assert result.returncode == 0, result.stderr
    assert user_files(dest) == repo


def test_server_wait_budget_ends_with_network_error(hub: HubEmulator, hf_env: Path) -> None:
    hub.commit(REPO, files=SMALL)
    hub.faults.inject(429, count=None, server="api", retry_after=0.2)
    client = HubClient(hub.endpoint, retry=RetryPolicy(base_delay=0.01, server_wait_budget=0.5))
    started = time.monotonic()
    with pytest.raises(NetworkError, match="budget"):
        client.resolve_revision(REPO, "model", "main")
    assert time.monotonic() - started < 5
    assert 2 <= len(hub.log) <= 6, "paced by the server's waits, then gave up"


def test_concurrent_resolves_per_origin_are_capped(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    # A private repo's /resolve serves each small file itself: every file is a /resolve call
    # (a public repo's small files mostly skip theirs, see test_resolve_cache.py).
    hub.create_repo(REPO, private=True)
    hub.add_token("hf_gate_test", grants=[REPO])
    files = {f"g{i:02d}.txt": b"x%d\n" % i for i in range(16)}
    hub.commit(REPO, files=files)
    latency = 0.3
    hub.faults.latency = latency
    env = {"HF_TOKEN": "hf_gate_test"}
    result = hfsync("sync", REPO, tmp_path / "d", "--connections", "16", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    starts = sorted(r.time for r in hub.log if "/resolve/" in r.path)
    assert len(starts) == 17
    # each /resolve takes `latency`: arrivals closer together than that were concurrent
    busiest = max(sum(1 for t in starts if s <= t < s + latency * 0.8) for s in starts)
    assert busiest <= 8, f"{busiest} /resolve calls at once"


def test_retry_after_as_http_date() -> None:
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=30)
    wait = server_wait({"Retry-After": email.utils.format_datetime(soon, usegmt=True)})
    assert wait is not None and 28 <= wait <= 30
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert server_wait({"Retry-After": past}) == 0.0
    assert server_wait({"Retry-After": "soon-ish"}) is None
    assert server_wait({"Retry-After": "nan"}) is None


def test_gate_counts_overlapping_waits_once() -> None:
    gate = OriginGate(budget=1.5)
    url = "https://cdn.example/x"
    for _ in range(10):  # ten workers told "wait 1 s" at the same moment: 1 s, not 10
        gate.hold_off(url, 1.0)
    assert 0.9 < gate.remaining("https://cdn.example/other") <= 1.0
    assert gate.remaining("https://hub.example/") == 0.0, "other origins are not held"
    with pytest.raises(NetworkError, match="budget"):
        gate.hold_off(url, 5.0)
