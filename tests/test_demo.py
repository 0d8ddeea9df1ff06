"""`make demo` works on a fresh checkout: the script runs end to end and tells its story."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_script_runs_end_to_end() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert "6 files: 6 new, 0 updated, 0 unchanged" in out
    assert "6 files: 0 new, 0 updated, 6 unchanged" in out
    assert "dry run: 6 files: 0 new, 1 updated, 5 unchanged" in out
    assert "6 files: 0 new, 1 updated, 5 unchanged" in out
