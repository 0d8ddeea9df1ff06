"""`--debug` / `HFSYNC_DEBUG=1`: one stderr line per HTTP request: method, URL, status, bytes, time.

Why a requests response hook and not urllib3's logger: urllib3 logs the full request line, query
included, and a signed CDN URL's query *is* the credential (X-Amz-Signature, Key-Pair-Id, ...).
Here every URL goes through `safe_url` first: user:password in the authority is dropped and every
query value is replaced by `***` except a few harmless Hub API parameters, so a pasted debug log
never leaks a signature. Headers are never printed, so neither is Authorization.

Bytes: a body read at once (API calls) is read in the hook and counted exactly, its read time
included. A streamed body (downloads) is counted when the response is closed (the transfer
engine always closes it), from what the socket's `http.client` response says is left of its
Content-Length — the engine reads that object directly, bypassing urllib3's counter — or
urllib3's counter when there is no length; a streamed response never closed logs nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

if TYPE_CHECKING:  # annotations only: `enabled()` is asked before requests is imported
    import requests

_KEEP = frozenset({"recursive", "expand", "limit", "revision", "repo_type", "full"})
_enabled = False
_lock = threading.Lock()


def enable() -> None:
    """Log from now on (sessions created later get the hook; see `install`)."""
    global _enabled
    _enabled = True


def enabled() -> bool:
    """On once `enable()` ran: the CLI's `--debug` (which also reads HFSYNC_DEBUG) calls it."""
    return _enabled


def install(session: requests.Session) -> None:
    """Add the logging hook to `session` when debugging is on; a no-op otherwise."""
    if enabled() and _log_response not in session.hooks["response"]:
        session.hooks["response"].append(_log_response)


def safe_url(url: str) -> str:
    """`url` without credentials: no userinfo, and query values masked except harmless keys."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(
        f"{key}={value if key in _KEEP else '***'}"
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _emit(line: str) -> None:
    with _lock:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def log_request(method: str, url: str, status: int, nbytes: int, seconds: float) -> None:
    """The same line for a request made without `requests` (the transfer data path,
    `transfer/wire.py`, calls this when a response is finished)."""
    _emit(f"hfsync: http: {method} {safe_url(url)} -> {status} {nbytes} B {seconds:.3f} s")


def _line(response: requests.Response, nbytes: int | str, seconds: float) -> str:
    method = response.request.method if response.request is not None else "?"
    url = safe_url(response.url or (response.request.url if response.request else "") or "")
    return f"hfsync: http: {method} {url} -> {response.status_code} {nbytes} B {seconds:.3f} s"


def _log_response(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """The response hook: exact bytes now for a body read at once, at close for a stream."""
    headers_time = response.elapsed.total_seconds()
    if not kwargs.get("stream"):
        started = time.monotonic()
        try:
            nbytes: int | str = len(response.content)
        except Exception:  # noqa: BLE001 - requests re-raises it when the caller reads the body
            nbytes = "?"
        _emit(_line(response, nbytes, headers_time + time.monotonic() - started))
        return response
    opened = time.monotonic()
    original_close = response.close
    logged = []

    def close() -> None:
        if not logged:
            logged.append(True)
            _emit(_line(response, _streamed_bytes(response), headers_time + time.monotonic()
                        - opened))  # fmt: skip
        original_close()

    response.close = close  # type: ignore[method-assign]
    return response


def _streamed_bytes(response: requests.Response) -> int:
    """Body bytes read so far from a streamed response (before it is closed)."""
    raw = response.raw
    counted = int(raw.tell()) if hasattr(raw, "tell") else 0
    fp = getattr(raw, "_fp", None)
    declared = response.headers.get("Content-Length", "")
    left = getattr(fp, "length", None)
    if declared.isdigit() and isinstance(left, int):
        counted = max(counted, int(declared) - left)
    elif declared.isdigit() and fp is not None and getattr(fp, "fp", None) is None:
        counted = max(counted, int(declared))  # http.client closed it: the body was read out
    return counted
