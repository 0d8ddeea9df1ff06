"""Sample every process on the machine while a run goes on: secrets in argv or environment.

Why a sampler and not one look: the remote hfsync of a pull lives for a second or two; only a
loop over /proc during the run can say "the token was in no remote process's argv", and it
must also prove it saw the process it was looking for (`seen`), or an empty result means
nothing. Environments are read for the watched users' processes (others' are not readable).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path


class ProcSampler:
    """A context manager: samples until exit; then `leaks` holds every offending argv."""

    def __init__(
        self,
        uids: set[int],
        secrets: Callable[[], list[bytes]],
        seen_when: Callable[[bytes], bool],
    ) -> None:
        self.uids = uids
        self.secrets = secrets  # called every round: the secrets may grow (signed URLs)
        self.seen_when = seen_when  # on a watched user's argv: the process looked for
        self.leaks: list[str] = []
        self.seen = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ProcSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _sample(self) -> None:
        while not self._stop.is_set():
            secrets = self.secrets()
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                    mine = entry.stat().st_uid in self.uids
                    environ = (entry / "environ").read_bytes() if mine else b""
                except OSError:
                    continue
                if any(s in cmdline or s in environ for s in secrets):
                    self.leaks.append(cmdline.decode(errors="replace"))
                if mine and self.seen_when(cmdline):
                    self.seen.set()
            time.sleep(0.02)  # a sampling interval, not a timing assumption
