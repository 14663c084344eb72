"""Task specifications: tasks are data (YAML files in ``task_data/``), not code branches.

A :class:`TaskSpec` says where a task's problems come from (a hub dataset and how its columns map
onto :class:`~rho.evaluate.records.EvalRecord`, or a local suite), how to prompt (template,
few-shot exemplars, separator), when to stop generating, how to read the answer and which metric
to report. Built-in real tasks live in ``rho/evaluate/task_data/<name>.yaml``; local miniature
suites (``<data_root>/eval/tasks.json``) are specs built from ``local_<kind>.yaml`` defaults.
Test problems are loaded by :func:`rho.evaluate.sources.load_test_records`: this module imports
neither the loaders nor the task-name resolution of :mod:`rho.evaluate.grade`, so the modules
form no import cycle (``tests/test_evaluate_imports.py``).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rho.evaluate.answer import ANSWER_TYPES
from rho.evaluate.harness_grader import harness_choice, harness_extract
from rho.evaluate.records import EvalRecord, read_records
from rho.io import read_json

__all__ = [
    "TaskError",
    "TaskSpec",
    "builtin_task_names",
    "load_task_spec",
    "local_task_specs",
    "resolve_tasks",
    "load_fewshot",
    "benchmarks_dir",
    "parse_prompt_file",
    "builtin_source",
    "SETS",
]

KINDS = ("generate", "multiple_choice")
METRICS = ("exact_match", "acc")
#: Where a built-in task's problems come from: the paper harness's copies shipped in
#: ``rho/evaluate/benchmarks/`` (paper-comparable) or the hub dataset in ``source``.
SETS = ("harness", "hub")
GRADINGS = ("default", "harness")


class TaskError(ValueError):
    """A task name, spec or suite is invalid."""


@dataclass(frozen=True)
class TaskSpec:
    """Everything needed to evaluate one task.

    Attributes:
        name: task name used on the command line and in results.
        role: the paper benchmark this task stands for (``gsm8k``, ``math``, ...).
        kind: ``generate`` (CoT generation, exact match) or ``multiple_choice`` (log-likelihood).
        template: prompt for one problem; ``{question}`` and ``{choices}`` are filled in.
        target: continuation of an exemplar; ``{solution}`` is filled in.
        separator: text between few-shot items.
        stop: stop sequences for generation (the start of the next few-shot item).
        answer_type: ``number``, ``math``, ``choice`` or ``auto`` (see :func:`extract_answer`).
        n_shots: number of exemplars to prepend.
        max_new_tokens: generation budget per problem.
        fewshot_file: exemplars: a YAML file in ``task_data/fewshot/``, or ``harness/<name>.md``,
            a prompt file of the paper harness (``rho/evaluate/benchmarks/prompts/``) read verbatim.
        set: ``harness`` (the harness's problem set, ``harness.file``) or ``hub`` (``source``).
        harness: ``{"file": "<task>/test.jsonl.gz", ...}``; other keys (``fields``, ``choices``,
            ``label``, ``answer_transforms``, ``question_builder``) override the hub mapping
            for the harness's columns.
        source: hub dataset: ``{"path", "name" | "names", "split" | "splits", "drop_if_contains"}``,
            or ``{"url", "format": "json_records"}`` for a JSON file of records keyed by id.
        question_builder: named function building the question text from a row (the harness's
            formatting of options, tables, ...; see :mod:`rho.evaluate.sources`).
        grading: ``default`` (rho's grader) or ``harness`` (the paper harness's verdicts).
        fields: record field -> template over the dataset row's columns.
        choices / label: how to read options and the right option from a row.
        answer_transforms / solution_transforms: named cleanups (see :mod:`rho.evaluate.sources`).
        local_dir: suite directory for local tasks (``<data_root>/eval/<name>``).
    """

    name: str
    role: str
    kind: str = "generate"
    description: str = ""
    template: str = "Question: {question}\nAnswer:"
    target: str = " {solution}"
    separator: str = "\n\n"
    stop: tuple[str, ...] = ("\n\nQuestion:",)
    answer_type: str = "auto"
    metric: str = "exact_match"
    n_shots: int = 0
    max_new_tokens: int = 256
    fewshot_file: str | None = None
    source: dict[str, Any] | None = None
    fields: dict[str, str] = field(default_factory=dict)
    choices: dict[str, Any] | None = None
    label: dict[str, Any] | None = None
    answer_transforms: tuple[str, ...] = ()
    solution_transforms: tuple[str, ...] = ()
    local_dir: str | None = None
    set: str | None = None
    harness: dict[str, Any] | None = None
    question_builder: str | None = None
    grading: str = "default"

    def __post_init__(self) -> None:
        if self.set is not None and self.set not in SETS:
            raise TaskError(f"task {self.name!r}: set must be one of {SETS}, got {self.set!r}")
        if self.set == "harness" and not (self.harness or {}).get("file"):
            raise TaskError(f"task {self.name!r}: set 'harness' needs harness.file; use set: hub")
        if self.grading not in GRADINGS:
            raise TaskError(f"task {self.name!r}: grading must be one of {GRADINGS}, got {self.grading!r}")
        if self.kind not in KINDS:
            raise TaskError(f"task {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.answer_type not in ANSWER_TYPES:
            raise TaskError(
                f"task {self.name!r}: answer_type must be one of {ANSWER_TYPES}, got {self.answer_type!r}"
            )
        if self.metric not in METRICS:
            raise TaskError(f"task {self.name!r}: metric must be one of {METRICS}, got {self.metric!r}")
        if self.n_shots < 0 or self.max_new_tokens < 1:
            raise TaskError(f"task {self.name!r}: n_shots must be >= 0 and max_new_tokens >= 1")
        if "{question}" not in self.template:
            raise TaskError(f"task {self.name!r}: template must contain '{{question}}'")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "") -> TaskSpec:
        """Build a spec from a YAML/JSON mapping; unknown keys are an error (typos)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise TaskError(f"{where}: unknown task spec key(s) {unknown}; allowed: {sorted(known)}")
        d = dict(d)
        for key in ("stop", "answer_transforms", "solution_transforms"):
            if key in d:
                d[key] = tuple(d[key] or ())
        return cls(**d)


def _task_data() -> Path:
    return Path(str(resources.files("rho.evaluate") / "task_data"))


@functools.cache
def builtin_task_names() -> tuple[str, ...]:
    """Names of the real (hub) tasks shipped with rho, e.g. ``gsm8k``, ``math``, ``svamp``."""
    return tuple(sorted(p.stem for p in _task_data().glob("*.yaml") if not p.stem.startswith("local_")))


@functools.cache
def load_task_spec(name: str) -> TaskSpec:
    """Load a built-in task spec by name (``task_data/<name>.yaml``)."""
    path = _task_data() / f"{name}.yaml"
    if name.startswith("local_") or not path.is_file():
        raise TaskError(
            f"unknown task {name!r}; built-in tasks are {list(builtin_task_names())}, "
            "or pass --data-root with a suite that defines it"
        )
    return TaskSpec.from_dict(yaml.safe_load(path.read_text()), where=str(path))


def _local_defaults(kind: str) -> dict[str, Any]:
    return yaml.safe_load((_task_data() / f"local_{kind}.yaml").read_text())


def local_task_specs(data_root: str | os.PathLike) -> dict[str, TaskSpec]:
    """Specs of the suite under ``<data_root>/eval`` (from its ``tasks.json``).

    Miniature suite entries are specs built from the ``local_<kind>.yaml`` defaults; an entry with
    ``builtin`` (the paper's benchmarks written by :mod:`rho.evaluate.builtin_suite`) is that built-in
    task's spec reading the folder's problems and exemplars.
    """
    eval_dir = Path(data_root) / "eval"
    index = eval_dir / "tasks.json"
    if not index.is_file():
        raise TaskError(f"{index} not found; build the evaluation suite with rho.data or fix --data-root")
    entries = read_json(index)
    if isinstance(entries, dict) and "tasks" in entries:
        entries = entries["tasks"]
    if not isinstance(entries, list):
        raise TaskError(f"{index}: expected a list of task entries")
    specs = {}
    for e in entries:
        missing = [k for k in ("name", "kind", "role", "n_shots") if k not in e]
        if missing:
            raise TaskError(f"{index}: entry {e!r} lacks {missing}")
        if e["kind"] not in KINDS:
            raise TaskError(f"{index}: task {e['name']!r} has kind {e['kind']!r}; expected one of {KINDS}")
        if "builtin" in e:
            specs[e["name"]] = _builtin_entry(e, eval_dir, index)
            continue
        d = _local_defaults(e["kind"])
        d.update(
            name=e["name"],
            role=e["role"],
            kind=e["kind"],
            n_shots=int(e["n_shots"]),
            description=e.get("description", ""),
            local_dir=str(eval_dir / e["name"]),
        )
        for key in ("max_new_tokens", "answer_type", "template", "target", "stop"):
            if key in e:
                d[key] = e[key]
        specs[e["name"]] = TaskSpec.from_dict(d, where=str(index))
    return specs


def builtin_source(spec: TaskSpec) -> dict[str, Any]:
    """What a built-in task's shipped files are: the harness set and prompt file, by sha256.

    ``{"set", "file", "file_sha256", "prompt", "prompt_sha256"}`` (file keys only for
    ``set: harness``, prompt keys only for a harness prompt file), paths relative to
    :func:`benchmarks_dir`. A folder written from the task (:mod:`rho.evaluate.builtin_suite`) records it,
    and reading the folder checks it against this install's files.
    """
    from rho.io import sha256_file

    out: dict[str, Any] = {"set": spec.set}
    if spec.set == "harness":
        out["file"] = str((spec.harness or {})["file"])
        out["file_sha256"] = sha256_file(benchmarks_dir() / out["file"])
    if spec.fewshot_file is not None and spec.fewshot_file.startswith("harness/"):
        out["prompt"] = "prompts/" + spec.fewshot_file.removeprefix("harness/")
        out["prompt_sha256"] = sha256_file(benchmarks_dir() / out["prompt"])
    return out


def _builtin_entry(e: dict[str, Any], eval_dir: Path, index: Path) -> TaskSpec:
    """A suite entry written from a built-in task: that task's spec reading the folder's problems.

    Prompt, stops, budget and grading are the built-in spec's; the entry's kind, role, n_shots and
    recorded source files must match this install, or the folder is stale (a clear error).
    """
    spec = load_task_spec(str(e["builtin"]))
    rebuild = (
        "rebuild the folder from this rho (the data stage: `dvc repro data`, or "
        "rho.evaluate.builtin_suite.build_builtin_suite)"
    )
    for key in ("kind", "role", "n_shots"):
        if e[key] != getattr(spec, key):
            raise TaskError(
                f"{index}: task {e['name']!r} was written with {key}={e[key]!r} but the built-in "
                f"task {spec.name!r} has {key}={getattr(spec, key)!r}: {rebuild}"
            )
    recorded, now = e.get("source") or {}, builtin_source(spec)
    if recorded != now:
        diff = sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))
        raise TaskError(
            f"{index}: task {e['name']!r} was written from other shipped files than this rho's "
            f"(differs in {diff}; see {benchmarks_dir()}): {rebuild}"
        )
    return replace(spec, name=e["name"], local_dir=str(eval_dir / e["name"]))


