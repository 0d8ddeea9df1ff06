"""`hfsync to-remote` into a host WITHOUT python3: the POSIX-shell fallback (remote/shell_*.py).

The "host" is a throwaway login user of the real sshd (tests/sshd.py) whose login shell puts
on PATH only a folder of links to sh and the coreutils the fallback needs: no python3, so the
agent cannot start and the shell side must do everything — lock, one-round-trip scan,
receive, verify before rename, metadata as `hf download` writes it. A byte-counting proxy in
front of sshd proves what crossed the connection."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hfsync.testing.hub import HubEmulator
from tests.clirun import downloads, hfsync, user_files
from tests.sshd import LoginUser, SSHServer, create_login_user, remove_login_user
from tests.tcpproxy import TCPProxy

pytest_plugins = ["tests.sshd"]

REPO = "org/model"
BIG = 6 * 1024 * 1024 + 13
TOOLS = (
    "sh stat head cat mkdir mv rm rmdir readlink realpath truncate date sha256sum sha1sum "
    "find sleep sync"
).split()
NOTE = "has no python3; pushing with the POSIX shell (slower hashing)"


@pytest.fixture(autouse=True)
def _isolated_home(ssh_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HFSYNC_VIA", "push")
    return ssh_home


def bare_host(user: LoginUser, *, flock: bool = True) -> None:
    """Make `user`'s login shell see a PATH of sh + coreutils (+ flock) and no python3."""
    bin_dir = user.home / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in TOOLS + (["flock"] if flock else []):
        real = shutil.which(name)
        assert real, name
        (bin_dir / name).symlink_to(os.path.realpath(real))
    shell = user.home / "bare-sh"
    shell.write_text(f'#!/bin/sh\nPATH={bin_dir}\nexport PATH\nexec /bin/sh "$@"\n')
    shell.chmod(shell.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    subprocess.run(["usermod", "-s", str(shell), user.name], check=True, capture_output=True)


@pytest.fixture
def user(sshd_server: SSHServer) -> Iterator[LoginUser]:
    made = create_login_user(sshd_server.client_key.with_suffix(".pub"))
    bare_host(made)
    yield made
    subprocess.run(["pkill", "-KILL", "-u", made.name], check=False)
    remove_login_user(made)


@pytest.fixture
def repo(hub: HubEmulator, hf_env: Path) -> dict[str, bytes]:
    files = {
        "config.json": b'{"model_type": "demo"}\n',
        "model.safetensors": os.urandom(BIG),  # LFS: sha256
        "onnx/model.onnx": os.urandom(40_000),
        'it\'s a "quoted" $name with spaces.txt': b"odd but legal\n",  # git blob: sha1
        "deep/er/notes.txt": b"nested\n",
    }
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    return {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}


def push(server: SSHServer, user: LoginUser, *args: object, command: str | None = None):  # noqa: ANN201
    return hfsync("to-remote", REPO, command or server.command(user=user.name), "models/m", *args)


def via_proxy(server: SSHServer, proxy: TCPProxy, tmp_path: Path, user: LoginUser) -> str:
    known = tmp_path / f"known_hosts_{proxy.port}"
    known.write_text(server.known_hosts_entry(port=proxy.port))
    return server.command(port=proxy.port, known_hosts=known, user=user.name)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "hfsync.lock"
    }


def part_files(dest: Path) -> list[Path]:
    return sorted((dest / ".cache/huggingface/download").rglob("*.hfsync-part"))


def owned_by(user: LoginUser, *paths: Path) -> None:
    pw = user.home.stat()
    for p in paths:
        os.chown(p, pw.st_uid, pw.st_gid)


def make_part(user: LoginUser, dest: Path, path: str, content: bytes, data: bytes) -> Path:
    """A part file holding `data`, as a push of `content` leaves it (the name carries the
    content id)."""
    part = dest / ".cache/huggingface/download" / f"{path}.{hashlib.sha256(content).hexdigest()}"
    part = part.with_name(part.name + ".hfsync-part")
    part.parent.mkdir(parents=True, exist_ok=True)
    folders = [dest.parent, dest, *part.relative_to(dest).parents]
    part.write_bytes(data)
    owned_by(user, *{dest / f for f in folders if (dest / f).is_relative_to(user.home)}, part)
    return part


