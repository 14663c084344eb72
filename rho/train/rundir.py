"""The run directory: only a folder ``rho.train`` made (or an empty/new one) is written into.

``rho.train`` writes ``<out_dir>/rho_run.json`` (the *marker*) before anything else in the folder.
On start it refuses an ``out_dir`` that

* is one of the run's inputs (``init_from``, ``model``, ``tokenizer``, ``train_shard``, ``scores``), or
* exists and is not empty but holds no marker (e.g. a model folder, a shard, a results folder),

so a typo cannot overwrite a model's ``config.json``.  Run directories written before the marker
existed are recognised by their ``config.json`` (a training config, not a model config) and adopted.

On start/resume it also removes what a killed save left behind: the temporary folders of
:func:`rho.io.atomic_dir` (``.ckpt.*.tmp``, ``.final.*.tmp``, ``snapshots/.tokens_*.*.tmp``), the
temporary files of :func:`rho.io.atomic_path` for the run's own files, and a previous checkpoint
moved aside (``.ckpt.old-<pid>``), which is put back if the kill came before the new one took its
place.  Nothing else is touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from rho.io import write_json_atomic
from rho.train.config import ConfigError

MARKER = "rho_run.json"
MARKER_FORMAT = "rho-run-v1"
#: Files and folders ``rho.train`` writes directly under ``out_dir`` (atomically, via temp names).
OWN_ENTRIES = ("ckpt", "final", "config.json", "log.jsonl", "timing.jsonl", "environment.json", MARKER)
_TMP = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp$")  # tempfile names: .<name>.<random>[<suffix>].tmp
_OLD = re.compile(r"^\.(?P<name>.+)\.old-\d+$")


class RunDirError(ConfigError):
    """``out_dir`` is not a folder this training run may write into."""


def is_run_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds the marker, or is a run directory written before the marker existed."""
    path = Path(path)
    if (path / MARKER).is_file():
        return True
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(cfg, dict)
        and {"train_shard", "out_dir", "objective"} <= set(cfg)
        and "model_type" not in cfg
    )


def check_out_dir(config: Any) -> None:
    """Raise :class:`RunDirError` unless ``config.out_dir`` may hold this run (see the module doc)."""
    out = Path(config.out_dir)
    resolved = out.resolve()
    for name in ("init_from", "model", "tokenizer", "train_shard", "scores"):
        value = getattr(config, name, None)
        if value and Path(value).exists() and Path(value).resolve() == resolved:
            raise RunDirError(
                f"out_dir {out} is the run's {name}; training would overwrite it: choose a new out_dir "
                "(e.g. runs/<name>)"
            )
    if out.exists() and not out.is_dir():
        raise RunDirError(f"out_dir {out} exists and is not a folder; choose a new out_dir")
    if out.is_dir() and any(out.iterdir()) and not is_run_dir(out):
        raise RunDirError(
            f"out_dir {out} is a non-empty folder that rho.train did not create (no {MARKER}); refusing to write "
            "into it: choose a new or empty out_dir (a run directory is only resumed when it holds the marker)"
        )


def mark(out_dir: str | os.PathLike) -> None:
    """Write the marker (once) that makes ``out_dir`` a run directory."""
    path = Path(out_dir) / MARKER
    if not path.is_file():
        write_json_atomic(path, {"format": MARKER_FORMAT, "written_by": "rho.train"})


def clean_stale(out_dir: str | os.PathLike) -> list[Path]:
    """Remove the temporary leftovers of killed saves in a run directory; return what was removed.

    A checkpoint moved aside (``.ckpt.old-<pid>``) while ``ckpt/`` is missing is moved back first.
    Only names that ``rho.train``'s own atomic writes produce are touched.
    """
    out = Path(out_dir)
    if not out.is_dir() or not is_run_dir(out):
        return []
    removed: list[Path] = []
    for entry in sorted(out.iterdir()):
        m = _OLD.match(entry.name)
        if m and m.group("name") in ("ckpt", "final") and entry.is_dir():
            target = out / m.group("name")
            if not target.exists():
                os.replace(entry, target)
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    removed += _remove_tmp(out, OWN_ENTRIES)
    snaps = out / "snapshots"
    if snaps.is_dir():
        names = tuple(p.name for p in snaps.iterdir() if p.name.startswith("tokens_"))
        removed += _remove_tmp(snaps, names, prefix="tokens_")
        for entry in snaps.iterdir():
            m = _OLD.match(entry.name)
            if m and m.group("name").startswith("tokens_") and entry.is_dir():
                if (snaps / m.group("name")).exists():
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
                else:
                    os.replace(entry, snaps / m.group("name"))
    return removed


def _remove_tmp(folder: Path, names: tuple[str, ...], prefix: str | None = None) -> list[Path]:
    removed = []
    for entry in folder.iterdir():
        m = _TMP.match(entry.name)
        if not m:
            continue
        name = m.group("name")
        if name not in names and not (prefix and name.startswith(prefix)):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
