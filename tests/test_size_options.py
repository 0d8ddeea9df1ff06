"""Size options that truncate to zero bytes are usage errors, not "no chunks"/"no bandwidth"."""

from __future__ import annotations

from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync


@pytest.mark.parametrize("option", ["--chunk-size", "--bwlimit"])
@pytest.mark.parametrize("value", ["0.5", "0.99", "0.0"])
def test_size_that_rounds_to_zero_is_a_usage_error(
    option: str, value: str, hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    hub.commit("org/m", files={"a.txt": b"a\n"})
    result = hfsync("sync", "org/m", tmp_path / "d", option, value)
    assert result.returncode == 2, result.stderr
    assert option in result.stderr and "at least 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_one_and_a_half_bytes_is_one_byte_and_works(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    hub.commit("org/m", files={"a.txt": b"abc\n"})
    result = hfsync("sync", "org/m", tmp_path / "d", "--chunk-size", "1.5")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "a.txt").read_bytes() == b"abc\n"
