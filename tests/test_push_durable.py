"""A pushed file is durable before its final name exists: the agent (`agent.py recv`, run as the
host runs it) fsyncs every verified part before renaming it into place, and fsyncs the folder
that got the new name afterwards, so a power cut on the host never leaves a final path whose
bytes were still only in the page cache.

A power cut cannot be staged in a test, so the agent runs under a small wrapper that logs each
`os.fsync` (with the path its fd names) and `os.replace` in the order they happen."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from hfsync.remote import agent
from tests.test_push_recv import frame

AGENT = Path(agent.__file__)

WRAPPER = r"""
import os, runpy, sys
log = open(sys.argv[1], "a")
real_fsync, real_replace = os.fsync, os.replace
def fsync(fd):
    real_fsync(fd)
    log.write("fsync " + os.readlink("/proc/self/fd/%d" % fd) + "\n"); log.flush()
def replace(src, dst, **kw):
    real_replace(src, dst, **kw)
    log.write("replace " + os.path.abspath(src) + " " + os.path.abspath(dst) + "\n"); log.flush()
os.fsync, os.replace = fsync, replace
sys.argv = [sys.argv[2]] + sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_agent(tmp_path: Path, stdin: bytes) -> tuple[list[dict], list[list[str]]]:
    log, root = tmp_path / "syscalls.log", tmp_path / "host"
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(log), str(AGENT), "recv", str(root)],
        input=stdin,
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    events = [line.split(" ") for line in log.read_text().splitlines()] if log.exists() else []
    return [json.loads(line) for line in proc.stdout.splitlines()], events


def test_every_part_is_fsynced_before_its_rename_and_the_folder_after(tmp_path: Path) -> None:
    files = {f"cfg/f{i}.json": os.urandom(100 + i) for i in range(300)}  # more than one burst
    files["model.bin"] = os.urandom(agent.LONG_BODY + 3)  # a long body flushes the burst first
    replies, events = run_agent(tmp_path, b"".join(frame(p, d) for p, d in files.items()))

    assert sorted(r["p"] for r in replies if r["ok"]) == sorted(files)
    for path, data in files.items():
        assert (tmp_path / "host" / path).read_bytes() == data
    renames = [(i, e[1], e[2]) for i, e in enumerate(events) if e[0] == "replace"]
    renames = [r for r in renames if r[1].endswith(agent.PART_SUFFIX)]
    assert len(renames) == len(files)
    fsynced_at = {e[1]: i for i, e in enumerate(events) if e[0] == "fsync"}
    for index, part, final in renames:
        assert fsynced_at.get(part, len(events)) < index, f"{part} renamed before its fsync"
        folder = os.path.dirname(final)
        later = [e for e in events[index:] if e == ["fsync", folder]]
        assert later, f"{folder} not fsynced after {final} got its name"


def test_a_corrupt_file_next_to_good_ones_is_never_renamed(tmp_path: Path) -> None:
    good = os.urandom(5000)
    bad = bytearray(frame("bad.bin", os.urandom(5000)))
    bad[-1] ^= 0xFF
    replies, events = run_agent(tmp_path, frame("good.bin", good) + bytes(bad))
    by_path = {r["p"]: r for r in replies}
    assert by_path["good.bin"]["ok"] and not by_path["bad.bin"]["ok"]
    assert by_path["bad.bin"]["kind"] == "integrity"
    assert (tmp_path / "host" / "good.bin").read_bytes() == good
    assert not (tmp_path / "host" / "bad.bin").exists()
    assert [e[2] for e in events if e[0] == "replace"] == [str(tmp_path / "host" / "good.bin")]


def test_a_host_with_a_low_open_file_limit_still_takes_a_burst(tmp_path: Path) -> None:
    """Held parts are open fds: a burst never holds more than a quarter of the host's limit."""
    files = {f"f{i}.txt": os.urandom(50 + i) for i in range(300)}
    root = tmp_path / "host"
    proc = subprocess.run(
        [sys.executable, str(AGENT), "recv", str(root)],
        input=b"".join(frame(p, d) for p, d in files.items()),
        capture_output=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)),
    )
    assert proc.returncode == 0, proc.stdout[-300:] + proc.stderr[-300:]
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all(r["ok"] for r in replies) and len(replies) == len(files)
    for path, data in files.items():
        assert (root / path).read_bytes() == data