def test_first_push_is_byte_exact_current_for_huggingface_hub_and_says_why(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, user: LoginUser
) -> None:
    result = push(sshd_server, user, "--json")
    assert result.returncode == 0, result.stderr
    dest = user.home / "models/m"
    assert user_files(dest) == repo
    doc = json.loads(result.stdout)
    assert doc["counts"]["new"] == len(repo)
    assert doc["bytes_pushed"] == sum(len(v) for v in repo.values())
    assert [note for note in doc["notes"] if NOTE in note], doc["notes"]
    assert part_files(dest) == [] and not list(dest.rglob("*.tmp"))
    for path in repo:
        lines = (dest / ".cache/huggingface/download" / (path + ".metadata")).read_text()
        commit, etag, ts = lines.splitlines()
        assert commit == doc["commit"] and len(etag) in (40, 64) and float(ts) > 0
    assert (dest / ".cache/huggingface/.gitignore").read_text() == "*"

    from huggingface_hub import snapshot_download

    hub.clear_log()
    snapshot_download(REPO, local_dir=dest)
    assert downloads(hub) == []
    assert user_files(dest) == repo

    text = push(sshd_server, user)  # the note on stderr for a person
    assert text.returncode == 0 and NOTE in text.stderr, text.stderr


def test_second_push_moves_nothing_and_rewrites_nothing(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, user: LoginUser, tmp_path: Path
) -> None:
    assert push(sshd_server, user).returncode == 0
    dest = user.home / "models/m"
    before = snapshot(dest)
    hub.clear_log()
    with TCPProxy(sshd_server.host, sshd_server.port) as proxy:
        again = push(
            sshd_server, user, "--json", command=via_proxy(sshd_server, proxy, tmp_path, user)
        )
        up = proxy.bytes_up
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["counts"]["unchanged"] == len(repo) and doc["bytes_pushed"] == 0
    assert snapshot(dest) == before
    assert downloads(hub) == []
    # The scripts, the listed paths and the handshake came to 65,232 bytes (2026-12-04),
    # 300 short of the old 64 KiB bound; onnx/model.onnx (40,000 bytes) sent again would
    # still cross this one by far.
    assert up < 80 * 1024, up


