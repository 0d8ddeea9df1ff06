"""The executor against the Hub emulator: byte-exact, one resolve per file, faults survived."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hfsync.errors import IntegrityError, NetworkError, NotFoundError
from hfsync.hub import HubClient
from hfsync.retry import RetryPolicy
from hfsync.testing.hub import HubEmulator
from hfsync.transfer import FileJob, NullProgress, TransferConfig, run_transfers

KiB = 1024
MiB = 1024 * 1024
CHUNK = 256 * KiB
REPO = "org/model"


def payload(size: int, seed: int) -> bytes:
    """Deterministic, non-repeating bytes (a repeated pattern could hide offset mistakes)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d-%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:size])


@dataclass
class Setup:
    """A repo on the emulator, a client for it and jobs that land files in `dest`."""

    hub: HubEmulator
    client: HubClient
    commit: str
    dest: Path
    contents: dict[str, bytes]
    finalized: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def jobs(self, paths: list[str] | None = None) -> list[FileJob]:
        infos = self.hub.files(REPO, self.commit)
        jobs = []
        for path in paths or sorted(self.contents):
            info = infos[path]
            etag = info.lfs_sha256 or info.blob_sha1
            part = self.dest / ".cache/huggingface/download" / f"{path}.{etag}.incomplete"
            jobs.append(
                FileJob(
                    path=path,
                    size=info.size,
                    etag=etag,
                    url=self.client.resolve_url(REPO, "model", self.commit, path),
                    part_path=part,
                    finalize=self._finalizer(path),
                )
            )
        return jobs

    def _finalizer(self, path: str) -> Callable[[Path], None]:
        def finalize(part: Path) -> None:
            final = self.dest / path
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, final)
            with self.lock:
                self.finalized.append(path)

        return finalize

    def run(self, config: TransferConfig | None = None, progress=None, paths=None):  # noqa: ANN001
        config = config or TransferConfig(connections=4, chunk_size=CHUNK, max_tries=4)
        return run_transfers(self.jobs(paths), self.client, config, progress or NullProgress())

    def assert_exact(self, paths: list[str] | None = None) -> None:
        for path in paths or self.contents:
            assert (self.dest / path).read_bytes() == self.contents[path], path

    def leftovers(self) -> list[str]:
        cache = self.dest / ".cache/huggingface/download"
        return sorted(p.name for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def make_setup(hub: HubEmulator, tmp_path: Path, files: dict[str, bytes], token=None) -> Setup:  # noqa: ANN001
    commit = hub.commit(REPO, files)
    client = HubClient(hub.endpoint, token, pool_size=20, retry=RetryPolicy(base_delay=0.01))
    return Setup(hub, client, commit, tmp_path / "dest", files)


def cdn_gets(hub: HubEmulator, since: float = 0.0) -> list:
    """CDN GETs that arrived after `since` (aborted requests of an earlier run log late)."""
    return [r for r in hub.log if r.server == "cdn" and r.method == "GET" and r.time >= since]


def resolves(hub: HubEmulator, path: str | None = None) -> list:
    return [
        r
        for r in hub.log
        if r.server == "api" and "/resolve/" in r.path and (path is None or r.path.endswith(path))
    ]


def range_start(r) -> int:  # noqa: ANN001
    return int(r.range.split("=")[1].split("-")[0])


@pytest.fixture
def big(hub: HubEmulator, tmp_path: Path) -> Setup:
    return make_setup(hub, tmp_path, {"model.safetensors": payload(3 * MiB + 12345, 1)})


def test_multichunk_lfs_download_is_exact_with_one_resolve(big: Setup) -> None:
    report = big.run()
    assert [o.ok for o in report.outcomes] == [True], report.outcomes
    big.assert_exact()
    assert len(resolves(big.hub)) == 1
    gets = cdn_gets(big.hub)
    assert len(gets) == 13  # ceil((3 MiB + 12345) / 256 KiB)
    assert all(r.range and not r.had_auth for r in gets)
    assert big.leftovers() == []
    assert report.bytes_transferred == len(big.contents["model.safetensors"])


def test_mixed_repo_small_files_land_first_and_connections_are_reused(
    hub: HubEmulator, tmp_path: Path
) -> None:
    files = {
        "a.safetensors": payload(4 * MiB, 2),
        "b.safetensors": payload(4 * MiB + 1, 3),
        "config.json": b'{"hidden": 8}',
        "empty.txt": b"",
        "tokenizer.json": payload(300 * KiB, 4),  # regular file, several chunks
        "sub/dir/readme.md": b"# hi\n" * 100,
    }
    s = make_setup(hub, tmp_path, files)
    report = s.run()
    assert all(o.ok for o in report.outcomes), [o.error for o in report.outcomes]
    s.assert_exact()
    # small files are queued first, so they land before the big ones (16 chunks each)
    small = {"config.json", "empty.txt", "sub/dir/readme.md", "tokenizer.json"}
    assert set(s.finalized[:4]) == small
    for path in files:
        if files[path]:
            assert len(resolves(hub, path)) == 1, path
    # 4 workers: keep-alive means few TCP connections per server, not one per request
    api_conns = {r.conn_id for r in hub.log if r.server == "api"}
    cdn_conns = {r.conn_id for r in hub.log if r.server == "cdn"}
    assert len(api_conns) <= 4 and len(cdn_conns) <= 4, (len(api_conns), len(cdn_conns))


def test_private_repo_small_file_served_directly(hub: HubEmulator, tmp_path: Path) -> None:
    hub.create_repo(REPO, private=True)
    hub.add_token("hf_secret", grants=[REPO])
    s = make_setup(
        hub, tmp_path, {"c.json": b"x" * 1000, "w.bin": payload(MiB + 7, 5)}, "hf_secret"
    )
    report = s.run()
    assert all(o.ok for o in report.outcomes), [o.error for o in report.outcomes]
    s.assert_exact()
    assert all(r.had_auth for r in hub.log if r.server == "api")
    assert not any(r.had_auth for r in hub.log if r.server == "cdn")


def test_missing_token_is_a_typed_error_without_retries(hub: HubEmulator, tmp_path: Path) -> None:
    hub.create_repo(REPO, private=True)
    s = make_setup(hub, tmp_path, {"c.json": b"x" * 1000})
    report = s.run()
    [outcome] = report.outcomes
    assert not outcome.ok and isinstance(outcome.error, NotFoundError)
    assert len(resolves(hub)) == 1
    assert s.finalized == []


class CallbackProgress(NullProgress):
    """Runs `action` once, from a worker thread, after `after` bytes were reported."""

    def __init__(self, after: int, action: Callable[[], None]) -> None:
        self.after = after
        self.action = action
        self.seen = 0
        self.fired = False
        self.lock = threading.Lock()

    def advance(self, job: FileJob, nbytes: int) -> None:
        with self.lock:
            self.seen += nbytes
            fire = not self.fired and self.seen >= self.after
            self.fired = self.fired or fire
        if fire:
            self.action()


def ok(report) -> None:  # noqa: ANN001
    assert all(o.ok for o in report.outcomes), [o.error for o in report.outcomes]


def test_dropped_connection_resumes_from_last_byte(big: Setup) -> None:
    big.hub.faults.body_faults_on = "cdn"
    big.hub.faults.drop_next(after_bytes=100 * KiB, count=2)
    ok(big.run())
    big.assert_exact()
    gets = cdn_gets(big.hub)
    assert sum(r.fault is not None and "drop" in r.fault for r in gets) == 2
    resumed = [r for r in gets if range_start(r) % CHUNK]
    # Each drop cuts a body 100 KiB in, so a retry starts 100 KiB (or, when the retry itself
    # was the second body dropped, 200 KiB) past its chunk start: never back at the start.
    assert len(resumed) == 2
    assert all(range_start(r) % CHUNK in (100 * KiB, 200 * KiB) for r in resumed)
    size = len(big.contents["model.safetensors"])
    assert sum(r.body_bytes for r in gets) == size  # nothing fetched twice


def test_stalled_connection_times_out_and_resumes(big: Setup) -> None:
    big.hub.faults.body_faults_on = "cdn"
    big.hub.faults.stall_next(after_bytes=64 * KiB, count=1)
    ok(big.run(TransferConfig(connections=4, chunk_size=CHUNK, read_timeout=0.5)))
    big.assert_exact()
    gets = cdn_gets(big.hub)
    # a read cut by the timeout loses what was buffered of that read, so the retry starts at
    # the chunk start or later, never before
    [stalled] = [r for r in gets if r.fault and "stall" in r.fault]
    retried = [r for r in gets if r is not stalled and range_start(r) >= range_start(stalled)]
    assert any(range_start(r) < range_start(stalled) + CHUNK for r in retried)
    assert len(gets) == 14


def test_5xx_and_429_are_retried(big: Setup) -> None:
    big.hub.faults.inject(503, count=2, server="cdn")
    big.hub.faults.inject(503, count=1, server="api")
    ok(big.run())
    big.assert_exact()
    assert sum(r.status == 503 for r in big.hub.log) == 3


def test_429_retry_after_is_honoured(big: Setup) -> None:
    import time

    big.hub.faults.inject(429, count=1, server="api", retry_after=1)
    start = time.monotonic()
    ok(big.run())
    assert time.monotonic() - start >= 0.9
    big.assert_exact()


def test_persistent_5xx_gives_network_error_and_keeps_journal(big: Setup) -> None:
    big.hub.faults.inject(503, count=None, server="cdn")
    report = big.run(TransferConfig(connections=2, chunk_size=CHUNK, max_tries=3))
    [outcome] = report.outcomes
    assert not outcome.ok and isinstance(outcome.error, NetworkError)
    assert "model.safetensors" in str(outcome.error) and "3 tries" in str(outcome.error)
    assert big.finalized == []


def test_expired_url_is_resolved_again_once(big: Setup) -> None:
    progress = CallbackProgress(MiB, big.hub.expire_all_urls)
    ok(big.run(progress=progress))
    big.assert_exact()
    assert progress.fired
    assert len(resolves(big.hub)) == 2
    assert any(r.status == 403 for r in cdn_gets(big.hub))


def test_server_ignoring_range_is_streamed_from_zero(big: Setup) -> None:
    big.hub.faults.ignore_range = True
    ok(big.run())
    big.assert_exact()


def test_mirror_without_redirect_length_or_range(hub: HubEmulator, tmp_path: Path) -> None:
    s = make_setup(hub, tmp_path, {"w.safetensors": payload(MiB + 3, 6), "c.json": b"{}"})
    hub.faults.mirror_mode = True
    ok(s.run())
    s.assert_exact()
    assert not cdn_gets(hub)


def test_single_corrupted_byte_is_caught_and_refetched(big: Setup) -> None:
    big.hub.faults.body_faults_on = "cdn"
    big.hub.faults.corrupt_next(count=1)
    report = big.run()
    ok(report)
    big.assert_exact()
    size = len(big.contents["model.safetensors"])
    assert report.bytes_transferred == 2 * size


def test_persistent_corruption_is_an_integrity_error(big: Setup) -> None:
    big.hub.faults.body_faults_on = "cdn"
    big.hub.faults.corrupt_next(count=None)
    report = big.run()
    [outcome] = report.outcomes
    assert not outcome.ok and isinstance(outcome.error, IntegrityError)
    assert "model.safetensors" in str(outcome.error)
    assert big.finalized == [] and not (big.dest / "model.safetensors").exists()
    assert big.leftovers() == []


def test_persistent_corruption_in_stream_mode(big: Setup) -> None:
    big.hub.faults.ignore_range = True
    big.hub.faults.corrupt_next(count=None)
    [outcome] = big.run().outcomes
    assert isinstance(outcome.error, IntegrityError)
    assert big.finalized == [] and big.leftovers() == []


@pytest.mark.parametrize("etag", ["not-a-content-id", "", "g" * 40, "a" * 63])
def test_an_etag_that_cannot_be_hashed_is_refused_not_trusted_by_size(
    big: Setup, etag: str
) -> None:
    """Defence in depth behind the listing validator: no id to hash against, no 'verified'."""
    [job] = big.jobs()
    job.etag = etag
    big.hub.faults.corrupt_next(count=None)
    report = run_transfers([job], big.client, TransferConfig(connections=2, chunk_size=CHUNK))
    [outcome] = report.outcomes
    assert not outcome.ok and isinstance(outcome.error, IntegrityError)
    assert "not a content id" in str(outcome.error)
    assert not big.finalized and not (big.dest / "model.safetensors").exists()
    assert not cdn_gets(big.hub), "nothing downloaded"
