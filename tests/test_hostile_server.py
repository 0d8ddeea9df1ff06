"""Servers that misbehave in ways a retry cannot fix, or that a naive retry makes worse.

Each ends in a clear line and its exit code (or, when the failure is transient, survives),
never in an endless loop, a deleted part file or an "unexpected" error.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import requests
import urllib3.response

from hfsync import hub as hub_module
from hfsync.errors import RemotePathError
from hfsync.hub import HubClient
from hfsync.testing.hub import HubEmulator
from hfsync.transfer.fetch import BodyReader
from tests.clirun import hfsync, user_files

REPO = "org/hostile"
KiB = 1024
CHUNK_ARGS = ("--chunk-size", "256K", "--connections", "4")


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    files = {"model.safetensors": os.urandom(1024 * 1024 + 4321), "config.json": b'{"a": 1}\n'}
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def one_line(result) -> str:  # noqa: ANN001
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- 5: a server that ignores Range and always drops mid-file -------------------------------


def test_ignoring_range_and_always_dropping_ends_with_exit_4(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    """Every try restarts at byte 0 and dies at the same place: that is no progress."""
    hub.faults.ignore_range = True
    hub.faults.body_faults_on = "cdn"
    hub.faults.drop_next(after_bytes=100 * KiB, count=None)
    dest = tmp_path / "dest"
    result = hfsync("sync", REPO, dest, *CHUNK_ARGS, timeout=60)
    assert result.returncode == 4, result.stderr
    assert "model.safetensors" in one_line(result) and "tries" in result.stderr
    assert (dest / "config.json").read_bytes() == repo["config.json"]
    cdn = [r for r in hub.log if r.server == "cdn"]
    assert len(cdn) <= 12, f"bounded tries, not a loop: {len(cdn)} CDN requests"

    hub.reset_faults()  # a server that behaves again: the rerun completes
    again = hfsync("sync", REPO, dest, *CHUNK_ARGS, timeout=60)
    assert again.returncode == 0, again.stderr
    assert user_files(dest) == repo


# -- 6: a close-delimited body cut short ------------------------------------------------------


def test_close_delimited_body_cut_short_is_retried_not_an_integrity_failure(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    hub.faults.mirror_mode = True
    hub.faults.close_delimited = True
    hub.faults.drop_next(after_bytes=300 * KiB, count=4)  # the 2 small files use up 2
    dest = tmp_path / "dest"
    result = hfsync("sync", REPO, dest, "--connections", "1", timeout=60)
    assert result.returncode == 0, result.stderr
    assert user_files(dest) == repo
    model = [r for r in hub.log if r.file_path == "model.safetensors" and r.fault]
    cut = [r for r in model if r.body_bytes < len(repo["model.safetensors"])]
    assert len(cut) == 2, "both cut bodies were retried, the part file kept"


# -- 14: BodyReader.abort without urllib3's HTTPResponse.shutdown (urllib3 < 2.3) -------------


def test_abort_unblocks_a_read_without_urllib3_shutdown(
    hub: HubEmulator, repo: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(urllib3.response.HTTPResponse, "shutdown")
    monkeypatch.delattr(urllib3.response.BaseHTTPResponse, "shutdown")
    hub.faults.stall_next(after_bytes=1000, count=1)
    url = f"{hub.endpoint}/{REPO}/resolve/main/model.safetensors"
    response = requests.get(url, stream=True, timeout=(5, 60), allow_redirects=True)
    reader = BodyReader(response)
    buf = memoryview(bytearray(64 * KiB))
    outcome: list[object] = []

    def read_all() -> None:
        try:
            while reader.readinto(buf) > 0:
                pass
            outcome.append("eof")
        except Exception as exc:  # noqa: BLE001 - any unblocking is fine
            outcome.append(exc)

    thread = threading.Thread(target=read_all, daemon=True)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), "the read is blocked on the stalled server"
    reader.abort()
    thread.join(10)  # far below the 60 s read timeout the read would otherwise wait out
    assert not thread.is_alive(), "abort() did not unblock the read"
    response.close()


# -- 7: endpoints that are not the Hub, redirects and pagination no retry can fix ------------


def test_captive_portal_html_is_a_clear_network_error(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    """Exit 4: the network is not reaching the Hub (log in to the portal, the next run passes);
    it is not the Hub refusing access (3)."""
    hub.faults.captive_portal = True
    result = hfsync("sync", REPO, tmp_path / "dest", timeout=60)
    assert result.returncode == 4, result.stderr
    line = one_line(result)
    assert "text/html" in line and "captive portal" in line and "unexpected" not in line
    assert len(hub.log) == 1, "not retried"
    assert not (tmp_path / "dest").exists() or user_files(tmp_path / "dest") == {}


@pytest.mark.parametrize("endpoint", ["127.0.0.1:9", "ftp://127.0.0.1:9", "http://", "http://h:x"])
def test_endpoint_that_is_not_an_http_url_is_a_usage_error(endpoint: str, tmp_path: Path) -> None:
    result = hfsync("sync", "org/m", tmp_path / "d", "--endpoint", endpoint, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "--endpoint" in one_line(result) and "http(s)://" in result.stderr
    from_env = hfsync("info", "org/m", env={"HF_ENDPOINT": endpoint}, timeout=30)
    assert from_env.returncode == 2, from_env.stderr
    assert "HF_ENDPOINT" in one_line(from_env)


def test_redirect_to_a_non_http_scheme_is_not_retried(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    hub.faults.resolve_location = "ftp://127.0.0.1/weights"
    result = hfsync("sync", REPO, tmp_path / "dest", "--connections", "1", timeout=60)
    assert result.returncode == 4, result.stderr
    assert "not retried" in one_line(result)
    resolves = [r for r in hub.log if "/resolve/" in r.path]
    assert len(resolves) == 3, "one /resolve per file, no retries"


def test_pagination_that_links_to_itself_is_refused(
    hub: HubEmulator, repo: dict, tmp_path: Path
) -> None:
    hub.faults.tree_next_loop = True
    result = hfsync("sync", REPO, tmp_path / "dest", timeout=60)
    assert result.returncode == 5, result.stderr
    assert "pagination" in one_line(result)
    assert sum(1 for r in hub.log if "/tree/" in r.path) == 2


def test_pagination_without_end_is_refused(
    hub: HubEmulator, repo: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "MAX_PAGES", 2)
    hub.page_size = 1  # three files: three pages, more than MAX_PAGES allows
    client = HubClient(hub.endpoint)
    commit = client.resolve_revision(REPO, "model", "main")
    with pytest.raises(RemotePathError, match="never ends"):
        client.list_files(REPO, "model", commit)
