"""Where the Hub token comes from, in the official client's order.

`--token` beats `HF_TOKEN` (and the legacy `HUGGING_FACE_HUB_TOKEN`), which beats the token file
(`HF_TOKEN_PATH`, default `$HF_HOME/token`). Reading the same places as `huggingface_hub` means a
user who ran `hf auth login` is logged in for hfsync too.
"""

from __future__ import annotations

from . import env


def resolve_token(explicit: str | None = None) -> str | None:
    """The token to send, or None for anonymous access."""
    if explicit:
        return explicit.strip()
    value = env.token_from_env()
    if value:
        return value.strip()
    try:
        value = env.token_path().read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return value or None


def redact(text: str, token: str | None) -> str:
    """Remove the token from a message before it is shown or logged."""
    if token and token in text:
        text = text.replace(token, "***")
    return text
