"""`hfsync mirror CONFIG.toml` through the real CLI (issue 11): isolation of failing repos, the
exit code, the JSON summary, log lines, the Prometheus file, the lock, quiet and cron output."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import downloads, hfsync, user_files

TOKEN = "hf_MirrorSecretToken0123456789"
ALPHA = {"config.json": b'{"a": 1}\n', "weights.bin": os.urandom(1500 * 1024)}
SECRET = {"config.json": b'{"s": 1}\n', "tokenizer.json": b'{"t": 2}\n'}
TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 ")


@pytest.fixture
def repos(hub: HubEmulator, hf_env: Path) -> None:
    hub.commit("org/alpha", files=ALPHA)
    hub.create_repo("org/secret", private=True)
    hub.commit("org/secret", files=SECRET)
    hub.add_token(TOKEN, grants=["org/secret"])


def write_config(tmp_path: Path, hub: HubEmulator, body: str = "") -> Path:
    (tmp_path / "token").write_text(TOKEN + "\n")
    config = tmp_path / "mirror.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            endpoint = "{hub.endpoint}"
            token_file = "token"
            connections = 4
            bwlimit = "500M"
            cache_dir = "cache"

            [[repos]]
            id = "org/alpha"
            dest = "data/alpha"

            [[repos]]
            id = "org/missing"
            dest = "data/missing"

            [[repos]]
            id = "org/secret"
            include = ["*.json"]
            """
        )
        + body
    )
    return config


def metric(text: str, name: str, repo: str) -> float:
    """The value of `name{repo="repo",...}` in a Prometheus textfile."""
    pattern = rf'^hfsync_mirror_{name}\{{repo="{re.escape(repo)}",[^}}]*\}} (\S+)$'
    values = re.findall(pattern, text, re.MULTILINE)
    assert len(values) == 1, f"{name} for {repo}: {values}\n{text}"
    return float(values[0])


def test_three_repos_one_private_one_missing(repos: None, hub: HubEmulator, tmp_path: Path) -> None:
    config = write_config(tmp_path, hub)
    log, prom = tmp_path / "mirror.log", tmp_path / "metrics" / "hfsync.prom"
    before = time.time()
    run = hfsync("mirror", config, "--json", "--log-file", log, "--metrics-file", prom)

    assert run.returncode == 3, run.stderr
    assert TOKEN not in run.stdout + run.stderr
    assert "org/missing@main" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    doc = json.loads(run.stdout)
    assert [r["repo"] for r in doc["repos"]] == ["org/alpha", "org/missing", "org/secret"]
    assert [r["status"] for r in doc["repos"]] == ["ok", "failed", "ok"]
    alpha, missing, secret = doc["repos"]
    assert doc["exit_code"] == 3 and doc["repos_ok"] == 2 and doc["repos_failed"] == 1
    assert alpha["commit_before"] is None
    assert alpha["commit_after"] == hub.resolve_revision("org/alpha")
    assert alpha["files_changed"] == 3 and alpha["bytes"] >= len(ALPHA["weights.bin"])
    assert missing["exit_code"] == 3 and missing["error"]["kind"] == "RepoNotFoundError"
    assert missing["commit_after"] is None
    assert secret["commit_after"] == hub.resolve_revision("org/secret")
    assert secret["files_changed"] == 2  # .gitattributes excluded by include
    assert {k: v for k, v in user_files(tmp_path / "data/alpha").items() if k in ALPHA} == ALPHA
    snapshot = tmp_path / "cache/models--org--secret/snapshots" / secret["commit_after"]
    assert {p: (snapshot / p).read_bytes() for p in SECRET} == SECRET

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["event"], e.get("repo")) for e in lines] == [
        ("repo", "org/alpha"), ("repo", "org/missing"), ("repo", "org/secret"), ("run", None)
    ]  # fmt: skip
    assert lines[1]["exit_code"] == 3 and lines[3]["exit_code"] == 3

    text = prom.read_text()
    assert metric(text, "last_success_timestamp_seconds", "org/alpha") >= int(before)
    assert metric(text, "last_success_timestamp_seconds", "org/missing") == 0
    assert metric(text, "last_run_status", "org/missing") == 3
    assert metric(text, "last_run_status", "org/secret") == 0
    assert metric(text, "last_run_bytes", "org/alpha") == alpha["bytes"]
    assert metric(text, "files", "org/secret") == 2
    assert re.search(r"^hfsync_mirror_run_exit_code 3$", text, re.MULTILINE)
    assert not [p for p in prom.parent.iterdir() if p.name != "hfsync.prom"], "temp file left"