def test_a_changed_file_moves_alone_and_checksum_finds_a_flipped_byte(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, user: LoginUser
) -> None:
    assert push(sshd_server, user).returncode == 0
    dest = user.home / "models/m"
    changed = os.urandom(BIG - 1000)
    hub.commit(REPO, files={"model.safetensors": changed})
    result = push(sshd_server, user, "--json")
    assert result.returncode == 0, result.stderr
    moved = {f["path"]: f.get("bytes_pushed") for f in json.loads(result.stdout)["files"]}
    assert {p: n for p, n in moved.items() if n} == {"model.safetensors": len(changed)}
    repo = {**repo, "model.safetensors": changed}
    assert user_files(dest) == repo

    for path in ("onnx/model.onnx", "config.json"):  # same size, same mtime: only --checksum
        target = dest / path
        st = target.stat()
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    quick = push(sshd_server, user, "--json")
    assert quick.returncode == 0 and json.loads(quick.stdout)["bytes_pushed"] == 0
    result = push(sshd_server, user, "--checksum", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    updated = sorted(f["path"] for f in doc["files"] if f["action"] == "update")
    assert updated == ["config.json", "onnx/model.onnx"]
    assert user_files(dest) == repo


def test_copied_files_without_metadata_are_hashed_not_pushed(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, user: LoginUser
) -> None:
    dest = user.home / "models/m"
    made = []
    for path, data in repo.items():  # `scp -r` of the model: right bytes, no metadata
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        (dest / path).write_bytes(data)
        made.append(dest / path)
    owned_by(user, user.home / "models", *[p for p in dest.rglob("*")], dest)
    result = push(sshd_server, user, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["bytes_pushed"] == 0 and doc["counts"]["unchanged"] == len(repo)
    assert (dest / ".cache/huggingface/download/model.safetensors.metadata").exists()


def test_a_partial_part_resumes_without_resending_and_a_corrupt_one_never_lands(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, user: LoginUser, tmp_path: Path
) -> None:
    assert hfsync("sync", REPO).returncode == 0  # a warm local cache: only the push is measured
    dest = user.home / "models/m"
    big = repo["model.safetensors"]
    kept = 4 << 20
    make_part(user, dest, "model.safetensors", big, big[:kept])
    with TCPProxy(sshd_server.host, sshd_server.port) as proxy:
        result = push(
            sshd_server, user, "--json", command=via_proxy(sshd_server, proxy, tmp_path, user)
        )
        up = proxy.bytes_up
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    entry = next(f for f in doc["files"] if f["path"] == "model.safetensors")
    assert entry["resumed_from"] == kept and entry["bytes_pushed"] == BIG - kept
    small = sum(len(v) for p, v in repo.items() if p != "model.safetensors")
    assert up < BIG - kept + small + 256 * 1024, up
    assert user_files(dest) == repo and part_files(dest) == []

    # A part of full size with one flipped byte: hashed on the host, removed, pushed again.
    hub.commit(REPO, files={"model.safetensors": (fresh := os.urandom(BIG))})
    assert hfsync("sync", REPO).returncode == 0
    bad = bytearray(fresh)
    bad[123] ^= 0xFF
    make_part(user, dest, "model.safetensors", fresh, bytes(bad))
    result = push(sshd_server, user, "--json")
    assert result.returncode == 0, result.stderr
    entry = next(f for f in json.loads(result.stdout)["files"] if f["path"] == "model.safetensors")
    assert entry["bytes_pushed"] == BIG  # the whole file again, once
    assert (dest / "model.safetensors").read_bytes() == fresh
    assert part_files(dest) == []


def test_a_killed_push_resumes_from_the_remote_part(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, user: LoginUser, tmp_path: Path
) -> None:
    import signal
    import sys
    import time

    assert hfsync("sync", REPO).returncode == 0
    dest = user.home / "models/m"
    with TCPProxy(sshd_server.host, sshd_server.port, rate=3e6) as proxy:
        run = subprocess.Popen(
            [sys.executable, "-m", "hfsync", "to-remote", REPO,
             via_proxy(sshd_server, proxy, tmp_path, user), "models/m"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size >= 2 << 20 for p in part_files(dest)):
            assert time.monotonic() < deadline, "no bytes arrived"
            time.sleep(0.02)
        run.send_signal(signal.SIGKILL)
        run.wait()
    deadline = time.monotonic() + 30
    while lock_held(dest):  # the remote shell sees EOF when the channel dies
        assert time.monotonic() < deadline, "the lock outlived its run"
        time.sleep(0.05)
    (part,) = part_files(dest)
    kept = part.stat().st_size
    assert not (dest / "model.safetensors").exists(), "nothing unverified at a final path"
    result = push(sshd_server, user, "--json")
    assert result.returncode == 0, result.stderr
    entry = next(f for f in json.loads(result.stdout)["files"] if f["path"] == "model.safetensors")
    assert entry["resumed_from"] == kept and entry["bytes_pushed"] == BIG - kept
    assert user_files(dest) == repo


def test_a_cut_connection_reconnects_and_resumes_in_the_same_run(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, user: LoginUser, tmp_path: Path
) -> None:
    assert hfsync("sync", REPO).returncode == 0
    dest = user.home / "models/m"
    with TCPProxy(sshd_server.host, sshd_server.port) as proxy:
        proxy.cut_after(3 << 20)
        result = push(
            sshd_server, user, "--json", command=via_proxy(sshd_server, proxy, tmp_path, user)
        )
        up, cuts = proxy.bytes_up, proxy.cuts
    assert result.returncode == 0, result.stderr
    assert cuts == 1 and json.loads(result.stdout)["reconnects"] == 1
    assert user_files(dest) == repo and part_files(dest) == []
    assert up < sum(len(v) for v in repo.values()) + (2 << 20), up  # resumed, not restarted


def test_a_full_remote_disk_is_exit_6_with_the_part_kept(
    repo: dict, sshd_server: SSHServer, user: LoginUser
) -> None:
    small = user.home / "small"
    small.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)],
            check=True, capture_output=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        owned_by(user, small)
        command = sshd_server.command(user=user.name)
        result = hfsync("to-remote", REPO, command, "small/m")
        assert result.returncode == 6, result.stderr
        assert "No space left on device" in result.stderr and result.stderr.count("\n") == 1
        assert not (small / "m/model.safetensors").exists()
        assert part_files(small / "m"), "the partial file is kept for the next run"
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def lock_held(dest: Path) -> bool:
    path = dest / ".cache/huggingface/hfsync.lock"
    if not path.exists():
        return False
    with open(path, "rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def test_a_held_lock_is_exit_8_naming_the_holder(
    repo: dict, sshd_server: SSHServer, user: LoginUser
) -> None:
    dest = user.home / "models/m"
    assert push(sshd_server, user).returncode == 0
    lock = dest / ".cache/huggingface/hfsync.lock"
    with open(lock, "r+b") as f:  # the flock a local `hfsync sync` or the agent would hold
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.truncate(0)
        f.write(b"4242 local otherbox pid 4242\n")
        f.flush()
        held = push(sshd_server, user)
    assert held.returncode == 8, held.stderr
    assert "remote pid 4242, local otherbox pid 4242" in held.stderr
    assert held.stderr.count("\n") == 1


def test_without_flock_a_mkdir_lock_excludes_and_a_stale_one_is_taken_over(
    repo: dict, sshd_server: SSHServer, user: LoginUser
) -> None:
    (user.home / "bin/flock").unlink()
    dest = user.home / "models/m"
    assert push(sshd_server, user).returncode == 0
    lock_dir = dest / ".cache/huggingface/hfsync.lock.d"
    assert not lock_dir.exists(), "the lock folder goes with its run"
    lock_dir.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])  # a live process stands for the holder
    try:
        (lock_dir / "holder").write_text(f"{sleeper.pid} local otherbox pid {sleeper.pid}\n")
        held = push(sshd_server, user)
        assert held.returncode == 8, held.stderr
        assert f"remote pid {sleeper.pid}, local otherbox" in held.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
    owned_by(user, lock_dir, lock_dir / "holder")
    stale = push(sshd_server, user)  # its holder is gone: taken over
    assert stale.returncode == 0, stale.stderr
    assert not lock_dir.exists()


