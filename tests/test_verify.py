"""`hfsync verify` (issue 11): a flipped byte that a sync trusts (same size, same mtime) and a
missing file are found, exit 5; `--fix` refetches exactly those files and nothing else."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import downloads, hfsync, user_files

REPO = "org/verified"
FILES = {
    "config.json": b'{"v": 1}\n',
    "model.safetensors": os.urandom(1200 * 1024),  # LFS: sha256 id
    "sub/tokenizer.json": b'{"t": [1, 2, 3]}\n',  # git blob sha1 id
    "notes.txt": b"hello\n",
}


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    hub.commit(REPO, files=FILES)
    return FILES


def flip_byte_keep_mtime(path: Path, offset: int) -> None:
    """Corrupt one byte without changing size or mtime: what bit rot looks like to a sync."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_verify_finds_a_flipped_byte_and_a_missing_file_and_fix_refetches_only_them(
    repo: dict[str, bytes], hub: HubEmulator, tmp_path: Path
) -> None:
    dest = tmp_path / "model"
    assert hfsync("sync", REPO, dest).returncode == 0
    clean = hfsync("verify", dest, "--json")
    assert clean.returncode == 0 and json.loads(clean.stdout)["checked"] == 5

    flip_byte_keep_mtime(dest / "model.safetensors", 4321)
    (dest / "sub/tokenizer.json").unlink()
    (dest / "stray.bin").write_bytes(b"who put this here")
    hub.clear_log()
    assert hfsync("sync", REPO, dest).returncode == 0
    assert downloads(hub) == ["sub/tokenizer.json"], "the sync trusts the flipped file"
    (dest / "sub/tokenizer.json").unlink()

    found = hfsync("verify", dest, "--json", "--extra")
    assert found.returncode == 5, found.stderr
    doc = json.loads(found.stdout)
    assert doc["mismatched"] == ["model.safetensors"]
    assert doc["missing"] == ["sub/tokenizer.json"]
    assert doc["extra"] == ["stray.bin"]
    text = hfsync("verify", dest)
    assert text.returncode == 5
    assert "MISMATCH  model.safetensors" in text.stdout and "MISSING   sub/tokenizer" in text.stdout
    assert "1 mismatched, 1 missing" in text.stderr and len(text.stderr.splitlines()) == 1

    hub.clear_log()
    fixed = hfsync("verify", dest, "--fix", "--repo", REPO)
    assert fixed.returncode == 0, fixed.stderr
    assert "fixed 2 files" in fixed.stdout
    assert downloads(hub) == ["model.safetensors", "sub/tokenizer.json"]
    resolves = [r for r in hub.log if "/resolve/" in r.path]
    assert len(resolves) == 2, "exactly one download per broken file"
    got = user_files(dest)
    assert {p: got[p] for p in FILES} == FILES
    assert hfsync("verify", dest).returncode == 0


def test_verify_the_cache_and_fix_one_blob(
    repo: dict[str, bytes], hub: HubEmulator, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    assert hfsync("sync", REPO, "--cache-dir", cache).returncode == 0
    assert hfsync("verify", "--cache-dir", cache, REPO).returncode == 0
    sha = hub.files(REPO)["model.safetensors"].lfs_sha256
    blob = cache / "models--org--verified" / "blobs" / sha
    flip_byte_keep_mtime(blob, 10)

    found = hfsync("verify", "--cache", "--cache-dir", cache, "--json")
    assert found.returncode == 5
    assert json.loads(found.stdout)["mismatched"] == ["model.safetensors"]

    hub.clear_log()
    fixed = hfsync("verify", "--cache-dir", cache, REPO, "--fix")
    assert fixed.returncode == 0, fixed.stderr
    assert downloads(hub) == ["model.safetensors"]
    assert len([r for r in hub.log if "/resolve/" in r.path]) == 1
    assert blob.read_bytes() == FILES["model.safetensors"]
    assert hfsync("verify", "--cache-dir", cache, REPO).returncode == 0


def test_verify_an_atomic_mirror_and_fix_it_without_naming_the_repo(
    repo: dict[str, bytes], hub: HubEmulator, tmp_path: Path
) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text(
        textwrap.dedent(f"""
        [[repos]]
        id = "{REPO}"
        dest = "m"
        atomic = true
        """)
    )
    assert hfsync("mirror", config).returncode == 0
    dest = tmp_path / "m"
    flip_byte_keep_mtime(dest / "current" / "config.json", 2)
    found = hfsync("verify", dest, "--json")
    assert found.returncode == 5 and json.loads(found.stdout)["mismatched"] == ["config.json"]
    hub.clear_log()
    assert hfsync("verify", dest, "--fix").returncode == 0
    assert downloads(hub) == ["config.json"]
    assert (dest / "current" / "config.json").read_bytes() == FILES["config.json"]


def test_bad_input_is_one_line(repo: dict[str, bytes], tmp_path: Path) -> None:
    missing = hfsync("verify", tmp_path / "nope")
    assert missing.returncode == 2 and "no such folder" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    remote = hfsync("verify", "--remote", "ssh gpu", "/data/model")  # no --repo: before any SSH
    assert remote.returncode == 2 and "--repo" in remote.stderr
    filters = hfsync("verify", tmp_path, "--include", "*.json")
    assert filters.returncode == 2 and "go with --remote" in filters.stderr
    nothing = hfsync("verify")
    assert nothing.returncode == 2 and "DEST" in nothing.stderr
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x").write_bytes(b"x")
    no_repo = hfsync("verify", tmp_path / "plain", "--extra", "--fix")
    assert no_repo.returncode == 5, "extra files are reported; nothing to refetch"
