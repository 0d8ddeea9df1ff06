"""The `hfsync` command line: one module per command, shared options and the error handler in
`common`, all text and JSON rendering in `render`, the tqdm progress sink in `progress`.

Commands parse options, call the library (`hfsync.orchestrate` and friends) and render; they
hold no sync logic of their own.
"""

from __future__ import annotations

import click

from ..version import __version__
from .cache import cache
from .doctor import doctor
from .info import info
from .mirror import mirror
from .sync import sync
from .to_remote import to_remote
from .verify import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hfsync")
def main() -> None:
    """Incremental, verified sync of Hugging Face Hub repos to local folders and the HF cache."""


main.add_command(sync)
main.add_command(info)
main.add_command(cache)
main.add_command(to_remote)
main.add_command(mirror)
main.add_command(verify)
main.add_command(doctor)

__all__ = ["main"]