def resolve_tasks(
    tasks: str | list[str] | tuple[str, ...], data_root: str | os.PathLike | None = None
) -> list[TaskSpec]:
    """Turn task names (list or comma-separated string) into specs; local suite names win.

    Raises :class:`TaskError` listing the available names if any task is unknown, before any
    work starts.
    """
    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    if not names:
        raise TaskError("no tasks given; pass e.g. --tasks gsm8k,math")
    local = local_task_specs(data_root) if data_root is not None else {}
    out, unknown = [], []
    for n in names:
        if n in local:
            out.append(local[n])
        elif n in builtin_task_names():
            out.append(load_task_spec(n))
        else:
            unknown.append(n)
    if unknown:
        raise TaskError(
            f"unknown task(s) {unknown}; local suite tasks: {sorted(local)}, built-in tasks: {list(builtin_task_names())}"
        )
    return out


def benchmarks_dir() -> Path:
    """``rho/evaluate/benchmarks``: the paper harness's problem sets and prompts (README there)."""
    return Path(str(resources.files("rho.evaluate") / "benchmarks"))


def parse_prompt_file(spec: TaskSpec, text: str, where: str = "") -> list[EvalRecord]:
    """Split a harness prompt file into exemplars that the spec's template rebuilds verbatim.

    The file is exemplars separated by ``spec.separator``; each is ``template`` filled with a
    question followed by ``target`` filled with a solution (its answer: what the harness reads
    from the solution; for multiple choice its letter, the options being part of the question
    text as the harness writes them). Raises :class:`TaskError` when a
    block does not have that shape (the prompt would not be the file's text).
    """
    head, mid = spec.template.split("{question}", 1)
    t_head, t_tail = spec.target.split("{solution}", 1)
    mid += t_head
    shots = []
    for i, block in enumerate(text.strip().split(spec.separator)):
        if not block.startswith(head) or mid not in block[len(head) :] or not block.endswith(t_tail):
            raise TaskError(f"{where}: exemplar {i} does not match the template of task {spec.name!r}")
        question, solution = block[len(head) :].split(mid, 1)
        solution = solution[: len(solution) - len(t_tail)] if t_tail else solution
        answer = harness_choice(solution) if spec.answer_type == "choice" else harness_extract(solution)
        shots.append(
            EvalRecord(id=f"{spec.name}-shot{i}", question=question, solution=solution, answer=answer or "")
        )
    return shots


