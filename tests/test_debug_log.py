"""`--debug` / HFSYNC_DEBUG (issue 11): one stderr line per HTTP request — method, URL, status,
bytes, time — with no token and no signed-URL query secret anywhere in the output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hfsync.httplog import safe_url
from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync

TOKEN = "hf_DebugLogSecretToken0123456789"
LINE = re.compile(r"^hfsync: http: (\w+) (\S+) -> (\d{3}) (\d+) B (\d+\.\d{3}) s$")


def http_lines(stderr: str) -> list[tuple[str, str, int, int]]:
    found = []
    for line in stderr.splitlines():
        match = LINE.match(line)
        if match:
            found.append((match[1], match[2], int(match[3]), int(match[4])))
    return found


BIG = b"\7" * (2 * 1024 * 1024 + 5)  # LFS (over the 1 MiB test threshold): a CDN redirect


@pytest.fixture
def private_repo(hub: HubEmulator, hf_env: Path) -> HubEmulator:
    hub.create_repo("org/secret", private=True)
    hub.commit("org/secret", files={"config.json": b'{"a": 1}', "weights.bin": BIG})
    hub.add_token(TOKEN, grants=["org/secret"])
    return hub


def test_debug_logs_api_and_resolve_requests_with_status_and_bytes(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    hub.commit("org/pub", files={"config.json": b'{"x": 2}', "weights.bin": BIG})
    run = hfsync("sync", "org/pub", tmp_path / "out", "--debug")
    assert run.returncode == 0, run.stderr
    lines = http_lines(run.stderr)
    revision = ("GET", f"{hub.endpoint}/api/models/org/pub/revision/main")
    assert revision in [line[:2] for line in lines]
    tree = [line for line in lines if "/api/models/org/pub/tree/" in line[1]]
    assert tree and all(status == 200 and size > 0 for _, _, status, size in tree), lines
    # a small file may skip its /resolve for the predicted resolve-cache URL (resolve_cache.py)
    resolves = [line for line in lines if "/resolve/" in line[1] or "/resolve-cache/" in line[1]]
    assert {url.rsplit("/", 1)[1] for _, url, *_ in resolves} == {
        "config.json",
        ".gitattributes",
        "weights.bin",
    }, lines

    # bytes are body bytes received: the small file's 2xx lines add up to its size, the big
    # one's (from the CDN after the resolve's 302) to its size, whatever the ranges were
    def body(name: str) -> int:
        return sum(n for _, url, status, n in lines if url.split("?")[0].endswith(name)
                   and 200 <= status < 300)  # fmt: skip

    assert body("/config.json") == len(b'{"x": 2}'), lines
    big = [line for line in resolves if line[1].endswith("/weights.bin")]
    assert big[0][2] == 302, "the LFS file's resolve redirects to the CDN"
    cdn = [line for line in lines if "X-Amz-Signature=***" in line[1]]
    assert cdn and sum(n for *_, status, n in cdn if status in (200, 206)) == len(BIG), lines


def test_a_private_run_never_shows_the_token_or_the_signature(
    private_repo: HubEmulator, tmp_path: Path
) -> None:
    run = hfsync("--debug", "sync", "org/secret", tmp_path / "out", env={"HF_TOKEN": TOKEN})
    assert run.returncode == 0, run.stderr
    lines = http_lines(run.stderr)
    assert any("/resolve/" in url for _, url, *_ in lines), run.stderr
    signed = [url for _, url, *_ in lines if "X-Amz-Signature=" in url]
    assert signed, "the CDN requests are logged, their query keys kept"
    for url in signed:
        values = {value for _, _, value in (p.partition("=") for p in url.split("?")[1].split("&"))}
        assert values == {"***"}, url
    assert TOKEN not in run.stdout + run.stderr
    assert "Bearer" not in run.stderr and "Authorization" not in run.stderr
    # what the emulator really signed with appears nowhere in the output
    secrets = {v for r in private_repo.log if r.server == "cdn" for v in r.query.values()}
    assert secrets
    assert not [v for v in secrets if len(v) >= 8 and v in run.stdout + run.stderr]


def test_hfsync_debug_variable_turns_it_on_and_it_is_off_by_default(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    hub.commit("org/pub", files={"config.json": b"{}"})
    quiet = hfsync("sync", "org/pub", tmp_path / "a")
    assert quiet.returncode == 0 and not http_lines(quiet.stderr), quiet.stderr
    loud = hfsync("info", "org/pub", env={"HFSYNC_DEBUG": "1"})
    assert loud.returncode == 0 and http_lines(loud.stderr), loud.stderr


def test_safe_url_masks_query_values_and_userinfo() -> None:
    url = "https://u:pw@cdn.example/x/y.bin?X-Amz-Signature=abc123&Expires=99&recursive=true"
    assert (
        safe_url(url)
        == "https://cdn.example/x/y.bin?X-Amz-Signature=***&Expires=***&recursive=true"
    )
