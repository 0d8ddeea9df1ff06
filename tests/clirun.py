"""Running the real `hfsync` command in a subprocess, as a user would, and reading the
emulator's request log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hfsync.testing.hub import HubEmulator


def hfsync(
    *args: object, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run `python -m hfsync ARGS`; never a traceback, whatever the exit code."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("HFSYNC_BACKOFF_BASE", "0.01")
    proc = subprocess.run(
        [sys.executable, "-m", "hfsync", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def downloads(hub: HubEmulator) -> list[str]:
    """Repo paths whose bytes were sent (body bytes from /resolve, resolve-cache or the CDN)."""
    return sorted(
        {
            r.file_path
            for r in hub.log
            if r.method == "GET" and r.body_bytes > 0 and r.file_path and _is_file_request(r)
        }
    )


def _is_file_request(record) -> bool:  # noqa: ANN001 - emulator Request
    return record.server == "cdn" or "/resolve/" in record.path or "/resolve-cache/" in record.path


def body_bytes(hub: HubEmulator) -> int:
    return sum(r.body_bytes for r in hub.log if _is_file_request(r))


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under root (state folder included) with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def user_files(root: Path) -> dict[str, bytes]:
    """The synced files only, without hfsync's / huggingface_hub's `.cache/huggingface` state."""
    return {k: v for k, v in tree(root).items() if not k.startswith(".cache/")}
