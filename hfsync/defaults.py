"""Defaults that more than one layer needs, defined once.

The CLI shows them in `--help`, the executor and the Hub client use them; `scripts/bench` is
what chose them. Nothing here reads the environment (that is `env.py`'s job, and it does it
lazily, when a run starts).
"""

from __future__ import annotations

DEFAULT_ENDPOINT = "https://huggingface.co"
CONNECT_TIMEOUT = 10.0  # seconds to open a TCP/TLS connection
READ_TIMEOUT = 60.0  # a stalled connection is retried after this many seconds
DEFAULT_CONNECTIONS = 16  # measured: 32 helped a capped single file, hurt the model repo
# Small files are latency-bound (a request each, ~20 ms at a CDN's edge, a few KB to move), so
# without an explicit `--connections` up to this many are fetched at once; big files' chunk
# streams stay at DEFAULT_CONNECTIONS (32 of them cost the capped 2 GiB ~0.1 s and 17 MB of
# RSS). Measured with 20 ms per request, 2,000 files of 1-64 KiB: 16 -> 3.3 s, 32 -> 2.3 s,
# 64 -> 2.3 s (the emulator's CPU then bounds it).
DEFAULT_SMALL_CONNECTIONS = 32
DEFAULT_CHUNK = 16 * 1024 * 1024
DEFAULT_CHUNK_TEXT = "16M"
INTERRUPTED_MESSAGE = "interrupted; partial downloads were kept and the next run resumes them"


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, with default ports filled in.

    The token goes only to the endpoint's own origin and a CDN redirect is recognised as
    "another host" by comparing these, so there is one definition of "same origin".
    """
    from urllib.parse import urlsplit  # here: `hfsync --version` never compares origins

    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, (parts.hostname or "").lower(), port)
