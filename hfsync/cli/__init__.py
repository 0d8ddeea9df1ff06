"""The `hfsync` command line: one module per command, shared options and the error handler in
`common`, all text and JSON rendering in `render`, the tqdm progress sink in `progress`.

Commands parse options, call the library (`hfsync.orchestrate` and friends) and render; they
hold no sync logic of their own.
"""

from __future__ import annotations

import click

from ..version import __version__
from .cache import cache
from .info import info
from .sync import sync


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hfsync")
def main() -> None:
    """Incremental, verified sync of Hugging Face Hub repos to local folders and the HF cache."""


main.add_command(sync)
main.add_command(info)
main.add_command(cache)

__all__ = ["main"]
