"""The remote side of a pull is `hfsync sync` itself, with three options that are useful without
SSH too: `--progress-json` (events as JSON lines), `--token-stdin` (the token on the first line
of stdin, never in argv) and `--exit-on-stdin-eof` (a closed stdin stops the run like Ctrl-C).
Here they run locally in a subprocess with pipes, exactly as the SSH channel drives them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hfsync.testing.hub import HubEmulator
from tests.clirun import body_bytes, hfsync, user_files

REPO = "org/model"
TOKEN = "hf_remoteSideSecret0123456789"


def make_repo(hub: HubEmulator, big: int = 3 * 1024 * 1024, private: bool = False) -> dict:
    files = {
        "config.json": b'{"model_type": "demo"}\n',
        "model.safetensors": os.urandom(big),
        "deep/notes.txt": b"nested\n",
    }
    hub.create_repo(REPO, private=private)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def events(stdout: str) -> list[dict]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


def popen(*args: object, **kw) -> subprocess.Popen:  # noqa: ANN003
    env = {**os.environ, "HFSYNC_BACKOFF_BASE": "0.01"}
    return subprocess.Popen(
        [sys.executable, "-m", "hfsync", *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        **kw,
    )


def test_progress_json_reports_every_byte_and_ends_with_the_json_document(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    expected = make_repo(hub)
    dest = tmp_path / "dest"
    proc = hfsync("sync", REPO, dest, "--progress-json")
    assert proc.returncode == 0, proc.stderr
    evs = events(proc.stdout)
    assert evs[0]["event"] == "start"
    assert evs[0]["total_bytes"] == sum(len(v) for v in expected.values())
    assert {f["path"] for f in evs[0]["files"]} == set(expected)
    advanced: dict[str, int] = {}
    for ev in evs:
        if ev["event"] == "advance":
            advanced[ev["path"]] = advanced.get(ev["path"], 0) + ev["bytes"]
    assert advanced == {p: len(v) for p, v in expected.items()}
    done = {ev["path"]: ev["ok"] for ev in evs if ev["event"] == "file_done"}
    assert done == {p: True for p in expected}
    assert evs[-1]["event"] == "result"
    doc = evs[-1]["result"]
    assert doc["ok"] and doc["counts"]["new"] == len(expected)
    assert doc["bytes_transferred"] == sum(len(v) for v in expected.values())
    assert user_files(dest) == expected

    again = hfsync("sync", REPO, dest, "--progress-json")
    evs = events(again.stdout)
    assert [ev["event"] for ev in evs] == ["result"]  # nothing to fetch: no start, no advance
    assert evs[0]["result"]["counts"]["unchanged"] == len(expected)


def test_a_failure_is_one_error_event_and_the_exit_code(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    proc = hfsync("sync", "org/missing", tmp_path / "d", "--progress-json")
    assert proc.returncode == 3
    (ev,) = events(proc.stdout)
    assert ev["event"] == "error" and ev["error"]["exit_code"] == 3
    assert ev["error"]["kind"] == "RepoNotFoundError"
    assert proc.stderr.startswith("hfsync: error: ") and proc.stderr.count("\n") == 1


def test_token_from_stdin_reads_a_private_repo_and_is_never_in_argv_or_output(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    expected = make_repo(hub, private=True)
    hub.add_token(TOKEN, grants=[REPO])
    dest = tmp_path / "dest"
    denied = hfsync("sync", REPO, dest, "--progress-json")
    assert denied.returncode == 3

    proc = popen("sync", REPO, dest, "--progress-json", "--token-stdin")
    argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
    out, err = proc.communicate(f"{TOKEN}\n".encode(), timeout=60)
    assert proc.returncode == 0, err
    assert TOKEN.encode() not in argv + environ
    assert TOKEN.encode() not in out + err
    assert user_files(dest) == expected
    assert not [p for p in dest.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]

    # A rejected token is scrubbed from the error, whichever way it came in.
    wrong = "hf_wrongTokenValue987654321"
    proc = popen("sync", REPO, tmp_path / "other", "--progress-json", "--token-stdin")
    out, err = proc.communicate(f"{wrong}\n".encode(), timeout=60)
    assert proc.returncode == 3
    assert wrong.encode() not in out + err


def test_closing_stdin_stops_the_run_and_the_rerun_resumes(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    size = 8 * 1024 * 1024
    expected = make_repo(hub, big=size)
    hub.faults.rate_per_conn = 1_000_000  # ~8 s for the big file: the test acts mid-download
    dest = tmp_path / "dest"
    proc = popen(
        "sync", REPO, dest, "--progress-json", "--exit-on-stdin-eof", "-j", "1",
        "--chunk-size", "1M",
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    got = 0
    for raw in proc.stdout:  # until the big file is well on its way
        ev = json.loads(raw)
        if ev["event"] == "advance" and ev["path"] == "model.safetensors":
            got += ev["bytes"]
            if got >= 2 * 1024 * 1024:
                break
    closed = time.monotonic()
    proc.stdin.close()  # what a dead local side looks like from the host
    rest = proc.stdout.read()
    proc.wait(timeout=15)
    assert time.monotonic() - closed < 12
    assert proc.returncode == 130
    last = events(rest.decode())[-1]
    assert last["event"] == "error" and last["error"]["exit_code"] == 130
    assert not (dest / "model.safetensors").exists()

    hub.faults.rate_per_conn = None
    hub.clear_log()
    again = hfsync("sync", REPO, dest, "--json", "--chunk-size", "1M")  # journal kept per chunk
    assert again.returncode == 0, again.stderr
    assert user_files(dest) == expected
    assert body_bytes(hub) <= size - 2 * 1024 * 1024 + 64 * 1024, "resumed, not restarted"


def test_token_stdin_and_token_together_is_a_usage_error(hf_env: Path, tmp_path: Path) -> None:
    proc = hfsync("sync", REPO, tmp_path / "d", "--token", "x", "--token-stdin")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
