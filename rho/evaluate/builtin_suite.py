"""Write built-in tasks (the paper's nine benchmarks) as a suite folder: ``data/<profile>/eval``.

The ``paper`` profiles evaluate on the folder their data stage writes, as the miniature profiles
do, so that every input of an evaluation is an output of the DAG (``dvc.yaml``) and no evaluation
needs the network. Layout, read by :func:`rho.evaluate.tasks.local_task_specs`::

    tasks.json            [{"name", "kind", "role", "n_shots", "description", "builtin",
                            "n_test", "source", "data"}, ...]
    <task>/test.jsonl     the task's problems as EvalRecords (questions as the harness writes them)
    <task>/fewshot.jsonl  its exemplars (parsed from the harness prompt file, rebuilt verbatim)
    manifest.json         format, tasks, and the sha256 of every file above

An entry's ``builtin`` names the built-in spec (``rho/evaluate/task_data``) that supplies prompt
template, separator, stops, ``max_new_tokens`` and grading at evaluation time; the folder supplies
only problems and exemplars. ``source`` is :func:`~rho.evaluate.tasks.builtin_source` (the sha256
of the shipped harness set and prompt file), checked again when the folder is read; ``data`` says
where the problems were read from (the shipped set, local files, or the task's URL).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rho.evaluate.records import EvalRecord
from rho.evaluate.sources import load_test_records
from rho.evaluate.tasks import (
    TaskError,
    TaskSpec,
    builtin_source,
    builtin_task_names,
    load_fewshot,
    load_task_spec,
)
from rho.io import atomic_dir, sha256_file

__all__ = ["FORMAT", "BuiltinTask", "build_builtin_suite", "load_builtin_suite", "write_builtin_suite"]

FORMAT = "rho-builtin-suite-v1"

DataFiles = str | os.PathLike | Sequence[str | os.PathLike]


@dataclass(frozen=True)
class BuiltinTask:
    """One built-in task loaded for writing: its spec, problems, exemplars and provenance."""

    spec: TaskSpec
    test: list[EvalRecord]
    fewshot: list[EvalRecord]
    data: dict[str, Any]


def _data_origin(spec: TaskSpec, files: DataFiles | None) -> dict[str, Any]:
    if files is not None:
        paths = [files] if isinstance(files, str | os.PathLike) else list(files)
        return {"files": {Path(p).name: sha256_file(p) for p in paths}}
    if spec.set == "harness":
        return {"harness": str((spec.harness or {})["file"])}
    return {"url": (spec.source or {}).get("url"), "hub": (spec.source or {}).get("path")}


def load_builtin_suite(
    tasks: Sequence[str] | None = None, data_files: Mapping[str, DataFiles] | None = None
) -> list[BuiltinTask]:
    """Load built-in tasks' problems and exemplars (all of them when ``tasks`` is None).

    Shipped harness sets are read from ``rho/evaluate/benchmarks`` (offline); a task whose set is
    not shipped (TabMWP) is read from ``data_files[task]`` (local files in its release format) or
    else fetched from its URL. Raises :class:`~rho.evaluate.tasks.TaskError` for an unknown task,
    a ``data_files`` key that is not among ``tasks``, or a source that cannot be read, before
    anything is written.
    """
    names = list(tasks) if tasks is not None else list(builtin_task_names())
    files = dict(data_files or {})
    if not names:
        raise TaskError("no tasks to write; pass built-in task names or None for all of them")
    extra = sorted(set(files) - set(names))
    if extra:
        raise TaskError(f"data files given for {extra}, which are not among the tasks written {names}")
    out = []
    for name in names:
        spec = load_task_spec(name)
        try:
            test = load_test_records(spec, data_files=files.get(name))
        except TaskError:
            raise
        except Exception as exc:  # a network or format failure of the task's hub source
            raise TaskError(
                f"task {name!r}: its problems could not be read ({type(exc).__name__}: {exc}); "
                f"pass a local copy in its release format: data_files={{{name!r}: PATH}} "
                f"(CLI: --eval-file {name}=PATH)"
            ) from exc
        out.append(BuiltinTask(spec, test, load_fewshot(spec), _data_origin(spec, files.get(name))))
    return out


def _write_jsonl(path: Path, records: Sequence[EvalRecord]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")


def write_builtin_suite(out_dir: str | os.PathLike, tasks: Sequence[BuiltinTask]) -> dict[str, Any]:
    """Write loaded tasks as a suite folder at ``out_dir`` (replaced whole, atomically).

    Returns the manifest (also written to ``manifest.json``): ``format``, ``tasks`` (name ->
    ``n_test``, ``n_fewshot``) and ``files`` (relative path -> sha256 of every other file).
    """
    entries = []
    with atomic_dir(out_dir) as tmp:
        for t in tasks:
            s = t.spec
            (tmp / s.name).mkdir()
            _write_jsonl(tmp / s.name / "test.jsonl", t.test)
            _write_jsonl(tmp / s.name / "fewshot.jsonl", t.fewshot)
            entries.append(
                {
                    "name": s.name,
                    "kind": s.kind,
                    "role": s.role,
                    "n_shots": s.n_shots,
                    "description": s.description,
                    "builtin": s.name,
                    "n_test": len(t.test),
                    "source": builtin_source(s),
                    "data": t.data,
                }
            )
        (tmp / "tasks.json").write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
        files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {
            "format": FORMAT,
            "tasks": {t.spec.name: {"n_test": len(t.test), "n_fewshot": len(t.fewshot)} for t in tasks},
            "files": files,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def build_builtin_suite(
    out_dir: str | os.PathLike,
    tasks: Sequence[str] | None = None,
    data_files: Mapping[str, DataFiles] | None = None,
) -> dict[str, Any]:
    """:func:`load_builtin_suite` then :func:`write_builtin_suite`; returns the manifest."""
    return write_builtin_suite(out_dir, load_builtin_suite(tasks, data_files))
