"""Refuse lm-eval task YAMLs that would run code: task folders under ``data/`` are data, not code.

lm-evaluation-harness task files can import Python (``!function module.fn`` imports a ``.py`` file
beside the YAML and calls it), name a custom task class (``class:``), pull in other YAML files
(``include:``) and ask ``datasets`` to run a loading script (``trust_remote_code``).  Task folders
of the study are DVC outputs (they may come from a cache or remote), so before a folder is handed
to ``TaskManager(include_path=...)`` every YAML in it is parsed with a loader that knows no tags
and checked by :func:`check_task_dir`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

#: Keys whose presence means code: a custom task class, a remote loading script.
_CODE_KEYS = ("class", "trust_remote_code")


class UnsafeTaskError(ValueError):
    """A task YAML asks lm-eval to import or run code."""


class _NoTagsLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses every ``!tag`` (``!function`` included) with the file and line."""


def _refuse_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    mark = node.start_mark
    raise UnsafeTaskError(
        f"{mark.name}:{mark.line + 1}: tag `!{suffix}` ({node.value!r}) would make lm-eval import Python "
        'code; task YAMLs under data/ must be plain data (use Jinja templates such as "{{field}}")'
    )


_NoTagsLoader.add_multi_constructor("!", _refuse_tag)
_NoTagsLoader.add_multi_constructor("tag:", _refuse_tag)


def check_task_dir(folder: str | os.PathLike) -> list[Path]:
    """Check every ``*.yaml``/``*.yml`` under ``folder``; return them, or raise :class:`UnsafeTaskError`."""
    root = Path(folder).resolve()
    files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    for path in files:
        check_task_file(path, root)
    return files


def check_task_file(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Any:
    """Parse one task YAML without tags and refuse code keys and ``include:`` outside ``root``."""
    path = Path(path)
    root = Path(root).resolve() if root is not None else path.resolve().parent
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeTaskError(f"{path}: not valid UTF-8 YAML: {exc}") from None
    loader = _NoTagsLoader(text)
    loader.name = str(path)
    try:
        doc = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise UnsafeTaskError(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    _walk(doc, path, root)
    return doc


def _walk(node: Any, path: Path, root: Path) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _CODE_KEYS and value not in (None, False):
                raise UnsafeTaskError(
                    f"{path}: `{key}` would make lm-eval run code; remove it (task YAMLs are data)"
                )
            if key == "include":
                for inc in value if isinstance(value, list) else [value]:
                    target = (path.parent / str(inc)).resolve()
                    if not target.is_relative_to(root):
                        raise UnsafeTaskError(
                            f"{path}: `include: {inc}` points outside the task folder {root}; "
                            "keep included YAMLs inside it"
                        )
            _walk(value, path, root)
    elif isinstance(node, list):
        for value in node:
            _walk(value, path, root)
    elif isinstance(node, str) and "__" in node and ("{{" in node or "{%" in node):
        raise UnsafeTaskError(
            f"{path}: a Jinja template reaches a dunder attribute ({node[:60]!r}); templates may only "
            "read the document's fields"
        )
