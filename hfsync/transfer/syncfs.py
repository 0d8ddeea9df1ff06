"""When one `syncfs` may stand in for an fsync per file, and the call itself.

Why: on a disk without a journal each fsync writes its inode's table block and flushes the
device cache on its own, so 2,000 small files cost 2,000 flushes (the bench's 2,000 small
files: 3.1-3.5 s with an fsync each against 1.8-2.6 s with none, this machine). One `syncfs`
writes every dirty page and inode of the filesystem and flushes once. It is as durable as the
fsyncs only where three things hold, and every one is checked here:

- the kernel reports write-back errors from syncfs (Linux 5.8 and newer: the superblock's
  error sequence, sampled when the descriptor was opened); an older one returns 0 even when a
  page never reached the disk;
- the filesystem is a local disk's (`LOCAL_TYPES`): a FUSE or network filesystem may not pass
  a syncfs on to where the bytes live, as it passes each fsync;
- little else is dirty (`MAX_DIRTY`): syncfs also waits for other programs' unwritten data (a
  training job's checkpoint), which per-file fsyncs do not.

The push agent (hfsync/remote/agent.py) applies the same three rules on the host with its own
copy of them: it runs alone on a stock python3 and never imports hfsync.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import lru_cache

LOCAL_TYPES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs"})
MAX_DIRTY = 128 << 20  # /proc/meminfo Dirty + Writeback above this: fsync each file instead
_UNKNOWN_DIRTY = 1 << 62  # unreadable counts as too much


def kernel_reports_errors(release: str | None = None) -> bool:
    """Linux 5.8 or newer: syncfs returns write-back errors (commit 735e4ae5ba28)."""
    if not sys.platform.startswith("linux"):
        return False
    parts = (release or os.uname().release).split(".")
    try:
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (5, 8)
    except (IndexError, ValueError):
        return False


@lru_cache(maxsize=1)
def syncfs_call() -> Callable[[int], None] | None:
    """`syncfs(fd)` raising OSError, where it reports write-back errors; else None."""
    if not kernel_reports_errors():
        return None
    try:
        import ctypes  # only for a run with many small files: ~5 ms of import

        libc_syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (ImportError, OSError, AttributeError):
        return None
    libc_syncfs.argtypes = [ctypes.c_int]

    def call(fd: int) -> None:
        if libc_syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return call


@lru_cache(maxsize=16)
def fs_type(dev: int) -> str | None:
    """The type of the filesystem mounted from device `dev` (/proc/self/mountinfo), or None."""
    want = f"{os.major(dev)}:{os.minor(dev)}"
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        fields, _, rest = line.partition(" - ")
        head = fields.split()
        if len(head) > 2 and head[2] == want and rest:
            found = rest.split()[0]  # the last mount of the device is the visible one
    return found


def dirty_bytes() -> int:
    """The machine's dirty and in-flight page cache (Dirty + Writeback), bytes."""
    try:
        with open("/proc/meminfo", "rb") as f:
            text = f.read()
    except OSError:
        return _UNKNOWN_DIRTY
    total = 0
    for line in text.split(b"\n"):
        if line.startswith((b"Dirty:", b"Writeback:")):
            try:
                total += int(line.split()[1]) * 1024
            except (IndexError, ValueError):
                return _UNKNOWN_DIRTY
    return total


def may_serve(dev: int) -> bool:
    """syncfs reports errors here and `dev` is a local disk's filesystem (not the dirty rule,
    which changes by the moment: `dirty_bytes` before each call)."""
    return syncfs_call() is not None and fs_type(dev) in LOCAL_TYPES
