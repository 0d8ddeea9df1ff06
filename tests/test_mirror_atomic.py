"""Atomic mirror destinations (`atomic = true`, issue 11): `DEST/current` switches with one
rename, a reader that resolves it once never sees two commits mixed, unchanged files are hard
links (one inode in both snapshots), and a failed refresh leaves `current` alone."""

from __future__ import annotations

import os
import random
import textwrap
import threading
from pathlib import Path

from hfsync.testing.hub import HubEmulator
from tests.clirun import downloads, hfsync, user_files

REPO = "org/atomic"
BIG = random.Random(7).randbytes(1200 * 1024)  # an LFS file that never changes


def version(n: int, *, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    return {
        "version.txt": f"{n}\n".encode(),
        "a.txt": f"a{n}\n".encode(),
        "sub/c.txt": f"c{n}\n".encode(),
        "big.bin": BIG,
        **(extra or {}),
    }


def setup(hub: HubEmulator, tmp_path: Path, keep: int = 2) -> tuple[Path, Path]:
    config = tmp_path / "mirror.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            [[repos]]
            id = "{REPO}"
            dest = "mirror"
            atomic = true
            keep = {keep}
            """
        )
    )
    return config, tmp_path / "mirror"


def snapshot(dest: Path) -> dict[str, bytes]:
    return {k: v for k, v in user_files(Path(os.path.realpath(dest / "current"))).items()
            if k != ".gitattributes"}  # fmt: skip


def test_a_reader_never_sees_two_commits_and_unchanged_files_are_links(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    config, dest = setup(hub, tmp_path)
    c1 = hub.commit(REPO, files=version(1))
    assert hfsync("mirror", config).returncode == 0
    assert os.readlink(dest / "current") == c1, "a relative link named after the commit"
    assert snapshot(dest) == version(1)

    v2 = version(2, extra={"new.bin": random.Random(8).randbytes(3 * 1024 * 1024)})
    c2 = hub.commit(REPO, files=v2)
    expected = {b"1\n": version(1), b"2\n": v2}
    seen: list[bytes] = []
    mixed: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            files = snapshot(dest)  # resolves `current` once, then reads that folder
            got = files.get("version.txt", b"?")
            if files != expected.get(got):
                mixed.append(f"version {got!r} with {sorted(files)}")
            seen.append(got)

    hub.clear_log()
    hub.faults.rate_total = 6e6  # the refresh takes ~0.5 s: many reads happen during it
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        run = hfsync("mirror", config)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert run.returncode == 0, run.stderr
    assert mixed == [], mixed[:3]
    assert seen[0] == b"1\n" and snapshot(dest) == v2
    assert os.readlink(dest / "current") == c2

    assert downloads(hub) == ["a.txt", "new.bin", "sub/c.txt", "version.txt"]
    old, new = (dest / c1 / "big.bin").stat(), (dest / c2 / "big.bin").stat()
    assert old.st_ino == new.st_ino and new.st_nlink == 2, "one copy on disk"
    assert (dest / c1 / "a.txt").stat().st_ino != (dest / c2 / "a.txt").stat().st_ino
    assert (dest / c1 / "a.txt").read_bytes() == b"a1\n", "the previous snapshot is untouched"

    c3 = hub.commit(REPO, files={"a.txt": b"a3\n"})
    assert hfsync("mirror", config).returncode == 0
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == sorted(
        [c2, c3, "current"]
    ), "keep = 2: the current and the previous snapshot"
    assert (dest / c3 / "big.bin").stat().st_ino == new.st_ino


def test_a_failed_refresh_leaves_current_alone_and_the_next_run_completes_it(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    config, dest = setup(hub, tmp_path)
    c1 = hub.commit(REPO, files=version(1))
    assert hfsync("mirror", config).returncode == 0
    c2 = hub.commit(REPO, files=version(2))
    hub.faults.corrupt_next(count=None)  # every body corrupt: the refetch fails too
    failed = hfsync("mirror", config, "--json")
    assert failed.returncode == 5, failed.stderr
    assert os.readlink(dest / "current") == c1 and snapshot(dest) == version(1)
    assert (dest / f".{c2}.partial").is_dir() and not (dest / c2).exists()

    hub.reset_faults()
    assert hfsync("mirror", config).returncode == 0
    assert os.readlink(dest / "current") == c2 and snapshot(dest) == version(2)
    assert not (dest / f".{c2}.partial").exists()


def test_atomic_refuses_a_plain_synced_folder(
    hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    config, dest = setup(hub, tmp_path)
    hub.commit(REPO, files=version(1))
    assert hfsync("sync", REPO, dest).returncode == 0
    run = hfsync("mirror", config)
    assert run.returncode == 2 and "plain synced folder" in run.stdout + run.stderr
    assert not (dest / "current").exists()
