"""Keep `import paramiko` from importing `invoke` (and through it yaml and unittest.mock).

paramiko.config imports invoke at module level only for ssh_config's `Match exec`, which it
runs with `invoke.run`. That import was ~40 % of `import paramiko`: 0.13 s of CPU on every
`hfsync to-remote` (measured: `python -c 'import paramiko'`, 0.41 s -> 0.27 s user+sys, five
runs each), a tenth of a 2,000-file push's local CPU. A placeholder module stands in until
something reads an attribute of it; then the real invoke is imported and used, so
`Match exec` behaves as before (and a missing invoke still fails the way paramiko reports).

Not `importlib.util.LazyLoader`: its module loads on any attribute read, and `import invoke`
of a module already in sys.modules reads `__spec__`, so paramiko's own import would load it
(tried: invoke.tasks, yaml and unittest.mock were all imported). A plain ModuleType holds
`__spec__` itself and loads only on attributes it lacks.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

NAME = "invoke"
PROBED = frozenset({"__path__", "__file__", "__wrapped__"})  # import machinery, inspect, mock


class _LazyInvoke(types.ModuleType):
    """`sys.modules["invoke"]` until first use; then replaced by the real module."""

    def __getattr__(self, attr: str) -> Any:
        if attr in PROBED:
            raise AttributeError(attr)
        if sys.modules.get(NAME) is self:
            del sys.modules[NAME]
        return getattr(importlib.import_module(NAME), attr)


def install() -> None:
    """Put the placeholder in place when invoke is installed and not yet imported (without it,
    paramiko's own ImportError path is already the cheap one)."""
    if NAME in sys.modules or importlib.util.find_spec(NAME) is None:
        return
    sys.modules[NAME] = _LazyInvoke(NAME)
