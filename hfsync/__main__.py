"""`python -m hfsync` runs the CLI."""

from .cli import main

main(prog_name="hfsync")
