"""The zipapp that remote pull runs on the host (`hfsync.remote.zipapp`): self-contained,
deterministic, free of compiled code and of the local-only SSH layer.

Every run of the archive uses a bare interpreter — `python3 -I -S` (no site-packages, no
PYTHON* variables, no script directory on sys.path) from an empty temp directory, or a fresh
`venv --without-pip` — so nothing installed in the development venv can stand in for something
the archive lacks.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import hfsync
from hfsync.remote.zipapp import (
    ZipApp,
    ZipAppError,
    build_zipapp,
    remote_path,
    select_modules,
)
from hfsync.testing.hub import HubEmulator
from tests.clirun import downloads, user_files

# The interpreter the venv was made from: stdlib only once `-I -S` drops its site-packages.
BASE_PYTHON = getattr(sys, "_base_executable", None) or sys.executable
REPO = "org/model"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> ZipApp:
    return build_zipapp(tmp_path_factory.mktemp("zipapp"))


@pytest.fixture
def names(app: ZipApp) -> list[str]:
    with zipfile.ZipFile(app.path) as zf:
        return zf.namelist()


def bare(
    *args: object, cwd: Path, python: str = BASE_PYTHON, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run `python -I -S ARGS` in `cwd` with the current environment (plus `env`)."""
    full_env = {**os.environ, "HFSYNC_BACKOFF_BASE": "0.01", **(env or {})}
    return subprocess.run(
        [python, "-I", "-S", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def in_zip(app: ZipApp, code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `code` in a bare interpreter with only the archive on sys.path (as the pull does)."""
    prelude = f"import sys; sys.path.insert(0, {str(app.path)!r})\n"
    return bare("-W", "error", "-c", prelude + code, cwd=cwd)


# --- contents ---------------------------------------------------------------------------------


def test_archive_holds_only_pure_python_and_no_local_only_code(
    app: ZipApp, names: list[str]
) -> None:
    assert names == sorted(names), "entries are sorted"
    assert "__main__.py" in names and "_hfsync_boot.py" in names
    assert "certifi/cacert.pem" in names
    assert "charset_normalizer/md.py" in names, "charset_normalizer's pure-Python fallback"
    for name in names:
        assert not name.endswith((".so", ".pyd", ".dylib", ".pyc")), name
        assert "__pycache__" not in name
        assert not name.startswith(("paramiko", "cryptography", "nacl", "bcrypt")), name
        assert not name.startswith(("hfsync/testing/", "hfsync/remote/connection")), name
        assert not name.startswith(("huggingface_hub", "tests/")), name
    tops = {n.split("/")[0] for n in names if "/" in n and ".dist-info" not in n}
    assert tops == {"hfsync", "requests", "urllib3", "idna", "certifi", "charset_normalizer",
                    "click", "tqdm"}  # fmt: skip
    assert dict(app.bundled).keys() == {
        "hfsync", "requests", "urllib3", "idna", "certifi", "charset_normalizer", "click", "tqdm"
    }  # fmt: skip


def test_every_hfsync_module_is_inside_except_the_excluded_ones(
    app: ZipApp, names: list[str]
) -> None:
    root = Path(hfsync.__file__).parent
    excluded = dict(app.excluded)
    assert "hfsync.remote.connection" in excluded
    assert "hfsync.testing.hub" in excluded
    assert all(reason for reason in excluded.values())
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        arcname = "hfsync/" + path.relative_to(root).as_posix()
        module = arcname.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        assert (arcname in names) == (module not in excluded), arcname
    # Nothing that can import paramiko at module level got in.
    with zipfile.ZipFile(app.path) as zf:
        for name in names:
            if name.startswith("hfsync/") and name.endswith(".py"):
                source = zf.read(name).decode()
                assert not re.search(r"^(import|from) paramiko", source, re.M), name


def test_entries_carry_fixed_times_and_modes(app: ZipApp) -> None:
    with zipfile.ZipFile(app.path) as zf:
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
            assert info.external_attr >> 16 == 0o100644, info.filename
    assert app.path.read_bytes().startswith(b"#!/usr/bin/env python3\n")


# --- determinism and the local cache ------------------------------------------------------------


def test_two_builds_give_the_same_bytes_and_a_second_call_reuses(
    app: ZipApp, tmp_path: Path
) -> None:
    other = build_zipapp(tmp_path / "elsewhere")
    assert other.built, "a fresh directory builds anew"
    assert other.sha256 == app.sha256
    assert other.path.read_bytes() == app.path.read_bytes()
    assert other.size == app.size == app.path.stat().st_size
    assert app.sha256 == hashlib.sha256(app.path.read_bytes()).hexdigest()

    again = build_zipapp(tmp_path / "elsewhere")
    assert not again.built
    assert again == other


def test_a_damaged_cached_build_is_rebuilt(tmp_path: Path) -> None:
    first = build_zipapp(tmp_path)
    first.path.write_bytes(b"truncated")
    second = build_zipapp(tmp_path)
    assert second.built
    assert second.sha256 == first.sha256
    assert zipfile.is_zipfile(second.path)


def test_remote_path_is_named_by_content() -> None:
    fake = ZipApp(Path("x.pyz"), "ab" * 32, 1, "0", (3, 10), (), ())
    assert remote_path(fake) == "~/.cache/hfsync/hfsync-abababababababab.pyz"


# --- it runs with nothing but a bare python3 ------------------------------------------------------


def test_version_from_a_bare_interpreter(app: ZipApp, tmp_path: Path) -> None:
    proc = bare(app.path, "--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"hfsync, version {hfsync.__version__}"
    assert proc.stderr == ""


def test_version_from_a_fresh_venv_without_pip(app: ZipApp, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    nothing = subprocess.run([python, "-I", "-c", "import requests"], capture_output=True)
    assert nothing.returncode != 0, "the fresh venv has no requests of its own"
    proc = subprocess.run(
        [python, "-I", str(app.path), "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert hfsync.__version__ in proc.stdout


def test_everything_loads_from_the_archive_and_paramiko_is_absent(
    app: ZipApp, tmp_path: Path
) -> None:
    clean = bare("-c", "import requests", cwd=tmp_path)
    assert clean.returncode != 0, "without the archive a bare interpreter has no requests"

    code = f"""
import importlib.metadata, os, sysconfig
import _hfsync_boot
_hfsync_boot.setup()
import hfsync.cli, hfsync.cli.sync, hfsync.orchestrate, hfsync.hub, hfsync.targets.local
import hfsync.targets.cache, hfsync.transfer.engine, hfsync.cli.progress, hfsync.remote.sshcmd
stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
outside = sorted(
    name for name, mod in sys.modules.items()
    if getattr(mod, "__file__", None)
    and not mod.__file__.startswith({str(app.path)!r})
    and not os.path.realpath(mod.__file__).startswith(stdlib)
)
assert not outside, outside
try:
    import paramiko
except ImportError:
    pass
else:
    raise AssertionError("paramiko importable")
assert importlib.metadata.version("tqdm") == {dict(app.bundled)["tqdm"]!r}
print("ok")
"""
    proc = in_zip(app, code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_certifi_gives_a_readable_bundle_from_the_archive(app: ZipApp, tmp_path: Path) -> None:
    with zipfile.ZipFile(app.path) as zf:
        pem = zf.read("certifi/cacert.pem")
    extracted = app.path.parent / f"cacert-{hashlib.sha256(pem).hexdigest()[:16]}.pem"
    extracted.unlink(missing_ok=True)
    check = """
import ssl
import certifi, requests.utils
path = certifi.where()
assert requests.utils.DEFAULT_CA_BUNDLE_PATH == path, (requests.utils.DEFAULT_CA_BUNDLE_PATH, path)
assert open(path, "rb").read() == certifi.contents().encode("ascii")
context = ssl.create_default_context(cafile=path)
assert len(context.get_ca_certs()) > 100, len(context.get_ca_certs())
print(path)
"""
    # As the entry point runs it: extracted once, beside the archive, and reused.
    for _ in range(2):
        proc = in_zip(app, "import _hfsync_boot; _hfsync_boot.setup()\n" + check, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(extracted)
        assert extracted.read_bytes() == pem
    # Without the set-up (an unwritable directory), certifi's own temporary copy still works.
    proc = in_zip(app, check, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() != str(extracted)


def test_pure_charset_normalizer_serves_requests_without_warnings(
    app: ZipApp, tmp_path: Path
) -> None:
    code = """
import charset_normalizer.md, requests
assert charset_normalizer.md.__file__.endswith("md.py"), charset_normalizer.md.__file__
response = requests.models.Response()
response._content = "Grüße aus Köln, ça va très bien".encode("utf-8")
assert response.apparent_encoding == "utf-8", response.apparent_encoding
assert response.text.startswith("Grüße")
print("ok")
"""
    proc = in_zip(app, code, tmp_path)  # -W error: a RequestsDependencyWarning would fail it
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_sync_runs_from_the_archive(
    app: ZipApp, hub: HubEmulator, hf_env: Path, tmp_path: Path
) -> None:
    files = {
        "config.json": b'{"model_type": "demo"}\n',
        "model.safetensors": os.urandom(2 * 1024 * 1024 + 5),  # LFS: over the 1 MiB threshold
        "deep/notes.txt": b"nested\n",
    }
    hub.create_repo(REPO)
    hub.commit(REPO, files=files)
    expected = {**files, ".gitattributes": hub.read_file(REPO, ".gitattributes", "main")}
    work = tmp_path / "cwd"
    work.mkdir()
    dest = tmp_path / "dest"

    proc = bare(app.path, "sync", REPO, dest, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert user_files(dest) == expected

    hub.clear_log()
    again = bare(app.path, "sync", REPO, dest, cwd=work)
    assert again.returncode == 0, again.stderr
    assert downloads(hub) == [], "the second run finds everything current"

    cache = bare(app.path, "sync", REPO, "--json", "-q", cwd=work)  # the HF cache under HF_HOME
    assert cache.returncode == 0, cache.stderr
    snapshots = list((hf_env / "hub" / "models--org--model" / "snapshots").iterdir())
    assert len(snapshots) == 1
    assert (snapshots[0] / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_entry_point_parses_on_old_pythons(app: ZipApp) -> None:
    """A too-old python3 on the host must get the version message, not a SyntaxError."""
    import ast

    with zipfile.ZipFile(app.path) as zf:
        source = zf.read("__main__.py").decode()
    ast.parse(source, feature_version=(3, 4))
    assert f"sys.version_info < {app.min_python!r}" in source
    assert app.min_python >= (3, 10)


# --- which hfsync modules are left out, and why -----------------------------------------------


BASE = {
    "hfsync/__init__.py": "",
    "hfsync/__main__.py": "from .cli import main\n",
    "hfsync/orchestrate.py": "import requests\n",
    "hfsync/cli/__init__.py": "import click\nfrom . import sync\n",
    "hfsync/cli/sync.py": "def run():\n    from ..remote import push\n    import paramiko\n",
    "hfsync/remote/__init__.py": "",
    "hfsync/remote/ssh.py": "import paramiko\n",
    "hfsync/remote/push.py": "from .ssh import Client\n",
    "hfsync/remote/typed.py": (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import paramiko\n"
    ),
    "hfsync/remote/optional.py": "try:\n    import paramiko\nexcept ImportError:\n    pass\n",
    "hfsync/remote/connection_pool.py": "",
    "hfsync/testing/__init__.py": "import huggingface_hub\n",
}


def test_select_modules_follows_module_level_imports_only() -> None:
    excluded = select_modules(BASE, ["requests", "click"])
    assert set(excluded) == {
        "hfsync.remote.ssh",
        "hfsync.remote.push",  # through hfsync.remote.ssh
        "hfsync.remote.connection_pool",  # by name
        "hfsync.testing",
    }
    assert "paramiko" in excluded["hfsync.remote.ssh"]
    assert "hfsync.remote.ssh" in excluded["hfsync.remote.push"]


def test_a_cli_that_needs_paramiko_at_import_fails_the_build_with_the_chain() -> None:
    broken = {**BASE, "hfsync/cli/__init__.py": "from ..remote.push import go\n"}
    with pytest.raises(ZipAppError, match=r"hfsync.cli .*hfsync.remote.push.*paramiko"):
        select_modules(broken, ["requests", "click"])


def test_a_parent_package_that_needs_paramiko_takes_its_children_along() -> None:
    broken = {**BASE, "hfsync/remote/__init__.py": "from .ssh import Client\n"}
    excluded = select_modules(broken, ["requests", "click"])
    assert {"hfsync.remote", "hfsync.remote.typed", "hfsync.remote.optional"} <= set(excluded)


def test_an_unbundled_dependency_fails_the_build() -> None:
    with pytest.raises(ZipAppError, match="hfsync.orchestrate imports numpy"):
        select_modules({**BASE, "hfsync/orchestrate.py": "import numpy\n"}, ["click"])
    with pytest.raises(ZipAppError, match="hfsync.cli.sync imports rich"):
        select_modules({**BASE, "hfsync/cli/sync.py": "def f():\n    import rich\n"}, ["click"])
