"""How many streams a big file gets: probed, so a per-stream cap still gets all of them and a
CPU-bound link keeps one (every byte then hashed from the receive buffer)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from hfsync.transfer import TransferConfig
from hfsync.transfer.ramp import FIRST_SETTLE, FIRST_WINDOW, STALL, WINDOW, Stopped, StreamRamp

from .test_transfer_engine import KiB, MiB, make_setup, payload


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(total_rate: Callable[[int], float], maximum: int = 16, seconds: float = 3.0) -> int:
    """Streams that each deliver total_rate(n)/n bytes/s while n run; the limit at the end."""
    clock = FakeClock()
    ramp = StreamRamp(maximum, start=1, clock=clock)
    stop = threading.Event()
    active = 0
    dt = 0.01
    while clock.now < seconds:
        fresh = 0
        while active < ramp.limit:
            ramp.acquire((0, 0, active), stop)
            active += 1
            fresh += 1
        while active > ramp.limit:
            ramp.release()
            active -= 1
        per_stream = total_rate(active) / active * dt
        for i in range(active):
            ramp.count(int(per_stream), first=i >= active - fresh)
        clock.now += dt
    assert ramp.decided
    return ramp.limit


def test_a_per_stream_cap_gets_every_stream() -> None:
    assert simulate(lambda n: 25e6 * n) == 16


def test_a_slow_single_stream_opens_every_stream_without_probing_two() -> None:
    """25 MB/s from one stream cannot be the CPU's limit: all streams after one short window."""
    clock = FakeClock()
    ramp = StreamRamp(16, start=1, clock=clock)
    ramp.acquire((0, 0, 0), threading.Event())
    ramp.count(1, first=True)
    while not ramp.decided and clock.now < 1.0:
        clock.now += 0.01
        ramp.count(250_000)  # 25 MB/s
    assert (ramp.decided, ramp.limit) == (True, 16)
    assert clock.now <= WINDOW  # sooner than a full window at one stream, then one at two


def probe_one(rate: float, until: float) -> tuple[StreamRamp, float]:
    """One stream delivering `rate` bytes/s in 10 ms steps until decided or `until` seconds."""
    clock = FakeClock()
    ramp = StreamRamp(16, start=1, clock=clock)
    ramp.acquire((0, 0, 0), threading.Event())
    ramp.count(1, first=True)
    while not ramp.decided and clock.now < until - 1e-9:
        clock.now += 0.01
        ramp.count(int(rate / 100))
    return ramp, clock.now


def test_a_slow_stream_is_told_after_the_short_first_window() -> None:
    """A capped stream opens every stream after ~70 ms, not after the fast path's 150 ms."""
    ramp, when = probe_one(25e6, 1.0)
    assert (ramp.decided, ramp.limit) == (True, 16)
    assert when <= FIRST_SETTLE + FIRST_WINDOW + 0.011
    # a fast stream is still measuring its baseline then (half a window), at one stream
    ramp, _ = probe_one(1e9, FIRST_SETTLE + FIRST_WINDOW + 0.02)
    assert (ramp.decided, ramp.limit) == (False, 1)


def test_a_cpu_bound_link_keeps_one_stream() -> None:
    assert simulate(lambda n: 500e6) == 1
    assert simulate(lambda n: 500e6 * (1.05 if n > 1 else 1.0)) == 1  # a little noise


def test_fast_streams_that_gain_from_a_second_core_double_instead_of_taking_every_slot() -> None:
    """800 MB/s from one stream, 1.7x from two (the second core), no gain after: a CPU bound,
    not a per-stream cap, so the count doubles and settles instead of jumping to all 16."""
    assert simulate(lambda n: 800e6 * min(n, 1.7)) == 2
    # the same near-linear gain from streams a CDN caps still takes every slot
    assert simulate(lambda n: 60e6 * n) == 16


def test_a_saturating_link_stops_where_more_streams_stop_paying() -> None:
    # 150, 200 (+33%), 240 (+20%), 267 (+11%: not worth 4 more streams) MB/s
    assert simulate(lambda n: 300e6 * n / (n + 1)) == 4


def test_a_stalled_stream_ends_the_probe_with_every_stream() -> None:
    clock = FakeClock()
    ramp = StreamRamp(8, start=1, clock=clock)
    stop = threading.Event()
    ramp.acquire((0, 0, 0), stop)  # the one probing stream, which then delivers nothing
    got = threading.Event()

    def waiter() -> None:
        ramp.acquire((0, 0, 1), stop)
        got.set()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    assert not got.wait(0.1)  # still probing: one stream only
    clock.now += STALL
    assert got.wait(5)
    assert ramp.limit == 8 and ramp.decided


def test_slots_go_in_file_order_and_a_stop_wakes_waiters() -> None:
    ramp = StreamRamp(4, start=1)
    stop = threading.Event()
    ramp.acquire((0, 0, 0), stop)
    order: list[int] = []
    stopped: list[int] = []
    lock = threading.Lock()

    def waiter(offset: int) -> None:
        try:
            ramp.acquire((0, 0, offset), stop)
        except Stopped:
            with lock:
                stopped.append(offset)
            return
        with lock:
            order.append(offset)
        ramp.release()

    threads = []
    for offset in (30, 10, 20):
        threads.append(threading.Thread(target=waiter, args=(offset,), daemon=True))
        threads[-1].start()
    while len(ramp._waiting) < 3:  # noqa: SLF001 - wait until all three queue up
        threading.Event().wait(0.01)
    ramp.release()
    for thread in threads:
        thread.join(5)
    assert order == [10, 20, 30]  # front to back, whoever asked first

    ramp.acquire((0, 0, 0), stop)
    late = threading.Thread(target=waiter, args=(40,), daemon=True)
    late.start()
    stop.set()
    late.join(5)
    assert stopped == [40]


@pytest.mark.parametrize("capped", [True, False])
def test_big_file_is_exact_and_a_capped_link_gets_every_connection(
    hub: HubEmulator, tmp_path: Path, capped: bool
) -> None:
    """Per-connection cap: the probe must open all connections (as a CDN needs)."""
    size = 6 * MiB + 123
    s = make_setup(hub, tmp_path, {"model.safetensors": payload(size, 7)})
    if capped:
        hub.faults.rate_per_conn = 4e6
    report = s.run(TransferConfig(connections=6, chunk_size=256 * KiB, max_tries=4))
    assert all(o.ok for o in report.outcomes), [o.error for o in report.outcomes]
    s.assert_exact()
    gets = [r for r in hub.log if r.server == "cdn" and r.method == "GET"]
    assert sum(r.body_bytes for r in gets) == size  # every byte once: no refetch, no overlap
    if capped:
        assert len({r.conn_id for r in gets}) == 6
