"""A Hugging Face Hub emulator for tests and benchmarks, on 127.0.0.1 only.

Two servers: the API/resolve server (``hub.endpoint``, what ``HF_ENDPOINT`` is set to) and a CDN
on another port, so the official client treats it as another origin and drops ``Authorization``,
as it does for the real CDN. Repos, commits and blobs live on disk under ``root`` (see
``hub_store``), so a second process can add commits while the server runs. ``hub.faults``
switches on network misbehaviour (bandwidth caps, drops, stalls, 5xx/429, expired URLs,
corruption, mirror quirks).

Usage::

    with HubEmulator(tmp_path / "hub") as hub:
        hub.create_repo("org/model")
        sha = hub.commit("org/model", {"config.json": b"{}", "model.safetensors": big_path})
        snapshot_download("org/model", endpoint=hub.endpoint, local_dir=...)

Standalone: ``python -m hfsync.testing.hub --root DIR [--demo]`` (first stdout line
``endpoint=http://127.0.0.1:PORT``) and ``python -m hfsync.testing.hub commit --root DIR REPO
--add path=localfile --delete path``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from .hub_faults import Faults, Pacer
from .hub_http import HubServer, Request, ServerPair, UrlSigner
from .hub_routes import ApiHandler, CdnHandler
from .hub_store import DEFAULT_LFS_PATTERNS, DEFAULT_LFS_THRESHOLD, REPO_TYPES, Store

__all__ = ["Faults", "FileInfo", "HubEmulator", "Request", "main"]


class _FileInfoFields(NamedTuple):
    size: int
    lfs_sha256: str | None  # None for regular (non-LFS) files
    blob_sha1: str  # the listed git oid (the LFS pointer's blob id for LFS files)


class FileInfo(_FileInfoFields):
    """A file of a commit as tests compare it: ``size, lfs_sha256, blob_sha1 = info``.

    Also carries ``sha256`` of the content (for regular files too, where the Hub shows none).
    """

    sha256: str

    def __new__(cls, size: int, lfs_sha256: str | None, blob_sha1: str, sha256: str) -> FileInfo:
        self = super().__new__(cls, size, lfs_sha256, blob_sha1)
        self.sha256 = sha256
        return self


class HubEmulator:
    """The emulated Hub: state on disk, two local HTTP servers, a request log and fault switches.

    Its servers see it as an :class:`~hfsync.testing.hub_http.EmulatorContext`: ``store``,
    ``faults``, ``page_size``, ``signer``, ``total_pacer``, ``stopping``, ``endpoint``,
    ``sign_url``, ``expire_all_urls``, ``record`` and ``record_error``.
    """

    def __init__(
        self,
        root: Path | str,
        page_size: int = 1000,
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        url_ttl: float = 3600.0,
        port: int = 0,
        cdn_port: int = 0,
        log_limit: int | None = None,
    ) -> None:
        """`log_limit`: keep only the last this many requests in the log (a long-lived
        standalone emulator: its log grew to 612 MB after ~200k requests); None keeps all,
        as tests that count requests need."""
        self.root = Path(root)
        self.store = Store(self.root, lfs_threshold)
        self.page_size = page_size
        self.url_ttl = url_ttl
        self.faults = Faults()
        self._ports = (port, cdn_port)
        self.signer = UrlSigner()
        self.total_pacer = Pacer()  # shared by all connections (faults.rate_total)
        self._log: deque[Request] = deque(maxlen=log_limit)
        self._errors: list[str] = []
        self._log_lock = threading.Lock()
        self.stopping = threading.Event()  # set by stop(): stalled responses end
        self._servers: ServerPair | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> HubEmulator:
        """Bind both servers on 127.0.0.1 (ephemeral ports unless given) and serve in threads."""
        if self._servers is not None:
            return self
        self.stopping.clear()
        api = HubServer(self, "api", self._ports[0], ApiHandler)  # self: the EmulatorContext
        cdn = HubServer(self, "cdn", self._ports[1], CdnHandler)
        self._servers = ServerPair(api, cdn)
        self._servers.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled responses are released so their threads end."""
        self.stopping.set()
        if self._servers is not None:
            self._servers.stop()
            self._servers = None

    def __enter__(self) -> HubEmulator:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<api_port>``: the value for ``HF_ENDPOINT`` / ``endpoint=``."""
        return self._url("api")

    @property
    def cdn_url(self) -> str:
        """``http://127.0.0.1:<cdn_port>``: another origin than :attr:`endpoint`."""
        return self._url("cdn")

    def _url(self, kind: str) -> str:
        if self._servers is None:
            raise RuntimeError("HubEmulator is not started")
        srv = self._servers.api if kind == "api" else self._servers.cdn
        return f"http://127.0.0.1:{srv.server_port}"

    # ---- repos, commits, refs, tokens -------------------------------------------------------

    def create_repo(
        self,
        repo_id: str,
        repo_type: str = "model",
        private: bool = False,
        gated: bool | str = False,
    ) -> None:
        """Create a repo with the Hub's initial ``.gitattributes`` commit (no-op if it exists)."""
        self.store.create_repo(repo_type, repo_id, private=private, gated=gated)

    def update_repo(self, repo_id: str, repo_type: str = "model", **settings: Any) -> None:
        """Change ``private`` / ``gated`` of an existing repo."""
        self.store.update_repo(repo_type, repo_id, **settings)

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes | str | os.PathLike[str]] | None = None,
        delete: Iterable[str] = (),
        repo_type: str = "model",
        branch: str = "main",
        message: str = "update",
        lfs_patterns: Iterable[str] = DEFAULT_LFS_PATTERNS,
    ) -> str:
        """New commit = branch tip + ``files`` - ``delete``; returns its 40-hex sha.

        ``files`` values: bytes, str (UTF-8 text) or a path streamed from disk. The repo is
        created (public) if missing, and a missing branch starts from ``main``.
        """
        if self.store.repo(repo_type, repo_id) is None:
            self.create_repo(repo_id, repo_type)
        meta = self.store.repo(repo_type, repo_id)
        parent = None
        if meta is not None and branch not in meta.branches:
            parent = meta.branches.get("main")
        return self.store.commit(
            repo_type,
            repo_id,
            files,
            delete=delete,
            branch=branch,
            message=message,
            lfs_patterns=lfs_patterns,
            parent=parent,
        )

    def resolve_revision(
        self, repo_id: str, revision: str = "main", repo_type: str = "model"
    ) -> str:
        """Branch, tag or sha -> commit sha (KeyError when unknown)."""
        meta = self.store.repo(repo_type, repo_id)
        sha = self.store.resolve(meta, revision) if meta else None
        if sha is None:
            raise KeyError(f"{repo_type} {repo_id}: unknown revision {revision!r}")
        return sha

    def create_branch(
        self, repo_id: str, branch: str, revision: str = "main", repo_type: str = "model"
    ) -> str:
        sha = self.resolve_revision(repo_id, revision, repo_type)
        self.store.set_ref(repo_type, repo_id, "branches", branch, sha)
        return sha

    def tag(self, repo_id: str, tag: str, revision: str = "main", repo_type: str = "model") -> str:
        sha = self.resolve_revision(repo_id, revision, repo_type)
        self.store.set_ref(repo_type, repo_id, "tags", tag, sha)
        return sha

    def add_token(
        self, token: str, grants: Iterable[str] = (), gated_accepted: Iterable[str] = ()
    ) -> None:
        """Register a valid token; ``grants`` are private repo ids it may read ("*" = all),
        ``gated_accepted`` gated repo ids whose conditions it accepted."""
        self.store.add_token(token, grants, gated_accepted)

    # ---- reading state back (for assertions) ------------------------------------------------

    def files(
        self, repo_id: str, revision: str = "main", repo_type: str = "model"
    ) -> dict[str, FileInfo]:
        """``{path: FileInfo(size, lfs_sha256 | None, blob_sha1, sha256)}`` at a revision."""
        sha = self.resolve_revision(repo_id, revision, repo_type)
        commit = self.store.get_commit(repo_type, repo_id, sha)
        assert commit is not None
        return {p: FileInfo(r.size, r.lfs_sha256, r.oid, r.sha256) for p, r in commit.files.items()}

    def blob_path(
        self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model"
    ) -> Path:
        """Where the content of ``path`` at ``revision`` is stored (read-only for callers)."""
        info = self.files(repo_id, revision, repo_type)[path]
        return self.store.blob_path(info.sha256)

    def read_file(
        self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model"
    ) -> bytes:
        return self.blob_path(repo_id, path, revision, repo_type).read_bytes()

    # ---- log, errors, faults ----------------------------------------------------------------

    @property
    def log(self) -> list[Request]:
        """Copy of the request log, in arrival order. Records are appended when a request
        arrives and completed before its response bytes leave (status None = still in flight)."""
        with self._log_lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    @property
    def errors(self) -> list[str]:
        """Tracebacks of unexpected server-side exceptions (should stay empty)."""
        with self._log_lock:
            return list(self._errors)

    def record(self, req: Request) -> None:
        """Append a request to the log (called by the servers as each request arrives)."""
        with self._log_lock:
            self._log.append(req)

    def record_error(self, text: str) -> None:
        """Keep a server-side traceback for :attr:`errors`."""
        with self._log_lock:
            self._errors.append(text)

    def reset_faults(self) -> None:
        """All fault switches back to off."""
        self.faults = Faults()

    def expire_all_urls(self) -> None:
        """Make every CDN URL issued so far answer 403, without waiting for its expiry."""
        self.signer.epoch += 1

    def sign_url(self, repo_type: str, repo_id: str, path: str, sha256: str) -> str:
        """A signed, expiring CDN URL for a blob, like the Hub's 302 ``Location``."""
        h = hashlib.sha256(f"{repo_type}s/{repo_id}".encode()).hexdigest()
        cdn_path = f"/repos/{h[:2]}/{h[2:4]}/{h}/{sha256}"
        ttl = self.faults.url_ttl if self.faults.url_ttl is not None else self.url_ttl
        url, sig = self.signer.sign(self.cdn_url, cdn_path, path.rsplit("/", 1)[-1], ttl)
        self.signer.issued[sig] = (repo_type, repo_id, path)
        return url


