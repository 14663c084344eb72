"""rho's modules form no import cycle, counting imports inside functions (which would only hide one).

The answer / tasks / sources modules of :mod:`rho.evaluate` once imported each other in a circle;
they are also imported in every order in a fresh interpreter, with the package's ``__init__``
bypassed (it would otherwise fix the order).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers_imports import module_imports

ROOT = Path(__file__).resolve().parents[1]


def rho_modules(root: Path) -> list[str]:
    """Every module of the ``rho`` package (``rho.x.y``; packages by their name)."""
    out = []
    for p in sorted((root / "rho").rglob("*.py")):
        parts = list(p.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle ``[a, b, ..., a]`` of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the rho modules its import statements load (module- and function-level).

    A package's own ``__init__`` runs before any of its modules, so the edge from a module to a
    package above it is not a cycle Python can trip on; it is left out.
    """
    graph = {}
    for mod in rho_modules(root):
        graph[mod] = {m for m in module_imports(root, mod) if m != mod and not mod.startswith(m + ".")}
    return graph


def test_find_cycle_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_rho_has_no_import_cycle() -> None:
    graph = import_graph(ROOT)
    assert {"rho.evaluate.answer", "rho.evaluate.tasks", "rho.evaluate.sources"} <= set(graph)
    assert "rho.evaluate.tasks" in graph["rho.evaluate.sources"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_answer_needs_no_task_registry() -> None:
    """extract_answer's callers pass the spec (or its answer type): answer.py imports no task module."""
    assert module_imports(ROOT, "rho.evaluate.answer") <= {"rho.evaluate.symbolic"}


ORDERS = list(itertools.permutations(["answer", "tasks", "sources"]))


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_evaluate_modules_import_in_any_order(order: tuple[str, ...]) -> None:
    code = (
        "import importlib, importlib.util, os, sys, rho\n"
        "spec = importlib.util.spec_from_file_location('rho.evaluate', os.path.join(sys.argv[1], "
        "'__init__.py'), submodule_search_locations=[sys.argv[1]])\n"
        # the package, not executed: its __init__ would import the modules in its own order
        "sys.modules['rho.evaluate'] = importlib.util.module_from_spec(spec)\n"
        f"for name in {list(order)!r}:\n"
        "    importlib.import_module('rho.evaluate.' + name)\n"
        "from rho.evaluate.sources import load_test_records\n"
        "from rho.evaluate.answer import extract_answer\n"
        "from rho.evaluate.tasks import load_task_spec\n"
        "assert extract_answer('so the answer is 42', load_task_spec('gsm8k')) == '42'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "rho" / "evaluate")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
