"""`python -m hfsync` runs the CLI (through the same entry point as the `hfsync` script)."""

from .launch import main

main()
