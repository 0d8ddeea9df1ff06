"""A fleet pull resolves each file once, on the driving machine, and hands the listing and the
signed CDN URLs to every host over the channel's stdin (docs/scale-out.md). Real sshd, three
login users as three hosts, the Hub emulator's request log as the meter. Also: a pull dry run
plans from the host's state without sending the archive or creating anything there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hfsync.remote.handoff import Handoff
from hfsync.remote.zipapp import build_zipapp
from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files
from tests.procsample import ProcSampler
from tests.sshd import LoginUser, SSHServer, create_login_user, remove_login_user
from tests.tcpproxy import TCPProxy

pytest_plugins = ["tests.sshd"]
pytestmark = pytest.mark.usefixtures("pull_home")  # one archive build per session

REPO = "org/model"
TOKEN = "hf_fleetSecretToken0123456789abcdef"


def _users(server: SSHServer, n: int) -> Iterator[list[LoginUser]]:
    made = [create_login_user(server.client_key.with_suffix(".pub")) for _ in range(n)]
    yield made
    for u in made:
        subprocess.run(["pkill", "-KILL", "-u", u.name], check=False)
        remove_login_user(u)


@pytest.fixture
def three(sshd_server: SSHServer) -> Iterator[list[LoginUser]]:
    yield from _users(sshd_server, 3)


@pytest.fixture
def one(sshd_server: SSHServer) -> Iterator[list[LoginUser]]:
    yield from _users(sshd_server, 1)


def make_repo(hub: HubEmulator, private: bool = False) -> dict[str, bytes]:
    files = {
        "config.json": b'{"model_type": "demo"}\n',
        "tokenizer.json": b'{"vocab": {}}\n',
        "deep/notes.txt": b"nested\n",
        "model-00001.safetensors": os.urandom(2 * 1024 * 1024),
        "model-00002.safetensors": os.urandom(1024 * 1024 + 17),
        "onnx/model.onnx": os.urandom(40_000),
    }
    hub.create_repo(REPO, private=private)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def fleet(server: SSHServer, users: list[LoginUser], dest: str, *args: object, env=None):  # noqa: ANN001, ANN201
    first, *rest = users
    hosts = [a for u in rest for a in ("--host", server.command(user=u.name))]
    return hfsync(
        "to-remote", REPO, server.command(user=first.name), dest, "--via", "pull",
        "--parallel-hosts", str(len(users)), *hosts, *args, env=env,
    )  # fmt: skip


def resolves(hub: HubEmulator) -> list:
    return [r for r in hub.log if r.server == "api" and "/resolve/" in r.path]


def by_hfsync(hub: HubEmulator, action: str) -> list:
    """API calls of one kind made by hfsync (the probe's own GET is python's urllib)."""
    return [
        r
        for r in hub.log
        if r.server == "api"
        and f"/{action}/" in r.path
        and r.headers.get("user-agent", "").startswith("hfsync/")
    ]


def test_three_hosts_resolve_each_file_once_in_total_and_list_nothing(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, three: list[LoginUser]
) -> None:
    repo = make_repo(hub)
    hub.clear_log()
    result = fleet(sshd_server, three, "models/m", "--json")
    assert result.returncode == 0, result.stderr
    for u in three:
        assert user_files(u.home / "models/m") == repo
    lfs = [p for p in repo if p.endswith((".safetensors", ".onnx"))]
    small = [p for p in repo if p not in lfs]
    per_file = Counter(r.file_path for r in resolves(hub))
    assert all(per_file[p] == 1 for p in lfs), per_file  # once each, not once per host
    # one small file confirms where /resolve sends them; the rest are no /resolve calls
    assert sum(per_file[p] for p in small) == 1, per_file
    assert {r.method for r in resolves(hub)} == {"HEAD"}  # by the driver: no body fetched
    checked = Counter(
        r.file_path
        for r in hub.log
        if r.server == "api" and r.method == "HEAD" and "/resolve-cache/" in r.path
    )
    assert checked == Counter(set(small)), checked  # each handed URL asked once, by the driver
    assert len(by_hfsync(hub, "tree")) == 1  # the driver's listing; none from the hosts
    assert len(by_hfsync(hub, "revision")) == 1
    cdn = Counter(r.file_path for r in hub.log if r.server == "cdn" and r.body_bytes)
    assert all(cdn[p] >= 3 for p in lfs), cdn  # each host fetched its bytes from the CDN
    doc = json.loads(result.stdout)
    assert all(h["result"]["api_calls"] == 0 for h in doc["hosts"]), doc["hosts"]


def test_a_hub_that_redirects_elsewhere_than_predicted_gets_every_file_resolved(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, three: list[LoginUser]
) -> None:
    repo = make_repo(hub)
    hub.faults.resolve_cache_suffix = "?v=2"  # the 307 Location differs from the prediction
    hub.clear_log()
    result = fleet(sshd_server, three, "models/m")
    assert result.returncode == 0, result.stderr
    for u in three:
        assert user_files(u.home / "models/m") == repo
    assert Counter(r.file_path for r in resolves(hub)) == Counter(set(repo))  # as before


def test_a_predicted_url_that_fails_falls_back_to_resolve_and_ends_the_predictions(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, three: list[LoginUser]
) -> None:
    repo = make_repo(hub)
    hub.clear_log()
    # the driver's check of tokenizer.json's predicted URL (its first request naming it) fails
    hub.faults.inject(404, count=1, server="api", path_contains="tokenizer.json", method="HEAD")
    result = fleet(sshd_server, three, "models/m")
    assert result.returncode == 0, result.stderr
    for u in three:
        assert user_files(u.home / "models/m") == repo
    heads = Counter(r.file_path for r in resolves(hub) if r.method == "HEAD")
    assert heads["tokenizer.json"] == 1, heads  # the driver's fallback, once
    assert not [r for r in resolves(hub) if r.method == "GET"]  # every host got every URL


def test_a_url_that_expired_before_the_host_used_it_is_re_resolved_by_the_host(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, three: list[LoginUser]
) -> None:
    repo = make_repo(hub)
    hub.clear_log()
    hub.faults.expire_after_cdn_requests = 1  # every URL the driver got dies at first use
    result = fleet(sshd_server, three, "models/m", env={"HFSYNC_BACKOFF_BASE": "0.01"})
    assert result.returncode == 0, result.stderr
    for u in three:
        assert user_files(u.home / "models/m") == repo
    expired = [r for r in hub.log if r.server == "cdn" and r.status == 403]
    assert expired, "some host met an expired URL"
    # The hosts' own re-resolves: only files whose handed CDN URL expired (the small files'
    # handed resolve-cache URLs stay good), not every file as a host without a handoff does.
    again = {r.file_path for r in resolves(hub) if r.method == "GET"}
    lfs = {p for p in repo if p.endswith((".safetensors", ".onnx"))}
    assert again and again <= lfs, again
    assert len(by_hfsync(hub, "tree")) == 1


def test_private_repo_token_and_signed_urls_are_in_no_remote_argv_or_file(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, three: list[LoginUser]
) -> None:
    repo = make_repo(hub, private=True)
    hub.add_token(TOKEN, grants=[REPO])
    hub.faults.rate_per_conn = 3_000_000  # a second or so of download to sample during
    uids = {u.home.stat().st_uid for u in three}

    def secrets() -> list[bytes]:
        return [TOKEN.encode(), *(s.encode() for s in list(hub.signer.issued))]

    sampler = ProcSampler(
        uids, secrets, lambda argv: b".pyz" in argv and b"--handoff-stdin" in argv
    )
    with sampler:
        result = fleet(sshd_server, three, "private", env={"HF_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    assert sampler.seen.is_set(), "the sampler saw a host's hfsync take the handoff"
    assert sampler.leaks == []
    signatures = secrets()[1:]
    assert signatures, "the driver resolved signed URLs to hand over"
    for u in three:
        assert user_files(u.home / "private") == repo
        for path in u.home.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                assert not any(s in data for s in secrets()), path
    assert TOKEN not in result.stdout + result.stderr
    cdn_gets = [r for r in hub.log if r.server == "cdn"]
    assert cdn_gets and not any(r.had_auth for r in cdn_gets)  # no token off the Hub origin


def test_pull_dry_run_sends_no_archive_and_creates_nothing_on_the_host(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, one: list[LoginUser], tmp_path: Path
) -> None:
    repo = make_repo(hub)
    (user,) = one
    archive = build_zipapp().size
    with TCPProxy(sshd_server.host, sshd_server.port) as proxy:
        known = tmp_path / "known_hosts_proxy"
        known.write_text(sshd_server.known_hosts_entry(port=proxy.port))
        command = sshd_server.command(port=proxy.port, known_hosts=known, user=user.name)
        for via in ("pull", "auto"):
            before = proxy.bytes_up + proxy.bytes_down
            result = hfsync("to-remote", REPO, command, "models/m", "--via", via, "--dry-run")
            moved = proxy.bytes_up + proxy.bytes_down - before
            assert result.returncode == 0, result.stderr
            assert f"dry run: {len(repo)} files: {len(repo)} new" in result.stdout
            assert moved < archive / 4, (moved, archive)
            assert not (user.home / ".cache/hfsync").exists()
            assert not (user.home / "models").exists()
        as_json = hfsync("to-remote", REPO, command, "m", "--via", "pull", "-n", "--json")
    doc = json.loads(as_json.stdout)
    assert doc["via"] == "pull" and doc["dry_run"] is True
    assert doc["counts"]["new"] == len(repo)


def test_the_host_refuses_an_unsafe_handoff_listing(hf_env: Path, tmp_path: Path) -> None:
    """`sync --handoff-stdin` trusts the handed listing no more than the Hub's answer."""
    from hfsync.files import RemoteFile

    sha = "a" * 40
    bad = Handoff(sha, [RemoteFile("../escape", 3, "b" * 40)], {}, None)
    proc = subprocess.run(
        [sys.executable, "-m", "hfsync", "sync", REPO, str(tmp_path / "d"), "--revision", sha,
         "--handoff-stdin"],
        input=bad.encode(), capture_output=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 5, proc.stderr
    assert proc.stderr.count(b"\n") == 1 and b"unsafe path" in proc.stderr
    assert not (tmp_path / "d").exists()
    ok = RemoteFile("a.txt", 3, "b" * 40)
    ftp = Handoff(sha, [ok], {"a.txt": "file:///etc/passwd"}, None)
    proc = subprocess.run(
        [sys.executable, "-m", "hfsync", "sync", REPO, str(tmp_path / "d"), "--revision", sha,
         "--handoff-stdin"],
        input=ftp.encode(), capture_output=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 5 and b"bad URL" in proc.stderr, proc.stderr
