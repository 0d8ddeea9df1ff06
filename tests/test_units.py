"""Sizes typed on the command line and sizes printed back."""

from __future__ import annotations

import pytest

from hfsync.errors import UsageError
from hfsync.units import human_size, parse_size


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4096", 4096),
        ("512K", 512 * 1024),
        ("16M", 16 << 20),
        ("1.5G", 3 << 29),
        ("10MiB", 10 << 20),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text, "--chunk-size") == value


@pytest.mark.parametrize("text", ["lots", "-1M", "0", "12X"])
def test_parse_size_rejects_nonsense_naming_the_option(text: str) -> None:
    with pytest.raises(UsageError, match="--bwlimit"):
        parse_size(text, "--bwlimit")


def test_human_size() -> None:
    assert human_size(0) == "0 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(3 * 1024**3) == "3.0 GiB"
