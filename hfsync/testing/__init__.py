"""Test infrastructure for hfsync: a Hugging Face Hub emulator (see :mod:`hfsync.testing.hub`).

Kept empty on purpose: ``python -m hfsync.testing.hub`` would otherwise import the module twice.
"""
