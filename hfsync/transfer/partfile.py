"""The staging file a download writes into: preallocated, written with `pwrite` at offsets.

Positional writes let many connections fill one file without seeking or a shared file position.
Every OS error is turned into a DiskError naming the file, so ENOSPC / EDQUOT / EACCES mid-way
become a clean exit 6 and leave the journal for a resume. The file is opened through
`safeio.open_state_file`: a symlink or hard link planted at the part's (predictable) name is
refused, never written through.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import DiskError
from ..safeio import create_state_file, open_state_file
from ..units import human_size

_NOT_SUPPORTED = {errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
# Sized sparsely (ftruncate), not reserved: a file this small is written at once, and reserving
# it costs an extent allocation and its conversion from unwritten at write-out for nothing (the
# free-space check ran before any request). The size is set all the same: resume needs it.
SMALL_FILE = 1024 * 1024
# Bytes of the part file mapped at a time to hash them from the page cache (`hash_range`): big
# enough that fstat/mmap/munmap are noise next to hashing it (~4 ms), small enough that the
# mapped pages (resident while mapped) keep within the RSS budget: measured peak RSS of a 2 GiB
# download 50 MB before, 53.5 MB with 4 MiB windows, 65.7 MB with 16 MiB ones.
MAP_WINDOW = 4 * 1024 * 1024
_GRANULE = mmap.ALLOCATIONGRANULARITY


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

    def hash_range(
        self, update: Callable[[memoryview], object], offset: int, length: int, buf: memoryview
    ) -> int:
        """Feed up to `length` bytes at `offset` (at most `MAP_WINDOW`) to `update`; how many.

        Why not `read_into` + update: a `pread` copies every byte out of the page cache into
        `buf` only for the hasher to read it once more; hashing the mapped page-cache pages
        skips that copy (measured, capped 2 GiB where 16 streams put nearly every byte out of
        order: 7.7 s CPU read back, 6.4 s mapped; user time the same, the copy was system
        time). The mapping is read-only and unmapped before this returns (RSS stays bounded).
        Touching a mapped page past the end of the file would be a SIGBUS, not an OSError:
        the part file lives in a private state folder under the run's lock, so nothing should
        truncate it, and a file found shorter than the window is read instead (a short read
        the caller reports). Where mmap is refused (some FUSE or network filesystems) the
        bytes are read into `buf` as well.
        """
        assert self.fd is not None
        length = min(length, MAP_WINDOW, self.size - offset)
        if length <= 0:
            return 0
        start = offset - offset % _GRANULE
        try:
            if os.fstat(self.fd).st_size < offset + length:
                raise ValueError("shorter than expected")
            mapped = mmap.mmap(
                self.fd, offset - start + length, offset=start, access=mmap.ACCESS_READ
            )
        except (OSError, ValueError):
            return self._hash_read(update, offset, length, buf)
        try:
            with memoryview(mapped) as view, view[offset - start :] as data:
                update(data)
        finally:
            mapped.close()
        return length

    def _hash_read(
        self, update: Callable[[memoryview], object], offset: int, length: int, buf: memoryview
    ) -> int:
        """`hash_range` without mmap: read back into `buf` (one copy more)."""
        n = self.read_into(buf[: min(len(buf), length)], offset)
        if n > 0:
            update(buf[:n])
        return n

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
