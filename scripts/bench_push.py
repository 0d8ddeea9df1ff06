"""``scripts/bench --scenario push``: `hfsync to-remote --via push` against OpenSSH's own tools.

A private OpenSSH ``sshd`` (own host and client keys, own config, a high port on 127.0.0.1: the
one tests/sshd.py starts for the tests) receives, from a WARM local copy, two cases:

* ``push-model``: one big LFS file (2 GiB; 128 MiB with --quick) + 30 small text files;
* ``push-small``: the bench/small repo (2,000 files of 1-64 KiB; 200 with --quick).

Peers, each its own process, interleaved per round with the order rotating (as the rest of the
harness does), each run into a fresh remote folder: ``scp -r`` (its default cipher),
``rsync -a -e ssh`` (default cipher), ``sftp -b`` with ``put -r`` and ``-c aes128-gcm``, and
``hfsync to-remote --via push`` from a filled ``--cache-dir`` (it still lists the repo on the
emulator and verifies every file on the host before renaming it, all inside its wall time).
The peers read a plain folder whose files are hard links to the same cache blobs, so every tool
reads the same page-cached inodes. Remote-side CPU is the delta of the sshd listener's reaped
children (``cutime + cstime``: the session processes, internal-sftp, rsync, python3 agent),
read once every session of the run has exited. Every run is checked: each remote file's size
and sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shlex
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_data as bd
import bench_report as rep
from bench_lib import SPENT, Link, Measured, emulator, run_measured, set_aside

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sshd import SSHServer, start_sshd, stop_sshd  # noqa: E402

SCP, RSYNC, SFTP, HFSYNC = "scp -r", "rsync -a -e ssh", "sftp -b (put -r, aes128-gcm)", "hfsync"
OPENSSH = (SCP, RSYNC, SFTP)
GCM = "aes128-gcm@openssh.com"
MODEL_CASE, SMALL_CASE = "push-model", "push-small"
MANIFEST = "bench-push-manifest.json"
SMALL_FILES = 30


@dataclass
class Case:
    """One repo pushed by every tool: its files ({path: [size, sha256]}) and the peers' source."""

    name: str
    data: bd.RepoData
    title: str
    source: Path = Path()  # plain folder of hard links into hfsync's cache
    rows: dict[str, rep.Row] = field(default_factory=dict)


# ---- data -------------------------------------------------------------------------------------


def build_model_repo(hub_root: Path, size: int, tmp: Path, say: Any) -> bd.RepoData:
    """bench/push-<size>: one ``size`` LFS file + 30 small text files, made once per data dir
    (own manifest, so the download scenarios' repos and manifest are untouched)."""
    repo = f"bench/push-{bd._tag(size)}"
    manifest = hub_root / MANIFEST
    known: dict[str, Any] = {}
    if manifest.exists():
        try:
            known = json.loads(manifest.read_text())
        except ValueError:
            known = {}
    hub = bd.HubEmulator(hub_root)
    if repo in known and hub.store.repo("model", repo) is not None:
        return bd.RepoData(**known[repo])
    say(f"generating {repo}")
    bd._commit_big(hub, tmp, repo, {bd.BIG_NAME: size})
    rng = random.Random(repo)
    small: dict[str, Any] = {name: bd._text(rng, n) for name, n in bd.MODEL_TEXT_FILES}
    for i in range(SMALL_FILES - len(bd.MODEL_TEXT_FILES)):
        small[f"assets/notes-{i:02d}.txt"] = bd._text(rng, rng.randint(1_000, 64_000))
    sha = hub.commit(repo, small, message="add config and tokenizer")
    data = bd.RepoData(repo, sha, bd._files_of(hub, repo))
    known[repo] = data.__dict__
    manifest.write_text(json.dumps(known, indent=1))
    return data


# ---- OpenSSH client side ----------------------------------------------------------------------


def ssh_config(server: SSHServer, folder: Path) -> Path:
    """An ssh_config for the OpenSSH clients: host ``bench`` is the private sshd, no agent, no
    ~/.ssh, the host key pinned."""
    path = folder / "ssh_config"
    path.write_text(
        "Host bench\n"
        f"  HostName {server.host}\n  Port {server.port}\n  User {server.user}\n"
        f"  IdentityFile {server.client_key}\n  IdentitiesOnly yes\n  IdentityAgent none\n"
        f"  UserKnownHostsFile {server.known_hosts}\n  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n  LogLevel ERROR\n"
    )
    return path