def test_last_success_survives_failing_runs(repos: None, hub: HubEmulator, tmp_path: Path) -> None:
    config = write_config(tmp_path, hub)
    prom = tmp_path / "hfsync.prom"
    assert hfsync("mirror", config, "-q", "--metrics-file", prom).returncode == 3
    first = metric(prom.read_text(), "last_success_timestamp_seconds", "org/alpha")
    old = hub.resolve_revision("org/alpha")
    new = hub.commit("org/alpha", files={"config.json": b'{"a": 2}\n'})

    second = hfsync("mirror", config, "--json", "--metrics-file", prom)
    alpha = json.loads(second.stdout)["repos"][0]
    assert (alpha["commit_before"], alpha["commit_after"]) == (old, new)
    assert alpha["files_changed"] == 1
    succeeded = metric(prom.read_text(), "last_success_timestamp_seconds", "org/alpha")
    assert succeeded >= first

    hub.update_repo("org/alpha", private=True)  # now the token does not grant it: exit 3
    third = hfsync("mirror", config, "--json", "--metrics-file", prom)
    assert json.loads(third.stdout)["repos"][0]["status"] == "failed"
    text = prom.read_text()
    assert metric(text, "last_run_status", "org/alpha") == 3
    assert metric(text, "last_success_timestamp_seconds", "org/alpha") == succeeded
    assert metric(text, "files", "org/alpha") == 3  # what the folder holds, as of its success

    # Without the state file the previous metrics file still remembers the success.
    (tmp_path / "mirror.toml.state.json").unlink()
    assert hfsync("mirror", config, "-q", "--metrics-file", prom).returncode == 3
    assert metric(prom.read_text(), "last_success_timestamp_seconds", "org/alpha") == succeeded


def test_cron_output_lines_and_quiet(repos: None, hub: HubEmulator, tmp_path: Path) -> None:
    hub.tag("org/alpha", "v1")
    config = write_config(tmp_path, hub)
    text = config.read_text().replace('dest = "data/missing"', 'dest = "data/m"')
    config.write_text(
        text.replace('id = "org/missing"', 'id = "org/alpha"\nrevision = ["main", "v1"]')
    )
    run = hfsync("mirror", config)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "" and "\r" not in run.stdout, "no bars without a terminal"
    lines = run.stdout.splitlines()
    assert len(lines) == 5 and all(TIMESTAMPED.match(line) for line in lines)
    assert "org/alpha@main -> " in lines[0] and "new at " in lines[0]
    assert str(tmp_path / "data/m/v1") in lines[2]
    assert "4 repos, 4 ok, 0 failed" in lines[4]
    assert (tmp_path / "data/m/main/weights.bin").read_bytes() == ALPHA["weights.bin"]

    hub.clear_log()
    quiet = hfsync("mirror", config, "--quiet")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert downloads(hub) == [], "a no-op refresh downloads nothing"
    again = hfsync("mirror", config)
    assert "up to date at " in again.stdout.splitlines()[0]


def test_options_come_from_the_environment(repos: None, hub: HubEmulator, tmp_path: Path) -> None:
    config = write_config(tmp_path, hub)
    log, prom = tmp_path / "env.log", tmp_path / "env.prom"
    env = {"HFSYNC_LOG_FILE": str(log), "HFSYNC_METRICS_FILE": str(prom),
           "HFSYNC_CONNECTIONS": "2", "HFSYNC_QUIET": "1"}  # fmt: skip
    run = hfsync("mirror", config, env=env)
    assert run.returncode == 3 and run.stdout == ""
    assert "FAILED (exit 3)" in run.stderr, "quiet still reports the failing repo"
    assert len(log.read_text().splitlines()) == 4 and "hfsync_mirror_" in prom.read_text()
    bad = hfsync("mirror", config, env={"HFSYNC_CONNECTIONS": "0"})
    assert bad.returncode == 2 and "--connections" in bad.stderr, "the env value is checked"


