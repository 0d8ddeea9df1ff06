"""Retry policy shared by API calls and byte transfers: which failures are worth another try,
and how long to wait before it.

Exponential backoff with full jitter, so many chunks failing together do not retry in lockstep;
a server's own `Retry-After` / `RateLimit: ...;r=0;t=N` always wins, because the Hub's rate
limiter means it (docs/architecture.md, "Hub protocol").
"""

from __future__ import annotations

import datetime
import email.utils
import random
import re
from dataclasses import dataclass, field

from . import env

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_RATELIMIT_T = re.compile(r"\br=(\d+).*?\bt=(\d+)")
_CONN_PREFIX = re.compile(r"^<?\w*HTTPS?Connection(?:Pool)?\b[^:]*?>?:\s*")


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries an operation gets and how the wait between them grows."""

    tries: int = 6
    base_delay: float = field(default_factory=env.backoff_base)  # read per policy, not at import
    max_delay: float = 8.0
    max_server_wait: float = 300.0  # longest single wait a server may ask for
    server_wait_budget: float = 600.0  # server-asked waiting per origin and run, then exit 4

    def delay(self, attempt: int) -> float:
        """Full-jitter backoff for the given 0-based attempt number."""
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return random.uniform(0, ceiling)


def server_wait(headers: dict | None) -> float | None:
    """Seconds the server asked us to wait (Retry-After or an exhausted RateLimit window)."""
    if not headers:
        return None
    ratelimit = headers.get("RateLimit") or headers.get("ratelimit")
    if ratelimit:
        match = _RATELIMIT_T.search(ratelimit)
        if match and int(match.group(1)) == 0:
            return float(match.group(2)) + 1.0
    retry_after = headers.get("Retry-After") or headers.get("retry-after")
    if retry_after:
        return _retry_after_seconds(retry_after)
    return None


def _retry_after_seconds(value: str) -> float | None:
    """`Retry-After` is delta-seconds or an HTTP-date (RFC 9110 10.2.3); both mean a wait."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": an HTTP-date is always UTC
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None  # nan / inf: no usable wait
    return max(0.0, seconds)


def describe(exc: BaseException, limit: int = 160) -> str:
    """A short one-line cause of a network error: the innermost reason, without the
    `HTTPSConnectionPool(host=..., port=...): Max retries exceeded ...` wrapping of requests."""
    reason = exc
    for _ in range(6):
        inner = getattr(reason, "reason", None)
        if not isinstance(inner, BaseException) and reason.args:
            inner = reason.args[0]
        if not isinstance(inner, BaseException):
            break
        reason = inner
    text = _CONN_PREFIX.sub("", str(reason)).strip() or type(reason).__name__
    return text if len(text) <= limit else text[:limit] + "..."
