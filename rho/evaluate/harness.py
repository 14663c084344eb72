"""General tasks through lm-evaluation-harness (``lm_eval.simple_evaluate``) on a model folder.

Offline, the miniature suite's task YAMLs (``<data_root>/eval/lm_eval``, ``include_path``) are read
as plain data, their data files resolved beside them; in the paper profile the standard task names are used
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

__all__ = ["PAPER_GENERAL_TASKS", "HarnessError", "local_task_config", "run_lm_eval", "tidy_lm_eval"]

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


#: Per-document metrics copied into ``lm_eval_samples.jsonl`` (paired comparisons read ``acc``).
SAMPLE_METRICS = ("acc", "acc_norm", "exact_match")


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
            ``lm_eval_samples.jsonl`` (task, doc_id, doc, target, filtered_resps and the document's
            own ``acc`` / ``acc_norm`` / ``exact_match``) are written there atomically.
        bootstrap_iters: lm-eval's bootstrap for stderr of non-mean metrics (mean metrics use
            the closed form); missing accuracy stderrs are filled with the binomial formula.
        max_length: the context the model was trained on; lm-eval truncates contexts from the left
            to fit it (default: lm-eval's, from the model config). Documents whose continuation
            alone does not fit are dropped before evaluation and counted in the ``skipped`` column.
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
    tm = TaskManager()
    specs = [local_task_config(include_path, t) or t for t in names]
    unknown = [t for t in specs if isinstance(t, str) and t not in tm.all_tasks]
    if unknown:
        raise HarnessError(f"lm-eval does not know task(s) {unknown}; check the names or include_path")
    from lm_eval.tasks import get_task_dict

    task_dict = get_task_dict(specs, tm)
    skipped = _drop_overlong(task_dict, str(model_path), int(max_length)) if max_length else {}
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(model_path), "dtype": dtype}
        | ({"max_length": int(max_length)} if max_length else {}),
        tasks=list(task_dict.values()),
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
    table["skipped"] = [skipped.get(t, 0) for t in table["task"]]
    if out_dir is not None:
        _write_outputs(Path(out_dir), table, results.get("samples", {}))
    return table


def local_task_config(include_path: str | os.PathLike | None, name: str) -> dict[str, Any] | None:
    """The config of task ``name`` from ``<include_path>/<name>.yaml``, or None if there is none.

    The YAML is read as plain data (``yaml.safe_load``: a ``!function`` tag, which would import
    Python, is refused) and a relative ``data_files`` entry is resolved against the YAML's folder.
    """
    if include_path is None or not (path := Path(include_path) / f"{name}.yaml").is_file():
        return None
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise HarnessError(
            f"task file {path} is not plain YAML data ({exc.__class__.__name__}); rho reads local lm-eval "
            "tasks as data only: remove tags such as `!function` (code) from it"
        ) from exc
    if not isinstance(cfg, dict) or cfg.get("task") != name:
        raise HarnessError(f"task file {path} must be a mapping with `task: {name}`")
    files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, dict):
        cfg["dataset_kwargs"]["data_files"] = {k: str(path.parent / v) for k, v in files.items()}
    return cfg


def _drop_overlong(task_dict: dict[str, Any], tokenizer_path: str, max_length: int) -> dict[str, int]:
    """Drop, in place, the documents whose answer cannot be scored inside a ``max_length`` window.

    lm-eval cuts a long *context* from the left, but a continuation (a choice of a multiple-choice
    task, a loglikelihood target) must fit the window with at least one context token; lm-eval
    asserts that it does. Such documents are removed before evaluation (never half-scored), and the
    count per task is returned for the results table (column ``skipped``). Rolling-loglikelihood
    tasks window themselves and are left whole.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_path)

    def fits(task: Any, doc: dict) -> bool:
        if task.OUTPUT_TYPE == "multiple_choice":
            conts = task.doc_to_choice(doc)
        elif task.OUTPUT_TYPE == "loglikelihood":
            conts = [task.doc_to_target(doc)]
        else:
            return True
        delim = task.config.target_delimiter or ""
        return all(
            len(tok(delim + str(c), add_special_tokens=False)["input_ids"]) < max_length for c in conts
        )

    skipped = {}
    for name, task in task_dict.items():
        split = task.config.test_split
        if not hasattr(task, "dataset") or split is None or task.OUTPUT_TYPE == "loglikelihood_rolling":
            continue
        docs = task.dataset[split]
        keep = [i for i, doc in enumerate(docs) if fits(task, doc)]
        if len(keep) < len(docs):
            task.dataset[split] = docs.select(keep)
        skipped[name] = len(docs) - len(keep)
    return skipped


def _write_outputs(out: Path, table: pd.DataFrame, samples: dict[str, list[dict[str, Any]]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keep = ("doc_id", "doc", "target", "filtered_resps")
    with atomic_path(out / "lm_eval_samples.jsonl") as tmp, tmp.open("w") as f:
        for task, rows in samples.items():
            for row in rows:
                scores = {k: row[k] for k in SAMPLE_METRICS if k in row}  # the document's own score
                f.write(
                    json.dumps({"task": task, **{k: row.get(k) for k in keep}, **scores}, default=str) + "\n"
                )
    with atomic_path(out / "lm_eval_results.csv") as tmp:
        table.to_csv(tmp, index=False)