def test_overlapping_run_exits_8_naming_the_holder_and_wait_waits(
    repos: None, hub: HubEmulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path, hub)
    lock = tmp_path / "mirror.toml.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from pathlib import Path
            from hfsync.targets.base import lock_file
            with lock_file(Path({str(lock)!r}), "test"):
                print("held", flush=True)
                sys.stdin.read()
            """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    waiter = None
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        busy = hfsync("mirror", config, "--json")
        assert busy.returncode == 8
        assert f"pid {holder.pid}" in busy.stderr and len(busy.stderr.strip().splitlines()) == 1
        assert json.loads(busy.stdout)["error"]["exit_code"] == 8
        assert time.monotonic() - started < 20, "exits at once, does not wait"
        assert not (tmp_path / "data").exists(), "nothing was synced"

        waiter = subprocess.Popen(
            [sys.executable, "-m", "hfsync", "mirror", str(config), "--wait", "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert wait_until_blocked_on_flock(waiter.pid), "--wait blocks on the held lock"
        assert waiter.poll() is None
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert waiter is not None
    out, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 3, err  # it ran: the missing repo's code, not 8
    assert (tmp_path / "data/alpha/config.json").read_bytes() == ALPHA["config.json"]


def wait_until_blocked_on_flock(pid: int, timeout: float = 30) -> bool:
    """Poll /proc/locks until `pid` appears as a waiter (`->`) on a FLOCK."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "->" in fields and "FLOCK" in fields and str(pid) in fields:
                return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("body", "where", "needle"),
    [
        ('endpoint = "x"\nconnections = = 3\n', ":2:", "invalid TOML"),
        ('[[repos]]\nid = "org/a"\n\n[[repos]]\nid = "org/b"\ndelete = "yes"\n', ":6:",
         "repos[2].delete: expected true or false"),
        ('[[repos]]\nid = "org/a"\nexlude = ["*.bin"]\n', ":3:", "repos[1].exlude: unknown key"),
        ('connections = "x"\n[[repos]]\nid = "org/a"\n', ":1:", "connections: expected an int"),
        ('[[repos]]\nid = "org/a"\nrevision = 3\n', ":3:", "repos[1].revision"),
        ('[[repos]]\ndest = "x"\n', ":1:", "missing the repo id"),
        ('endpoint = "http://h"\n', ": ", "no [[repos]] entries"),
    ],
)  # fmt: skip
def test_a_bad_config_names_the_line_and_key(
    tmp_path: Path, body: str, where: str, needle: str
) -> None:
    config = tmp_path / "mirror.toml"
    config.write_text(body)
    run = hfsync("mirror", config)
    assert run.returncode == 2, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert f"{config}{where}" in run.stderr and needle in run.stderr, run.stderr


def test_an_unreadable_token_file_is_a_usage_error(
    repos: None, hub: HubEmulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path, hub)
    (tmp_path / "token").unlink()
    run = hfsync("mirror", config)
    assert run.returncode == 2 and f"{config}:2: token_file" in run.stderr, run.stderr


def test_parallel_repos_share_one_pool_and_stay_isolated(
    repos: None, hub: HubEmulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path, hub)
    config.write_text("parallel = 3\n" + config.read_text())
    run = hfsync("mirror", config, "--json")
    assert run.returncode == 3, run.stderr
    doc = json.loads(run.stdout)
    assert [r["status"] for r in doc["repos"]] == ["ok", "failed", "ok"], "config order kept"
    assert (tmp_path / "data/alpha/weights.bin").read_bytes() == ALPHA["weights.bin"]


def test_ctrl_c_reports_what_finished_and_exits_130(
    repos: None, hub: HubEmulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path, hub)
    log = tmp_path / "mirror.log"
    state = tmp_path / "data/alpha/.cache/huggingface/download"

    def parts() -> list[Path]:
        return list(state.glob("weights.bin.*incomplete")) if state.is_dir() else []

    hub.faults.rate_total = 200e3  # weights.bin takes ~8 s: time to interrupt it
    proc = subprocess.Popen(
        [sys.executable, "-m", "hfsync", "mirror", str(config), "--log-file", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, HFSYNC_BACKOFF_BASE="0.01"),
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not parts() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "interrupted" in err
    events = [json.loads(line) for line in log.read_text().splitlines()]
    outcome = [(e["event"], e.get("status"), e["exit_code"]) for e in events]
    assert outcome == [
        ("repo", "interrupted", 130), ("repo", "skipped", 0), ("repo", "skipped", 0),
        ("run", None, 130),
    ]  # fmt: skip
    assert parts(), "the partial download is kept for the next run"
