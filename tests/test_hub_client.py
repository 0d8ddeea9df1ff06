"""The Hub client on its own: auth stays on the Hub's origin, retries honour the server,
pagination is followed, errors are typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hfsync.errors import NetworkError, RepoNotFoundError, RevisionNotFoundError
from hfsync.hub import HubClient
from hfsync.retry import RetryPolicy, server_wait
from hfsync.testing.hub import HubEmulator

TOKEN = "hf_ClientTestToken0000000000"
FAST = RetryPolicy(tries=3, base_delay=0.01)


@pytest.fixture
def client(hub: HubEmulator, hf_env: Path) -> HubClient:
    hub.create_repo("org/private", private=True)
    hub.commit("org/private", files={"a.txt": b"a\n", "w.bin": b"\0" * (2 * 1024 * 1024)})
    hub.add_token(TOKEN, grants=["org/private"])
    return HubClient(hub.endpoint, TOKEN, retry=FAST)


def test_token_goes_to_the_hub_but_never_to_the_cdn(hub: HubEmulator, client: HubClient) -> None:
    commit = client.resolve_revision("org/private", "model", "main")
    url = client.resolve_url("org/private", "model", commit, "w.bin")
    response = client.session.get(url)
    assert response.status_code == 200 and len(response.content) == 2 * 1024 * 1024
    cdn = [r for r in hub.log if r.server == "cdn"]
    api = [r for r in hub.log if r.server == "api"]
    assert cdn and not any(r.had_auth for r in cdn)
    assert api and all(r.had_auth for r in api)


def test_listing_follows_every_page(hub: HubEmulator, client: HubClient) -> None:
    hub.page_size = 1
    commit = client.resolve_revision("org/private", "model", "main")
    files = client.list_files("org/private", "model", commit)
    assert sorted(f.path for f in files) == [".gitattributes", "a.txt", "w.bin"]
    assert len([r for r in hub.log if "/tree/" in r.path]) >= 3
    lfs = next(f for f in files if f.path == "w.bin")
    assert lfs.is_lfs and len(lfs.etag) == 64 and lfs.size == 2 * 1024 * 1024


def test_retries_5xx_and_gives_up_with_network_error(hub: HubEmulator, client: HubClient) -> None:
    hub.faults.inject(503, count=2, server="api")
    assert len(client.resolve_revision("org/private", "model", "main")) == 40
    hub.faults.inject(500, count=None, server="api")
    with pytest.raises(NetworkError, match="giving up after 3 tries"):
        client.resolve_revision("org/private", "model", "main")


def test_typed_errors(hub: HubEmulator, client: HubClient) -> None:
    with pytest.raises(RevisionNotFoundError):
        client.resolve_revision("org/private", "model", "nope")
    anonymous = HubClient(hub.endpoint, None, retry=FAST)
    with pytest.raises(RepoNotFoundError):
        anonymous.resolve_revision("org/private", "model", "main")


def test_server_wait_reads_retry_after_and_ratelimit() -> None:
    assert server_wait({"Retry-After": "7"}) == 7.0
    assert server_wait({"RateLimit": '"api";r=0;t=55'}) == 56.0
    assert server_wait({"RateLimit": '"api";r=12;t=55'}) is None
    assert server_wait({}) is None
