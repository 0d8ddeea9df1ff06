"""The official client's per-blob locks in an HF cache: `.locks/<repo folder>/<etag>.lock`.

`huggingface_hub` takes this lock (through the `filelock` package: `flock(LOCK_EX)` on the lock
file opened read-write and created if missing) for the whole time it downloads a blob and links
it into a snapshot. hfsync takes the very same flock while it writes and places a blob, so the
two clients never write one blob at once, and `cache prune` keeps a blob (or part file) whose
lock is held. flock belongs to the open file, so a SIGKILLed holder never leaves it stale.

hfsync never blocks on the lock without a bound: the official client waits forever for it,
so two programs each waiting for the other would hang a cron job. A sync tries it without
waiting when it plans a download; if the official client holds it, the bytes are fetched into
hfsync's own part file anyway (a name the official client never opens) and only placing the
verified file waits, for at most `PLACE_WAIT` seconds, before that file fails with exit 8 and
its verified part is kept for the next run.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import LockedError
from .base import try_lock

# How long placing a finished file waits for the official client to release the blob's lock.
# Our copy is complete and verified by then; the other client is usually finishing the same
# content, so a short wait normally succeeds and a long one means it is fetching a big file.
PLACE_WAIT = 120.0
_POLL = 0.1


def lock_path(locks_dir: Path, etag: str) -> Path:
    """Where the official client keeps the lock of blob `etag` (`locks_dir` is per repo)."""
    return locks_dir / f"{etag}.lock"


class BlobLocks:
    """The per-blob locks one target holds, shared by the threads of this process.

    Counted per etag: two files of one run with the same content share one flock (a second
    flock from this process on another fd would wait for the first). Thread-safe.
    """

    def __init__(self, locks_dir: Path) -> None:
        self.locks_dir = locks_dir
        self._held: dict[str, list] = {}  # etag -> [ExitStack owning the flock, holders]
        self._mutex = threading.Lock()

    def __len__(self) -> int:
        with self._mutex:
            return len(self._held)

    def try_hold(self, etag: str) -> bool:
        """Take (or share) the lock of `etag` without waiting; False if someone else has it."""
        with self._mutex:
            entry = self._held.get(etag)
            if entry is not None:
                entry[1] += 1
                return True
            stack = contextlib.ExitStack()
            # base.try_lock: the flock filelock takes, on a file opened without following links
            if not stack.enter_context(try_lock(lock_path(self.locks_dir, etag), mark=False)):
                stack.close()
                return False
            self._held[etag] = [stack, 1]
            return True

    def hold(self, etag: str, *, wait: float, what: str) -> None:
        """Take the lock of `etag`, waiting at most `wait` seconds; LockedError after that."""
        deadline = time.monotonic() + wait
        while not self.try_hold(etag):
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockedError(
                    f"{what}: another program (huggingface_hub?) has held "
                    f"{lock_path(self.locks_dir, etag)} for over {wait:g} s while writing the "
                    "same content; the verified download is kept, run the sync again later"
                )
            time.sleep(min(_POLL, left))

    @contextlib.contextmanager
    def holding(self, etag: str, *, wait: float, what: str) -> Iterator[None]:
        self.hold(etag, wait=wait, what=what)
        try:
            yield
        finally:
            self.release(etag)

    def release(self, etag: str) -> None:
        """Drop one hold of `etag`; the flock goes with the last one."""
        with self._mutex:
            entry = self._held.get(etag)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                del self._held[etag]
                entry[0].close()

    def release_all(self) -> None:
        """Drop every lock (the sync ended; files that never finished keep none)."""
        with self._mutex:
            held, self._held = self._held, {}
        for stack, _ in held.values():
            with contextlib.suppress(OSError):
                stack.close()
