"""The nine miniature math evaluation tasks (roles of GSM8K, MATH, SVAMP, ..., SAT).

Each task draws problems from families of :mod:`rho.data.miniature.problems` with its own
seeds, and is written as ``<eval>/<task>/fewshot.jsonl`` and ``test.jsonl`` (records as in
``docs/design.md``) plus ``<eval>/tasks.json``.  ``gsm_unseen`` uses only the held-out
two-step templates (generalisation to unseen templates).  Every problem is unique across
all tasks and splits (by family, template and numbers).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rho.data.miniature.problems import FAMILIES, Problem, multiple_choice, sample_family
from rho.io import atomic_path, write_json_atomic


@dataclass(frozen=True)
class TaskSpec:
    """One evaluation task: which families it draws from and how it is asked."""

    name: str
    role: str
    mix: dict[str, float]
    description: str
    n_choices: int = 0  # 0: free-form answer ("generate"); k: k-way multiple choice

    @property
    def kind(self) -> str:
        """``generate`` or ``multiple_choice``."""
        return "multiple_choice" if self.n_choices else "generate"


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("gsm", "gsm8k", {"word_two_step": 1.0}, "GSM8K-style two-step word problems"),
    TaskSpec(
        "gsm_unseen",
        "gsm8k",
        {"word_two_step_heldout": 1.0},
        "GSM8K-style two-step problems from templates that no training corpus contains",
    ),
    TaskSpec(
        "math",
        "math",
        {"linear_equation": 0.4, "percent": 0.2, "expression": 0.4},
        "MATH-style, boxed answers: linear equations, percentages, expressions",
    ),
    TaskSpec(
        "svamp",
        "svamp",
        {"word_distractor": 1.0},
        "SVAMP-style one-step word problems with an irrelevant sentence",
    ),
    TaskSpec(
        "asdiv",
        "asdiv",
        {"word_one_step": 0.5, "word_two_step": 0.5},
        "ASDiv-style one- and two-step word problems",
    ),
    TaskSpec(
        "mawps",
        "mawps",
        {"word_one_step": 0.7, "chain_sum": 0.3},
        "MAWPS-style simple arithmetic word problems",
    ),
    TaskSpec("tabmwp", "tabmwp", {"table": 1.0}, "TabMWP-style questions over a three-row table"),
    TaskSpec(
        "mathqa",
        "mathqa",
        {"word_one_step": 0.5, "word_two_step": 0.5},
        "MathQA-style 5-way multiple choice (options: worked solutions)",
        5,
    ),
    TaskSpec(
        "mmlu_stem",
        "mmlu_stem",
        {"arithmetic": 0.6, "expression": 0.3, "percent": 0.1},
        "MMLU-STEM-style 4-way multiple choice on arithmetic (options: worked solutions)",
        4,
    ),
    TaskSpec(
        "sat",
        "sat",
        {"linear_equation": 0.6, "expression": 0.4},
        "SAT-math-style 4-way multiple choice (options: worked solutions)",
        4,
    ),
)


def _record(task: TaskSpec, split: str, i: int, p: Problem, rng: random.Random) -> dict[str, Any]:
    choices, label = multiple_choice(p, rng, task.n_choices) if task.n_choices else (None, None)
    return {
        "id": f"{task.name}-{split}-{i:05d}",
        "question": p.question,
        "solution": p.solution,
        "answer": p.answer,
        "choices": choices,
        "label": label,
        "template": f"{p.family}/{p.template}",
    }


def generate_task(task: TaskSpec, seed: int, n_shots: int, n_test: int, seen: set) -> dict[str, list[dict]]:
    """Few-shot and test records of one task; problems already in ``seen`` are redrawn (and added)."""
    out: dict[str, list[dict]] = {}
    for split, n in (("fewshot", n_shots), ("test", n_test)):
        recs = []
        for i in range(n):
            rng = random.Random(f"rho-eval:{seed}:{task.name}:{split}:{i}")
            for _ in range(1000):
                p = FAMILIES[sample_family(rng, task.mix)](rng)
                if p.key not in seen and p.question not in seen:
                    break
            else:
                raise RuntimeError(f"task {task.name}: could not draw a new problem; the family is exhausted")
            seen.update((p.key, p.question))
            recs.append(_record(task, split, i, p, rng))
        out[split] = recs
    return out


def _write_jsonl(path: Path, records: list[dict]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def write_suites(eval_dir: str | Path, seed: int, n_shots: int, n_test: int) -> list[dict]:
    """Write every task's splits and ``tasks.json``; returns every record written."""
    eval_dir = Path(eval_dir)
    seen: set = set()
    every, listing = [], []
    for task in TASKS:
        splits = generate_task(task, seed, n_shots, n_test, seen)
        for split, recs in splits.items():
            _write_jsonl(eval_dir / task.name / f"{split}.jsonl", recs)
            every += recs
        listing.append(
            {
                "name": task.name,
                "kind": task.kind,
                "role": task.role,
                "n_shots": n_shots,
                "description": task.description,
                "n_test": n_test,
            }
        )
    write_json_atomic(eval_dir / "tasks.json", listing)
    return every


def read_task(eval_dir: str | Path, name: str, split: str = "test") -> list[dict]:
    """Records of one task split."""
    path = Path(eval_dir) / name / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
