"""The version string, in a module of its own so that any module can name it without importing
the package's `__init__` (which lazily reaches the orchestration and would close a cycle)."""

__version__ = "0.1.0"