# ---- standalone CLI -------------------------------------------------------------------------


def make_demo(hub: HubEmulator) -> None:
    """Create ``demo/tiny-model`` (small files, a 20 MiB safetensors, a nested onnx) if absent."""
    if hub.store.repo("model", "demo/tiny-model") is not None:
        return
    rng = random.Random(1234)
    vocab = {f"tok{i}": i for i in range(2000)}
    hub.create_repo("demo/tiny-model")
    hub.commit(
        "demo/tiny-model",
        {
            "config.json": b'{"architectures": ["TinyModel"], "hidden_size": 64}\n',
            "tokenizer.json": json.dumps({"model": {"vocab": vocab}}).encode() + b"\n",
            "README.md": b"# tiny-model\n\nA demo repo served by the hfsync Hub emulator.\n",
            "model.safetensors": rng.randbytes(20 * 1024 * 1024),
            "onnx/model.onnx": rng.randbytes(3 * 1024 * 1024),
        },
        message="Add tiny model",
    )


def _serve(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m hfsync.testing.hub", description="Hub emulator")
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cdn-port", type=int, default=0)
    ap.add_argument("--rate-per-conn", type=float, default=None, help="bytes/s per connection")
    ap.add_argument("--rate-total", type=float, default=None, help="bytes/s for all connections")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each response")
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument("--lfs-threshold", type=int, default=DEFAULT_LFS_THRESHOLD)
    ap.add_argument("--url-ttl", type=float, default=3600.0)
    ap.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="TOKEN[=REPO,REPO]",
        help="register a token granting the listed private/gated repos ('*' = all)",
    )
    ap.add_argument("--demo", action="store_true", help="create demo/tiny-model if missing")
    ap.add_argument("--serve-existing", action="store_true", default=True,
                    help="serve the repos already under --root (always on)")  # fmt: skip
    args = ap.parse_args(argv)
    hub = HubEmulator(args.root, args.page_size, args.lfs_threshold, args.url_ttl,
                      args.port, args.cdn_port, log_limit=STANDALONE_LOG)  # fmt: skip
    hub.faults.rate_per_conn, hub.faults.rate_total = args.rate_per_conn, args.rate_total
    hub.faults.latency = args.latency
    for spec in args.token:
        token, _, repos = spec.partition("=")
        grants = [r for r in repos.split(",") if r]
        hub.add_token(token, grants, grants)
    if args.demo:
        make_demo(hub)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    hub.start()
    print(f"endpoint={hub.endpoint}", flush=True)
    print(f"cdn={hub.cdn_url}", flush=True)
    for repo_type, repo_id in hub.store.list_repos():
        print(f"repo={repo_type}:{repo_id}", flush=True)
    while not stop.wait(0.5):
        pass
    hub.stop()
    return 0


