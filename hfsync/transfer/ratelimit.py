"""A token bucket shared by all workers: `--bwlimit` caps the total rate, not per connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Lets `rate` bytes/s through on average, with a burst of about `burst` seconds' worth.

    Callers account bytes after reading them and sleep off any debt, so each connection slows
    down in proportion to what it took and the aggregate converges on `rate`.
    """

    def __init__(self, rate: float, burst: float = 0.1) -> None:
        if rate <= 0:
            raise ValueError("bandwidth limit must be positive")
        self.rate = float(rate)
        self._capacity = self.rate * burst
        self._tokens = self._capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def consume(self, nbytes: int, sleep: Callable[[float], object] = time.sleep) -> None:
        """Take `nbytes`; sleep (via `sleep`, so a stop event can cut it short) while in debt."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= nbytes
            debt = -self._tokens
        if debt > 0:
            sleep(debt / self.rate)

    def read_size(self, maximum: int) -> int:
        """A read size small enough that one read is a small slice of a second's budget."""
        return int(max(16 * 1024, min(maximum, self.rate / 16)))