def command(
    tool: str, case: Case, dest: Path, cfg: Path, server: SSHServer, endpoint: str, bench: Any
) -> list[str]:
    src = str(case.source)
    if tool == SCP:
        return ["scp", "-q", "-r", "-F", str(cfg), src, f"bench:{dest}"]
    if tool == RSYNC:
        return ["rsync", "-a", "-e", f"ssh -F {cfg}", f"{src}/", f"bench:{dest}/"]
    if tool == SFTP:
        batch = dest.parent / f"{dest.name}.sftp"
        batch.write_text(f'put -r "{src}" "{dest}"\n')
        return ["sftp", "-q", "-F", str(cfg), "-c", GCM, "-b", str(batch), "bench"]
    cache = bench.runs_dir / "push" / "cache"
    return [
        *bench.hfsync_cmd, "to-remote", case.data.repo, server.command(), str(dest),
        "--via", "push", "--cache-dir", str(cache), "--endpoint", endpoint, "-q",
        *shlex.split(tool[len(HFSYNC):]),  # a --variant's flags, e.g. "--streams 2"
    ]  # fmt: skip


# ---- measuring --------------------------------------------------------------------------------


def reaped_cpu(pid: int, settle: float = 10.0) -> float | None:
    """CPU seconds of ``pid``'s reaped children, once it has none left (bounded wait): sshd's
    sessions finish a moment after the client exits."""
    deadline = time.monotonic() + settle
    children = Path(f"/proc/{pid}/task/{pid}/children")
    while time.monotonic() < deadline:
        try:
            if not children.read_text().split():
                break
        except OSError:
            return None
        time.sleep(0.005)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def check(dest: Path, files: dict[str, list[Any]], m: Measured, timeout: float) -> str | None:
    """None when every file arrived complete (size and sha256) and nothing else did."""
    if m.timed_out:
        return f"timed out after {timeout:g} s"
    if m.returncode != 0:
        return f"exit code {m.returncode}: {m.tail()}"
    found: dict[str, int] = {}
    for folder, dirs, names in os.walk(dest):
        if Path(folder) == dest and ".cache" in dirs:
            dirs.remove(".cache")  # hfsync's metadata, as `hf download --local-dir` writes
        for n in names:
            p = Path(folder, n)
            found[p.relative_to(dest).as_posix()] = p.stat().st_size
    wrong = [p for p, (size, _) in files.items() if found.get(p) != size]
    extra = sorted(set(found) - set(files))
    if wrong or extra:
        return f"{len(wrong)} missing or wrong-sized, {len(extra)} extra, e.g. {(wrong + extra)[0]}"
    for path, (_, sha) in files.items():
        digest = hashlib.sha256()
        with open(dest / path, "rb") as fh:
            while block := fh.read(8 << 20):
                digest.update(block)
        if digest.hexdigest() != sha:
            return f"{path}: sha256 mismatch"
    return None


