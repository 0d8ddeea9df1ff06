"""Benchmark repos for ``scripts/bench``, written once into a Hub emulator root and reused.

Generating gigabytes of random data takes a while (``os.urandom`` runs at a few hundred MB/s and
the emulator's store copies and hashes every blob), so each repo is built once per data folder
(its sizes are in its name) and recorded in a manifest (``bench-manifest.json``) that later runs
reuse.
Content is random so no tool can win by compression, and every file is distinct so no store or
client can deduplicate.

Repos (all ``model`` repos; the sizes are part of their names, see :func:`repo_names`)::

    single   one big LFS file (the capped 2 GiB and the unthrottled scenarios)
    model    two LFS shards + 30 small text files (config, tokenizer, ...): a model repo
    small    many small regular (non-LFS) files; ``main`` is the "update" commit, which
             changes one file (same size, new content) on top of the "base" commit
    big      one very large LFS file (peak RSS)
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfsync.testing.hub import HubEmulator

MANIFEST = "bench-manifest.json"
BLOCK = 8 * 1024 * 1024
MANIFEST_VERSION = 1

SINGLE, MODEL, SMALL, BIG = "single", "model", "small", "big"  # roles; see repo_names()
BIG_NAME = "model.safetensors"

# What a model repo carries besides its weights (sizes in bytes, roughly what real repos have).
MODEL_TEXT_FILES: tuple[tuple[str, int], ...] = (
    ("config.json", 700),
    ("generation_config.json", 180),
    ("tokenizer.json", 2_100_000),
    ("tokenizer_config.json", 50_000),
    ("special_tokens_map.json", 600),
    ("vocab.json", 800_000),
    ("merges.txt", 450_000),
    ("model.safetensors.index.json", 25_000),
    ("README.md", 9_000),
    ("LICENSE", 11_000),
)
MODEL_SMALL_COUNT = 30


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark repo is; ``big == 0`` leaves the RSS repo out."""

    single: int
    shard: int
    small_count: int
    small_min: int = 1024
    small_max: int = 64 * 1024
    big: int = 0

    @classmethod
    def full(cls) -> Sizes:
        return cls(single=2 << 30, shard=1 << 30, small_count=2000, big=4 << 30)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(single=128 << 20, shard=64 << 20, small_count=200, big=0)


@dataclass
class RepoData:
    """One benchmark repo as the harness checks it: ``files`` maps path -> [size, sha256]."""

    repo: str
    commit: str
    files: dict[str, list[Any]]
    base_commit: str | None = None  # bench/small: the commit before the one-file update
    changed: str | None = None  # bench/small: the file the update commit changed

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self.files.values())

    def biggest(self) -> str:
        return max(self.files, key=lambda p: self.files[p][0])


def write_random(path: Path, size: int) -> None:
    """Fill ``path`` with ``size`` random bytes in 8 MiB blocks, so memory stays flat."""
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(BLOCK, left))
            fh.write(block)
            left -= len(block)


