"""Byte counts as people write and read them: '16M' in, '1.5 GiB' out.

Binary units throughout (as `du -h` and `hf cache ls` show them), so a size typed on the
command line and a size printed back mean the same number.
"""

from __future__ import annotations

import re

from .errors import UsageError

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def human_size(size: float) -> str:
    """1536 -> '1.5 KiB'; binary units, as `du -h` and `hf cache ls` show them."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def parse_size(text: str, option: str) -> int:
    """'16M', '1.5G', '4096', '10MiB' -> whole bytes; a clear usage error otherwise.

    Every size option (`--chunk-size`, `--bwlimit`) needs at least one byte, so a value that
    truncates to 0 is refused rather than silently meaning "nothing".
    """
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"{option}: cannot read {text!r} as a size (examples: 512K, 16M, 2G)")
    value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if value <= 0:
        # also '0.5' (half a byte): truncated to 0 it would mean "no chunks" or "no bandwidth"
        raise UsageError(f"{option}: {text.strip()!r} is less than one byte; must be at least 1")
    return value
