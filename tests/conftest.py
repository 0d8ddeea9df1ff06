"""Shared pytest fixtures.

Emulator fixtures: ``hub`` (a started :class:`HubEmulator` on a temp dir, 1 MiB LFS threshold so
tests stay small) and ``hf_env`` (isolates the official client from the developer's own HF
config and token, and points ``HF_ENDPOINT`` at the emulator).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator

TEST_LFS_THRESHOLD = 1024 * 1024


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubEmulator]:
    """A running emulator; fails the test if the server hit an unexpected exception."""
    emulator = HubEmulator(tmp_path / "hub", lfs_threshold=TEST_LFS_THRESHOLD)
    with emulator:
        yield emulator
    assert not emulator.errors, "server-side exceptions:\n" + "\n".join(emulator.errors)


@pytest.fixture
def hf_env(hub: HubEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Environment for running huggingface_hub (or hfsync) against ``hub``; returns HF_HOME.

    huggingface_hub reads most settings at import time, so the token path is patched on its
    constants module too: a developer's real token must never reach the emulator.
    """
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    home.mkdir()
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    return home


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB filesystem, to run out of space for real; skipped where mount is denied."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)
