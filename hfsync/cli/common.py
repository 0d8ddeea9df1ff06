"""What every command shares: the one error handler and the option groups.

Every failure ends as one line on stderr and the exit code of docs/architecture.md ("Exit
codes"); with `--json` the same error is also one JSON document on stdout, because scripts
parse stdout. A traceback is shown only with `--debug`, and the token is scrubbed from
anything printed, tracebacks included.

`hfsync --version` and `--help` import this module (for `--debug`), so it imports only what
they need; what a command needs is imported where the command uses it (tests/test_startup.py).
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..defaults import INTERRUPTED_MESSAGE
from ..errors import HfsyncError

if TYPE_CHECKING:
    import signal


def fail(
    message: str, code: int, *, kind: str, as_json: bool = False, json_lines: bool = False
) -> None:
    """Print one error line (and, for --json, one error document; for --progress-json, one
    error event line) and exit with `code`."""
    if json_lines:
        from .progress_json import error_line

        click.echo(error_line(kind, message, code))
    elif as_json:
        import json

        doc = {"ok": False, "error": {"kind": kind, "message": message, "exit_code": code}}
        click.echo(json.dumps(doc, indent=2))
    from .render import printable  # here, not at import: `hfsync --version` renders nothing

    # One line, whatever a local file or folder name in the message contains.
    click.echo(f"hfsync: error: {printable(message)}", err=True)
    sys.exit(code)


# A token that reached the process by another way than an option (`sync --token-stdin`):
# error text is scrubbed of it too.
_secrets: list[str] = []


def remember_secret(token: str) -> None:
    _secrets.append(token)


def _token_for_redaction(kwargs: dict[str, Any]) -> str | None:
    if _secrets:
        return _secrets[-1]
    from ..auth import resolve_token

    try:
        return resolve_token(kwargs.get("token"))
    except Exception:  # noqa: BLE001 - a broken token source must not hide the real error
        return kwargs.get("token")


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Map every exception to one line and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..auth import redact

        debug = kwargs.get("debug", False)
        as_json = kwargs.get("as_json", False)
        lines = {"json_lines": bool(kwargs.get("progress_json"))}
        previous = _interrupt_on_sigterm()
        try:
            return func(*args, **kwargs)
        except HfsyncError as exc:
            token = _token_for_redaction(kwargs)
            if debug:
                _print_traceback(token)
            message = redact(str(exc), token)
            fail(message, exc.exit_code, kind=type(exc).__name__, as_json=as_json, **lines)
        except KeyboardInterrupt:
            fail(INTERRUPTED_MESSAGE, 130, kind="Interrupted", as_json=as_json, **lines)
        except (click.exceptions.Exit, click.exceptions.ClickException):
            raise
        except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
            token = _token_for_redaction(kwargs)
            if debug:
                _print_traceback(token)
            message = redact(f"unexpected {type(exc).__name__}: {exc}", token)
            fail(message, 1, kind="UnexpectedError", as_json=as_json, **lines)
        finally:
            if previous is not None:
                _restore_sigterm(previous)

    return wrapper


def _interrupt_on_sigterm() -> signal.Handlers | Callable[..., Any] | int | None:
    """Handle SIGTERM like Ctrl-C; returns the handler it replaced (None: not installed).

    `kill`, `systemctl stop`, `docker stop` and cron's timeouts send SIGTERM, whose default
    action kills the process at once: no journal flush, no exit code monitoring understands.
    Raised as KeyboardInterrupt in the main thread, it takes the Ctrl-C path instead: the
    executor stops its workers and keeps the partial downloads, the run exits 130 with the
    one interrupt line, and the next run resumes. Only the main thread may set handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    import signal  # here: `--version` and `--help` install no handler

    return signal.signal(signal.SIGTERM, _raise_interrupt)


def _restore_sigterm(previous: signal.Handlers | Callable[..., Any] | int) -> None:
    import signal

    signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _print_traceback(token: str | None) -> None:
    import traceback

    from ..auth import redact

    click.echo(redact(traceback.format_exc(), token), err=True, nl=False)


def repo_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every command that names a repo."""
    from ..files import REPO_TYPES

    decorators = [
        click.option(
            "--repo-type",
            type=click.Choice(REPO_TYPES),
            default="model",
            show_default=True,
            help="Kind of repo.",
        ),
        click.option(
            "--revision",
            default="main",
            show_default=True,
            help="Branch, tag or commit sha to sync.",
        ),
        click.option(
            "--token",
            default=None,
            help="Hub token (default: HF_TOKEN, then the token file of `hf auth login`). "
            "Prefer HF_TOKEN: a command-line value is visible in process lists.",
        ),
        click.option(
            "--endpoint",
            default=None,
            envvar="HFSYNC_ENDPOINT",
            show_envvar=True,
            help="Hub endpoint (default: HF_ENDPOINT, then https://huggingface.co).",
        ),
        json_option,
        debug_option,
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, envvar="HFSYNC_JSON", show_envvar=True,
                        help="Print one JSON document.")(func)  # fmt: skip


def debug_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--debug",
        is_flag=True,
        envvar="HFSYNC_DEBUG",
        show_envvar=True,
        callback=debug_callback,
        help="Log each HTTP request to stderr (no query secrets, no token); tracebacks on errors.",
    )(func)


def debug_callback(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """`--debug` on the command or on `hfsync` itself (or HFSYNC_DEBUG=1): turn on the HTTP
    request log (hfsync.httplog) before any session exists."""
    root = ctx.find_root()
    value = bool(value or (root is not ctx and root.params.get("debug")))
    if value:
        from ..httplog import enable

        enable()
    return value


def cache_dir_option(func: Callable[..., Any], help_text: str | None = None) -> Callable[..., Any]:
    from pathlib import Path

    return click.option(
        "--cache-dir",
        type=click.Path(path_type=Path),
        default=None,
        help=help_text or "HF cache folder (default: HF_HUB_CACHE, then $HF_HOME/hub).",
    )(func)


def echo_outcome(
    doc: Callable[[], dict[str, Any]],
    *,
    as_json: bool,
    quiet: bool,
    dry_run: bool,
    header: str,
    plan: Callable[[], list[str]],
    summary: Callable[[], str],
) -> None:
    """How every sync-like command ends: one JSON document, or nothing (`--quiet`), or (for a
    dry run) the header and one line per planned file, then the one-line summary. Callables,
    so only the form asked for is rendered."""
    if as_json:
        import json

        click.echo(json.dumps(doc(), indent=2))
        return
    if quiet:
        return
    if dry_run:
        click.echo(header)
        for line in plan():
            click.echo(line)
    click.echo(summary())
