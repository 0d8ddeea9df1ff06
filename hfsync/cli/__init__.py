"""The `hfsync` command line: one module per command, shared options and the error handler in
`common`, all text and JSON rendering in `render`, the tqdm progress sink in `progress`.

Commands parse options, call the library (`hfsync.orchestrate` and friends) and render; they
hold no sync logic of their own.

A command's module is imported when that command runs (`COMMANDS`), not before: `hfsync
--version` and `hfsync sync` then load only what they use (tests/test_startup.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import NamedTuple

import click

from ..version import __version__
from .common import debug_option


class CommandEntry(NamedTuple):
    module: str  # relative to this package
    attribute: str
    summary: str  # the command's own short help (a test keeps the two equal)


COMMANDS: dict[str, CommandEntry] = {
    "cache": CommandEntry(".cache", "cache", "Inspect and prune the Hugging Face cache."),
    "doctor": CommandEntry(
        ".doctor", "doctor", "Check the endpoint, token, clock, disk and proxy a sync depends on."
    ),
    "info": CommandEntry(
        ".info",
        "info",
        "Show REPO's commit and files (size, LFS or not) without downloading anything.",
    ),
    "mirror": CommandEntry(
        ".mirror",
        "mirror",
        "Keep every repo of CONFIG.toml current; one failing repo never stops the rest.",
    ),
    "sync": CommandEntry(
        ".sync",
        "sync",
        "Make DEST hold exactly REPO's files at --revision, fetching only what changed.",
    ),
    "to-remote": CommandEntry(
        ".to_remote",
        "to_remote",
        "Make REMOTE_DIR on the SSH host hold exactly REPO's files, pushing only what changed.",
    ),
    "verify": CommandEntry(
        ".verify",
        "verify",
        "Hash every file of DEST (or of the HF cache with --cache) against its content id.",
    ),
}


class LazyCommands(MutableMapping[str, click.Command]):
    """`Group.commands` that imports a command's module on first lookup.

    Names and membership come from `COMMANDS` without importing anything; `add_command` still
    works (a command added at run time is kept as given).
    """

    def __init__(self) -> None:
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            entry = COMMANDS[name]  # KeyError: no such command
            module = importlib.import_module(entry.module, __name__)
            self._loaded[name] = getattr(module, entry.attribute)
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._loaded

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(COMMANDS), **dict.fromkeys(self._loaded)})

    def __len__(self) -> int:
        return len(COMMANDS.keys() | self._loaded.keys())


class LazyGroup(click.Group):
    """The top-level group: commands from `LazyCommands`, and a `--help` listing from
    `COMMANDS`' summaries, so listing the commands imports none of them."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - click's signature
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands()

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            entry = COMMANDS.get(name)
            if entry is None:  # added at run time: ask the command itself
                rows.append((name, self.commands[name].get_short_help_str(limit)))
            else:
                summary = click.Command(name, help=entry.summary)  # click's own cut
                rows.append((name, summary.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hfsync")
@debug_option
def main(debug: bool) -> None:
    """Incremental, verified sync of Hugging Face Hub repos to local folders and the HF cache."""


__all__ = ["main"]
