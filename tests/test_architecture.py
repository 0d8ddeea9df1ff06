"""The layout's promises, checked: no import cycles, a planner without I/O imports, a cheap CLI.

`make lint` enforces the layer contracts with import-linter; these tests keep the promises that
a contract cannot express (a cycle anywhere, what importing a module actually loads).
"""

from __future__ import annotations

import subprocess
import sys

import grimp


def _cycles(package: str) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), ignoring package inits.

    A package's `__init__` that re-exports its children is not a design cycle, so imports of a
    bare package name are attributed to nothing.
    """
    graph = grimp.build_graph(package, exclude_type_checking_imports=True)
    packages = {m for m in graph.modules if graph.find_children(m)}
    modules = sorted(m for m in graph.modules if m not in packages)
    edges = {
        m: sorted(d for d in graph.find_modules_directly_imported_by(m) if d in modules)
        for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in modules:
        if module not in index:
            visit(module)
    return groups


def test_no_import_cycle_in_hfsync() -> None:
    assert _cycles("hfsync") == []


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_the_planner_loads_no_http_library() -> None:
    loaded = _loaded_after("import hfsync.plan")
    assert "requests" not in loaded
    assert "urllib3" not in loaded
    assert "paramiko" not in loaded


def test_cli_help_does_not_load_the_http_stack_or_the_engine() -> None:
    loaded = _loaded_after("import hfsync.cli")
    assert "requests" not in loaded
    assert "hfsync.transfer.engine" not in loaded
