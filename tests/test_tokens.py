"""Malformed tokens: refused at once as a usage error naming their source, never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from hfsync.auth import redact
from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files

LINE1 = "hf_FirstLineOfTheSecret1234"
LINE2 = "hf_SecondLineOfTheSecret5678"
GOOD = "hf_GoodTokenValue0123456789"


@pytest.fixture
def private(hub: HubEmulator, hf_env: Path) -> None:
    hub.create_repo("org/private", private=True)
    hub.commit("org/private", files={"config.json": b"{}\n"})
    hub.add_token(GOOD, grants=["org/private"])


def assert_refused(result, source: str, hub: HubEmulator) -> None:  # noqa: ANN001
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert source in result.stderr
    for secret in (LINE1, LINE2):
        assert secret not in result.stderr + result.stdout
    assert not hub.log, "refused before any request"


def test_two_line_token_file_is_refused_naming_the_file(
    private: None, hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    (hf_env / "token").write_text(f"{LINE1}\n{LINE2}\n")
    result = hfsync("sync", "org/private", tmp_path / "d")
    assert_refused(result, str(hf_env / "token"), hub)


def test_hf_token_with_inner_line_break_is_refused(
    private: None, hub: HubEmulator, tmp_path: Path
) -> None:
    result = hfsync("sync", "org/private", tmp_path / "d", env={"HF_TOKEN": f"{LINE1}\n{LINE2}"})
    assert_refused(result, "HF_TOKEN", hub)


@pytest.mark.parametrize("inner", [" ", "\t", "\r\n", "\x01", "\x7f"])
def test_token_option_with_inner_whitespace_or_control_is_refused(
    inner: str, private: None, hub: HubEmulator, tmp_path: Path
) -> None:
    result = hfsync("info", "org/private", "--token", f"{LINE1}{inner}{LINE2}")
    assert_refused(result, "--token", hub)


def test_surrounding_whitespace_is_stripped(
    private: None, hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    (hf_env / "token").write_text(f"  {GOOD}\r\n\n")
    result = hfsync("sync", "org/private", tmp_path / "d")
    assert result.returncode == 0, result.stderr
    assert user_files(tmp_path / "d")["config.json"] == b"{}\n"


def test_redact_removes_every_line_of_a_multi_line_secret() -> None:
    secret = f"{LINE1}\n{LINE2}"
    text = f"header value {secret!r} rejected; line two alone: {LINE2}; first: {LINE1}"
    out = redact(text, secret)
    assert LINE1 not in out and LINE2 not in out
    assert out.count("***") >= 3
    assert redact("abc in a message", "abc") == "*** in a message", "short tokens too"
