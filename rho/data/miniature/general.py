"""Offline general-domain text: English prose and source code that ship with Python itself.

* prose: the reference-manual topics of ``pydoc_data.topics`` and the docstrings (modules,
  classes, functions) of the standard library and of the project's own dependencies
  (:data:`PROSE_PACKAGES`), one document per topic or per module;
* code: the standard library's ``.py`` sources, cut at line boundaries into chunks.

Every document records where it came from (``source``).  One file in twenty (chosen by a hash
of its path) is held out of every training corpus; the general evaluation suite is built
from those (:func:`is_heldout`).
"""

from __future__ import annotations

import ast
import hashlib
import random
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path


def stdlib_root() -> Path:
    """The directory of the running Python's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def is_heldout(source: str) -> bool:
    """Whether a source (path or topic name) belongs to the held-out evaluation split."""
    return int(hashlib.sha1(source.encode()).hexdigest(), 16) % 20 == 0


#: Installed dependencies of rho whose docstrings add English prose (each is a hard dependency).
PROSE_PACKAGES: tuple[str, ...] = ("numpy", "pandas", "torch", "transformers", "datasets")


def _package_files() -> list[tuple[str, Path]]:
    import importlib.util

    out = []
    for name in PROSE_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        pkg = Path(spec.origin).parent
        for p in sorted(pkg.rglob("*.py")):
            rel = p.relative_to(pkg.parent)
            if not any(part in ("test", "tests", "testing") for part in rel.parts):
                out.append((f"{name}:{rel}", p))
    return out


def _stdlib_files() -> list[Path]:
    root = stdlib_root()
    skip = ("test", "tests", "idle_test", "site-packages", "lib2to3", "__pycache__", "ensurepip")
    files = [p for p in root.rglob("*.py") if not any(part in skip for part in p.relative_to(root).parts)]
    return sorted(files)


def _docstrings(path: Path) -> list[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(path.read_text(encoding="utf-8", errors="ignore"))
    except (SyntaxError, ValueError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node)
            if doc and len(doc) >= 120 and sum(c.isalpha() for c in doc) > 0.6 * len(doc):
                out.append(doc.strip())
    return out


def prose_documents(seed: int, heldout: bool = False) -> Iterator[tuple[str, str]]:
    """Yield ``(text, source)`` English documents in a seed-determined order.

    ``heldout`` selects the held-out split instead of the training split.
    """
    import pydoc_data.topics as topics

    items: list[tuple[str, str | Path]] = [(f"pydoc_data.topics:{k}", "topic") for k in sorted(topics.topics)]
    root = stdlib_root()
    items += [(f"stdlib:{p.relative_to(root)}", p) for p in _stdlib_files()]
    items += _package_files()
    items = [it for it in items if is_heldout(it[0]) == heldout]
    random.Random(f"rho-prose:{seed}").shuffle(items)
    for source, ref in items:
        if ref == "topic":
            text = topics.topics[source.split(":", 1)[1]].strip()
        else:
            text = "\n\n".join(_docstrings(ref))
        if len(text) >= 200:
            yield text, source


def code_documents(seed: int, heldout: bool = False, chunk_chars: int = 4000) -> Iterator[tuple[str, str]]:
    """Yield ``(code, source)`` chunks of standard-library source files in a seed-determined order."""
    root = stdlib_root()
    files = [p for p in _stdlib_files() if is_heldout(f"stdlib:{p.relative_to(root)}") == heldout]
    random.Random(f"rho-code:{seed}").shuffle(files)
    for p in files:
        src = p.read_text(encoding="utf-8", errors="ignore")
        rel = f"stdlib:{p.relative_to(root)}"
        lines, buf, size, part = src.splitlines(keepends=True), [], 0, 0
        for line in lines:
            buf.append(line)
            size += len(line)
            if size >= chunk_chars:
                yield "".join(buf), f"{rel}#{part}"
                buf, size, part = [], 0, part + 1
        if size >= 200:
            yield "".join(buf), f"{rel}#{part}"
