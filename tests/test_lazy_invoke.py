"""`import paramiko` through hfsync.remote does not import invoke until ssh_config needs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("invoke")


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_connecting_code_does_not_import_invoke_yaml_or_mock() -> None:
    said = run(
        "import sys, hfsync.remote_sync, paramiko;"
        "print(sorted(m for m in ('invoke.tasks', 'yaml', 'unittest.mock') if m in sys.modules))"
    )
    assert said == "[]"


def test_the_first_use_imports_the_real_invoke() -> None:
    said = run(
        "import sys, hfsync.remote.connection, paramiko.config as c;"
        "run = c.invoke.run;"
        "import invoke;"
        "print(run.__module__, sys.modules['invoke'] is invoke, type(invoke).__name__)"
    )
    assert said == "invoke True module"


def test_match_exec_in_an_ssh_config_still_runs(tmp_path) -> None:  # noqa: ANN001
    cfg = tmp_path / "config"
    cfg.write_text('Match exec "true"\n  User matched\nHost *\n  Port 2222\n')
    said = run(
        "import hfsync.remote.connection, paramiko;"
        f"print(paramiko.SSHConfig.from_path({str(cfg)!r}).lookup('h').get('user'))"
    )
    assert said == "matched"
