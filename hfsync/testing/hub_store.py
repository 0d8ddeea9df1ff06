"""On-disk state of the Hub emulator: repos, commits, refs, tokens and content-addressed blobs.

Everything lives under one root folder so a second process (the ``commit`` CLI, a demo script) can
add commits while a server is running; readers re-load a JSON file when its (inode, mtime, size)
changes, and writers replace files atomically under an ``flock``, so a reader never sees half a
file.

Layout::

    root/blobs/<sha256>                              file contents, by sha256 of the content
    root/repos/<type>s/<repo_id>/repo.json           {private, gated, created_at, branches, tags}
    root/repos/<type>s/<repo_id>/commits/<sha>.json  {parent, message, date, files: {path: rec}}
    root/tokens.json                                 {token: {grants: [...], gated_accepted: [...]}}
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import fnmatch
import hashlib
import io
import itertools
import json
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_TYPES = ("model", "dataset", "space")
DEFAULT_LFS_THRESHOLD = 10 * 1024 * 1024

# The patterns of the .gitattributes the Hub writes into every new repo (filter=lfs).
DEFAULT_LFS_PATTERNS: tuple[str, ...] = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib",
    "*.lfs.*", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot",
    "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors",
    "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
    "*.gguf",
)  # fmt: skip

GITATTRIBUTES = "".join(
    f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in DEFAULT_LFS_PATTERNS
).encode()

_COPY_CHUNK = 1024 * 1024
_counter = itertools.count()


def git_blob_sha1(data: bytes) -> str:
    """Git blob id of ``data``: what the Hub lists as ``oid`` for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file text; its git blob id is the ``oid`` of an LFS file."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def now_iso() -> str:
    """Hub-style UTC timestamp (``2024-05-01T12:00:00.000Z``)."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class FileRec:
    """One file of a commit. ``oid`` is the listed git id (pointer's id for LFS files)."""

    size: int
    oid: str
    sha256: str
    lfs: bool

    @property
    def lfs_sha256(self) -> str | None:
        return self.sha256 if self.lfs else None

    @property
    def etag(self) -> str:
        """What /resolve reports as the file's identity: sha256 for LFS, git sha1 otherwise."""
        return self.sha256 if self.lfs else self.oid

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "oid": self.oid, "sha256": self.sha256, "lfs": self.lfs}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FileRec:
        return cls(size=d["size"], oid=d["oid"], sha256=d["sha256"], lfs=d["lfs"])


@dataclass
class Commit:
    """An immutable commit: full file map plus the folder index built once for listings."""

    sha: str
    parent: str | None
    message: str
    date: str
    files: dict[str, FileRec]
    dirs: dict[str, str] = field(default_factory=dict)  # dir path -> tree oid
    children: dict[str, list[str]] = field(default_factory=dict)  # dir ("" = root) -> child paths

    def __post_init__(self) -> None:
        self._index()

    def _index(self) -> None:
        """Build folder entries so non-recursive listings and directory oids are cheap."""
        children: dict[str, set[str]] = {"": set()}
        for path in self.files:
            parts = path.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                children.setdefault("/".join(parts[: i - 1]), set()).add(d)
                children.setdefault(d, set())
            children.setdefault("/".join(parts[:-1]), set()).add(path)
        self.children = {d: sorted(c) for d, c in children.items()}
        for d in sorted(self.children, key=lambda p: -p.count("/") if p else 1):
            if d == "":
                continue
            h = hashlib.sha1(b"tree ")
            for child in self.children[d]:
                cid = self.dirs.get(child) or self.files[child].oid
                h.update(f"{child}\0{cid}\n".encode())
            self.dirs[d] = h.hexdigest()


@dataclass
class RepoMeta:
    """Mutable repo settings and refs (re-read from disk when they change)."""

    repo_type: str
    repo_id: str
    private: bool
    gated: bool | str
    created_at: str
    branches: dict[str, str]
    tags: dict[str, str]
    last_modified: str

    def to_json(self) -> dict[str, Any]:
        return {
            "private": self.private,
            "gated": self.gated,
            "created_at": self.created_at,
            "branches": self.branches,
            "tags": self.tags,
            "last_modified": self.last_modified,
        }