def load_fewshot(spec: TaskSpec) -> list[EvalRecord]:
    """The task's few-shot exemplars (all of them; prompts use the first ``n_shots``)."""
    if spec.local_dir is not None:
        shots = read_records(Path(spec.local_dir) / "fewshot.jsonl")
    elif spec.fewshot_file is not None and spec.fewshot_file.startswith("harness/"):
        path = benchmarks_dir() / "prompts" / spec.fewshot_file.removeprefix("harness/")
        shots = parse_prompt_file(spec, path.read_text(encoding="utf-8"), where=str(path))
    elif spec.fewshot_file is not None:
        raw = yaml.safe_load((_task_data() / "fewshot" / spec.fewshot_file).read_text())
        shots = [
            EvalRecord.from_dict({"id": f"{spec.name}-shot{i}", **r}, where=spec.fewshot_file)
            for i, r in enumerate(raw)
        ]
    else:
        shots = []
    if len(shots) < spec.n_shots:
        raise TaskError(
            f"task {spec.name!r} asks for {spec.n_shots} shots but only {len(shots)} exemplars exist"
        )
    return shots


def with_overrides(spec: TaskSpec, **kw: Any) -> TaskSpec:
    """A copy of ``spec`` with some fields replaced (e.g. ``n_shots``), validated again."""
    return replace(spec, **{k: v for k, v in kw.items() if v is not None})
