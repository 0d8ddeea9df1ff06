"""Opening and writing hfsync's own state files without following links planted there.

Why this exists: the state folders (`DEST/.cache/huggingface/`, the HF cache's `.locks/`) hold
files at names anyone can predict (part files, journals, the lock, metadata). A plain
`open(O_CREAT)` followed by `ftruncate`/`write` writes *through* a symlink or hard link planted
at such a name and overwrites whatever it points to. Every state writer goes through here:

- `open_state_file` opens with `O_NOFOLLOW` (a symlink is refused, never followed) and
  `O_NONBLOCK` (a planted FIFO cannot hang the run), then checks with `fstat` that it holds a
  regular file, and, when it will write, one with a single link. `O_TRUNC` is applied only
  after those checks, so a refused file is never truncated.
- `write_atomic` writes a unique temp name beside the target (`O_EXCL`: never an existing path),
  fsyncs it, renames it over the target (a rename replaces a link, it never writes through
  one) and fsyncs the folder, so the new name survives a power loss.

A refusal is a `DiskError` (exit 6): the local state is unsafe and a person must look at it;
exit 5 stays reserved for wrong data and for paths the *repo listing* would carry out of DEST.
Other OS errors propagate unchanged, so each caller names the file and action in its own
one-line message (no space, no permission, ...).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from stat import S_ISLNK, S_ISREG

from .errors import DiskError

_HINT = "hfsync never follows links in its state folders; remove it and run again"
# errno values an O_NOFOLLOW / O_NONBLOCK open of a link, FIFO, socket or folder fails with
_SUSPECT = {errno.ELOOP, errno.EMLINK, errno.ENXIO, errno.EISDIR, errno.EEXIST, errno.ENOTDIR}
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def refusal(path: str | os.PathLike[str], what: str) -> DiskError:
    """The one-line error for a state file hfsync will not touch."""
    return DiskError(f"refusing to use {os.fspath(path)}: {what} ({_HINT})")


def open_state_file(path: str | os.PathLike[str], flags: int, mode: int = 0o666) -> int:
    """`os.open` for a state file that never follows a link: returns the fd of a regular file.

    `mode` is masked by the umask as usual (0o666 lets a group-shared umask 002 share the
    file). Raises DiskError when `path` is a symlink, not a regular file, or (for writing) a
    file with several hard links; any other failure is the OSError itself.
    """
    truncate = bool(flags & os.O_TRUNC)
    flags = (flags & ~os.O_TRUNC) | _NOFOLLOW | _CLOEXEC | _NONBLOCK
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno in _SUSPECT:
            _raise_if_not_regular(path)
        raise
    try:
        st = os.fstat(fd)
        if not S_ISREG(st.st_mode):
            raise refusal(path, "it is not a regular file")
        writing = flags & os.O_ACCMODE != os.O_RDONLY
        if writing and st.st_nlink > 1:
            raise refusal(path, f"it has {st.st_nlink} hard links")
        if _NONBLOCK:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_NONBLOCK)
        if truncate:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_state_file(path: str | os.PathLike[str], flags: int, mode: int = 0o666) -> int | None:
    """The fd of a file newly created at `path`, or None when any entry is there already.

    One system call for the common case of a fresh download (thousands of small files): with
    `O_CREAT | O_EXCL` the kernel refuses every existing name, a symlink or FIFO included,
    so what it returns is a new regular file with one link -- everything `open_state_file`
    checks with `fstat` afterwards. On None the caller takes `open_state_file`.
    """
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
    except FileExistsError:
        return None


def write_new_file(path: str | os.PathLike[str], data: bytes) -> bool:
    """Write `data` to a file created at `path`; False (nothing written) when `path` exists.

    No temp name, no rename and no fsync, so only for content whose loss or truncation by a
    power cut is harmless: nothing was at `path` before (no old content to keep), and a torn
    file is a prefix that its reader must refuse anyway (the local folder's `.metadata`: a
    prefix of the three lines never parses into a record vouching for other content).
    """
    fd = create_state_file(path, os.O_WRONLY)
    if fd is None:
        return False
    try:
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    return True


def read_state_file(path: str | os.PathLike[str], limit: int = 1 << 20) -> bytes:
    """The first `limit` bytes of a regular state file, read without following a link."""
    fd = open_state_file(path, os.O_RDONLY)
    try:
        chunks: list[bytes] = []
        remaining = limit
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """`os.write` until every byte is written: a short write (signal, nearly full disk) must not
    silently drop the rest. A write that makes no progress raises OSError(EIO)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "short write (no progress)")
        view = view[n:]


def write_atomic(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Replace `path` with `data` atomically: readers see the old or the new content, never a
    mix, and a link planted at `path` (or at any temp name) is replaced, never written through.

    The temp file is `<name>.<random>.tmp` in the same folder, created with O_EXCL and mode
    0o666 & ~umask (what a plain open() gives). With `fsync` the data and then the folder are
    flushed, so after a power loss `path` holds the old or the new bytes. Raises OSError (the
    temp file is removed); callers turn it into their own one-line DiskError.
    """
    target = Path(path)
    import secrets  # when first needed, not at import: it loads hmac (a no-op re-sync pays it)

    tmp = target.with_name(f"{target.name}.{secrets.token_hex(6)}.tmp")
    if len(os.fsencode(tmp.name)) > 255:  # a name near NAME_MAX: a short temp name instead
        tmp = target.with_name(f".hfsync-{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666)
    try:
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if fsync:
        fsync_dir(target.parent)


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename into it is durable only after this).

    Filesystems that cannot fsync a folder (EINVAL, EBADF, EACCES on some network and FUSE
    mounts) are skipped: the rename itself already happened and is atomic.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.EACCES, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _raise_if_not_regular(path: str | os.PathLike[str]) -> None:
    """After a failed open: the refusal when `path` is a link or another non-file."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if S_ISLNK(st.st_mode):
        raise refusal(path, "it is a symbolic link")
    if not S_ISREG(st.st_mode):
        raise refusal(path, "it is not a regular file")
