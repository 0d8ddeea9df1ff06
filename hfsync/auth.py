"""Where the Hub token comes from, in the official client's order, and keeping it secret.

`--token` beats `HF_TOKEN` (and the legacy `HUGGING_FACE_HUB_TOKEN`), which beats the token file
(`HF_TOKEN_PATH`, default `$HF_HOME/token`). Reading the same places as `huggingface_hub` means a
user who ran `hf auth login` is logged in for hfsync too.
"""

from __future__ import annotations

import re

from . import env
from .errors import UsageError

# Whitespace or a control character inside a token: a header value cannot carry it (requests
# refuses it on every try), and it is never part of a real token -- usually a token file with
# a second line, or two values pasted together.
_BAD_INNER = re.compile(r"[\s\x00-\x1f\x7f]")
_MIN_REDACTED_PART = 4  # shorter pieces of a multi-line secret would mangle ordinary text


def resolve_token(explicit: str | None = None) -> str | None:
    """The token to send, or None for anonymous access.

    Surrounding whitespace (the newline an editor leaves in a token file) is stripped; inner
    whitespace or control characters are a usage error at once, naming where the token came
    from and never the token itself.
    """
    if explicit:
        return _clean(explicit, "--token")
    value = env.token_from_env()
    if value:
        name = "HF_TOKEN" if (env.get("HF_TOKEN") or "").strip() else "HUGGING_FACE_HUB_TOKEN"
        return _clean(value, name)
    path = env.token_path()
    try:
        value = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return _clean(value, f"the token file {path}") if value.strip() else None


def _clean(value: str, source: str) -> str:
    token = value.strip()
    if _BAD_INNER.search(token):
        raise UsageError(
            f"the token from {source} contains whitespace or a control character (a second "
            "line?); a Hub token is one word: fix it, or pass the right one with --token or "
            "HF_TOKEN"
        )
    return token


def redact(text: str, token: str | None) -> str:
    """Remove the token from a message before it is shown or logged.

    Every line of a multi-line secret is removed too (and its escaped `repr` form), so a value
    that was refused or mangled on its way into an error message still cannot leak.
    """
    if not token:
        return text
    parts = {token, token.strip(), repr(token)[1:-1]}
    parts.update(line.strip() for line in token.splitlines())
    for part in sorted(parts, key=len, reverse=True):
        if (part == token or len(part) >= _MIN_REDACTED_PART) and part in text:
            text = text.replace(part, "***")
    return text
