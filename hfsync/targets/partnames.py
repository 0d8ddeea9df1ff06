"""Names of hfsync's part files: deterministic, and never a name the official client opens.

Why these names (checked against the sources of `huggingface_hub` 0.23, 0.34 and 2.4):
- HF cache: every version stages in `blobs/<etag>.incomplete` (0.x appends to it to resume and
  treats one of full size as finished, moving it into place unhashed), 2.x also in
  `blobs/<etag>.<8 hex>.incomplete`.
- `--local-dir`: 0.23-0.2x stage in `download/<name>.<etag>.incomplete`, 0.3x and later in
  `download/<urlsafe-b64 sha1 of "<name>.metadata">.<etag>[.<8 hex>].incomplete`.
In all of them the component before `.incomplete` is an etag or 8 hex digits. Ours is `hfsync`
(or `hfsync-N`), which is neither, so no version can ever open an hfsync part file, while the
`.incomplete` ending keeps `hf cache`, `scan_cache_dir` and `hfsync cache` counting it as a
partial download.

A part name must also fit NAME_MAX (255 bytes on every common filesystem) with the journal's
`.journal` appended: a repo file name near the limit gets a hash of its name instead.
"""

from __future__ import annotations

import hashlib
import os

PART_SUFFIX = ".hfsync.incomplete"
NAME_MAX = 255
_JOURNAL = len(".journal")


def blob_part_name(etag: str, nth: int = 0) -> str:
    """`<etag>.hfsync.incomplete`; the nth extra part of the same content in one run gets -N."""
    return f"{etag}.hfsync-{nth}.incomplete" if nth else f"{etag}{PART_SUFFIX}"


def local_part_name(name: str, etag: str) -> str:
    """`<name>.<etag>.hfsync.incomplete`, or `<sha256(name)[:32]>.…` when that is too long."""
    part = f"{name}.{etag}{PART_SUFFIX}"
    if len(os.fsencode(part)) + _JOURNAL <= NAME_MAX:
        return part
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:32]
    return f"{digest}.{etag}{PART_SUFFIX}"


def is_hfsync_part(name: str) -> bool:
    """Whether `name` (a file in blobs/ or download/) is an hfsync part file or its journal."""
    base = name[: -len(".journal")] if name.endswith(".journal") else name
    if not base.endswith(".incomplete"):
        return False
    tag = base[: -len(".incomplete")].rsplit(".", 1)[-1]
    return tag == "hfsync" or (tag.startswith("hfsync-") and tag[7:].isdigit())
