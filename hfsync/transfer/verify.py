"""Content ids and the prefix hasher that verifies a file while it downloads.

The Hub's content id is the sha256 of the bytes for LFS files (64 hex) and the git blob sha1
(`sha1(b"blob <size>\\0" + bytes)`, 40 hex) for regular files. Hashing the contiguous prefix as
chunks land overlaps verification with the transfer, so little is left to hash at the end.
"""

from __future__ import annotations

from ..errors import IntegrityError
from ..hashing import new_hasher


class PrefixHasher:
    """Hashes a file's bytes in order; `offset` is how far it got.

    With `enabled=False` (`TransferConfig.verify=False`) it only tracks the offset, so the
    engine's bookkeeping is the same either way. An etag that is not a content id cannot be
    verified against: that is an IntegrityError, never a silent fall back to a size check
    (the listing validator refuses such ids first; this is the second line of defence).
    """

    def __init__(self, etag: str, size: int, enabled: bool = True) -> None:
        self.etag = etag.lower()
        self.size = size
        self._hash = new_hasher(etag, size) if enabled else None
        if enabled and self._hash is None:
            raise IntegrityError(
                f"cannot verify against {etag[:80]!r}: not a content id (40 or 64 hex "
                "digits); nothing was downloaded"
            )
        self.offset = 0

    @property
    def enabled(self) -> bool:
        return self._hash is not None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(data)
        self.offset += len(data)

    def skip_to(self, offset: int) -> None:
        """Advance without hashing (only when disabled)."""
        assert self._hash is None
        self.offset = offset

    def matches(self) -> bool:
        """True when everything was hashed and the digest is the expected id (or hashing is off)."""
        if self.offset != self.size:
            return False
        return self._hash is None or self._hash.hexdigest() == self.etag
