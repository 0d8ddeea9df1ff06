"""One rate-limit gate per origin, shared by the API client and every transfer worker.

When the Hub (or its CDN) answers 429/503 with a wait (`Retry-After`, `RateLimit ...;r=0;t=N`),
the limit is the origin's, not the request's: if only the worker that was told waited, the
other workers would keep hitting the limiter and extend it. So the wait is recorded here, per
origin, and every request to that origin waits for it first (docs/architecture.md, "Hub
protocol").

Server-requested waits do not use up a request's tries -- the server is not failing, it is
pacing us -- so they get a time budget instead: once an origin has held us off for more than
`budget` seconds in all, the run gives up with NetworkError (exit 4). `/resolve` calls are also
capped per origin (`resolve_slot`), because the Hub rate-limits exactly those; and the gate
carries the run's resolve-cache predictions (`shortcuts`, resolve_cache.py), which spare most
small files their `/resolve` call: the gate is the one object every request of a run shares.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .defaults import origin
from .errors import NetworkError
from .resolve_cache import ResolveShortcuts

Origin = tuple[str, str, "int | None"]
DEFAULT_BUDGET = 600.0  # seconds of server-requested waiting per origin and run
DEFAULT_RESOLVE_SLOTS = 6  # concurrent /resolve calls per origin


class OriginGate:
    """Per-origin hold-offs and `/resolve` slots; thread-safe."""

    def __init__(
        self,
        budget: float = DEFAULT_BUDGET,
        max_wait: float = 300.0,
        resolve_slots: int = DEFAULT_RESOLVE_SLOTS,
    ) -> None:
        self.budget = budget
        self.max_wait = max_wait
        self._resolve_slots = max(1, resolve_slots)
        self._until: dict[Origin, float] = {}
        self._waited: dict[Origin, float] = {}
        self._slots: dict[Origin, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self.shortcuts = ResolveShortcuts()

    def hold_off(self, url: str, seconds: float) -> None:
        """The server at `url`'s origin asked for `seconds` of quiet; everyone waits for it.

        Overlapping requests (many workers told at once) extend the hold-off, they do not add
        up: the budget counts wall time the origin kept us waiting. Raises NetworkError once
        that exceeds the budget.
        """
        key = origin(url)
        seconds = min(max(0.0, seconds), self.max_wait)
        with self._lock:
            now = time.monotonic()
            current = max(self._until.get(key, 0.0), now)
            until = max(current, now + seconds)
            self._until[key] = until
            waited = self._waited.get(key, 0.0) + (until - current)
            self._waited[key] = waited
        if waited > self.budget:
            raise NetworkError(
                f"{key[1]}: the server kept asking to wait (HTTP 429/503, {waited:.0f} s in all, "
                f"over the {self.budget:.0f} s budget); giving up, try again later"
            )

    def remaining(self, url: str) -> float:
        """Seconds until requests to `url`'s origin may go out again (0 when they may now)."""
        if not self._until:  # no server ever asked to wait: no lock, no URL parsing per request
            return 0.0
        with self._lock:
            until = self._until.get(origin(url), 0.0)
        return max(0.0, until - time.monotonic())

    def wait(self, url: str, stop: threading.Event | None = None) -> bool:
        """Block until `url`'s origin may be contacted; False when `stop` was set meanwhile.

        Loops because another request may extend the hold-off while we sleep.
        """
        while True:
            remaining = self.remaining(url)
            if remaining <= 0:
                return not (stop is not None and stop.is_set())
            if stop is not None:
                if stop.wait(remaining):
                    return False
            else:
                time.sleep(remaining)

    @contextmanager
    def resolve_slot(self, url: str) -> Iterator[None]:
        """Hold one of the origin's few `/resolve` slots for the duration of a resolve."""
        key = origin(url)
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = threading.BoundedSemaphore(self._resolve_slots)
        with slot:
            yield
