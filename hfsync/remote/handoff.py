"""What a fleet's driving machine hands each pulling host: token, listing and signed URLs.

docs/scale-out.md: N hosts each listing a repo and resolving its F files cost N×F `/resolve`
calls against one account's budget of ~5,000 per 5 minutes. So the driver lists the commit
once and resolves each selected file once (`HubClient.resolve_location`), and every host's
`hfsync sync --handoff-stdin` reads all of it from the channel's stdin: no revision or tree
call, no `/resolve` for a file whose URL is still valid (a 403 from one re-resolves it, as an
expired URL always does).

Wire format, on stdin only (the signed URLs are bearer secrets for their lifetime, like the
token: never argv, never a file on the host):

    HFSYNC-HANDOFF <n>\\n
    <n bytes of JSON: {"token": T|null, "commit": SHA, "files": [[path, size, blob_id,
    lfs_sha256|null, xet_hash|null], ...], "urls": {path: url}}>

A length, not a line: the reader takes exactly `n` bytes with unbuffered reads, so nothing
past the document is taken from the stdin watcher (`--exit-on-stdin-eof`), and a listing of
any size costs a few syscalls. The host trusts this no more than the Hub's own answer: the
listing passes `files.validate_listing`, the URLs must be http(s) and name listed paths.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import RemotePathError, UsageError
from ..files import RemoteFile, validate_listing

MAGIC = b"HFSYNC-HANDOFF "
MAX_DOC = 1 << 30  # a listing of millions of files stays below this
_SHA40 = re.compile(r"[0-9a-f]{40}")


@dataclass
class Handoff:
    """The listing of one commit and the data URLs resolved for it, plus the token."""

    commit: str
    files: list[RemoteFile]
    urls: dict[str, str] = field(default_factory=dict)
    token: str | None = None

    def encode(self) -> bytes:
        doc = {
            "token": self.token,
            "commit": self.commit,
            "files": [[f.path, f.size, f.blob_id, f.lfs_sha256, f.xet_hash] for f in self.files],
            "urls": self.urls,
        }
        body = json.dumps(doc, separators=(",", ":")).encode()
        return MAGIC + str(len(body)).encode() + b"\n" + body


def read_handoff(fd: int = 0) -> Handoff:
    """`--handoff-stdin`: read and check the document from `fd`, taking no byte beyond it."""
    header = bytearray()
    while len(header) < 64:
        byte = os.read(fd, 1)
        if not byte or byte == b"\n":
            break
        header += byte
    if not header.startswith(MAGIC) or not header[len(MAGIC) :].isdigit():
        raise UsageError("--handoff-stdin: stdin does not start with a handoff document")
    size = int(header[len(MAGIC) :])
    if size > MAX_DOC:
        raise UsageError(f"--handoff-stdin: a {size}-byte document is too big")
    chunks, got = [], 0
    while got < size:
        chunk = os.read(fd, min(size - got, 1 << 20))
        if not chunk:
            raise UsageError("--handoff-stdin: stdin ended inside the handoff document")
        chunks.append(chunk)
        got += len(chunk)
    try:
        doc = json.loads(b"".join(chunks))
    except ValueError:
        raise UsageError("--handoff-stdin: the handoff document is not JSON") from None
    return parse(doc)


def parse(doc: object) -> Handoff:
    """The document as a Handoff, refused whole (exit 5) if its listing or URLs are unsafe."""
    if not isinstance(doc, dict):
        raise UsageError("--handoff-stdin: the handoff document is not a JSON object")
    commit, token = doc.get("commit"), doc.get("token")
    rows, urls = doc.get("files"), doc.get("urls")
    if not isinstance(commit, str) or not _SHA40.fullmatch(commit):
        raise RemotePathError("refusing handoff: its commit is not 40 lowercase hex digits")
    if token is not None and not isinstance(token, str):
        raise UsageError("--handoff-stdin: the token is not a string")
    if not isinstance(rows, list) or not isinstance(urls, dict):
        raise RemotePathError("refusing handoff: no file list or URL map")
    files = [_remote_file(row) for row in rows]
    validate_listing(files)  # the same rules as a listing straight from the Hub
    listed = {f.path for f in files}
    for path, url in urls.items():
        if path not in listed or not isinstance(url, str) or not _is_http(url):
            raise RemotePathError(f"refusing handoff: bad URL for {str(path)[:80]!r}")
    return Handoff(commit, files, dict(urls), token or None)


def _remote_file(row: object) -> RemoteFile:
    if not isinstance(row, list) or len(row) != 5:
        raise RemotePathError("refusing handoff: a listing entry is not [path, size, ids…]")
    path, size, blob_id, sha256, xet = row
    return RemoteFile(path, size, blob_id, sha256, xet if isinstance(xet, str) else None)


def _is_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and len(url) < 16384
