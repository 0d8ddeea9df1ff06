"""Progress bars for transfers: one aggregate bar, plus one bar per large file in flight.

Implements the executor's ProgressSink. Workers call it from many threads at once (every ~1 MiB
of every chunk), so all updates go through one lock; tqdm itself throttles redraws. Bars go to
stderr so `--json` on stdout stays clean, and are off when stderr is not a terminal (cron, CI,
pipes) unless forced.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from tqdm import tqdm

from ..transfer.jobs import FileJob

LARGE_FILE = 64 * 1024 * 1024  # files at least this big get their own bar
MAX_FILE_BARS = 6  # more concurrent bars than this would scroll the aggregate bar away
TICK = 0.5  # seconds between redraws when no bytes arrive (slow links read 1 MiB at a time)


class TqdmProgress:
    """A thread-safe ProgressSink drawing tqdm bars."""

    def __init__(
        self,
        *,
        force: bool = False,
        file: TextIO | None = None,
        large_file: int = LARGE_FILE,
        max_file_bars: int = MAX_FILE_BARS,
    ) -> None:
        self._file = file if file is not None else sys.stderr
        isatty = getattr(self._file, "isatty", lambda: False)
        self.enabled = force or bool(isatty())
        self._large_file = large_file
        self._max_file_bars = max_file_bars
        self._lock = threading.Lock()
        self._total: tqdm | None = None
        self._bars: dict[int, tqdm] = {}
        self._files = 0
        self._done = 0
        self._failed = 0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def start(self, total_bytes: int, jobs: list[FileJob]) -> None:
        with self._lock:
            if self._total is not None:
                self._total.close()
            self._files, self._done, self._failed = len(jobs), 0, 0
            self._total = self._bar(total_bytes, self._desc(), leave=True)
            if self.enabled and self._ticker is None:
                self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
                self._ticker.start()

    def _tick(self) -> None:
        """Redraw on a timer, so finished small files, rate and ETA show without new bytes."""
        while not self._stop.wait(TICK):
            with self._lock:
                for bar in (self._total, *self._bars.values()):
                    if bar is not None:
                        bar.refresh()

    def advance(self, job: FileJob, nbytes: int) -> None:
        with self._lock:
            if self._total is None:
                return
            self._total.update(nbytes)
            bar = self._bars.get(id(job))
            if bar is None and job.size >= self._large_file:
                if len(self._bars) < self._max_file_bars:
                    bar = self._bars[id(job)] = self._bar(job.size, _short(job.path), leave=False)
            if bar is not None:
                bar.update(nbytes)

    def file_done(self, job: FileJob, ok: bool) -> None:
        with self._lock:
            bar = self._bars.pop(id(job), None)
            if bar is not None:
                bar.close()
            self._done += 1
            self._failed += not ok
            if self._total is not None:
                self._total.set_description_str(self._desc(), refresh=False)

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
            if self._total is not None:
                self._total.set_description_str(self._desc(), refresh=False)
                self._total.close()
                self._total = None

    def _desc(self) -> str:
        failed = f", {self._failed} failed" if self._failed else ""
        return f"{self._done}/{self._files} files{failed}"

    def _bar(self, total: int, desc: str, *, leave: bool) -> tqdm:
        return tqdm(
            total=total,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=self._file,
            disable=not self.enabled,
            leave=leave,
            dynamic_ncols=True,
            mininterval=0.2,
            smoothing=0.1,
        )


def _short(path: str, width: int = 40) -> str:
    return path if len(path) <= width else "..." + path[-(width - 3) :]
