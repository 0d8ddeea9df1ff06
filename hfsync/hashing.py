"""Content ids of files: sha256 for LFS files, git blob sha1 for the rest.

See docs/architecture.md, "File identity".

The kind of id is told by its length (64 hex = sha256, 40 hex = git sha1), so every caller that
holds an etag can verify bytes against it without knowing where the etag came from.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

READ_SIZE = 8 * 1024 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


def new_hasher(etag: str, size: int):  # noqa: ANN201 - a hashlib object
    """A hashlib object that, fed the file's bytes, yields `etag` when they are right;
    None when `etag` is not a content id (then nothing can be verified against it)."""
    etag = etag.lower()
    if _HEX64.match(etag):
        return hashlib.sha256()
    if _HEX40.match(etag):
        hasher = hashlib.sha1()
        hasher.update(b"blob %d\0" % size)
        return hasher
    return None


def hash_file(path: Path, like_etag: str) -> str:
    """The content id of the file, of the same kind as `like_etag`."""
    size = os.stat(path).st_size
    hasher = new_hasher(like_etag, size)
    if hasher is None:
        raise ValueError(f"unknown content id format: {like_etag!r}")
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(READ_SIZE)
        view = memoryview(buffer)
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            hasher.update(view[:count])
    return hasher.hexdigest()