def _commit(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m hfsync.testing.hub commit",
                                 description="write a commit into an emulator root")  # fmt: skip
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("repo")
    ap.add_argument("--repo-type", default="model", choices=REPO_TYPES)
    ap.add_argument("--branch", default="main")
    ap.add_argument("--message", "-m", default="update")
    ap.add_argument("--add", action="append", default=[], metavar="PATH=LOCALFILE")
    ap.add_argument("--delete", action="append", default=[], metavar="PATH")
    ap.add_argument("--private", action="store_true", help="when creating the repo")
    ap.add_argument("--lfs-threshold", type=int, default=DEFAULT_LFS_THRESHOLD)
    args = ap.parse_args(argv)
    store = Store(args.root, args.lfs_threshold)
    if store.repo(args.repo_type, args.repo) is None:
        store.create_repo(args.repo_type, args.repo, private=args.private)
    files: dict[str, Path] = {}
    for spec in args.add:
        path, sep, local = spec.partition("=")
        if not sep:
            ap.error(f"--add wants PATH=LOCALFILE, got {spec!r}")
        files[path] = Path(local)
    sha = store.commit(args.repo_type, args.repo, files, delete=args.delete,
                       branch=args.branch, message=args.message)  # fmt: skip
    print(sha)
    return 0


STANDALONE_LOG = 10_000  # requests a standalone emulator remembers (nothing reads them back)


def main(argv: Sequence[str] | None = None) -> int:
    """``serve`` (default) or ``commit`` subcommand."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "commit":
        return _commit(argv[1:])
    if argv and argv[0] == "serve":
        argv = argv[1:]
    return _serve(argv)


if __name__ == "__main__":
    sys.exit(main())
