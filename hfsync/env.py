"""The one place that reads the environment (HF_* as the official client does, HFSYNC_*).

Every value is read when asked for, never at import time, so a test (or a long-lived library
user) that changes the environment between runs gets what it set, and no test knob can leak
into a production default.
"""

from __future__ import annotations

import os
from pathlib import Path

from .defaults import DEFAULT_ENDPOINT

_TRUE = {"1", "ON", "YES", "TRUE"}
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def get(name: str) -> str | None:
    """A variable's value, or None when unset or empty."""
    return os.environ.get(name) or None


def flag(name: str) -> bool:
    """An environment flag as `huggingface_hub` reads it (1/ON/YES/TRUE, any case)."""
    return os.environ.get(name, "").upper() in _TRUE


def hf_home() -> Path:
    """`$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`."""
    home = get("HF_HOME")
    if home:
        return Path(home).expanduser()
    return cache_home() / "huggingface"


def cache_home() -> Path:
    """`$XDG_CACHE_HOME`, else `~/.cache`."""
    xdg = get("XDG_CACHE_HOME")
    return Path(xdg).expanduser() if xdg else Path.home() / ".cache"


def hfsync_cache() -> Path:
    """hfsync's own local caches (the pull archive's builds, hosts' interpreters):
    `$XDG_CACHE_HOME/hfsync`, else `~/.cache/hfsync`."""
    return cache_home() / "hfsync"


def hub_cache() -> Path:
    """`HF_HUB_CACHE` (legacy `HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`."""
    chosen = get("HF_HUB_CACHE") or get("HUGGINGFACE_HUB_CACHE")
    return Path(os.path.expandvars(os.path.expanduser(chosen))) if chosen else hf_home() / "hub"


def endpoint(explicit: str | None = None) -> str:
    """`--endpoint`, else `HF_ENDPOINT`, else the public Hub; without a trailing slash."""
    return (explicit or get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    return flag("HF_HUB_OFFLINE")


def symlinks_disabled() -> bool:
    return flag("HF_HUB_DISABLE_SYMLINKS")


def token_from_env() -> str | None:
    """`HF_TOKEN`, else the legacy `HUGGING_FACE_HUB_TOKEN` (raw; `auth` cleans it)."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = os.environ.get(var, "")
        if value.strip():
            return value
    return None


def token_path() -> Path:
    """`HF_TOKEN_PATH`, else `$HF_HOME/token` (where `hf auth login` writes)."""
    return Path(get("HF_TOKEN_PATH") or hf_home() / "token").expanduser()


def proxy_configured() -> bool:
    return any(get(v) or get(v.upper()) for v in PROXY_VARS)


def ca_bundle() -> str | None:
    return get("REQUESTS_CA_BUNDLE") or get("CURL_CA_BUNDLE")


def backoff_base(default: float = 0.5) -> float:
    """`HFSYNC_BACKOFF_BASE`: seconds of the first retry's backoff ceiling (tests shorten it)."""
    try:
        return float(get("HFSYNC_BACKOFF_BASE") or default)
    except ValueError:
        return default