def _text(rng: random.Random, size: int) -> bytes:
    """Text-like content (hex words, lines), compressible about as much as JSON vocabularies."""
    raw = rng.randbytes(size // 2 + 1).hex()
    lines = [raw[i : i + 78] for i in range(0, len(raw), 78)]
    return "\n".join(lines).encode()[:size]


def _files_of(hub: HubEmulator, repo: str, revision: str = "main") -> dict[str, list[Any]]:
    return {p: [f.size, f.sha256] for p, f in hub.files(repo, revision).items()}


def _commit_big(hub: HubEmulator, tmp: Path, repo: str, names: dict[str, int]) -> str:
    """Commit big random files, each generated into ``tmp`` and deleted once stored."""
    tmp.mkdir(parents=True, exist_ok=True)
    sources: dict[str, Path] = {}
    try:
        for name, size in names.items():
            src = tmp / name.replace("/", "_")
            write_random(src, size)
            sources[name] = src
        return hub.commit(repo, dict(sources), message="add weights")
    finally:
        for src in sources.values():
            src.unlink(missing_ok=True)


def _small_sizes(rng: random.Random, sizes: Sizes) -> list[int]:
    """Log-uniform sizes between small_min and small_max: many tiny files, a few bigger ones."""
    lo, hi = sizes.small_min, sizes.small_max
    return [int(lo * (hi / lo) ** rng.random()) for _ in range(sizes.small_count)]


def small_path(i: int) -> str:
    """File ``i`` of bench/small, 100 per folder like a sharded dataset."""
    return f"data/{i // 100:03d}/part-{i:05d}.dat"


def _tag(size: int) -> str:
    return f"{size >> 30}g" if size >= 1 << 30 and not size % (1 << 30) else f"{size >> 20}m"


def repo_names(sizes: Sizes) -> dict[str, str]:
    """Role -> repo id. Sizes are in the names, so quick and full data share one root."""
    names = {
        SINGLE: f"bench/single-{_tag(sizes.single)}",
        MODEL: f"bench/model-2x{_tag(sizes.shard)}",
        SMALL: f"bench/small-{sizes.small_count}",
    }
    if sizes.big:
        names[BIG] = f"bench/big-{_tag(sizes.big)}"
    return names


def build(
    root: Path, sizes: Sizes, tmp: Path, log: Callable[[str], object] | None = None
) -> dict[str, RepoData]:
    """Role -> repo, creating under the emulator ``root`` only the repos not made before.

    ``root/bench-manifest.json`` remembers what exists (repo id -> files and commits), so a
    second invocation with the same ``--data-dir`` starts measuring at once.
    """
    say = log or (lambda _msg: None)
    manifest_path = root / MANIFEST
    known: dict[str, RepoData] = {}
    if manifest_path.exists():
        try:
            data = json.loads(manifest_path.read_text())
            if data.get("version") == MANIFEST_VERSION:
                known = {k: RepoData(**v) for k, v in data["repos"].items()}
        except (ValueError, KeyError, TypeError):
            known = {}
    hub = HubEmulator(root)
    out: dict[str, RepoData] = {}
    for role, repo in repo_names(sizes).items():
        if repo in known and hub.store.repo("model", repo) is not None:
            out[role] = known[repo]
            continue
        say(f"generating {repo}")
        out[role] = known[repo] = _MAKERS[role](hub, repo, sizes, tmp)
        manifest_path.write_text(
            json.dumps(
                {
                    "version": MANIFEST_VERSION,
                    "repos": {k: dataclasses.asdict(v) for k, v in known.items()},
                },
                indent=1,
            )
        )
    return out


def _make_single(hub: HubEmulator, repo: str, sizes: Sizes, tmp: Path) -> RepoData:
    sha = _commit_big(hub, tmp, repo, {BIG_NAME: sizes.single})
    return RepoData(repo, sha, _files_of(hub, repo))


def _make_big(hub: HubEmulator, repo: str, sizes: Sizes, tmp: Path) -> RepoData:
    sha = _commit_big(hub, tmp, repo, {BIG_NAME: sizes.big})
    return RepoData(repo, sha, _files_of(hub, repo))


def _make_model(hub: HubEmulator, repo: str, sizes: Sizes, tmp: Path) -> RepoData:
    rng = random.Random(f"{repo}")
    shards = {f"model-{i:05d}-of-00002.safetensors": sizes.shard for i in (1, 2)}
    _commit_big(hub, tmp, repo, shards)
    small: dict[str, bytes | str | os.PathLike[str]] = {
        name: _text(rng, size) for name, size in MODEL_TEXT_FILES
    }
    for i in range(MODEL_SMALL_COUNT - len(MODEL_TEXT_FILES)):
        small[f"assets/notes-{i:02d}.txt"] = _text(rng, rng.randint(1_000, 64_000))
    sha = hub.commit(repo, small, message="add config and tokenizer")
    return RepoData(repo, sha, _files_of(hub, repo))


def _make_small(hub: HubEmulator, repo: str, sizes: Sizes, tmp: Path) -> RepoData:
    """Many small files; then a second commit (``main``) changing one file, same size."""
    rng = random.Random(f"{repo}")
    files: dict[str, bytes | str | os.PathLike[str]] = {
        small_path(i): rng.randbytes(n) for i, n in enumerate(_small_sizes(rng, sizes))
    }
    base = hub.commit(repo, files, message="add data")
    changed = small_path(sizes.small_count // 2)
    new_content = rng.randbytes(len(files[changed]))  # type: ignore[arg-type]
    sha = hub.commit(repo, {changed: new_content}, message="update one file")
    return RepoData(repo, sha, _files_of(hub, repo), base, changed)


_MAKERS = {SINGLE: _make_single, MODEL: _make_model, SMALL: _make_small, BIG: _make_big}
