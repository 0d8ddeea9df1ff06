"""A real OpenSSH ``sshd`` on 127.0.0.1 for tests, and a HOME that hides the developer's ~/.ssh.

Fixtures (import them into a test module or conftest.py):

* ``sshd_server`` (session): a running :class:`SSHServer` -- own config, ed25519 host key, a
  client key pair, ``known_hosts`` with the host key as ``[127.0.0.1]:PORT``. Skips with a clear
  reason when ``/usr/sbin/sshd`` is missing (CI installs it, see .ci/run).
* ``ssh_home`` (function): HOME points at an empty temp dir with ``.ssh/`` and SSH_AUTH_SOCK is
  unset, so neither the real ~/.ssh (config, keys, known_hosts) nor an agent is ever used.
* ``second_login_user`` (session): a throwaway local user with its own home and the client key
  authorized, for "two hosts = two login users" tests; skips when not root.

sshd runs in the foreground (``-D -e``) as a child process and is killed at teardown; readiness
is a bounded poll of the port, never a fixed sleep. (PYTEST_DONT_REWRITE: plain helpers, also
imported directly by test modules before pytest loads them as a plugin.)
"""

from __future__ import annotations

import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
START_TIMEOUT = 10.0


@dataclass
class SSHServer:
    """What a test needs to reach the server; ``command()`` builds the ssh line for hfsync."""

    host: str
    port: int
    root: Path
    client_key: Path
    known_hosts: Path  # the host key as "[127.0.0.1]:PORT ssh-ed25519 ..."
    host_key_line: str  # "ssh-ed25519 AAAA..." (no host field)
    host_key_fingerprint: str  # "SHA256:..."
    user: str
    process: subprocess.Popen[bytes]
    log: Path

    def command(
        self,
        *extra: str,
        user: str | None = None,
        known_hosts: Path | str | None = None,
        key: Path | str | None = None,
        port: int | None = None,
        host: str | None = None,
    ) -> str:
        """``ssh -p PORT -i KEY -o UserKnownHostsFile=KH [extra...] user@127.0.0.1``."""
        parts = ["ssh", "-p", str(port or self.port), "-i", str(key or self.client_key)]
        parts += ["-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}", *extra]
        parts.append(f"{user or self.user}@{host or self.host}")
        return shlex.join(parts)

    def known_hosts_entry(self, port: int | None = None) -> str:
        return f"[{self.host}]:{port or self.port} {self.host_key_line}\n"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll until ``port`` accepts or ``proc`` exits; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def keygen(path: Path, comment: str = "hfsync-test") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def fingerprint_of(pub_path: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()[1]


SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {root}/ssh_host_ed25519_key
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys .ssh/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
MaxStartups 100
MaxSessions 50
LogLevel INFO
Subsystem sftp internal-sftp
"""


def start_sshd(root: Path) -> SSHServer:
    """Generate keys and config under ``root`` and start sshd; skips if sshd is unavailable."""
    if not os.path.exists(SSHD):
        _unavailable(f"{SSHD} not installed (apt-get install openssh-server)")
    if shutil.which("ssh-keygen") is None:
        _unavailable("ssh-keygen not installed (apt-get install openssh-client)")
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    root.mkdir(parents=True, exist_ok=True)
    keygen(root / "ssh_host_ed25519_key", "hfsync-test-host")
    keygen(root / "client_key")
    shutil.copy(root / "client_key.pub", root / "authorized_keys")
    host_pub = (root / "ssh_host_ed25519_key.pub").read_text().split()
    host_key_line = f"{host_pub[0]} {host_pub[1]}"
    user = pwd.getpwuid(os.geteuid()).pw_name
    last_error = ""
    for _attempt in range(3):  # the free port may be taken between probe and bind
        port = free_port()
        (root / "sshd_config").write_text(SSHD_CONFIG.format(port=port, root=root))
        log = root / "sshd.log"
        with open(log, "ab") as log_f:
            proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
                stdin=subprocess.DEVNULL,
                stdout=log_f,
                stderr=log_f,
            )
        if wait_for_port("127.0.0.1", port, proc, START_TIMEOUT):
            known = root / "known_hosts"
            known.write_text(f"[127.0.0.1]:{port} {host_key_line}\n")
            return SSHServer(
                host="127.0.0.1",
                port=port,
                root=root,
                client_key=root / "client_key",
                known_hosts=known,
                host_key_line=host_key_line,
                host_key_fingerprint=fingerprint_of(root / "ssh_host_ed25519_key.pub"),
                user=user,
                process=proc,
                log=log,
            )
        stop_sshd(proc)
        last_error = log.read_text(errors="replace")[-2000:]
    pytest.fail(f"sshd did not start: {last_error}")


def stop_sshd(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        stop_sshd(server.process)


@pytest.fixture
def ssh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME (with ``.ssh/``) and no agent: client code never sees the real ones."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)  # hfsync's local caches under HOME too
    return home


@pytest.fixture(scope="session")
def archive_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One XDG cache for the whole session, so the pull archive is built once, not per test."""
    return tmp_path_factory.mktemp("xdg")


@pytest.fixture
def pull_home(ssh_home: Path, archive_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`ssh_home`, with the session's archive cache (pull tests: `usefixtures("pull_home")`)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(archive_cache))
    return ssh_home


@dataclass
class LoginUser:
    name: str
    home: Path


def create_login_user(client_pub: Path) -> LoginUser:
    """A local user with its own home that accepts ``client_pub``; root only (useradd)."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("creating a second login user needs root and useradd")
    name = "hfsynct" + secrets.token_hex(4)
    home = Path(tempfile.mkdtemp(prefix=f"{name}-home-"))
    home.chmod(0o755)
    subprocess.run(
        ["useradd", "-M", "-d", str(home), "-s", "/bin/sh", name], check=True, capture_output=True
    )
    # sshd without PAM refuses accounts whose password field is locked ("!"): make it "*".
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    shutil.copy(client_pub, ssh_dir / "authorized_keys")
    pw = pwd.getpwnam(name)
    for p in (home, ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    return LoginUser(name, home)


def remove_login_user(user: LoginUser) -> None:
    subprocess.run(["userdel", user.name], check=False, capture_output=True)
    shutil.rmtree(user.home, ignore_errors=True)


@pytest.fixture(scope="session")
def second_login_user(sshd_server: SSHServer) -> Iterator[LoginUser]:
    user = create_login_user(sshd_server.client_key.with_suffix(".pub"))
    try:
        yield user
    finally:
        remove_login_user(user)


def _unavailable(reason: str) -> None:
    """Skip where sshd cannot be had; fail in CI, which installs it (HFSYNC_REQUIRE_SSHD=1)."""
    if os.environ.get("HFSYNC_REQUIRE_SSHD") == "1":
        pytest.fail(f"CI requires a real sshd: {reason}")
    pytest.skip(reason)
