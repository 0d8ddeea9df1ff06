"""Small files of a public repo skip their `/resolve` hop once the Hub confirmed where it leads.

Read from the emulator's request log with one connection, so the files go in a known order:
smallest first (`a.txt` … `e.txt` are smaller than the repo's `.gitattributes`), the LFS file
last. Every test also checks the bytes that landed: a prediction only ever changes which URL
is asked, never what is accepted.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urljoin

import pytest

from hfsync.hub import HubClient
from hfsync.orchestrate import sync
from hfsync.resolve_cache import ResolveShortcuts
from hfsync.testing.hub import HubEmulator
from hfsync.transfer.jobs import TransferConfig
from tests.clirun import user_files

REPO = "org/many"
SMALL = {f"{name}.txt": name.encode() * (i + 2) for i, name in enumerate("abcde")}
TOKEN = "hf_resolve_cache_test"


@pytest.fixture
def files(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    content = {**SMALL, "weights.bin": os.urandom(2 * 1024 * 1024)}  # LFS by size
    hub.create_repo(REPO)
    hub.commit(REPO, files=content)
    return {**content, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def _run(hub: HubEmulator, dest: Path, token: str | None = None) -> None:
    hub.clear_log()
    sync(REPO, dest, endpoint=hub.endpoint, token=token, config=TransferConfig(connections=1))


def _file_requests(hub: HubEmulator) -> list[tuple[str, str, int | None]]:
    """(kind, repo path, status) of every file request, in arrival order."""
    out = []
    for r in hub.log:
        if r.server == "cdn":
            kind = "cdn"
        elif "/resolve-cache/" in r.path:
            kind = "cache"
        elif "/resolve/" in r.path:
            kind = "resolve"
        else:
            continue
        # an injected answer is not routed, so it names no file: its path's last part does
        out.append((kind, r.file_path or r.path.rsplit("/", 1)[-1], r.status))
    return out


def test_small_files_after_the_first_go_to_resolve_cache_directly(
    hub: HubEmulator, files: dict[str, bytes], tmp_path: Path
) -> None:
    dest = tmp_path / "d"
    _run(hub, dest)
    assert user_files(dest) == files
    assert _file_requests(hub) == [
        ("resolve", "a.txt", 307),  # the Hub shows where small files of this commit are
        ("cache", "a.txt", 206),
        *[("cache", f"{n}.txt", 206) for n in "bcde"],  # one request each, no /resolve
        ("cache", ".gitattributes", 206),
        ("resolve", "weights.bin", 302),  # LFS files are never predicted
        ("cdn", "weights.bin", 206),
    ]


def test_a_failed_prediction_falls_back_and_stops_predicting(
    hub: HubEmulator, files: dict[str, bytes], tmp_path: Path
) -> None:
    # the first request for c.txt is its predicted resolve-cache URL: that one answers 404
    hub.faults.inject(404, count=1, server="api", path_contains="/c.txt")
    dest = tmp_path / "d"
    _run(hub, dest)
    assert user_files(dest) == files
    assert _file_requests(hub) == [
        ("resolve", "a.txt", 307),
        ("cache", "a.txt", 206),
        ("cache", "b.txt", 206),
        ("cache", "c.txt", 404),  # the surprise: c.txt takes /resolve ...
        ("resolve", "c.txt", 307),
        ("cache", "c.txt", 206),
        *[  # ... and so does every later file
            step
            for name in ("d.txt", "e.txt", ".gitattributes")
            for step in (("resolve", name, 307), ("cache", name, 206))
        ],
        ("resolve", "weights.bin", 302),
        ("cdn", "weights.bin", 206),
    ]


def test_a_location_other_than_the_predicted_one_confirms_nothing(
    hub: HubEmulator, files: dict[str, bytes], tmp_path: Path
) -> None:
    hub.faults.resolve_cache_suffix = "?v=2"
    dest = tmp_path / "d"
    _run(hub, dest)
    assert user_files(dest) == files
    small = [step for step in _file_requests(hub) if step[1] != "weights.bin"]
    assert small == [
        step
        for name in [*SMALL, ".gitattributes"]
        for step in (("resolve", name, 307), ("cache", name, 206))
    ]


def test_private_repo_small_files_take_resolve_only(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    hub.create_repo(REPO, private=True)
    hub.add_token(TOKEN, grants=[REPO])
    hub.commit(REPO, files=SMALL)
    dest = tmp_path / "d"
    _run(hub, dest, token=TOKEN)
    assert user_files(dest) == {**SMALL, ".gitattributes": hub.read_file(REPO, ".gitattributes")}
    assert _file_requests(hub) == [("resolve", name, 206) for name in [*SMALL, ".gitattributes"]], (
        "/resolve serves them itself: nothing is ever confirmed, nothing predicted"
    )


def test_shortcuts_predict_only_declared_files_of_a_confirmed_commit() -> None:
    shortcuts = ResolveShortcuts()
    key, other = ("model", "o/r", "c" * 40), ("model", "o/r", "d" * 40)
    shortcuts.expect("R/a", "C/a", key)
    shortcuts.expect("R/b", "C/b", key)
    shortcuts.expect("S/x", "D/x", other)
    assert shortcuts.predict("R/b") is None, "nothing confirmed yet"
    shortcuts.learn("R/a", "C/elsewhere")
    assert shortcuts.predict("R/b") is None, "a Location other than the predicted one"
    shortcuts.learn("R/a", "C/a")
    assert shortcuts.predict("R/b") == "C/b"
    assert shortcuts.predict("S/x") is None, "another commit is not confirmed by it"
    assert shortcuts.predict("R/undeclared") is None
    shortcuts.surprise()
    assert shortcuts.predict("R/b") is None and not shortcuts.enabled


@pytest.mark.parametrize("endpoint", ["https://hub.example", "https://mirror.example/hf"])
def test_predicted_url_is_the_hubs_path_only_location_joined(endpoint: str) -> None:
    client = HubClient(endpoint, token=None)
    sha, path = "c" * 40, "dir/a b+c.txt"
    resolve = client.resolve_url("org/r", "dataset", sha, path)
    location = f"/api/resolve-cache/datasets/org/r/{sha}/dir/a%20b%2Bc.txt"  # as the Hub sends it
    assert client.resolve_cache_url("org/r", "dataset", sha, path) == urljoin(resolve, location)
