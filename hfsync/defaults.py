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