def test_hostile_names_on_the_host_and_a_symlink_escape(
    repo: dict, sshd_server: SSHServer, user: LoginUser, tmp_path: Path
) -> None:
    dest = user.home / "models/m"
    assert push(sshd_server, user).returncode == 0
    weird = [dest / "line\nbreak.txt", dest / 'it\'s "x" $(id).txt', dest / "stray.txt"]
    for p in weird:
        p.write_text("not in the repo")
    owned_by(user, *weird)
    result = push(sshd_server, user, "--delete", "--json")
    assert result.returncode == 0, result.stderr
    assert not weird[1].exists() and not weird[2].exists()  # quoted names deleted safely
    assert weird[0].exists()  # a name no repo could hold is never touched
    assert user_files(dest) == {**repo, "line\nbreak.txt": b"not in the repo"}

    outside = user.home / "outside"
    outside.mkdir()
    owned_by(user, outside)
    shutil.rmtree(dest / "onnx")
    (dest / "onnx").symlink_to(outside)
    escaped = push(sshd_server, user)
    assert escaped.returncode == 5, escaped.stderr
    assert "outside" in escaped.stderr and escaped.stderr.count("\n") == 1
    assert list(outside.iterdir()) == []


def test_dry_run_creates_nothing_and_via_pull_or_auto_say_why(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, user: LoginUser
) -> None:
    dest = user.home / "models/m"
    dry = push(sshd_server, user, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"dry run: {len(repo)} files: {len(repo)} new" in dry.stdout
    assert not (user.home / "models").exists()

    pull = push(sshd_server, user, "--via", "pull")  # a usage error, as before the fallback
    assert pull.returncode == 2, pull.stderr
    assert "python3" in pull.stderr and pull.stderr.count("\n") == 1
    assert not (user.home / "models").exists()

    auto = push(sshd_server, user, "--via", "auto")
    assert auto.returncode == 0, auto.stderr
    assert "hfsync: via push: the host cannot pull: no python3" in auto.stderr
    assert NOTE in auto.stderr
    assert user_files(dest) == repo


def test_a_host_lacking_a_tool_is_refused_naming_it(
    repo: dict, sshd_server: SSHServer, user: LoginUser
) -> None:
    (user.home / "bin/sha1sum").unlink()
    result = push(sshd_server, user)
    assert result.returncode == 7, result.stderr
    assert "sha1sum" in result.stderr and "python3" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (user.home / "models").exists()


def test_a_python3_older_than_3_6_counts_as_none(
    repo: dict, sshd_server: SSHServer, user: LoginUser
) -> None:
    """The agent's syntax needs 3.6: an older python3 (here the real one made to report 3.5,
    as an old image's would) must get the shell, not a SyntaxError."""
    real = "/usr/bin/python3"  # one every user may run (not a per-user install)
    if not os.access(real, os.X_OK):
        pytest.skip(f"{real} is needed to stand in for an old python3")
    old = user.home / "bin/python3"
    old.write_text(
        '#!/bin/sh\nwhile [ "$1" != -c ]; do shift; done\nshift\nboot=$1\nshift\n'
        f'exec {real} -c "import sys; '
        'sys.version_info = (3, 5, 2)\n$boot" "$@"\n'
    )
    old.chmod(0o755)
    result = push(sshd_server, user, "--via", "auto")
    assert result.returncode == 0, result.stderr
    assert "its python3 is 3.5.2" in result.stderr and NOTE in result.stderr
    assert user_files(user.home / "models/m") == repo


def test_the_scan_script_batches_and_frames_every_name(tmp_path: Path) -> None:
    """The scan snippet itself, under the machine's sh: more listed files than one `stat` batch,
    and with --delete a walk whose names hold newlines and quotes, each reported once, intact."""
    from hfsync.remote.shell_host import heredoc
    from hfsync.remote.shell_scripts import PRELUDE

    root = tmp_path / "m"
    root.mkdir()
    listed = [f"f {i}.txt" for i in range(450)]
    for name in listed[:430]:
        (root / name).write_text(name)
    odd = ["nl\nname", 'it\'s "q" $x', "tab\tname"]
    for name in odd:
        (root / name).write_text("x")
    for all_files, want in ((0, set(listed[:430])), (1, set(listed[:430]) | set(odd))):
        redirect, body = heredoc(listed)
        script = (
            f"{PRELUDE}\nhf_root {root}\n( hf_scan {all_files} {redirect}\n{body}) </dev/null\n"
        )
        out = subprocess.run(["sh", "-s"], input=script.encode(), capture_output=True).stdout
        fields = out.split(b"\0")
        assert fields[:3] == [b"X", b"1", str(root).encode()]
        stats = [fields[i + 1].decode() for i in range(3, len(fields) - 1, 4) if fields[i] == b"S"]
        assert all(fields[i] == b"S" for i in range(3, len(fields) - 1, 4))
        assert sorted(stats) == sorted("./" + n for n in want)


def test_each_file_is_synced_to_disk_before_its_rename(
    hub: HubEmulator, repo: dict, sshd_server: SSHServer, user: LoginUser
) -> None:
    """The shell receiver makes each verified part durable (`sync FILE`) before `mv` gives it
    its final name, and syncs the folder after: a power cut never leaves a final name on bytes
    still only in the host's page cache. `sync` and `mv` are wrapped to log their operands."""
    bin_dir, log = user.home / "bin", user.home / "calls.log"
    for name in ("sync", "mv"):
        real = os.path.realpath(bin_dir / name)
        (bin_dir / name).unlink()
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\nexec {real} "$@"\n')
        wrapper.chmod(0o755)
    result = push(sshd_server, user)
    assert result.returncode == 0, result.stderr
    dest = user.home / "models/m"
    assert user_files(dest) == repo
    calls = log.read_text().splitlines()
    renames = [(i, c.split(" -- ")[1]) for i, c in enumerate(calls)
               if c.startswith("mv ") and ".hfsync-part" in c]  # fmt: skip
    assert len(renames) == len(repo)
    for index, operands in renames:
        part = operands[: operands.index(".hfsync-part") + len(".hfsync-part")]  # names have spaces
        assert f"sync -- {part}" in calls[:index], f"{part} renamed before it was synced"
        assert calls[index + 1].startswith("sync -- "), "the folder is not synced after the mv"


def fake_sync(user: LoginUser, body: str) -> None:
    """Replace the bare host's `sync` with a script (`$real` is the real one)."""
    wrapper = user.home / "bin" / "sync"
    real = os.path.realpath(wrapper)
    wrapper.unlink()
    wrapper.write_text(f"#!/bin/sh\nreal={real}\n{body}\n")
    wrapper.chmod(0o755)


def test_a_file_that_cannot_be_synced_is_exit_6_and_never_renamed(
    repo: dict, sshd_server: SSHServer, user: LoginUser
) -> None:
    """`sync FILE` failing (an I/O error) is a disk error: the part keeps its temp name. It
    used to fall back to a plain `sync`, whose success says nothing about that file."""
    fake_sync(
        user,
        'case "$*" in *.hfsync-part)\n'
        "  echo \"sync: error syncing '$2': Input/output error\" >&2; exit 1 ;;\n"
        'esac\nexec "$real" "$@"',
    )
    result = push(sshd_server, user)
    assert result.returncode == 6, result.stderr
    assert "Input/output error" in result.stderr and result.stderr.count("\n") == 1
    assert user_files(user.home / "models/m") == {}  # nothing unflushed at a final name
    assert part_files(user.home / "models/m"), "the verified part is kept for the next run"


def test_a_sync_that_takes_no_operands_syncs_everything_instead(
    repo: dict, sshd_server: SSHServer, user: LoginUser
) -> None:
    """An old coreutils `sync` refuses operands: the receiver syncs everything instead."""
    fake_sync(user, 'if [ $# -gt 0 ]; then echo "sync: extra operand" >&2; exit 1; fi\nexec $real')
    result = push(sshd_server, user)
    assert result.returncode == 0, result.stderr
    assert user_files(user.home / "models/m") == repo
