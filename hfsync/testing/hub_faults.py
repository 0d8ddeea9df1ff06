"""Fault switches of the Hub emulator and the per-connection bandwidth pacer.

Tests flip fields of :class:`Faults` at any time (``hub.faults.rate_per_conn = 5e6``); server
threads read them per response. Count-limited faults (drops, stalls, corruption, injected
statuses) are consumed under a lock, so "the next N responses" means exactly N even with parallel
clients.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class InjectedStatus:
    """One queued error response (see :meth:`Faults.inject`)."""

    status: int
    count: int | None  # remaining matches; None = forever
    server: str = "any"  # "api" | "cdn" | "any"
    path_contains: str | None = None
    method: str | None = None
    retry_after: float | None = None
    ratelimit_header: int | str | None = None  # int t -> 'RateLimit: "api";r=0;t=<t>'

    def matches(self, server: str, path: str, method: str) -> bool:
        return (
            self.server in ("any", server)
            and (self.path_contains is None or self.path_contains in path)
            and (self.method is None or self.method == method)
        )


@dataclass
class BodyPlan:
    """What faults one body response gets; decided once, before its first byte."""

    drop_at: int | None = None  # close the connection after this many body bytes
    stall_at: int | None = None  # stop sending (keep the connection open) after this many
    corrupt_at: int | None = None  # body-relative offset of the byte to flip
    paced: bool = False

    @property
    def clean(self) -> bool:
        """True when the body may go out with sendfile at full speed."""
        faults = (self.drop_at, self.stall_at, self.corrupt_at)
        return not self.paced and all(f is None for f in faults)


def _take(count: int | None) -> tuple[bool, int | None]:
    """Consume one use of a count-limited fault: (applies, remaining)."""
    if count is None:
        return True, None
    if count > 0:
        return True, count - 1
    return False, count


@dataclass
class Faults:
    """All fault switches; every default is "off" (a well-behaved Hub)."""

    rate_per_conn: float | None = None  # bytes/s per TCP connection (body bytes)
    rate_total: float | None = None  # bytes/s across all connections
    latency: float = 0.0  # seconds slept before every response
    drop_after_bytes: int | None = None
    drop_count: int | None = 1  # None = every body response
    stall_after_bytes: int | None = None
    stall_count: int | None = 1
    corrupt_count: int | None = 0  # None = every body response
    corrupt_offset: int | None = None  # absolute file offset; None = middle of the body
    status_errors: list[InjectedStatus] = field(default_factory=list)
    expire_urls: bool = False  # CDN answers 403 "Request has expired" to every signed URL
    # After this many more CDN requests, every URL issued so far expires (once): a deterministic
    # "signed URL expired mid-download" for tests that drive the CLI from outside.
    expire_after_cdn_requests: int | None = None
    url_ttl: float | None = None  # overrides HubEmulator.url_ttl for URLs issued from now on
    ignore_range: bool = False
    mirror_mode: bool = False
    hostile_paths: list[str] = field(default_factory=list)
    # A hostile or broken tree listing: fields merged into the entry of a path (a nested
    # "lfs" dict is merged too), e.g. {"model.bin": {"oid": "not-hex"}} or {"a": {"size": -1}};
    # and raw entries appended to the listing (duplicates, `a` beside `a/b`, ...).
    tree_overrides: dict[str, dict] = field(default_factory=dict)
    tree_extra: list[dict] = field(default_factory=list)
    tree_next_loop: bool = False  # every tree page links rel="next" to itself
    captive_portal: bool = False  # the API server answers everything 200 text/html
    resolve_location: str | None = None  # /resolve answers 302 to this Location (any scheme)
    # Appended to the 307 Location of small public files (e.g. "?v=2"): a Hub whose
    # resolve-cache URLs are not the ones a client predicts (the route ignores the query).
    resolve_cache_suffix: str = ""
    close_delimited: bool = False  # mirror bodies: no Content-Length, not chunked, close ends
    body_faults_on: str = "any"  # where rate/drop/stall/corrupt apply: "api" | "cdn" | "any"
    clock_skew: float = 0.0  # seconds added to every `Date` header (a server clock off)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    # ---- helpers for tests ------------------------------------------------------------------

    def inject(
        self,
        status: int,
        count: int | None = 1,
        server: str = "any",
        path_contains: str | None = None,
        retry_after: float | None = None,
        ratelimit_header: int | str | None = None,
        method: str | None = None,
    ) -> InjectedStatus:
        """Answer the next ``count`` matching requests with ``status`` (5xx, 429, ...)."""
        item = InjectedStatus(
            status, count, server, path_contains, method, retry_after, ratelimit_header
        )
        with self._lock:
            self.status_errors.append(item)
        return item

    def drop_next(self, after_bytes: int, count: int | None = 1) -> None:
        """Close the connection after ``after_bytes`` body bytes, for the next ``count`` bodies."""
        with self._lock:
            self.drop_after_bytes, self.drop_count = after_bytes, count

    def stall_next(self, after_bytes: int, count: int | None = 1) -> None:
        """Stop sending (connection kept open) after ``after_bytes``, for ``count`` bodies."""
        with self._lock:
            self.stall_after_bytes, self.stall_count = after_bytes, count

    def corrupt_next(self, count: int | None = 1, offset: int | None = None) -> None:
        """Flip one byte in each of the next ``count`` bodies (None = all of them)."""
        with self._lock:
            self.corrupt_count, self.corrupt_offset = count, offset

    # ---- used by the server -----------------------------------------------------------------

    def take_expiry(self) -> bool:
        """Count one CDN request; True exactly when the expire-after countdown reaches zero."""
        with self._lock:
            if self.expire_after_cdn_requests is None:
                return False
            self.expire_after_cdn_requests -= 1
            if self.expire_after_cdn_requests > 0:
                return False
            self.expire_after_cdn_requests = None
            return True

    def take_status(self, server: str, path: str, method: str) -> InjectedStatus | None:
        """The injected error for this request, if one matches (consumes one use)."""
        with self._lock:
            for item in self.status_errors:
                if item.matches(server, path, method):
                    applies, item.count = _take(item.count)
                    if item.count == 0:
                        self.status_errors.remove(item)
                    if applies:
                        return item
            return None

    def plan_body(self, server: str, start: int, length: int) -> BodyPlan:
        """Decide the faults of one body of ``length`` bytes starting at file offset ``start``."""
        plan = BodyPlan()
        if self.body_faults_on not in ("any", server):
            return plan
        with self._lock:
            plan.paced = bool(self.rate_per_conn or self.rate_total)
            if self.drop_after_bytes is not None:
                applies, self.drop_count = _take(self.drop_count)
                if applies:
                    plan.drop_at = self.drop_after_bytes
            if self.stall_after_bytes is not None:
                applies, self.stall_count = _take(self.stall_count)
                if applies:
                    plan.stall_at = self.stall_after_bytes
            if length > 0:
                applies, self.corrupt_count = _take(self.corrupt_count)
                if applies:
                    off = self.corrupt_offset
                    inside = off is not None and start <= off < start + length
                    plan.corrupt_at = off - start if inside else length // 2  # type: ignore[operator]
        return plan


class Pacer:
    """Token bucket (as GCRA) that sleeps so bytes leave at no more than ``rate`` bytes/s.

    A short burst allowance (50 ms worth) keeps the average exact without per-piece jitter.
    """

    BURST = 0.05

    def __init__(self) -> None:
        self._t = 0.0
        self._lock = threading.Lock()

    def delay(self, nbytes: int, rate: float | None) -> float:
        """Account ``nbytes`` and return how long the caller must sleep first."""
        if not rate or rate <= 0:
            return 0.0
        with self._lock:
            now = time.monotonic()
            self._t = max(self._t, now - self.BURST) + nbytes / rate
            return max(0.0, self._t - now)

    def wait(self, nbytes: int, rate: float | None) -> None:
        d = self.delay(nbytes, rate)
        if d > 0:
            time.sleep(d)
