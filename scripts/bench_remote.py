"""Benchmark: `to-remote --via pull` vs `--via push` to a loopback sshd, and 4 hosts vs 1.

Run as root (it creates throwaway login users as "hosts"): `.venv/bin/python
scripts/bench_remote.py [--rounds 3] [--mib 96]`. The Hub emulator caps each connection at
25 MB/s (a CDN-like link); every run starts from an empty remote folder and (push) an empty
local cache; the archive is sent once before timing starts. Prints median wall seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hfsync.testing.hub import HubEmulator  # noqa: E402
from tests.sshd import create_login_user, remove_login_user, start_sshd, stop_sshd  # noqa: E402

REPO = "org/bench"


def run(args: list[str], env: dict) -> float:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "hfsync", "to-remote", REPO, *args, "-q"],
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {proc.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=96)
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hfsync-bench-remote-"))
    server = start_sshd(tmp / "sshd")
    users = [create_login_user(server.client_key.with_suffix(".pub")) for _ in range(4)]
    try:
        with HubEmulator(tmp / "hub", lfs_threshold=1 << 20) as hub:
            half = opts.mib // 2 * (1 << 20)
            files = {f"model-{i}.safetensors": os.urandom(half) for i in range(2)}
            files.update({f"cfg/{i}.json": b"{}" * 500 for i in range(20)})
            hub.create_repo(REPO)
            hub.commit(REPO, files=files)
            hub.faults.rate_per_conn = 25e6
            env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp / "hf")}
            env["XDG_CACHE_HOME"] = str(tmp / "xdg")
            cmds = [server.command(user=u.name) for u in users]
            run([cmds[0], "warmup", "--via", "pull", "--host", *cmds[1:2]], env)  # archive
            for c in cmds[2:]:
                run([c, "warmup", "--via", "pull"], env)
            times: dict[str, list[float]] = {"pull": [], "push": [], "pull x1": [], "pull x4": []}
            for r in range(opts.rounds):
                times["pull"].append(run([cmds[0], f"p{r}", "--via", "pull"], env))
                cache = tmp / f"cache{r}"
                times["push"].append(
                    run([cmds[0], f"s{r}", "--via", "push", "--cache-dir", str(cache)], env)
                )
                times["pull x1"].append(run([cmds[1], f"a{r}", "--via", "pull"], env))
                hosts = [x for c in cmds[1:] for x in ("--host", c)]
                times["pull x4"].append(run([cmds[0], f"b{r}", "--via", "pull", *hosts], env))
        total = sum(len(v) for v in files.values()) / 1e6
        print(f"repo {total:.0f} MB, {len(files)} files, 25 MB/s per conn, {opts.rounds} rounds")
        for name, values in times.items():
            print(f"{name:8} median {statistics.median(values):6.2f} s  all {values}")
    finally:
        for u in users:
            subprocess.run(["pkill", "-KILL", "-u", u.name], check=False)
            remove_login_user(u)
        stop_sshd(server.process)


if __name__ == "__main__":
    main()
