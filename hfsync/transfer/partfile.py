"""The staging file a download writes into: preallocated, written with `pwrite` at offsets.

Positional writes let many connections fill one file without seeking or a shared file position.
Every OS error is turned into a DiskError naming the file, so ENOSPC / EDQUOT / EACCES mid-way
become a clean exit 6 and leave the journal for a resume. The file is opened through
`safeio.open_state_file`: a symlink or hard link planted at the part's (predictable) name is
refused, never written through.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import DiskError
from ..safeio import create_state_file, open_state_file
from ..units import human_size

_NOT_SUPPORTED = {errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
# Sized sparsely (ftruncate), not reserved: a file this small is written at once, and reserving
# it costs an extent allocation and its conversion from unwritten at write-out for nothing (the
# free-space check ran before any request). The size is set all the same: resume needs it.
SMALL_FILE = 1024 * 1024


def disk_error(exc: OSError, path: Path, action: str) -> DiskError:
    """A one-line DiskError for an OSError raised while touching `path`."""
    if exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    elif exc.errno == errno.EDQUOT:
        reason = "disk quota exceeded"
    else:
        reason = exc.strerror or str(exc)
    return DiskError(f"{path}: cannot {action}: {reason}; partial download kept for resume")


class PartFile:
    """An open part file. Not thread-safe to open/close; `write`/`read_into` may run in parallel."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.fd: int | None = None

    def open(self, *, fresh: bool) -> None:
        """Open (creating the folder), and preallocate `size` bytes; `fresh` drops old content."""
        if self.fd is not None:
            return
        try:
            # 0o666 & ~umask: the final file gets the mode a plain open() gives, as the official
            # client's files do (a group-shared umask 002 keeps them group-writable).
            try:
                fd = create_state_file(self.path, os.O_RDWR, 0o666)
            except FileNotFoundError:  # the folder first (not per file: thousands share one)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = create_state_file(self.path, os.O_RDWR, 0o666)
            if fd is not None:  # new (the common case): one system call, nothing to check
                self.fd, current = fd, 0
            else:  # an earlier run's part (resume), or something planted: checked
                self.fd = open_state_file(self.path, os.O_RDWR | os.O_CREAT, 0o666)
                current = os.fstat(self.fd).st_size
            if fresh and current:
                os.ftruncate(self.fd, 0)
                current = 0
            if current > self.size:
                os.ftruncate(self.fd, self.size)
            elif current < self.size:
                self._preallocate()
        except OSError as exc:
            self.close()
            raise disk_error(exc, self.path, f"allocate {human_size(self.size)}") from exc

    def _preallocate(self) -> None:
        """Reserve the space up front where the OS can (fewer fragments, ENOSPC early).

        macOS and some BSDs have no `posix_fallocate`, and some filesystems (ZFS, NFS, FUSE)
        refuse it: a sparse `ftruncate` is then just as correct, space is taken as bytes arrive.
        """
        assert self.fd is not None
        fallocate = getattr(os, "posix_fallocate", None)
        if fallocate is not None and self.size > SMALL_FILE:
            try:
                fallocate(self.fd, 0, self.size)
                return
            except OSError as exc:
                if exc.errno not in _NOT_SUPPORTED:
                    raise
        os.ftruncate(self.fd, self.size)

    def write(self, data: memoryview, offset: int) -> None:
        """Write all of `data` at `offset`."""
        assert self.fd is not None
        try:
            while data:
                n = os.pwrite(self.fd, data, offset)
                data = data[n:]
                offset += n
        except OSError as exc:
            raise disk_error(exc, self.path, "write") from exc

    def read_into(self, buf: memoryview, offset: int) -> int:
        """Read up to len(buf) bytes at `offset` (the hasher reads back what was written)."""
        assert self.fd is not None
        try:
            return os.preadv(self.fd, [buf], offset)
        except OSError as exc:
            raise disk_error(exc, self.path, "read back") from exc

    def fsync(self) -> None:
        assert self.fd is not None
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise disk_error(exc, self.path, "flush") from exc

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def remove(self) -> None:
        """Delete the part (integrity failure: nothing unverified may stay around)."""
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
