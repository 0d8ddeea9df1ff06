"""The host's python3 remembered between runs (hfsync/remote/interpreters.py): the control
session starts the agent on the interpreter it ran on last time, skipping the PATH lookup
(a version manager's shim on some hosts).

What a user relies on, pinned here: the remembered interpreter is the one the next run
starts; one that no longer works costs a retry through PATH, never a failed push; the memory
belongs to one account on one host key; and what sits in the memory file is never trusted
as more than an absolute path, nor read or written through a link.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from hfsync.remote import interpreters
from hfsync.testing.hub import HubEmulator
from tests.clirun import hfsync, user_files
from tests.sshd import SSHServer

pytest_plugins = ["tests.sshd"]


@dataclass
class Conn:
    """What interpreters needs of a connection: its display name and checked host key."""

    display: str = "root@example:2222"
    host_key_fingerprint: str | None = "SHA256:abc"


@pytest.fixture
def _push_home(ssh_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HFSYNC_VIA", "push")
    return ssh_home


def memory_files() -> list[Path]:
    folder = interpreters.folder()
    return sorted(folder.glob("*.python")) if folder.exists() else []


def repo(hub: HubEmulator) -> dict[str, bytes]:
    files = {"config.json": b'{"a": 1}', "sub/notes.txt": b"hello\n" * 50}
    hub.create_repo("org/interp")
    hub.commit("org/interp", files=files)
    files[".gitattributes"] = hub.read_file("org/interp", ".gitattributes", "main")
    return files


def first_push(hub: HubEmulator, server: SSHServer, dest: Path) -> tuple[dict, Path, str]:
    """A push that records the host's interpreter: the repo, the memory file, the path."""
    files = repo(hub)
    first = hfsync("to-remote", "org/interp", server.command(), dest)
    assert first.returncode == 0, first.stderr
    (memory,) = memory_files()
    return files, memory, memory.read_text().strip()


@pytest.mark.usefixtures("_push_home")
def test_the_interpreter_a_host_reported_starts_its_next_run(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, tmp_path: Path
) -> None:
    files, memory, real = first_push(hub, sshd_server, tmp_path / "one")
    assert os.path.isabs(real) and os.access(real, os.X_OK)
    # Stand a wrapper in for it: the next run must start the agent through the wrapper.
    marker = tmp_path / "wrapper-ran"
    wrapper = tmp_path / "bin" / "python3-wrapper"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$$" >> {marker}\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    memory.write_text(f"{wrapper}\n")
    second = hfsync("to-remote", "org/interp", sshd_server.command(), tmp_path / "two")
    assert second.returncode == 0, second.stderr
    assert user_files(tmp_path / "two") == files
    assert marker.read_text().count("\n") == 1  # the control session only (streams: its path)
    assert memory.read_text().strip() == real  # what the agent reported, kept again


@pytest.mark.usefixtures("_push_home")
def test_a_remembered_interpreter_that_is_gone_costs_a_retry_not_the_push(
    hub: HubEmulator, hf_env: Path, sshd_server: SSHServer, tmp_path: Path
) -> None:
    files, memory, real = first_push(hub, sshd_server, tmp_path / "one")
    memory.write_text(f"{tmp_path}/uninstalled/bin/python3\n")
    second = hfsync("to-remote", "org/interp", sshd_server.command(), tmp_path / "two")
    assert second.returncode == 0, second.stderr
    assert "note" not in second.stderr  # no shell fallback: python3 on PATH still serves
    assert user_files(tmp_path / "two") == files
    assert memory.read_text().strip() == real


@pytest.mark.usefixtures("ssh_home")
def test_the_memory_belongs_to_one_account_on_one_host_key() -> None:
    interpreters.remember(Conn(), "/opt/py/bin/python3")
    assert interpreters.recall(Conn()) == "/opt/py/bin/python3"
    assert interpreters.recall(Conn(host_key_fingerprint="SHA256:other")) is None
    assert interpreters.recall(Conn(display="alice@example:2222")) is None
    assert interpreters.recall(Conn(host_key_fingerprint=None)) is None
    interpreters.forget(Conn())
    assert interpreters.recall(Conn()) is None


@pytest.mark.usefixtures("ssh_home")
def test_only_an_absolute_printable_path_is_taken_from_the_memory(tmp_path: Path) -> None:
    interpreters.remember(Conn(), "/opt/py/bin/python3")
    (memory,) = memory_files()
    for text in ("python3", "/opt/py\n/bin/python3; reboot", "/" + "x" * 5000, "/bin/py\x1b[2J"):
        memory.write_text(text + "\n")
        assert interpreters.recall(Conn()) is None, text
    interpreters.remember(Conn(), "relative/python3")  # never written
    assert interpreters.recall(Conn()) is None


@pytest.mark.usefixtures("ssh_home")
def test_a_link_at_the_memory_file_is_neither_read_nor_written_through(tmp_path: Path) -> None:
    interpreters.remember(Conn(), "/opt/py/bin/python3")
    (memory,) = memory_files()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("/planted/python3\n")
    memory.unlink()
    memory.symlink_to(elsewhere)
    assert interpreters.recall(Conn()) is None
    interpreters.remember(Conn(), "/opt/py/bin/python3")
    assert elsewhere.read_text() == "/planted/python3\n"  # replaced the link, not its target
    assert not memory.is_symlink() and interpreters.recall(Conn()) == "/opt/py/bin/python3"
