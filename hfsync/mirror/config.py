"""The mirror config (`hfsync mirror CONFIG.toml`): parse, check, expand into items.

A config is written once and then run unattended by cron for months, so every mistake is caught
at load time and reported as one usage error naming the file, the line and the key — a typo in
a key (`exlude`) is an error, not a silently ignored setting (docs/architecture.md, "Mirrors,
verify, doctor"). Relative paths are relative to the config file's folder, not to wherever
cron happens to start the process.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..files import REPO_TYPES, validate_repo_id
from ..units import parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

GLOBAL_KEYS = {
    "endpoint",
    "token_file",
    "connections",
    "bwlimit",
    "parallel",
    "cache_dir",
    "state_dir",
    "keep",
    "log_file",
    "metrics_file",
}
REPO_KEYS = {
    "id",
    "dest",
    "cache_dir",
    "repo_type",
    "revision",
    "include",
    "exclude",
    "delete",
    "max_delete",
    "atomic",
    "keep",
    "verify",
}
VERIFY_MODES = ("quick", "hash")


@dataclass(frozen=True)
class MirrorItem:
    """One (repo, revision, destination) to keep current; a `[[repos]]` entry with a list of
    revisions expands into one item per revision."""

    repo_id: str
    repo_type: str
    revision: str
    dest: Path | None  # None: the HF cache
    cache_dir: Path | None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    delete: bool = False
    max_delete: int | None = None
    atomic: bool = False
    keep: int = 2
    verify: str = "quick"

    @property
    def key(self) -> str:
        """Identity across runs (the state file and metrics labels use it)."""
        where = str(self.dest) if self.dest is not None else f"cache:{self.cache_dir or ''}"
        return f"{self.repo_type}:{self.repo_id}@{self.revision}->{where}"

    @property
    def label(self) -> str:
        """How lines and messages name the item: `org/name@main`."""
        prefix = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        return f"{prefix}{self.repo_id}@{self.revision}"


@dataclass(frozen=True)
class MirrorConfig:
    path: Path
    items: tuple[MirrorItem, ...]
    endpoint: str | None = None
    token_file: Path | None = None
    connections: int | None = None
    bwlimit: int | None = None
    parallel: int = 1
    state_dir: Path | None = None
    log_file: Path | None = None
    metrics_file: Path | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def lock_path(self) -> Path:
        return (self.state_dir or self.path.parent) / f"{self.path.name}.lock"

    @property
    def state_path(self) -> Path:
        return (self.state_dir or self.path.parent) / f"{self.path.name}.state.json"

    def where(self, key: str) -> str:
        """`CONFIG:LINE` of a global key, for errors found after loading (e.g. token_file)."""
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line else str(self.path)


def load_config(path: Path | str) -> MirrorConfig:
    """Read and check a mirror config; any problem is a UsageError naming line and key."""
    path = Path(path).expanduser().absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read mirror config {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Same `CONFIG:LINE:` prefix as every other config error, so editors can jump to it.
        found = re.search(r"at line (\d+)", str(exc))
        line = getattr(exc, "lineno", None) or (int(found.group(1)) if found else None)
        where = f"{path}:{line}" if line else str(path)
        raise UsageError(f"{where}: invalid TOML: {exc}") from exc
    return _Parser(path, text).parse(data)


class _Parser:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.base = path.parent

    # -- error reporting --------------------------------------------------------------------

    def line_of(self, key: str, entry: int | None) -> int | None:
        """The 1-based line of `key` at top level (entry None) or in the entry-th `[[repos]]`.

        tomllib keeps no positions for values, so the text is scanned: top-level keys come
        before the first table header, an entry's keys after its `[[repos]]` header.
        """
        pattern = re.compile(rf"""^\s*(["']?){re.escape(key)}\1\s*=""")
        seen = -1
        section: str | None = None
        for number, line in enumerate(self.lines, 1):
            stripped = line.strip()
            if stripped.startswith("["):
                section = stripped
                if re.match(r"^\[\[\s*repos\s*\]\]", stripped):
                    seen += 1
                    if entry == seen and key == "[[repos]]":
                        return number
                continue
            if entry is None:
                in_place = section is None
            else:
                in_place = seen == entry and bool(section and section.startswith("[["))
            if in_place and pattern.match(line):
                return number
        return None

    def error(self, message: str, key: str | None = None, entry: int | None = None) -> UsageError:
        line = self.line_of(key, entry) if key else None
        if line is None and entry is not None:
            line = self.line_of("[[repos]]", entry)
        where = f"{self.path}:{line}" if line else str(self.path)
        name = key if entry is None else f"repos[{entry + 1}].{key}"
        return UsageError(f"{where}: {name}: {message}" if key else f"{where}: {message}")

    # -- typed getters ----------------------------------------------------------------------

    def get(self, table: dict, key: str, kind: type | tuple, entry: int | None, what: str) -> Any:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.error(f"expected {what}, got a boolean", key, entry)
        if not isinstance(value, kind):
            raise self.error(f"expected {what}, got {_toml_type(value)}", key, entry)
        return value

    def strings(self, table: dict, key: str, entry: int | None) -> tuple[str, ...]:
        value = table.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error("expected a string or a list of non-empty strings", key, entry)
        return tuple(value)

    def path_value(self, table: dict, key: str, entry: int | None) -> Path | None:
        value = self.get(table, key, str, entry, "a path (string)")
        if value is None:
            return None
        if not value.strip():
            raise self.error("must not be empty", key, entry)
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else self.base / candidate

    def positive(self, table: dict, key: str, entry: int | None, top: int = 1 << 16) -> int | None:
        value = self.get(table, key, int, entry, "an integer")
        if value is not None and not 1 <= value <= top:
            raise self.error(f"must be between 1 and {top}, not {value}", key, entry)
        return value

    # -- the schema -------------------------------------------------------------------------

    def parse(self, data: dict) -> MirrorConfig:
        for key in data:
            if key != "repos" and key not in GLOBAL_KEYS:
                raise self.error(f"unknown key (known: {', '.join(sorted(GLOBAL_KEYS))})", key)
        endpoint = self.get(data, "endpoint", str, None, "a URL (string)")
        if endpoint is not None and not re.match(r"^https?://[^/\s]+", endpoint):
            raise self.error(f"expected an http(s) URL, not {endpoint!r}", "endpoint")
        bwlimit = data.get("bwlimit")
        if isinstance(bwlimit, bool) or not isinstance(bwlimit, (str, int, type(None))):
            raise self.error("expected a size such as '50M' or bytes/s", "bwlimit")
        if bwlimit is not None:
            try:
                bwlimit = parse_size(str(bwlimit), "bwlimit")
            except UsageError as exc:
                raise self.error(str(exc).removeprefix("bwlimit: "), "bwlimit") from exc
        keep = self.positive(data, "keep", None, 1000) or 2
        cache_dir = self.path_value(data, "cache_dir", None)
        repos = data.get("repos")
        if repos is None:
            raise self.error("no [[repos]] entries: nothing to mirror")
        if not isinstance(repos, list) or not all(isinstance(r, dict) for r in repos):
            raise self.error("expected [[repos]] tables", "repos")
        items: list[MirrorItem] = []
        for index, repo in enumerate(repos):
            items.extend(self.parse_repo(repo, index, cache_dir, keep))
        seen: dict[str, int] = {}
        for item in items:
            if item.key in seen:
                raise self.error(f"{item.label} is listed twice for the same destination")
            seen[item.key] = 1
        lines = {key: line for key in GLOBAL_KEYS if (line := self.line_of(key, None))}
        return MirrorConfig(
            path=self.path,
            items=tuple(items),
            endpoint=endpoint,
            token_file=self.path_value(data, "token_file", None),
            connections=self.positive(data, "connections", None, 256),
            bwlimit=bwlimit,
            parallel=self.positive(data, "parallel", None, 64) or 1,
            state_dir=self.path_value(data, "state_dir", None),
            log_file=self.path_value(data, "log_file", None),
            metrics_file=self.path_value(data, "metrics_file", None),
            lines=lines,
        )

    def parse_repo(
        self, repo: dict, index: int, cache_dir: Path | None, keep: int
    ) -> list[MirrorItem]:
        for key in repo:
            if key not in REPO_KEYS:
                known = ", ".join(sorted(REPO_KEYS))
                raise self.error(f"unknown key (known: {known})", key, index)
        repo_id = self.get(repo, "id", str, index, "a repo id (string)")
        if repo_id is None:
            raise self.error('missing the repo id (id = "org/name")', None, index)
        try:
            validate_repo_id(repo_id)
        except UsageError as exc:
            raise self.error(str(exc), "id", index) from exc
        repo_type = self.get(repo, "repo_type", str, index, "a string") or "model"
        if repo_type not in REPO_TYPES:
            raise self.error(f"must be one of {', '.join(REPO_TYPES)}", "repo_type", index)
        revisions = self.strings(repo, "revision", index) or ("main",)
        if len(set(revisions)) != len(revisions):
            raise self.error("a revision is listed twice", "revision", index)
        dest = self.path_value(repo, "dest", index)
        atomic = bool(self.get(repo, "atomic", bool, index, "true or false"))
        verify = self.get(repo, "verify", str, index, "a string") or "quick"
        if verify not in VERIFY_MODES:
            raise self.error(f"must be one of {', '.join(VERIFY_MODES)}", "verify", index)
        max_delete = self.get(repo, "max_delete", int, index, "an integer")
        if max_delete is not None and max_delete < 0:
            raise self.error("must not be negative", "max_delete", index)
        repo_cache = self.path_value(repo, "cache_dir", index)
        if dest is not None and repo_cache is not None:
            raise self.error("give either dest or cache_dir, not both", "cache_dir", index)
        common = dict(
            repo_id=repo_id,
            repo_type=repo_type,
            cache_dir=None if dest is not None else repo_cache or cache_dir,
            include=self.strings(repo, "include", index),
            exclude=self.strings(repo, "exclude", index),
            delete=bool(self.get(repo, "delete", bool, index, "true or false")),
            max_delete=max_delete,
            atomic=atomic and dest is not None,  # the HF cache is atomic already (ref last)
            keep=self.positive(repo, "keep", index, 1000) or keep,
            verify=verify,
        )
        items = []
        for revision in revisions:
            where = dest
            if dest is not None and len(revisions) > 1:
                where = dest / revision.replace("/", "--")  # one folder per revision
            items.append(MirrorItem(revision=revision, dest=where, **common))
        return items


def _toml_type(value: object) -> str:
    names = {str: "a string", int: "an integer", float: "a float", list: "an array"}
    return names.get(type(value), "a table" if isinstance(value, dict) else type(value).__name__)
