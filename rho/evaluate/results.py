"""Result tables: per-task accuracy with counts and standard errors, and the raw completions.

The tidy table has one row per (task, metric): ``task, role, metric, value, stderr, n``;
accuracies are fractions in [0, 1]. Completions are one JSON object per problem, for reading
in a notebook (``pandas.read_json(path, lines=True)``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rho.io import atomic_path

__all__ = ["COLUMNS", "binomial_stderr", "metric_row", "write_results", "format_table"]

COLUMNS = ["task", "role", "metric", "value", "stderr", "n"]


def binomial_stderr(p: float, n: int) -> float:
    """Standard error of a mean of ``n`` 0/1 outcomes, ``sqrt(p(1-p)/(n-1))`` as lm-eval reports.

    NaN when ``n < 2``.
    """
    if n < 2:
        return float("nan")
    return math.sqrt(p * (1.0 - p) / (n - 1))


def metric_row(task: str, role: str, metric: str, outcomes: Sequence[bool]) -> dict[str, Any]:
    """A tidy row for the accuracy of ``outcomes`` (one bool per problem)."""
    n = len(outcomes)
    p = sum(map(bool, outcomes)) / n if n else float("nan")
    return {"task": task, "role": role, "metric": metric, "value": p, "stderr": binomial_stderr(p, n), "n": n}


def write_results(
    out_dir: str | os.PathLike,
    table: pd.DataFrame,
    completions: Iterable[dict[str, Any]],
    config: dict[str, Any] | None = None,
) -> None:
    """Write ``results.csv``, ``completions.jsonl`` (and ``config.json``) into ``out_dir`` atomically.

    Each file is written to a temporary name and renamed, so an interrupted run leaves any
    earlier results intact.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "completions.jsonl") as tmp, tmp.open("w") as f:
        for c in completions:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    with atomic_path(out / "results.csv") as tmp:
        table.to_csv(tmp, index=False)
    if config is not None:
        from rho.io import write_json_atomic

        write_json_atomic(out / "config.json", config)


def format_table(table: pd.DataFrame) -> str:
    """A markdown table of the results with accuracies shown in percent."""
    if table.empty:
        return "(no results)"
    show = table.copy()
    is_acc = show["metric"].isin(["exact_match", "acc", "acc_norm"])
    show.loc[is_acc, "value"] = show.loc[is_acc, "value"] * 100
    show.loc[is_acc, "stderr"] = show.loc[is_acc, "stderr"] * 100
    show["value"] = show["value"].map(lambda v: f"{v:.2f}")
    show["stderr"] = show["stderr"].map(lambda v: "-" if pd.isna(v) else f"{v:.2f}")
    header = "| " + " | ".join(COLUMNS) + " |"
    lines = [header, "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for _, row in show.iterrows()]
    return "\n".join(lines)
