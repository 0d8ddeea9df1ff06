"""A self-contained zipapp of the installed hfsync, to run hfsync itself on an SSH host.

Remote pull is the same program on both ends, as rsync's ``--server`` mode is (DESIGN §6): the
local side sends this archive once, the host caches it under its content hash
(:func:`remote_path`) and runs ``python3 -I -S hfsync-<hash>.pyz sync …``. So the archive has
to work with nothing but a stock ``python3`` on the host: no pip, no network to PyPI, no
compiled code (the host's platform and Python version are unknown), no site-packages needed.

What goes in (:func:`build_zipapp`):

- every ``.py`` of the installed ``hfsync`` package, found through ``hfsync.__file__`` (so an
  editable install ships the working tree), except what cannot or need not run remotely:
  ``hfsync/testing/`` (the Hub emulator: test tooling, never imported by the product),
  ``hfsync/remote/connection*`` (the paramiko connection layer: the host does not open SSH
  connections), and every module that imports paramiko (or another local-only library) at
  module level, directly or through another excluded module — it could not even be imported
  without paramiko. A lazy import inside a function does not exclude a module. The build fails
  if ``hfsync.cli`` or the sync pipeline would be excluded, naming the import chain.
- the pure-Python runtime dependencies: requests, urllib3, idna, certifi (with ``cacert.pem``),
  charset_normalizer, click, tqdm — their ``.py`` sources only. charset_normalizer's wheels
  carry mypyc-compiled ``md``/``cd`` extensions next to the pure ``md.py``/``cd.py``; only the
  pure ones are shipped, which charset_normalizer runs as is (slower, but it only guesses the
  encoding of text bodies, which hfsync never asks for). A compiled module without a pure
  counterpart fails the build rather than the remote run.
- a header-only ``METADATA`` and the license files of each distribution, so
  ``importlib.metadata.version("tqdm")`` works from the archive and the licenses travel with
  the code.
- ``__main__.py`` (checks the Python version, then runs ``hfsync.cli:main``) and
  ``_hfsync_boot.py``, which makes TLS work from a zip: OpenSSL needs a real file for the CA
  bundle, so ``cacert.pem`` is extracted next to the archive once, keyed by its hash, and
  ``certifi.where()`` returns that file (falling back to certifi's own per-run temporary copy
  when the directory is not writable).

The archive is deterministic — sorted entries, fixed timestamps (1980-01-01) and modes, no
``__pycache__``, no build paths inside — so the same installed sources always give the same
bytes and the same :attr:`ZipApp.sha256`, and the host's cached copy stays valid across local
machines with the same versions. Builds are cached locally (``$XDG_CACHE_HOME/hfsync/zipapp``,
``~/.cache/hfsync/zipapp``), keyed by the input files' names, sizes and mtimes: a repeated call
costs a directory walk and one hash of the finished archive, not a rebuild.
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import env
from ..errors import HfsyncError
from ..version import __version__

# Bump when the archive layout or the generated files change in a way the input key cannot see.
_FORMAT = 1

# Top-level import names of the bundled distributions (here the same as the import names).
DEPENDENCIES = ("requests", "urllib3", "idna", "certifi", "charset_normalizer", "click", "tqdm")

# Non-Python files a bundled package reads at run time.
_DATA_FILES = {"certifi": ("cacert.pem",)}

# Libraries only the local side has. A module importing one at module level is left out; a lazy
# import of one (inside a function) is fine: that code path never runs on the host.
LOCAL_ONLY = {
    "paramiko": "the SSH client: only the local side opens SSH connections",
    "cryptography": "compiled; only paramiko needs it",
    "nacl": "compiled; only paramiko needs it",
    "bcrypt": "compiled; only paramiko needs it",
    "huggingface_hub": "the official client: tests and compatibility checks only",
}

# Excluded by module name (glob), whatever they import.
_TESTING = "test tooling (the Hub emulator), never imported by the product"
_EXCLUDED_PATHS = {
    "hfsync.testing": _TESTING,
    "hfsync.testing.*": _TESTING,
    "hfsync.remote.connection*": "the paramiko SSH connection layer: local side only",
}

# What the host must be able to run; an excluded one fails the build.
REQUIRED_MODULES = ("hfsync", "hfsync.__main__", "hfsync.cli", "hfsync.orchestrate")

BOOT_MODULE = "_hfsync_boot"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
_SKIP_DIRS = {"__pycache__", "tests", "test"}
_LICENSE_NAMES = ("LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS")
_KEEP_BUILDS = 3  # older builds left in the cache directory besides the current one
_REMOTE_DIR = "~/.cache/hfsync"


class ZipAppError(HfsyncError):
    """The installed hfsync cannot be packed into a zipapp that runs without its local extras."""


@dataclass(frozen=True)
class ZipApp:
    """A built archive: where it is locally, its content hash (the remote cache key) and size.

    ``excluded`` lists the hfsync modules left out, each with the reason; ``bundled`` the
    distributions inside with their versions; ``min_python`` the oldest Python the archive's
    code declares support for (the host's ``python3`` must be at least that). ``built`` is False
    when the call reused an earlier build.
    """

    path: Path
    sha256: str
    size: int
    version: str
    min_python: tuple[int, int]
    bundled: tuple[tuple[str, str], ...]
    excluded: tuple[tuple[str, str], ...]
    built: bool = field(default=True, compare=False)


def remote_path(zipapp: ZipApp) -> str:
    """Where the host caches the archive: ``~/.cache/hfsync/hfsync-<sha256[:16]>.pyz``.

    Named by content, so a host that already has this exact archive needs nothing sent, and
    two local machines with the same versions share one remote copy. The ``~`` is for a shell
    on the host; over SFTP use the path relative to the home directory (drop ``~/``).
    """
    return f"{_REMOTE_DIR}/hfsync-{zipapp.sha256[:16]}.pyz"


def default_dir() -> Path:
    """The local build cache: ``$XDG_CACHE_HOME/hfsync/zipapp``, else ``~/.cache/hfsync/zipapp``."""
    return env.hfsync_cache() / "zipapp"


def build_zipapp(out_dir: Path | None = None) -> ZipApp:
    """The zipapp of the installed hfsync, built into ``out_dir`` (default: :func:`default_dir`)
    unless an up-to-date build is already there.

    Offline and local: it only reads the installed packages. Reuse is decided by a key over the
    input files' archive names, sizes and mtimes (cheap: no file is read), and the reused file
    is hashed again, so the returned ``sha256`` is always that of the bytes on disk.
    """
    out_dir = Path(out_dir) if out_dir is not None else default_dir()
    sources = _collect_sources()
    key = _input_key(sources)
    stem = f"hfsync-{__version__}-{key[:16]}"
    pyz, info = out_dir / f"{stem}.pyz", out_dir / f"{stem}.json"
    cached = _reuse(pyz, info)
    if cached is not None:
        return cached

    data, manifest = _build(sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(pyz, data)
    zipapp = ZipApp(
        path=pyz,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        version=__version__,
        min_python=manifest.min_python,
        bundled=manifest.bundled,
        excluded=manifest.excluded,
    )
    _write_atomic(info, json.dumps(_to_json(zipapp), indent=1, sort_keys=True).encode())
    _prune(out_dir, keep={pyz.name, info.name})
    return zipapp


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """One input: its name in the archive and the file it comes from (None: generated)."""

    arcname: str
    path: Path | None
    text: str | None = None  # generated content (a stripped METADATA)


@dataclass(frozen=True)
class _Sources:
    files: tuple[_Source, ...]
    dists: tuple[tuple[str, str, str | None], ...]  # (name, version, Requires-Python)


def _collect_sources() -> _Sources:
    """Every candidate input file, before the import analysis decides what to leave out."""
    # hfsync.__file__, read through sys.modules: a static `import hfsync` would make this layer
    # depend on the package root, which reaches up to the orchestration (import-linter).
    root = Path(str(sys.modules["hfsync"].__file__)).resolve().parent
    files = [_Source(f"hfsync/{p}", root / p) for p in _py_files(root)]
    # hfsync's own metadata is written, not copied: an editable install has it twice (an
    # egg-info in the work tree, a dist-info in site-packages) and which one importlib finds
    # depends on the current directory; the archive must not.
    own = f"Metadata-Version: 2.1\nName: hfsync\nVersion: {__version__}\n"
    files.append(_Source(f"hfsync-{__version__}.dist-info/METADATA", None, own))
    dists: list[tuple[str, str, str | None]] = [("hfsync", __version__, None)]
    for name in DEPENDENCIES:
        package_root, package_files = _package_files(name)
        files.extend(package_files)
        meta, version, requires_python = _dist_files(name, package_root)
        files.extend(meta)
        dists.append((name, version, requires_python))
    return _Sources(tuple(sorted(files, key=lambda s: s.arcname)), tuple(dists))


def _py_files(root: Path, skip: Iterable[str] = ()) -> Iterator[str]:
    """Relative posix paths of the ``.py`` files under root, in a stable order."""
    skip = set(skip)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield (rel / name).as_posix()


def _package_files(name: str) -> tuple[Path, list[_Source]]:
    """A dependency's pure-Python sources and data files, as the running interpreter finds it,
    and the directory it was found in (where its metadata is)."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ZipAppError(f"cannot build the zipapp: {name} is not installed")
    if spec.submodule_search_locations is None:  # a single-module distribution
        origin = Path(str(spec.origin))
        if origin.suffix != ".py":
            raise ZipAppError(f"cannot build the zipapp: {name} is compiled ({origin.name})")
        return origin.parent, [_Source(origin.name, origin)]
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    _check_pure(name, root)
    found = [_Source(f"{name}/{p}", root / p) for p in _py_files(root, skip=_SKIP_DIRS)]
    for data in _DATA_FILES.get(name, ()):
        if not (root / data).is_file():
            raise ZipAppError(f"cannot build the zipapp: {name}/{data} is missing")
        found.append(_Source(f"{name}/{data}", root / data))
    return root.parent, found


def _check_pure(name: str, root: Path) -> None:
    """Fail when a compiled module has no pure-Python source beside it (it would not import)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for fname in filenames:
            if fname.endswith((".so", ".pyd", ".dylib")):
                module = fname.split(".", 1)[0]
                if module.endswith("__mypyc"):  # mypyc's shared runtime, not a module of its own
                    continue
                if not (Path(dirpath) / f"{module}.py").is_file():
                    rel = (Path(dirpath) / fname).relative_to(root)
                    raise ZipAppError(
                        f"cannot build the zipapp: {name}/{rel} is compiled and has no "
                        f"pure-Python {module}.py to ship instead"
                    )


def _dist_files(name: str, where: Path) -> tuple[list[_Source], str, str | None]:
    """A header-only METADATA and the license files of the distribution providing ``name``,
    its version and its Requires-Python.

    The distribution is looked up in ``where``, the directory its code was found in, so the
    metadata describes the code shipped even when another copy is installed elsewhere. The
    header is parsed here rather than through ``Distribution.metadata``, which runs the email
    parser over the whole long description on every access (most of a cached call's time).
    """
    dist = next(iter(importlib.metadata.Distribution.discover(name=name, path=[str(where)])), None)
    if dist is None:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise ZipAppError(f"cannot build the zipapp: no distribution {name} found") from exc
    metadata = (dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "").replace(
        "\r\n", "\n"
    )
    header = metadata.split("\n\n", 1)[0].rstrip("\n") + "\n"
    fields: dict[str, str] = {}
    for line in header.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line[:1].isspace():
            fields.setdefault(key.strip().lower(), value.strip())
    if "version" not in fields:
        raise ZipAppError(f"cannot build the zipapp: {name} has no readable METADATA")
    dist_name = re.sub(r"[-_.]+", "_", fields.get("name", name))
    info_dir = f"{dist_name}-{fields['version']}.dist-info"
    out = [_Source(f"{info_dir}/METADATA", None, header)]
    for entry in dist.files or ():
        parts = entry.parts
        if len(parts) >= 2 and parts[0].endswith(".dist-info"):
            inner = parts[1:]
            if inner[0] == "licenses" or inner[-1].upper().startswith(_LICENSE_NAMES):
                path = Path(str(dist.locate_file(entry)))
                if path.is_file():
                    out.append(_Source(f"{info_dir}/{'/'.join(inner)}", path))
    return out, fields["version"], fields.get("requires-python")


def _input_key(sources: _Sources) -> str:
    """A hash of what the archive is made of, from names, sizes and mtimes (no file reads)."""
    h = hashlib.sha256(f"hfsync-zipapp {_FORMAT}\n".encode())
    for src in sources.files:
        if src.path is None:
            h.update(f"{src.arcname}\0text\0{src.text}\n".encode())
        else:
            st = src.path.stat()
            h.update(f"{src.arcname}\0{src.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    h.update(repr(sources.dists).encode())
    return h.hexdigest()


# --- the import analysis --------------------------------------------------------------------


@dataclass
class _Imports:
    """A module's imports: run at import time, inside functions, and optional (try/except)."""

    top: set[str] = field(default_factory=set)
    lazy: set[str] = field(default_factory=set)
    optional: set[str] = field(default_factory=set)


_TRY_NODES = (ast.Try, getattr(ast, "TryStar", ast.Try))  # try/except*, Python 3.11+


def _module_name(arcname: str) -> str:
    dotted = arcname.removesuffix(".py").replace("/", ".")
    return dotted.removesuffix(".__init__")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_version_test(test: ast.expr) -> bool:
    """``if sys.version_info >= (3, 11): import tomllib else: import tomli`` and the like."""
    return any(
        isinstance(n, ast.Attribute) and n.attr in ("version_info", "platform")
        for n in ast.walk(test)
    )


def _catches_import_error(handlers: list[ast.ExceptHandler]) -> bool:
    names = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
    for handler in handlers:
        if handler.type is None:
            return True
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(t, ast.Name) and t.id in names for t in types):
            return True
    return False


def scan_imports(source: str, module: str, is_package: bool, known: set[str]) -> _Imports:
    """The absolute names a module imports, split by when they run.

    ``from X import y`` counts as importing ``X.y`` when that is a module in ``known``. Imports
    under ``if TYPE_CHECKING:`` never run and are ignored; those in a ``try`` that catches
    ImportError are optional (the module copes without them), and so are those chosen by
    Python version or platform (``tomllib`` or ``tomli``): only one branch runs on a host, and
    the build cannot know which.
    """
    result = _Imports()
    package = module if is_package else module.rpartition(".")[0]

    def record(node: ast.Import | ast.ImportFrom, bucket: set[str]) -> None:
        if isinstance(node, ast.Import):
            bucket.update(alias.name for alias in node.names)
            return
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join([*base, node.module] if node.module else base)
        else:
            target = node.module or ""
        bucket.add(target)
        for alias in node.names:
            if f"{target}.{alias.name}" in known:
                bucket.add(f"{target}.{alias.name}")

    def walk(body: list[ast.stmt], top: bool, optional: bool) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                bucket = result.optional if optional else result.top if top else result.lazy
                record(node, bucket)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                walk(node.body, False, optional)
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                walk(node.orelse, top, optional)
            elif isinstance(node, ast.If) and _is_version_test(node.test):
                walk(node.body, top, True)
                walk(node.orelse, top, True)
            elif isinstance(node, _TRY_NODES):
                walk(node.body, top, optional or _catches_import_error(node.handlers))
                for handler in node.handlers:
                    walk(handler.body, top, optional)
                walk(node.orelse, top, optional)
                walk(node.finalbody, top, optional)
            else:
                for name in ("body", "orelse", "finalbody"):
                    child = getattr(node, name, None)
                    if isinstance(child, list):
                        walk([c for c in child if isinstance(c, ast.stmt)], top, optional)
                for case in getattr(node, "cases", ()):
                    walk(case.body, top, optional)

    walk(ast.parse(source).body, True, False)
    return result


def select_modules(sources: dict[str, str], bundled: Iterable[str]) -> dict[str, str]:
    """Which hfsync modules to leave out, each with the reason; raises if a required one is.

    ``sources`` maps archive names (``hfsync/cli/__init__.py``) to source text. A module is left
    out when its path is excluded, when it imports a local-only library at module level, or when
    anything it runs at import time (an imported hfsync module, its own parent packages) is left
    out. Any other third-party import that the archive would not satisfy is an error: the
    remote run would fail on it.
    """
    modules = {_module_name(a): (a, text) for a, text in sources.items()}
    known = set(modules)
    bundled = {*bundled, "hfsync", BOOT_MODULE}
    excluded: dict[str, str] = {}
    deps: dict[str, set[str]] = {}
    unknown: list[str] = []
    for name, (arcname, text) in sorted(modules.items()):
        pattern = next((p for p in _EXCLUDED_PATHS if fnmatch.fnmatchcase(name, p)), None)
        if pattern is not None:
            excluded[name] = _EXCLUDED_PATHS[pattern]
            continue
        imports = scan_imports(text, name, arcname.endswith("/__init__.py"), known)
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        deps[name] = {m for m in imports.top | parents if m in known and m != name}
        for imported in sorted(imports.top | imports.lazy):
            top = imported.partition(".")[0]
            if top in bundled or top in sys.stdlib_module_names:
                continue
            if top in LOCAL_ONLY:
                if imported in imports.top and name not in excluded:
                    excluded[name] = f"imports {top} at module level ({LOCAL_ONLY[top]})"
                continue
            unknown.append(f"{name} imports {imported}")
    changed = True
    while changed:  # propagate: importing a left-out module at import time fails too
        changed = False
        for name, needs in sorted(deps.items()):
            if name in excluded:
                continue
            cause = next((m for m in sorted(needs) if m in excluded), None)
            if cause is not None:
                excluded[name] = f"imports {cause} at module level, which is left out"
                changed = True
    for required in REQUIRED_MODULES:
        if required in excluded:
            raise ZipAppError(
                f"cannot build the zipapp: {required} would be left out "
                f"({_chain(required, excluded)}); the host has no paramiko, so import the SSH "
                "layer lazily, inside the function that needs it"
            )
    unknown = [u for u in unknown if u.split(" ", 1)[0] not in excluded]
    if unknown:
        raise ZipAppError(
            "cannot build the zipapp: hfsync imports libraries it does not bundle ("
            + "; ".join(unknown)
            + "); add them to hfsync.remote.zipapp.DEPENDENCIES (pure Python only) or LOCAL_ONLY"
        )
    return excluded


def _chain(module: str, excluded: dict[str, str]) -> str:
    """``a: imports b …; b: imports paramiko …`` — why a module is left out, to the root cause."""
    steps, seen = [], set()
    while module in excluded and module not in seen:
        seen.add(module)
        reason = excluded[module]
        steps.append(f"{module} {reason}")
        match = re.match(r"imports (\S+) at module level, which is left out", reason)
        if not match:
            break
        module = match.group(1)
    return "; ".join(steps)


# --- the archive ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Manifest:
    min_python: tuple[int, int]
    bundled: tuple[tuple[str, str], ...]
    excluded: tuple[tuple[str, str], ...]


def _build(sources: _Sources) -> tuple[bytes, _Manifest]:
    """The archive's bytes: a function of the input contents only (not paths, times or order)."""
    contents: dict[str, bytes] = {}
    for src in sources.files:
        contents[src.arcname] = src.text.encode() if src.path is None else src.path.read_bytes()
    hfsync_sources = {
        a: data.decode("utf-8") for a, data in contents.items() if a.startswith("hfsync/")
    }
    excluded = select_modules(hfsync_sources, DEPENDENCIES)
    for arcname in hfsync_sources:
        if _module_name(arcname) in excluded:
            del contents[arcname]
    min_python = max(
        [(3, 10), *(_min_python(spec) for _, _, spec in sources.dists if spec)],
    )
    bundled = tuple((name, version) for name, version, _ in sources.dists)
    cacert = hashlib.sha256(contents["certifi/cacert.pem"]).hexdigest()
    contents[f"{BOOT_MODULE}.py"] = _boot_source(bundled, cacert, min_python).encode()
    contents["__main__.py"] = _main_source(min_python).encode()

    buf = io.BytesIO()
    buf.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buf, "w") as zf:
        for arcname in sorted(contents):
            info = zipfile.ZipInfo(arcname, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the mode below is read as such everywhere
            info.external_attr = 0o100644 << 16
            zf.writestr(info, contents[arcname], compresslevel=9)
    manifest = _Manifest(min_python, bundled, tuple(sorted(excluded.items())))
    return buf.getvalue(), manifest


def _min_python(spec: str) -> tuple[int, int]:
    """The lower bound of a Requires-Python such as ``>=3.10`` (``(3, 0)`` when it has none)."""
    best = (3, 0)
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(>=|>|~=|==)\s*(\d+)\.(\d+)(?:\.\d+)*\s*", part)
        if match:
            best = max(best, (int(match.group(2)), int(match.group(3))))
    return best


def _main_source(min_python: tuple[int, int]) -> str:
    # Kept to syntax any python3 parses, so a too-old one prints the reason, not a SyntaxError.
    return f'''\
"""hfsync zipapp entry point (generated by hfsync.remote.zipapp): runs hfsync.cli:main."""
import sys

if sys.version_info < {min_python!r}:
    sys.stderr.write(
        "hfsync: needs Python %d.%d or newer; %s is %s\\n"
        % ({min_python[0]}, {min_python[1]}, sys.executable, sys.version.split()[0])
    )
    sys.exit(1)

import {BOOT_MODULE}

{BOOT_MODULE}.setup()

from hfsync.cli import main

main(prog_name="hfsync")
'''


_BOOT = '''\
"""Set-up for hfsync running from its zipapp (generated by hfsync.remote.zipapp).

Python imports pure-Python code from a zip, but OpenSSL needs a real file for the CA bundle, so
certifi's cacert.pem is extracted next to the archive once, named by its hash, and
certifi.where() returns that file from then on (before requests reads it). Where that directory
is not writable, certifi's own fallback applies: a temporary copy per run, removed at exit.
"""

from __future__ import annotations

import hashlib
import os

@@CONSTANTS@@


def archive() -> str | None:
    """The path of the zip this module was imported from (None when not from a zip)."""
    path = getattr(globals().get("__loader__"), "archive", None)
    return path if isinstance(path, str) else None


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def ca_bundle() -> str | None:
    """certifi's CA bundle as a file beside the archive, extracted on first use."""
    zip_path = archive()
    if zip_path is None:
        return None
    name = "cacert-%s.pem" % CACERT_SHA256[:16]
    target = os.path.join(os.path.dirname(os.path.abspath(zip_path)), name)
    try:
        if _sha256(target) == CACERT_SHA256:
            return target
    except OSError:
        pass
    from importlib.resources import files

    data = files("certifi").joinpath("cacert.pem").read_bytes()
    if hashlib.sha256(data).hexdigest() != CACERT_SHA256:
        return None
    tmp = "%s.%d.tmp" % (target, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return None
    return target


def setup() -> None:
    """Point certifi at a real file; must run before requests is imported."""
    path = ca_bundle()
    if path is None:
        return
    import certifi
    import certifi.core

    def where() -> str:
        return path

    certifi.where = certifi.core.where = where
'''


def _boot_source(bundled: tuple[tuple[str, str], ...], cacert: str, min_python: tuple) -> str:
    constants = "\n".join(
        [
            f"HFSYNC_VERSION = {__version__!r}",
            f"BUNDLED = {dict(bundled)!r}",
            f"CACERT_SHA256 = {cacert!r}",
            f"MIN_PYTHON = {tuple(min_python)!r}",
        ]
    )
    return _BOOT.replace("@@CONSTANTS@@", constants)


# --- the local cache ------------------------------------------------------------------------


def _to_json(z: ZipApp) -> dict:
    return {
        "sha256": z.sha256,
        "size": z.size,
        "version": z.version,
        "min_python": list(z.min_python),
        "bundled": [list(b) for b in z.bundled],
        "excluded": [list(e) for e in z.excluded],
    }


def _reuse(pyz: Path, info: Path) -> ZipApp | None:
    """An earlier build of the same inputs, if both files are there and agree."""
    try:
        meta = json.loads(info.read_text())
        data = pyz.read_bytes()
    except (OSError, ValueError):
        return None
    sha = hashlib.sha256(data).hexdigest()
    if meta.get("sha256") != sha or meta.get("version") != __version__:
        return None
    try:
        major, minor = meta["min_python"]
        return ZipApp(
            path=pyz,
            sha256=sha,
            size=len(data),
            version=__version__,
            min_python=(int(major), int(minor)),
            bundled=tuple((str(n), str(v)) for n, v in meta["bundled"]),
            excluded=tuple((str(m), str(r)) for m, r in meta["excluded"]),
            built=False,
        )
    except (KeyError, TypeError, ValueError):
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write beside the target, then rename: a concurrent build or reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _prune(out_dir: Path, keep: set[str]) -> None:
    """Remove all but the newest few earlier builds (an editable install makes one per edit)."""
    builds = []
    for p in out_dir.glob("hfsync-*.pyz"):
        if p.name not in keep:
            with contextlib.suppress(OSError):
                builds.append((p.stat().st_mtime_ns, p))
    for _, p in sorted(builds, reverse=True)[_KEEP_BUILDS:]:
        for victim in (p, p.with_suffix(".json")):
            with contextlib.suppress(OSError):
                victim.unlink()
