"""Verified small files made durable a batch at a time, then handed to the target.

Why: a final name must never point at bytes a power cut can still lose, so each verified part
is on disk before its rename. An fsync per small file costs a device flush each (syncfs.py has
the figures); a batch of them is as durable after one `syncfs` of their filesystem. Workers
therefore hand a verified small part (with a duplicate of its descriptor) to the settler's
thread and go on receiving; the thread gathers parts for up to MAX_AGE, or MAX_BATCH of them,
or until every file still open in the run is waiting here, makes the batch durable (one
syncfs where `syncfs.may_serve` and little is dirty; else an fsync each) and only then places
each file (`place`: rename, metadata). A failure to make a batch durable fails every file of
it with a DiskError: each stays a part, resumed by the next run, none has a final name.

The descriptor used for the syncfs is opened on the destination's filesystem before the
workers start: syncfs reports the write-back errors that happened since its descriptor was
opened, so none of this run's writes can fail unseen. A part on another filesystem (a mount
inside DEST) is fsynced on its own.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import syncfs
from .download import Abandon, FileDownload
from .partfile import SMALL_FILE, disk_error

MAX_SIZE = SMALL_FILE  # bigger files are written back as they arrive and fsynced by their worker
MIN_FILES = 16  # a run with fewer small files fsyncs each in its worker, as before
MIN_BATCH = 16  # a smaller batch is fsynced file by file: a syncfs would cost more
MAX_BATCH = 128  # parts gathered at most (each holds a descriptor until it is settled)
MAX_AGE = 0.05  # seconds a verified part may wait for others before its batch is settled


class Settler:
    """One thread placing verified small files a durable batch at a time (see module doc)."""

    def __init__(
        self,
        anchor_fd: int,
        place: Callable[[FileDownload], None],
        fail: Callable[[FileDownload, BaseException], None],
        open_files: Callable[[], int],
        stop: threading.Event,
    ) -> None:
        self._anchor = anchor_fd
        self._device = os.fstat(anchor_fd).st_dev
        self._place = place
        self._fail = fail
        self._open_files = open_files  # files of the run not yet ended (placed or failed)
        self._stop = stop
        self._cond = threading.Condition()
        self._pending: list[tuple[FileDownload, int]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="hfsync-settle", daemon=True)
        self._thread.start()

    @classmethod
    def for_run(
        cls,
        files: list[FileDownload],
        place: Callable[[FileDownload], None],
        fail: Callable[[FileDownload, BaseException], None],
        open_files: Callable[[], int],
        stop: threading.Event,
    ) -> Settler | None:
        """A settler for a run with many small files on a filesystem where syncfs may serve;
        None otherwise (each worker fsyncs its own files)."""
        small = [f for f in files if f.size <= MAX_SIZE]
        if len(small) < MIN_FILES:
            return None
        fd = _open_anchor(small[0].part.path)
        if fd is None:
            return None
        if not syncfs.may_serve(os.fstat(fd).st_dev):
            os.close(fd)
            return None
        return cls(fd, place, fail, open_files, stop)

    @staticmethod
    def takes(f: FileDownload) -> bool:
        return f.size <= MAX_SIZE

    def submit(self, f: FileDownload, fd: int) -> None:
        """Take a verified part and a descriptor of it (closed here when it is settled).

        Waits while MAX_BATCH parts are pending: a descriptor is held per part, and a worker
        that outran the settler would otherwise pile up thousands (EMFILE under a 1024 limit).
        So at most two batches' worth are open: the one settling and the one gathering."""
        with self._cond:
            while len(self._pending) >= MAX_BATCH and not self._closed:
                self._cond.wait()
            if self._closed:
                os.close(fd)
                raise Abandon
            self._pending.append((f, fd))
            self._cond.notify_all()

    def wake(self) -> None:
        """A file of the run ended: the batch gathering may now hold every open file."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the thread (after the batch it is settling) and close what it still holds."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        for _, fd in self._pending:
            os.close(fd)
        self._pending = []
        os.close(self._anchor)

    # -- the thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                first = time.monotonic()
                while not self._closed and not self._full():
                    left = first + MAX_AGE - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._closed:
                    return
                batch, self._pending = self._pending, []
                self._cond.notify_all()  # workers waiting for room
            try:
                self._settle(batch)
            except Exception as exc:  # noqa: BLE001 - a file never ended would hang the run
                for f, _ in batch:
                    self._fail(f, exc)  # the engine skips those already ended

    def _full(self) -> bool:
        """Settle now: the batch is big enough, or no file of the run is still arriving."""
        waiting = len(self._pending)
        return waiting >= MAX_BATCH or waiting >= self._open_files()

    def _settle(self, batch: list[tuple[FileDownload, int]]) -> None:
        try:
            if self._stop.is_set():
                return  # interrupted: every part stays a part, resumed next run
            if len(batch) >= MIN_BATCH and syncfs.dirty_bytes() <= syncfs.MAX_DIRTY:
                self._settle_synced(batch)
            else:
                for f, fd in batch:
                    self._fsync_and_place(f, fd)
        finally:
            for _, fd in batch:
                os.close(fd)

    def _settle_synced(self, batch: list[tuple[FileDownload, int]]) -> None:
        here: list[tuple[FileDownload, int]] = []
        elsewhere: list[tuple[FileDownload, int]] = []
        for item in batch:
            (here if os.fstat(item[1]).st_dev == self._device else elsewhere).append(item)
        call = syncfs.syncfs_call()
        assert call is not None  # for_run checked it
        try:
            call(self._anchor)
        except OSError as exc:
            for f, _ in here:
                self._fail(f, disk_error(exc, f.part.path, "flush"))
        else:
            for f, _ in here:
                self._placed(f)
        for f, fd in elsewhere:
            self._fsync_and_place(f, fd)

    def _fsync_and_place(self, f: FileDownload, fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            self._fail(f, disk_error(exc, f.part.path, "flush"))
            return
        self._placed(f)

    def _placed(self, f: FileDownload) -> None:
        try:
            self._place(f)
        except Abandon:
            pass
        except Exception as exc:  # noqa: BLE001 - one file's failure must not stop the others
            self._fail(f, exc)  # the engine names the file in an error that is not its own


def _open_anchor(part: Path) -> int | None:
    """A read-only descriptor of the part's folder, or its nearest existing parent."""
    folder = part.parent
    while True:
        try:
            return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except FileNotFoundError:
            if folder.parent == folder:
                return None
            folder = folder.parent
        except OSError:
            return None
