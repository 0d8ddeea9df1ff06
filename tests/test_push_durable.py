"""A pushed file is durable before its final name exists: the agent (`agent.py recv`, run as the
host runs it) makes every verified part durable before renaming it into place (one fsync each,
or, for a big burst, one syncfs of the filesystem after the parts were written), and fsyncs the
folder that got the new name afterwards, so a power cut on the host never leaves a final path
whose bytes were still only in the page cache.

A power cut cannot be staged in a test, so the agent runs under a small wrapper that logs each
part's creation, each `os.fsync` (with the path its fd names), each `syncfs` and each
`os.replace` in the order they happen; with FAIL_SYNCFS set, syncfs fails as a dying disk's
would."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from hfsync.remote import agent
from tests.test_push_recv import frame

AGENT = Path(agent.__file__)

WRAPPER = r"""
import ctypes, errno, os, runpy, sys
log = open(sys.argv[1], "a")
real_fsync, real_replace, real_open, RealCDLL = os.fsync, os.replace, os.open, ctypes.CDLL
def note(*words):
    log.write(" ".join(words) + "\n"); log.flush()
def fsync(fd):
    real_fsync(fd)
    note("fsync", os.readlink("/proc/self/fd/%d" % fd))
def replace(src, dst, **kw):
    real_replace(src, dst, **kw)
    note("replace", os.path.abspath(src), os.path.abspath(dst))
def open_(path, flags, *args, **kw):
    fd = real_open(path, flags, *args, **kw)
    if str(path).endswith(".hfsync-part"):
        note("open", os.path.abspath(path))
    return fd
class Syncfs:
    def __init__(self, real):
        self.real = real
    def __call__(self, fd):
        if os.environ.get("FAIL_SYNCFS"):
            ctypes.set_errno(errno.EIO)
            return -1
        status = self.real(fd)
        note("syncfs", os.readlink("/proc/self/fd/%d" % fd))
        return status
class Libc:
    def __init__(self, *args, **kw):
        self.lib = RealCDLL(*args, **kw)
    def __getattr__(self, name):
        func = getattr(self.lib, name)
        return Syncfs(func) if name == "syncfs" else func
os.fsync, os.replace, os.open, ctypes.CDLL = fsync, replace, open_, Libc
sys.argv = [sys.argv[2]] + sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_agent(
    tmp_path: Path, stdin: bytes, env: dict[str, str] | None = None, status: int = 0
) -> tuple[list[dict], list[list[str]]]:
    log, root = tmp_path / "syscalls.log", tmp_path / "host"
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(log), str(AGENT), "recv", str(root)],
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == status, proc.stderr
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
    opened_at = {e[1]: i for i, e in enumerate(events) if e[0] == "open"}
    syncfs_at = [i for i, e in enumerate(events) if e[0] == "syncfs"]
    for index, part, final in renames:
        flushed = fsynced_at.get(part, len(events)) < index or any(
            opened_at[part] < i < index for i in syncfs_at
        )  # its own fsync, or a syncfs of the filesystem after the part was written
        assert flushed, f"{part} renamed before it was made durable"
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


def test_a_big_burst_is_made_durable_by_one_syncfs_where_it_reports_errors(tmp_path: Path) -> None:
    """On this Linux (syncfs reports write-back errors from 5.8 on) a burst of many small
    parts costs one syncfs instead of one fsync (and one device flush) each."""
    if agent.batch_syncfs() is None:
        pytest.skip("this kernel's syncfs does not report write-back errors (Linux < 5.8)")
    if agent.fs_type(tmp_path.stat().st_dev) not in agent.SYNCFS_TYPES:
        pytest.skip(f"{tmp_path} is not on a local disk's filesystem: the agent fsyncs each part")
    files = {f"f{i}.txt": os.urandom(50 + i) for i in range(agent.SYNCFS_MIN_FILES * 2)}
    replies, events = run_agent(tmp_path, b"".join(frame(p, d) for p, d in files.items()))
    assert sorted(r["p"] for r in replies if r["ok"]) == sorted(files)
    parts_fsynced = [e for e in events if e[0] == "fsync" and e[1].endswith(agent.PART_SUFFIX)]
    if agent.dirty_bytes() <= agent.SYNCFS_MAX_DIRTY // 2:  # else the host was busy: fsyncs
        assert parts_fsynced == [] and [e[0] for e in events].count("syncfs") >= 1


def test_a_failing_syncfs_places_nothing_of_its_burst_and_keeps_the_parts(tmp_path: Path) -> None:
    if agent.batch_syncfs() is None:
        pytest.skip("this kernel's syncfs does not report write-back errors (Linux < 5.8)")
    if agent.dirty_bytes() > agent.SYNCFS_MAX_DIRTY // 2:
        pytest.skip("too much dirty data on this machine: the agent would fsync each part")
    if agent.fs_type(tmp_path.stat().st_dev) not in agent.SYNCFS_TYPES:
        pytest.skip(f"{tmp_path} is not on a local disk's filesystem: the agent fsyncs each part")
    files = {f"f{i}.txt": os.urandom(50 + i) for i in range(agent.SYNCFS_MIN_FILES * 2)}
    stdin = b"".join(frame(p, d) for p, d in files.items())
    replies, events = run_agent(tmp_path, stdin, env={"FAIL_SYNCFS": "1"}, status=4)
    assert not any(r.get("ok") for r in replies)
    assert replies[-1]["kind"] == "disk" and "Input/output error" in replies[-1]["error"]
    assert not [e for e in events if e[0] == "replace"]  # no final name on unflushed bytes
    assert len(list((tmp_path / "host").rglob("*" + agent.PART_SUFFIX))) == len(files)


def test_small_bursts_a_busy_host_fuse_and_an_old_kernel_fsync_each_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, list[int]]] = []
    monkeypatch.setattr(agent, "fsync_all", lambda fds: calls.append(("fsync", list(fds))))
    monkeypatch.setattr(agent, "_syncfs", [lambda fd: calls.append(("syncfs", [fd]))])
    monkeypatch.setattr(agent, "dirty_bytes", lambda: 0)
    monkeypatch.setattr(agent.os, "fstat", lambda fd: os.stat_result((0,) * 10))  # one device
    monkeypatch.setattr(agent, "fs_type", lambda dev: "ext4")
    many = list(range(100, 100 + agent.SYNCFS_MIN_FILES))
    agent.make_durable(many)
    assert calls == [("syncfs", [100])]
    calls.clear()
    monkeypatch.setattr(agent, "fs_type", lambda dev: "fuse.gcsfuse")
    agent.make_durable(many)  # a FUSE mount may not pass a syncfs on: an fsync each
    monkeypatch.setattr(agent, "fs_type", lambda dev: "ext4")
    agent.make_durable(many[:-1])  # a small burst
    monkeypatch.setattr(agent, "dirty_bytes", lambda: agent.SYNCFS_MAX_DIRTY + 1)
    agent.make_durable(many)  # other programs' data waiting: syncfs would wait for it
    monkeypatch.setattr(agent, "dirty_bytes", lambda: 0)
    monkeypatch.setattr(agent, "_syncfs", [None])  # Linux < 5.8 or no syncfs in libc
    agent.make_durable(many)
    assert [c[0] for c in calls] == ["fsync"] * 4
