"""How many workers fetch big-file chunks at once: as few as the link allows, found by probing.

Why: a CDN caps each TCP stream (25 MB/s is typical), so a big file needs many parallel
ranges to fill the link. When the link is not the limit (loopback, a fast mirror) the CPU is,
and then every extra stream costs: its chunks arrive ahead of the hasher and are read back
from the page cache to be hashed, and more threads contend for the GIL. Measured on 2 cores,
unthrottled: one stream hashes every byte from its receive buffer.

So the ramp starts with one stream and measures the bulk bytes per second over a short
window; then two. Near-linear gain (a per-stream cap) jumps straight to the maximum, unless
each stream was already fast (FAST_STREAM: then the CPU is the limit); no real gain goes back
to the smaller count; something in between doubles again and compares. The
decision is taken once per run. Streams that deliver nothing for STALL seconds (a stalled
connection, a slow first byte) end the probing with every stream, as without the ramp, so a
stall never holds the whole download up. Slots are granted in the queue's (file, offset)
order so that a single stream still walks each file front to back, where the hasher is.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

LINEAR = 1.6  # rate(2n) / rate(n) at or above this: the cap is per stream, use them all
NO_GAIN = 1.15  # below this: extra streams buy nothing, keep the smaller count
WINDOW = 0.2  # seconds of bulk traffic per measurement
SETTLE = 0.05  # seconds after the streams are all running before a window starts
STALL = 0.2  # seconds without a bulk byte while probing: stop probing, use every stream
# Bytes/s per stream below which the CPU cannot be the limit (one core verifies ~1.4 GB/s):
# a capped CDN stream (25 MB/s) then opens every stream after one short window, instead of
# paying a second window at two streams (measured: 0.4 s more than no ramp on a capped link).
# Twice the CDN cap, not more: on a busy 2-core box one uncapped loopback stream measured
# 95 MB/s in its first 0.05 s window once, and 100e6 then opened all 16 streams, costing
# 20-30% more CPU than one or two (P4's runs, 2026-12-02).
SLOW_STREAM = 50e6
# The first window tells a capped stream from a CPU-bound one, 4x apart or more (25 vs 100+
# MB/s; one loopback stream does ~1 GB/s), so "slow" is decided after FIRST_WINDOW and a short
# settling: every second at one stream on a capped link is ~0.9 s of the link idle (measured:
# the probe took 0.17 s of a 2 GiB download with 0.05 s settling + 0.1 s). A fast stream goes
# on to half a window, the baseline the two-stream window is compared with.
FIRST_WINDOW = 0.05
FIRST_SETTLE = 0.02
# Bytes/s per stream above which a near-linear gain is not read as a per-stream cap: a CDN
# caps a stream at 25-100 MB/s, while one loopback stream does 450-830 MB/s on the bench VM,
# where going from one to two streams still gained 1.6-1.75x (the second core) and jumping
# straight to 16 then cost 4.5 s of CPU per 2 GiB against 2.7-2.9 s at two (2026-12-03, on a
# loaded machine; quiet, the old rule seldom jumped and the bench saw no difference). Above
# it the count only doubles, window by window, while that still gains.
FAST_STREAM = 200e6


class Stopped(Exception):
    """The run stopped while a worker waited for a slot."""


class StreamRamp:
    """Slots for bulk-chunk fetches; `limit` grows or shrinks as the probe decides."""

    def __init__(
        self,
        maximum: int,
        start: int = 1,
        clock: Callable[[], float] = time.monotonic,
        window: float = WINDOW,
    ) -> None:
        self.maximum = max(1, maximum)
        self.limit = min(start, self.maximum)
        self.decided = self.limit >= self.maximum
        self._clock = clock
        self._window = window
        self._cond = threading.Condition()
        self._active = 0
        self._waiting: list[tuple[tuple[int, ...], int]] = []  # heap of (order key, ticket)
        self._seq = itertools.count()
        self._granted: set[int] = set()
        self._bytes = 0
        self._mark: tuple[float, int] | None = None  # window start (time, bytes)
        self._full_since: float | None = None  # when all `limit` slots became busy
        self._unstarted = 0  # granted slots whose first bytes have not come yet
        self._last_rate: float | None = None  # rate measured at limit // 2
        self._last_byte = clock()  # last bulk bytes, or the last slot granted

    # -- slots ------------------------------------------------------------------------------

    def acquire(self, key: tuple[int, ...], stop: threading.Event) -> None:
        """Wait for a slot; the smallest `key` (the queue's order: file, offset) goes first."""
        with self._cond:
            if not self._waiting and self._active < self.limit:
                self._take()
                return
            ticket = next(self._seq)
            heapq.heappush(self._waiting, (key, ticket))
            self._grant()
            while ticket not in self._granted:
                if stop.is_set():
                    self._waiting = [w for w in self._waiting if w[1] != ticket]
                    heapq.heapify(self._waiting)
                    self._grant()
                    raise Stopped
                if not self.decided and self._clock() - self._last_byte >= STALL:
                    self.limit = self.maximum  # stalled: no more probing
                    self.decided = True
                    self._grant()
                    continue
                self._cond.wait(0.25 if self.decided else STALL / 4)
            self._granted.discard(ticket)

    def release(self) -> None:
        with self._cond:
            self._active -= 1  # the next waiter takes the slot at once: the window goes on
            self._grant()

    def _take(self) -> None:
        self._active += 1
        self._unstarted += 1
        self._last_byte = self._clock()
        if not self.decided and self._active >= self.limit and self._full_since is None:
            self._full_since = self._clock()

    def _grant(self) -> None:
        granted = False
        while self._waiting and self._active < self.limit:
            _, ticket = heapq.heappop(self._waiting)
            self._granted.add(ticket)
            self._take()
            granted = True
        if granted:
            self._cond.notify_all()

    # -- measuring --------------------------------------------------------------------------

    def count(self, nbytes: int, first: bool = False) -> None:
        """Account bulk bytes received (`first`: a slot's first read); may close a window.

        A window opens only once every stream has delivered bytes, so the time to first byte
        of new streams (a far CDN) does not read as "more streams do not help".
        """
        if self.decided:
            return
        with self._cond:
            self._bytes += nbytes
            now = self._clock()
            self._last_byte = now
            if first and self._unstarted:
                self._unstarted -= 1
            if self.decided or self._full_since is None:
                return
            first_window = self._last_rate is None  # shorter: it mainly tells slow
            if self._mark is None:
                settle = FIRST_SETTLE if first_window else SETTLE
                if not self._unstarted and now - self._full_since >= settle:
                    self._mark = (now, self._bytes)
                return
            started, base = self._mark
            elapsed = now - started
            if first_window and min(FIRST_WINDOW, self._window / 2) <= elapsed < self._window / 2:
                if (self._bytes - base) / elapsed / self.limit < SLOW_STREAM:
                    self._decide((self._bytes - base) / elapsed)  # slow: every stream now
                return
            if elapsed < (self._window / 2 if first_window else self._window):
                return
            self._decide((self._bytes - base) / elapsed)

    def _decide(self, rate: float) -> None:
        previous, self._last_rate = self._last_rate, rate
        self._mark = None
        self._full_since = None
        if previous is None and rate / self.limit < SLOW_STREAM:  # a cap, not the CPU
            self.limit = self.maximum
            self.decided = True
            self._grant()
            return
        if previous is not None and previous > 0:
            gain = rate / previous
            if gain < NO_GAIN:
                self.limit = max(1, self.limit // 2)
                self.decided = True
                return
            if gain >= LINEAR and previous / max(1, self.limit // 2) < FAST_STREAM:
                self.limit = self.maximum
                self.decided = True
                self._grant()
                return
        self.limit = min(self.maximum, self.limit * 2)
        self.decided = self.limit >= self.maximum
        self._grant()  # starts the next window once the new streams all run
