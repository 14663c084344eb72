"""Offline general-domain text: English prose and source code, frozen into the repository.

The pool is one versioned, hashed file, :data:`GENERAL_SOURCE` (xz-compressed JSON lines, one
``{"kind", "source", "text"}`` item a line), so the miniature world's bytes depend only on
``params.yaml``, the seed and files in the repository, never on what happens to be installed:

* ``prose``: the reference-manual topics of ``pydoc_data.topics`` and the docstrings (modules,
  classes, functions) of the standard library and of :data:`PROSE_PACKAGES`, one item per topic
  or per module;
* ``code``: the standard library's ``.py`` sources, one item per file (cut into chunks at read
  time, :func:`code_documents`).

:func:`freeze_general_source` made the file once (``python -m rho.data freeze-general``), from the
Python and packages named in its sidecar ``general_text.json`` (versions and licences).  Every
read checks the file's SHA-256 against :data:`GENERAL_SOURCE_SHA256` and refuses a file that
differs.  One source in twenty (chosen by a hash of its name) is held out of every training
corpus; the general evaluation suite is built from those (:func:`is_heldout`).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import lzma
import platform
import random
import sysconfig
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from rho.io import atomic_path, sha256_file, write_json_atomic

ASSETS = Path(__file__).parent / "assets"
#: The frozen pool of general-domain text (in the repository, shipped as package data).
GENERAL_SOURCE = ASSETS / "general_text.jsonl.xz"
#: SHA-256 of :data:`GENERAL_SOURCE`; a world build refuses any other file.
GENERAL_SOURCE_SHA256 = "db3f8b286c52c08bab37f240720308cc7bc2f6e1e5b5bc65d1d149c6b2f26da8"

#: Dependencies of rho whose docstrings added English prose when the pool was frozen.
PROSE_PACKAGES: tuple[str, ...] = ("numpy", "pandas", "torch", "transformers", "datasets")

#: Licences of the frozen text, by origin (recorded in the sidecar and in ``assets/LICENSES.md``).
LICENCES: dict[str, str] = {
    "python": "PSF-2.0 (Python Software Foundation License; docs and standard library)",
    "numpy": "BSD-3-Clause",
    "pandas": "BSD-3-Clause",
    "torch": "BSD-3-Clause",
    "transformers": "Apache-2.0",
    "datasets": "Apache-2.0",
}


class GeneralSourceError(ValueError):
    """The frozen general-text pool is missing or is not the file this code was written for."""


def is_heldout(source: str) -> bool:
    """Whether a source (path or topic name) belongs to the held-out evaluation split."""
    return int(hashlib.sha1(source.encode()).hexdigest(), 16) % 20 == 0


def check_general_source(path: Path | None = None, expected: str | None = None) -> str:
    """Return the SHA-256 of ``path`` (default :data:`GENERAL_SOURCE`) after checking it equals
    ``expected`` (default :data:`GENERAL_SOURCE_SHA256`).

    Raises :class:`GeneralSourceError` naming the file, both hashes and the fix.
    """
    path = GENERAL_SOURCE if path is None else Path(path)
    expected = GENERAL_SOURCE_SHA256 if expected is None else expected
    if not path.is_file():
        raise GeneralSourceError(
            f"the frozen general-text pool {path} is missing; restore it from git "
            f"(`git checkout -- {path.name}` in {path.parent}) or reinstall rho"
        )
    digest = sha256_file(path)
    if digest != expected:
        raise GeneralSourceError(
            f"{path} has SHA-256 {digest}, but this version of rho was written for {expected}: the "
            "miniature world would differ from the committed one. Restore the file from git, or, when "
            "changing the pool on purpose, re-freeze it (`python -m rho.data freeze-general`) and put its "
            "hash in rho.data.miniature.general.GENERAL_SOURCE_SHA256"
        )
    return digest


@functools.lru_cache(maxsize=2)
def _items(path: str, expected: str) -> tuple[tuple[str, str, str], ...]:
    check_general_source(Path(path), expected)
    with lzma.open(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return tuple((r["kind"], r["source"], r["text"]) for r in rows)


def general_items(kind: str, heldout: bool = False) -> list[tuple[str, str]]:
    """``(source, text)`` items of one ``kind`` (``"prose"`` or ``"code"``) and split, in file order."""
    if kind not in ("prose", "code"):
        raise ValueError(f"kind must be 'prose' or 'code', not {kind!r}")
    items = _items(str(GENERAL_SOURCE), GENERAL_SOURCE_SHA256)
    return [(s, t) for k, s, t in items if k == kind and is_heldout(s) == heldout]


def prose_documents(seed: int, heldout: bool = False) -> Iterator[tuple[str, str]]:
    """Yield ``(text, source)`` English documents in a seed-determined order.

    ``heldout`` selects the held-out split instead of the training split.
    """
    items = general_items("prose", heldout)
    random.Random(f"rho-prose:{seed}").shuffle(items)
    for source, text in items:
        yield text, source


def code_documents(seed: int, heldout: bool = False, chunk_chars: int = 4000) -> Iterator[tuple[str, str]]:
    """Yield ``(code, source)`` chunks of standard-library source files in a seed-determined order."""
    items = general_items("code", heldout)
    random.Random(f"rho-code:{seed}").shuffle(items)
    for source, src in items:
        lines, buf, size, part = src.splitlines(keepends=True), [], 0, 0
        for line in lines:
            buf.append(line)
            size += len(line)
            if size >= chunk_chars:
                yield "".join(buf), f"{source}#{part}"
                buf, size, part = [], 0, part + 1
        if size >= 200:
            yield "".join(buf), f"{source}#{part}"


# --- freezing the pool (run once, by a maintainer, when the pool is to change) ---------------------


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files() -> list[Path]:
    root = _stdlib_root()
    skip = ("test", "tests", "idle_test", "site-packages", "lib2to3", "__pycache__", "ensurepip")
    files = [p for p in root.rglob("*.py") if not any(part in skip for part in p.relative_to(root).parts)]
    return sorted(files)


def _package_files() -> list[tuple[str, Path]]:
    import importlib.util

    out = []
    for name in PROSE_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise GeneralSourceError(
                f"cannot freeze the general-text pool: package {name!r} is not installed"
            )
        pkg = Path(spec.origin).parent
        for p in sorted(pkg.rglob("*.py")):
            rel = p.relative_to(pkg.parent)
            if not any(part in ("test", "tests", "testing") for part in rel.parts):
                out.append((f"{name}:{rel.as_posix()}", p))
    return out


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


def _collect() -> Iterator[dict[str, str]]:
    import pydoc_data.topics as topics

    for k in sorted(topics.topics):
        text = topics.topics[k].strip()
        if len(text) >= 200:
            yield {"kind": "prose", "source": f"pydoc_data.topics:{k}", "text": text}
    root = _stdlib_root()
    stdlib = [(f"stdlib:{p.relative_to(root).as_posix()}", p) for p in _stdlib_files()]
    for source, p in [*stdlib, *_package_files()]:
        text = "\n\n".join(_docstrings(p))
        if len(text) >= 200:
            yield {"kind": "prose", "source": source, "text": text}
    for source, p in stdlib:
        yield {"kind": "code", "source": source, "text": p.read_text(encoding="utf-8", errors="ignore")}


def freeze_general_source(out: Path = GENERAL_SOURCE) -> dict[str, Any]:
    """Write the general-text pool from the running Python and :data:`PROSE_PACKAGES` to ``out``.

    Also writes the sidecar ``<out stem>.json`` (versions, licences, counts, SHA-256) and returns it.
    The written file only becomes the world's source once its hash is put in
    :data:`GENERAL_SOURCE_SHA256`.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    counts = {"prose": 0, "code": 0}
    chars = {"prose": 0, "code": 0}
    # The xz container is written by liblzma with fixed settings: same input, same bytes.
    with (
        atomic_path(out) as tmp,
        lzma.open(tmp, "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME) as fh,
    ):
        for item in _collect():
            counts[item["kind"]] += 1
            chars[item["kind"]] += len(item["text"])
            fh.write(json.dumps(item, ensure_ascii=False, sort_keys=True) + "\n")
    versions = {"python": platform.python_version()}
    versions.update({name: metadata.version(name) for name in PROSE_PACKAGES})
    sidecar = {
        "file": out.name,
        "sha256": sha256_file(out),
        "format": "xz-compressed JSON lines: {kind: prose|code, source, text}",
        "made_by": "python -m rho.data freeze-general",
        "versions": versions,
        "licences": LICENCES,
        "items": counts,
        "chars": chars,
    }
    write_json_atomic(out.with_name(out.name.split(".")[0] + ".json"), sidecar)
    return sidecar