def snapshot_source(cache: Path, data: bd.RepoData, into: Path) -> Path:
    """A plain folder of the repo's files, hard links to hfsync's cache blobs (same inodes, so
    the same warm pages), for the tools that copy a folder."""
    shutil.rmtree(into, ignore_errors=True)
    snap = cache / f"models--{data.repo.replace('/', '--')}" / "snapshots" / data.commit
    for path in data.files:
        target = into / path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(os.path.realpath(snap / path), target)
    buf = bytearray(8 << 20)
    for path in data.files:  # read once: warm for the first tool of round 1 too
        with open(into / path, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass
    return into


def run(bench: Any) -> None:
    """Run the push cases; append their section to ``bench.sections`` and their targets."""
    sizes: bd.Sizes = bench.sizes
    hub_root = bench.data_dir / "hub"
    model = build_model_repo(hub_root, sizes.single, bench.data_dir / "tmp", bench.log)
    cases = [
        Case(MODEL_CASE, model, f"{MODEL_CASE}: {_describe(model)}"),
        Case(
            SMALL_CASE, bench.repos[bd.SMALL], f"{SMALL_CASE}: {_describe(bench.repos[bd.SMALL])}"
        ),
    ]
    work = bench.runs_dir / "push"
    work.mkdir(parents=True, exist_ok=True)
    try:
        server = start_sshd(work / "sshd")
    except BaseException as exc:  # tests/sshd.py skips/fails the pytest way (BaseException)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        bench.notes.append(f"push scenario skipped: no sshd ({str(exc).splitlines()[0]})")
        return
    home = work / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    env = bench.env(work / "hf")
    env["HOME"] = str(home)  # no ~/.ssh config, keys or known_hosts of the machine's owner
    env.pop("SSH_AUTH_SOCK", None)
    cfg = ssh_config(server, work)
    tools = [HFSYNC, *(f"{HFSYNC} {v}" for v in bench.args.variant), *OPENSSH]
    try:
        with emulator(hub_root, Link(), work / "emulator.log") as emu:
            for case in cases:
                bench.log(f"scenario {case.title}")
                prep = work / "remote" / f"{case.name}-prep"
                m = _measure(bench, [*command(HFSYNC, case, prep, cfg, server, emu.endpoint,
                                              bench)], env, work / f"{case.name}-prep")  # fmt: skip
                error = check(prep, case.data.files, m, bench.args.timeout)
                if error:
                    raise SystemExit(
                        f"bench: preparing {case.name} (hfsync fills its cache): {error}"
                    )
                # Set aside, not deleted: its thousands of freed inodes would slow every
                # inode the timed runs allocate in the next minute (bench_lib.set_aside).
                set_aside(prep, work / "remote" / SPENT, case.data.total_bytes)
                case.source = snapshot_source(
                    work / "cache", case.data, work / "source" / case.name
                )
                case.rows = {t: rep.Row(case.name, case.title, t) for t in tools}
                for rnd in range(bench.args.rounds):
                    shift = rnd % len(tools)
                    for tool in tools[shift:] + tools[:shift]:
                        _one(bench, case, tool, rnd + 1, server, cfg, emu.endpoint, env, work)
                shutil.rmtree(case.source, ignore_errors=True)
    finally:
        stop_sshd(server.process)
        shutil.rmtree(work / "remote", ignore_errors=True)
        shutil.rmtree(work / "source", ignore_errors=True)
    bench.sections.append(section(cases, server))
    bench.extra_targets.extend(targets(cases))


def _measure(bench: Any, cmd: list[str], env: dict[str, str], prefix: Path) -> Measured:
    return run_measured(
        cmd, env=env, log_prefix=prefix, timeout=bench.args.timeout, time_bin=bench.time_bin
    )


def _one(
    bench: Any, case: Case, tool: str, rnd: int, server: SSHServer, cfg: Path, endpoint: str,
    env: dict[str, str], work: Path,
) -> None:  # fmt: skip
    slug = "".join(c if c.isalnum() else "_" for c in tool)[:40]
    dest = work / "remote" / f"{case.name}-{slug}-r{rnd}"
    shutil.rmtree(dest, ignore_errors=True)
    cmd = command(tool, case, dest, cfg, server, endpoint, bench)
    os.sync()  # the previous run's dirty pages must not be flushed on this run's clock
    before = reaped_cpu(server.process.pid)
    m = _measure(bench, cmd, env, work / "logs" / f"{case.name}-{slug}-r{rnd}")
    after = reaped_cpu(server.process.pid)
    remote_cpu = after - before if after is not None and before is not None else None
    error = check(dest, case.data.files, m, bench.args.timeout)
    set_aside(dest, work / "remote" / SPENT, case.data.total_bytes)
    cell = rep.Cell(m.wall, m.cpu, m.rss_mb, case.data.total_bytes, error, remote_cpu)
    case.rows[tool].cells.append(cell)
    rate = f"{cell.mbps:7.1f} MB/s" if cell.mbps is not None else " " * 12
    bench.log(
        f"  r{rnd} {tool:<30} {m.wall:7.2f} s {rate} cpu {m.cpu:6.2f} s "
        f"sshd side {remote_cpu or 0:6.2f} s rss {m.rss_mb:5.0f} MB "
        + (f"FAILED: {error}" if error else "")
    )


# ---- report -----------------------------------------------------------------------------------


def _describe(data: bd.RepoData) -> str:
    big = [s for s, _ in data.files.values() if s >= 10 << 20]
    small = len(data.files) - len(big)
    parts = [f"{len(big)} × {bd._tag(big[0]).upper()}iB"] if big else []
    return " + ".join([*parts, f"{small} small files"]) + f", {data.total_bytes / 1e6:,.0f} MB"


def _median(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "—" if x is None else fmt.format(x)


def section(cases: list[Case], server: SSHServer) -> str:
    lines = [
        "## Push to an SSH host (loopback sshd)",
        "",
        f"- sshd: OpenSSH `/usr/sbin/sshd -D` on {server.host}, own config and keys "
        "(tests/sshd.py), `Subsystem sftp internal-sftp`; the remote folders are on the "
        "data disk.",
        "- scp: `scp -q -r SRC bench:DEST` (default cipher, SFTP protocol); rsync: "
        "`rsync -a -e 'ssh -F CFG' SRC/ bench:DEST/`; sftp: `sftp -c aes128-gcm@openssh.com "
        "-b BATCH` with `put -r SRC DEST`; hfsync: `hfsync to-remote REPO 'ssh -p PORT -i KEY "
        "...' DEST --via push --cache-dir CACHE -q` (listing on the emulator, verification on "
        "the host and metadata included).",
        "- Warm: hfsync's cache was filled by an untimed push; the peers copy a folder of hard "
        "links to the same blobs. Every run goes to a new remote folder, checked (every "
        "file's size and sha256) and deleted; `sync` before each run.",
        "- CPU s: the local process and its children (ssh for the OpenSSH tools); sshd-side "
        "CPU s: the sshd sessions and what they ran (internal-sftp, rsync, the python3 "
        "agent); CPU s/GB = both over GB (10^9 B) moved. Ratio = hfsync ÷ tool MB/s.",
        "",
        "| case | tool | MB/s (median) | wall s (median) | wall s min–max | CPU s | "
        "sshd-side CPU s | CPU s/GB | peak RSS MB | hfsync ÷ tool |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        ours = case.rows.get(HFSYNC)
        first = True
        for tool, row in case.rows.items():
            walls = [c.wall for c in row.ok]
            span = f"{min(walls):.2f}–{max(walls):.2f}" if walls else "—"
            cpu, remote = row.median_cpu(), row.median_server_cpu()
            per_gb = (
                (cpu + remote) / (case.data.total_bytes / 1e9)
                if cpu is not None and remote is not None
                else None
            )
            rate = _num(row.median_mbps())
            if row.failures:
                rate += f" ({len(row.failures)}/{len(row.cells)} failed)"
            ratio = rep.speedup(ours, row) if ours is not None and tool != HFSYNC else None
            lines.append(
                f"| {case.title if first else ''} | {tool} | {rate} "
                f"| {_num(row.median_wall(), '{:.2f}')} | {span} | {_num(cpu)} | {_num(remote)} "
                f"| {_num(per_gb, '{:.2f}')} | {_num(row.peak_rss(), '{:.0f}')} "
                f"| {'—' if ratio is None else f'{ratio:.2f}×'} |"
            )
            first = False
    failures = [
        f"- FAILED {case.name} / {row.tool}: {cell.error}"
        for case in cases
        for row in case.rows.values()
        for cell in row.failures
    ]
    return "\n".join([*lines, *([""] + failures if failures else [])]) + "\n"


def targets(cases: list[Case]) -> list[rep.Target]:
    by = {c.name: c.rows for c in cases}
    model, small = by.get(MODEL_CASE, {}), by.get(SMALL_CASE, {})

    def ratio(rows: dict[str, rep.Row], tool: str) -> float | None:
        ours, peer = rows.get(HFSYNC), rows.get(tool)
        return rep.speedup(ours, peer) if ours and peer else None

    best = [r for r in (ratio(model, t) for t in OPENSSH) if r is not None]
    h_wall = small[HFSYNC].median_wall() if HFSYNC in small else None
    r_wall = small[RSYNC].median_wall() if RSYNC in small else None
    rss = [r.peak_rss() for rows in by.values() for t, r in rows.items() if t == HFSYNC]
    rss_max = max((x for x in rss if x is not None), default=None)
    return [
        rep.judge_ratio("push, big file + 30 small: hfsync ≥ 1.3× scp", ratio(model, SCP), 1.3),
        rep.judge_ratio(
            "push, big file + 30 small: hfsync ≥ 1.0× the best OpenSSH method of the run",
            min(best) if best else None,
            1.0,
        ),
        rep.judge_below(
            "push, small files: hfsync wall ≤ rsync's",
            h_wall / r_wall if h_wall and r_wall else None,
            1.0,
            "{:.2f}× rsync's wall",
            strict=False,
        ),
        rep.judge_below(
            "push: peak RSS of hfsync ≤ 100 MB", rss_max, 100, "{:.0f} MB", strict=False
        ),
    ]