class Store:
    """Reads and writes the emulator's on-disk state; safe across threads and processes."""

    def __init__(self, root: Path | str, lfs_threshold: int = DEFAULT_LFS_THRESHOLD) -> None:
        self.root = Path(root)
        self.lfs_threshold = lfs_threshold
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._lock_depth = 0
        self._json_cache: dict[Path, tuple[tuple[int, int, int], Any]] = {}
        self._commits: dict[tuple[str, str, str], Commit] = {}

    # ---- low-level file helpers -------------------------------------------------------------

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        """Serialise writers of this process (RLock) and of other processes (flock).

        Re-entrant: a second flock on a new descriptor would deadlock against our own first one.
        """
        with self._lock:
            if self._lock_depth:
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            with open(self.root / ".lock", "a+b") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                self._lock_depth = 1
                try:
                    yield
                finally:
                    self._lock_depth = 0
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_json(self, path: Path) -> Any | None:
        """Load a JSON file, re-reading only when it was replaced or modified."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._json_cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        self._json_cache[path] = (key, data)
        return data

    @staticmethod
    def _write_json(path: Path, data: Any) -> None:
        """Atomic replace, so concurrent readers see the old or the new file, never half."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / f"{repo_type}s" / repo_id

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    # ---- repos and refs ---------------------------------------------------------------------

    def repo(self, repo_type: str, repo_id: str) -> RepoMeta | None:
        """Current settings and refs of a repo, or None when it does not exist."""
        if repo_type not in REPO_TYPES or any(p in ("", ".", "..") for p in repo_id.split("/")):
            return None  # also keeps URL-supplied ids inside the root
        data = self._read_json(self.repo_dir(repo_type, repo_id) / "repo.json")
        if data is None:
            return None
        return RepoMeta(repo_type=repo_type, repo_id=repo_id, **data)

    def list_repos(self) -> list[tuple[str, str]]:
        """All (repo_type, repo_id) pairs on disk."""
        out = []
        for rt in REPO_TYPES:
            base = self.root / "repos" / f"{rt}s"
            for meta in sorted(base.glob("**/repo.json")):
                out.append((rt, meta.parent.relative_to(base).as_posix()))
        return out

    def create_repo(
        self, repo_type: str, repo_id: str, *, private: bool = False, gated: bool | str = False
    ) -> RepoMeta:
        """Create a repo with the Hub's initial commit (a ``.gitattributes`` file)."""
        if repo_type not in REPO_TYPES:
            raise ValueError(f"unknown repo type {repo_type!r}")
        with self._write_lock():
            existing = self.repo(repo_type, repo_id)
            if existing is not None:
                return existing
            meta = RepoMeta(repo_type, repo_id, private, gated, now_iso(), {}, {}, now_iso())
            self._write_json(self.repo_dir(repo_type, repo_id) / "repo.json", meta.to_json())
            self.commit(
                repo_type, repo_id, {".gitattributes": GITATTRIBUTES}, message="initial commit"
            )
            return self.repo(repo_type, repo_id)  # type: ignore[return-value]

    def update_repo(self, repo_type: str, repo_id: str, **changes: Any) -> None:
        """Change settings (private, gated) or refs (branches, tags) of an existing repo."""
        with self._write_lock():
            meta = self._require(repo_type, repo_id)
            for k, v in changes.items():
                setattr(meta, k, v)
            self._write_json(self.repo_dir(repo_type, repo_id) / "repo.json", meta.to_json())

    def set_ref(self, repo_type: str, repo_id: str, kind: str, name: str, sha: str) -> None:
        """Point branch or tag ``name`` at commit ``sha`` (which must exist)."""
        with self._write_lock():
            meta = self._require(repo_type, repo_id)
            if self.get_commit(repo_type, repo_id, sha) is None:
                raise KeyError(f"unknown commit {sha}")
            refs = getattr(meta, kind)
            refs[name] = sha
            meta.last_modified = now_iso()
            self._write_json(self.repo_dir(repo_type, repo_id) / "repo.json", meta.to_json())

    def _require(self, repo_type: str, repo_id: str) -> RepoMeta:
        meta = self.repo(repo_type, repo_id)
        if meta is None:
            raise KeyError(f"no such repo: {repo_type} {repo_id}")
        return meta

    # ---- commits ----------------------------------------------------------------------------

    def resolve(self, meta: RepoMeta, revision: str) -> str | None:
        """Branch, tag or full commit sha -> commit sha (None when unknown)."""
        if revision in meta.branches:
            return meta.branches[revision]
        if revision in meta.tags:
            return meta.tags[revision]
        for prefix, refs in (("refs/heads/", meta.branches), ("refs/tags/", meta.tags)):
            if revision.startswith(prefix) and revision[len(prefix) :] in refs:
                return refs[revision[len(prefix) :]]
        if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
            if (
                self.repo_dir(meta.repo_type, meta.repo_id) / "commits" / f"{revision}.json"
            ).exists():
                return revision
        return None

    def get_commit(self, repo_type: str, repo_id: str, sha: str) -> Commit | None:
        """A commit by sha; commits are immutable so they are cached forever once read."""
        key = (repo_type, repo_id, sha)
        commit = self._commits.get(key)
        if commit is not None:
            return commit
        path = self.repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json"
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return None
        files = {p: FileRec.from_json(r) for p, r in data["files"].items()}
        commit = Commit(sha, data["parent"], data["message"], data["date"], files)
        self._commits[key] = commit
        return commit

    def commit(
        self,
        repo_type: str,
        repo_id: str,
        files: Mapping[str, bytes | str | os.PathLike[str]] | None = None,
        *,
        delete: Iterable[str] = (),
        branch: str = "main",
        message: str = "commit",
        lfs_patterns: Iterable[str] = DEFAULT_LFS_PATTERNS,
        parent: str | None = None,
    ) -> str:
        """Write a commit = parent tree + ``files`` - ``delete`` and move ``branch`` to it.

        Values in ``files`` are bytes (or str, encoded UTF-8) or a path streamed from disk.
        """
        patterns = tuple(lfs_patterns)
        added = {_clean_path(p): self._ingest(p, src, patterns) for p, src in (files or {}).items()}
        with self._write_lock():
            meta = self._require(repo_type, repo_id)
            parent = parent or meta.branches.get(branch)
            tree: dict[str, FileRec] = {}
            if parent is not None:
                base = self.get_commit(repo_type, repo_id, parent)
                if base is None:
                    raise KeyError(f"unknown parent commit {parent}")
                tree.update(base.files)
            for p in delete:
                p = _clean_path(p)
                removed = [k for k in tree if k == p or k.startswith(p + "/")]
                if not removed:
                    raise KeyError(f"cannot delete {p!r}: not in the parent commit")
                for k in removed:
                    del tree[k]
            tree.update(added)
            _check_no_file_dir_clash(tree)
            date = now_iso()
            seed = f"{parent}\n{message}\n{date}\n{os.getpid()}\n{next(_counter)}\n{uuid.uuid4()}"
            tree_blob = json.dumps({p: r.to_json() for p, r in sorted(tree.items())})
            sha = hashlib.sha1(f"commit {seed}\n{tree_blob}".encode()).hexdigest()
            record = {
                "parent": parent,
                "message": message,
                "date": date,
                "files": {p: r.to_json() for p, r in sorted(tree.items())},
            }
            self._write_json(self.repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json", record)
            meta.branches[branch] = sha
            meta.last_modified = date
            self._write_json(self.repo_dir(repo_type, repo_id) / "repo.json", meta.to_json())
            return sha

    def history(self, repo_type: str, repo_id: str, sha: str) -> list[Commit]:
        """Commits from ``sha`` back to the first one."""
        out = []
        cur: str | None = sha
        while cur is not None:
            c = self.get_commit(repo_type, repo_id, cur)
            if c is None:
                break
            out.append(c)
            cur = c.parent
        return out

    # ---- blobs ------------------------------------------------------------------------------

    def _ingest(
        self, path: str, src: bytes | str | os.PathLike[str], patterns: tuple[str, ...]
    ) -> FileRec:
        """Store the content under its sha256 and work out the Hub's ids for it."""
        if isinstance(src, str):
            src = src.encode()
        if isinstance(src, (bytes, bytearray, memoryview)):
            data = bytes(src)
            size, fh = len(data), io.BytesIO(data)
        else:
            size, fh = os.stat(src).st_size, open(src, "rb")  # noqa: SIM115 - closed below
        sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
        tmp = self.root / "blobs" / f".{uuid.uuid4().hex}.tmp"
        try:
            with fh, open(tmp, "wb") as out:
                while chunk := fh.read(_COPY_CHUNK):
                    sha256.update(chunk)
                    sha1.update(chunk)
                    out.write(chunk)
            digest = sha256.hexdigest()
            final = self.blob_path(digest)
            if final.exists():
                tmp.unlink()
            else:
                os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        lfs = self.is_lfs(path, size, patterns)
        oid = git_blob_sha1(lfs_pointer(digest, size)) if lfs else sha1.hexdigest()
        return FileRec(size=size, oid=oid, sha256=digest, lfs=lfs)

    def is_lfs(self, path: str, size: int, patterns: tuple[str, ...]) -> bool:
        """LFS if big, or matched by a .gitattributes-style pattern (basename unless it has /)."""
        if path == ".gitattributes":
            return False
        if size >= self.lfs_threshold:
            return True
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(path if "/" in p else name, p) for p in patterns)

    # ---- tokens -----------------------------------------------------------------------------

    def tokens(self) -> dict[str, dict[str, list[str]]]:
        return self._read_json(self.root / "tokens.json") or {}

    def add_token(self, token: str, grants: Iterable[str], gated_accepted: Iterable[str]) -> None:
        with self._write_lock():
            tokens = dict(self.tokens())
            tokens[token] = {"grants": list(grants), "gated_accepted": list(gated_accepted)}
            self._write_json(self.root / "tokens.json", tokens)


def _clean_path(path: str) -> str:
    """Repo paths are relative POSIX paths; refuse anything a real git tree could not hold."""
    p = path.strip("/")
    parts = p.split("/")
    if not p or any(part in ("", ".", "..") for part in parts) or "\0" in p:
        raise ValueError(f"invalid repo path {path!r}")
    return p


def _check_no_file_dir_clash(tree: Mapping[str, FileRec]) -> None:
    """A path cannot be both a file and a folder in git."""
    for path in tree:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in tree:
                raise ValueError(f"{path!r} is under a file {'/'.join(parts[:i])!r}")
