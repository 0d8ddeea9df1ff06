"""An older `huggingface_hub` in a venv of its own, for interop tests against the emulator.

The official client 0.x is still the most installed, and it behaves differently from the 2.x in
the test extra: it resumes `blobs/<etag>.incomplete` by appending and trusts one of full size as
"already complete". Tests must therefore run the real old code, in a subprocess with its own
interpreter, never the installed 2.x.

The venv is built once per machine under a stable folder (`HFSYNC_TEST_VENVS`, default
/tmp/hfsync-test-venvs) and reused by every later session: it is created under a temporary
name and renamed into place, so two test sessions building it at once cannot leave a half-made
venv behind. A machine where pip cannot install the pinned version skips these tests with the
pip error as the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

OLD_VERSION = "0.34.6"


@dataclass(frozen=True)
class OldHub:
    """The interpreter of a venv that has `huggingface_hub==OLD_VERSION` installed."""

    python: Path
    version: str

    def run(
        self, script: str, *args: object, env: Mapping[str, str], timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run `script` with the old client; `env` is the whole environment (nothing inherited)."""
        return subprocess.run(
            [str(self.python), "-c", script, *map(str, args)],
            capture_output=True,
            text=True,
            env=dict(env),
            timeout=timeout,
        )

    def popen(self, script: str, *args: object, env: Mapping[str, str]) -> subprocess.Popen[str]:
        """Start `script` with the old client, for tests that kill it midway."""
        return subprocess.Popen(
            [str(self.python), "-c", script, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(env),
        )


def venv_root() -> Path:
    return Path(
        os.environ.get("HFSYNC_TEST_VENVS", Path(tempfile.gettempdir()) / "hfsync-test-venvs")
    )


def _installed(python: Path) -> bool:
    probe = "import huggingface_hub, sys; sys.exit(huggingface_hub.__version__ != sys.argv[1])"
    if not python.exists():
        return False
    done = subprocess.run([str(python), "-c", probe, OLD_VERSION], capture_output=True, timeout=60)
    return done.returncode == 0


def build_old_hub(version: str = OLD_VERSION) -> OldHub:
    """The venv with the old client, built if missing; pytest.skip when pip cannot install it."""
    root = venv_root()
    final = root / f"hfhub-{version}"
    python = final / "bin" / "python"
    if _installed(python):
        return OldHub(python, version)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".hfhub-{version}-", dir=root))
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(staging)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        pip = subprocess.run(
            [
                str(staging / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                f"huggingface_hub=={version}",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=900,
        )
        if pip.returncode != 0:
            tail = (pip.stderr or pip.stdout).strip().splitlines()[-1:] or ["no output"]
            pytest.skip(f"cannot install huggingface_hub=={version} with pip: {tail[0]}")
        if final.exists() and _installed(python):
            return OldHub(python, version)  # another session finished first
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a venv for huggingface_hub=={version}: {exc.stderr!r}")
    except OSError:
        if not _installed(python):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # venv scripts hold the staging path in their shebangs; `python -m pip` never uses them,
    # and the interpreter symlink is relative to the venv, so the renamed venv works.
    if not _installed(python):
        pytest.skip(f"the venv at {final} does not import huggingface_hub=={version}")
    return OldHub(python, version)


def old_client_env(endpoint: str, home: Path, cache: Path) -> dict[str, str]:
    """A clean environment for the old client: the emulator, this cache, no token, no Xet.

    Built from scratch rather than copied from os.environ, so a developer's HF_TOKEN or
    HF_HUB_OFFLINE never reaches the subprocess.
    """
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_ENDPOINT": endpoint,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_ETAG_TIMEOUT": "30",
        "HF_HUB_DOWNLOAD_TIMEOUT": "30",
    }
