"""`hfsync mirror --dry-run` (issue 11): each repo's plan, and nothing written anywhere — no
snapshot folder, no state, log or metrics file, no lock — exit 0."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import downloads, hfsync

TOKEN = "hf_MirrorDryRunToken0123456789"


@pytest.fixture
def repos(hub: HubEmulator, hf_env: Path) -> None:
    hub.commit("org/plain", files={"config.json": b'{"a": 1}\n', "weights.bin": b"w" * 5000})
    hub.commit("org/snap", files={"config.json": b'{"s": 1}\n', "model.bin": b"m" * 7000})
    hub.create_repo("org/secret", private=True)
    hub.commit("org/secret", files={"tokenizer.json": b'{"t": 2}\n'})
    hub.add_token(TOKEN, grants=["org/secret"])


def write_config(tmp_path: Path, hub: HubEmulator) -> Path:
    (tmp_path / "token").write_text(TOKEN + "\n")
    config = tmp_path / "mirror.toml"
    config.write_text(textwrap.dedent(f"""\
        endpoint = "{hub.endpoint}"
        token_file = "token"
        cache_dir = "cache"
        log_file = "logs/mirror.jsonl"
        metrics_file = "metrics/hfsync.prom"

        [[repos]]
        id = "org/plain"
        dest = "data/plain"
        delete = true

        [[repos]]
        id = "org/snap"
        dest = "data/snap"
        atomic = true

        [[repos]]
        id = "org/secret"
        """))  # fmt: skip
    return config


def disk(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root (folders and links too) with its size and mtime: "wrote nothing"."""
    out = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = Path(folder, name)
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def test_a_first_dry_run_plans_every_repo_and_writes_nothing(
    repos: None, hub: HubEmulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path, hub)
    before = disk(tmp_path)
    run = hfsync("mirror", config, "--dry-run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert disk(tmp_path) == before
    assert downloads(hub) == []
    out = run.stdout
    assert "org/plain@main" in out and "would fetch" in out
    assert "weights.bin" in out and "model.bin" in out and "tokenizer.json" in out
    assert "dry run, nothing written" in out.splitlines()[-1]
    assert TOKEN not in out + run.stderr

    doc = json.loads(hfsync("mirror", config, "-n", "--json").stdout)
    assert doc["dry_run"] is True and doc["exit_code"] == 0
    plans = {r["repo"]: r["plan"] for r in doc["repos"]}
    assert {f["path"] for f in plans["org/snap"]["files"]} == {
        ".gitattributes",
        "config.json",
        "model.bin",
    }
    assert all(f["action"] == "new" for f in plans["org/plain"]["files"])
    assert plans["org/secret"]["commit"] == hub.resolve_revision("org/secret")
    assert disk(tmp_path) == before


def test_after_a_real_run_a_dry_run_shows_only_what_changed(
    repos: None, hub: HubEmulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path, hub)
    assert hfsync("mirror", config).returncode == 0
    old = hub.resolve_revision("org/snap")
    hub.commit("org/snap", files={"model.bin": b"M" * 7001})
    hub.commit("org/plain", delete=["weights.bin"])
    before = disk(tmp_path)
    hub.clear_log()

    run = hfsync("mirror", config, "--dry-run", "--json")
    assert run.returncode == 0, run.stderr
    assert disk(tmp_path) == before, "no snapshot folder, state, log, metrics or lock written"
    assert downloads(hub) == []
    repos_doc = {r["repo"]: r for r in json.loads(run.stdout)["repos"]}
    snap = repos_doc["org/snap"]
    assert snap["commit_before"] == old and snap["commit_after"] != old
    assert [(f["action"], f["path"]) for f in snap["plan"]["files"]] == [("update", "model.bin")]
    assert snap["plan"]["bytes_planned"] == 7001
    plain = repos_doc["org/plain"]["plan"]["files"]
    assert [(f["action"], f["path"]) for f in plain] == [("delete", "weights.bin")]
    assert repos_doc["org/secret"]["plan"]["files"] == []
    text = hfsync("mirror", config, "--dry-run").stdout
    assert f"would update {old[:8]}.." in text and "at " in text and "already" in text
