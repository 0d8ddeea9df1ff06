"""A run with several failures exits with the most severe code, not the first in path order."""

from __future__ import annotations

import os
from pathlib import Path

from hfsync.errors import (
    SEVERITY,
    DiskError,
    IntegrityError,
    NetworkError,
    NotFoundError,
    most_severe,
    most_severe_code,
)
from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync


def test_integrity_failure_on_a_later_file_beats_a_network_failure_on_an_earlier_one(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    files = {"a.bin": os.urandom(2 * 1024 * 1024), "z.bin": os.urandom(2 * 1024 * 1024)}
    hub.commit("org/two", files=files)
    hub.faults.inject(503, count=None, server="api", path_contains="a.bin")
    hub.faults.body_faults_on = "cdn"
    hub.faults.corrupt_next(count=None)

    result = hfsync("sync", "org/two", tmp_path / "dest", "--connections", "2")

    assert result.returncode == 5, result.stderr
    assert "2 files failed" in result.stderr
    assert "z.bin" in result.stderr
    assert not (tmp_path / "dest" / "a.bin").exists()
    assert not (tmp_path / "dest" / "z.bin").exists()


def test_json_failure_document_carries_the_most_severe_error(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    import json

    hub.commit("org/two", files={"a.bin": os.urandom(2 << 20), "z.bin": os.urandom(2 << 20)})
    hub.faults.inject(503, count=None, server="api", path_contains="a.bin")
    hub.faults.body_faults_on = "cdn"
    hub.faults.corrupt_next(count=None)

    result = hfsync("sync", "org/two", tmp_path / "dest", "--json")

    assert result.returncode == 5
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert doc["error"]["exit_code"] == 5
    assert doc["error"]["kind"] == "IntegrityError"


def test_severity_order_is_the_documented_one() -> None:
    assert SEVERITY == (130, 5, 6, 7, 3, 4, 8, 2, 1)
    assert most_severe_code([4, 8, 2]) == 4
    assert most_severe_code([3, 4]) == 3
    assert most_severe_code([0, 0]) == 0
    assert most_severe_code([1, 2]) == 2
    errors = [NetworkError("n"), NotFoundError("a"), DiskError("d"), IntegrityError("i")]
    assert isinstance(most_severe(errors), IntegrityError)
    assert isinstance(most_severe(errors[:3]), DiskError)
