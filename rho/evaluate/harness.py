"""General tasks through lm-evaluation-harness (``lm_eval.simple_evaluate``) on a model folder.

Offline, the miniature suite's task YAMLs (``<data_root>/eval/lm_eval``) are found with
``TaskManager(include_path=...)``; in the paper profile the standard task names are used
(:data:`PAPER_GENERAL_TASKS`, Appendix E.2 of the paper, the lm-eval part).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rho.evaluate.results import COLUMNS, binomial_stderr
from rho.io import atomic_path

__all__ = ["PAPER_GENERAL_TASKS", "HarnessError", "run_lm_eval", "tidy_lm_eval"]

#: lm-eval task names for the paper's general evaluation (Appendix E.2).
PAPER_GENERAL_TASKS = (
    "mmlu",
    "bbh",
    "agieval",
    "arc_easy",
    "arc_challenge",
    "boolq",
    "piqa",
    "hellaswag",
    "winogrande",
    "openbookqa",
)


class HarnessError(ValueError):
    """lm-evaluation-harness cannot run as asked."""


def tidy_lm_eval(results: dict[str, Any]) -> pd.DataFrame:
    """Tidy table (task, role, metric, value, stderr, n) from ``simple_evaluate``'s output.

    Every numeric metric is kept (accuracies, ``word_perplexity``, ``bits_per_byte``, ...).
    Metric keys like ``"acc,none"`` become ``metric="acc"`` (a non-default filter is kept as
    ``"acc,<filter>"``); the matching ``"acc_stderr,none"`` fills ``stderr``.
    """
    rows = []
    n_samples = results.get("n-samples", {})
    for task, metrics in results.get("results", {}).items():
        n = n_samples.get(task, {}).get("effective")
        for key, value in metrics.items():
            if "," not in key or "_stderr" in key:
                continue
            name, filt = key.split(",", 1)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            err = metrics.get(f"{name}_stderr,{filt}")
            err = float(err) if isinstance(err, int | float) else math.nan
            if math.isnan(err) and name.startswith("acc") and n:
                err = binomial_stderr(float(value), int(n))
            rows.append(
                {
                    "task": task,
                    "role": "general",
                    "metric": name if filt == "none" else f"{name},{filt}",
                    "value": float(value),
                    "stderr": err,
                    "n": n if n is not None else pd.NA,
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def run_lm_eval(
    model_path: str | os.PathLike,
    tasks: str | Sequence[str],
    include_path: str | os.PathLike | None = None,
    limit: int | float | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    dtype: str = "float32",
    out_dir: str | os.PathLike | None = None,
    bootstrap_iters: int = 1000,
    max_length: int | None = None,
) -> pd.DataFrame:
    """Evaluate a model folder (or hub name) with lm-eval and return a tidy DataFrame.

    Args:
        model_path: Hugging Face model folder with its tokenizer (as rho.train writes them).
        tasks: lm-eval task names (list or comma-separated).
        include_path: folder of extra task YAMLs (e.g. ``<data_root>/eval/lm_eval``).
        limit: examples per task (int) or fraction (float), as lm-eval takes it.
        out_dir: if given, ``lm_eval_results.csv`` and the per-example records
            ``lm_eval_samples.jsonl`` (task, doc_id, doc, target, filtered_resps) are written there
            atomically.
        bootstrap_iters: lm-eval's bootstrap for stderr of non-mean metrics (mean metrics use
            the closed form); missing accuracy stderrs are filled with the binomial formula.
        max_length: the context the model was trained on; lm-eval truncates inputs from the left
            to fit it (default: lm-eval's, from the model config).
    """
    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    if not names:
        raise HarnessError("no lm-eval tasks given")
    if include_path is not None and not Path(include_path).is_dir():
        raise HarnessError(
            f"include_path {include_path} is not a directory; point it at the task YAML folder"
        )
    if include_path is not None:
        from rho.evaluate.task_yaml import UnsafeTaskError, check_task_dir

        try:
            check_task_dir(include_path)  # data, never code: no `!function`, `class:`, outside includes
        except UnsafeTaskError as exc:
            raise HarnessError(f"refusing the lm-eval task folder {include_path}: {exc}") from None
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise HarnessError("lm-evaluation-harness is not installed: pip install 'rho[eval]'") from exc
    tm = TaskManager(include_path=str(include_path) if include_path is not None else None)
    unknown = [t for t in names if t not in tm.all_tasks]
    if unknown:
        raise HarnessError(f"lm-eval does not know task(s) {unknown}; check the names or include_path")
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(model_path), "dtype": dtype}
        | ({"max_length": int(max_length)} if max_length else {}),
        tasks=names,
        num_fewshot=num_fewshot,
        batch_size=batch_size,
        device=device,
        limit=limit,
        task_manager=tm,
        log_samples=out_dir is not None,
        bootstrap_iters=bootstrap_iters,
    )
    results = results or {}
    table = tidy_lm_eval(results)
    if out_dir is not None:
        _write_outputs(Path(out_dir), table, results.get("samples", {}))
    return table


def _write_outputs(out: Path, table: pd.DataFrame, samples: dict[str, list[dict[str, Any]]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keep = ("doc_id", "doc", "target", "filtered_resps")
    with atomic_path(out / "lm_eval_samples.jsonl") as tmp, tmp.open("w") as f:
        for task, rows in samples.items():
            for row in rows:
                f.write(json.dumps({"task": task, **{k: row.get(k) for k in keep}}, default=str) + "\n")
    with atomic_path(out / "lm_eval_results.csv") as tmp:
        table.to_csv(tmp, index=False)
