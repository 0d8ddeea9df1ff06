"""The `hfsync` program's entry point (the console script and `python -m hfsync`).

It does one thing before the CLI is imported: for `hfsync to-remote REPO 'SSH COMMAND' DIR`,
start connecting to the host (hfsync.remote.preconnect), so the SSH handshake overlaps the
~0.1 s of importing click, requests and the run's modules. Any other command line costs one
list lookup here and imports nothing it would not have (tests/test_startup.py).
"""

from __future__ import annotations

import sys

EARLY_COMMAND = "to-remote"  # preconnect.COMMAND, spelled here to import nothing for others


def main() -> None:
    if EARLY_COMMAND in sys.argv[1:3]:
        from .remote import preconnect

        preconnect.start(sys.argv[1:])
    from .cli import main as cli

    cli(prog_name="hfsync")
