"""The paper's result tables beside ours (Tables 1, 3, 4, 5), as tidy frames, CSV and Markdown.

The paper's numbers live in ``results/paper/*.csv`` (copied verbatim from the paper's tables).
Our results come as a tidy frame with one row per (run, task): columns ``run`` (or ``model``),
``task`` and ``value`` (accuracy as a fraction by default). Each ``tableN`` function returns the
paper's rows and ours in the paper's column layout, with ``source`` ("paper" | "ours") and
``profile`` (the scale: "paper" for the paper's rows, our profile name for ours) in front. All
accuracies in the output are percentages, like the paper's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from rho.analysis.errors import AnalysisInputError

PAPER_DIR = Path(__file__).resolve().parents[2] / "results" / "paper"

TABLE_FILES: dict[str, str] = {
    "table1": "table1_fewshot_cot_math.csv",
    "table2": "table2_tool_integrated_sft.csv",
    "table3": "table3_self_reference.csv",
    "table4": "table4_self_reference_ratios.csv",
    "table5": "table5_weak_to_strong.csv",
}
TABLE1_TASKS: tuple[str, ...] = (
    "gsm8k",
    "math",
    "svamp",
    "asdiv",
    "mawps",
    "tabmwp",
    "mathqa",
    "mmlu_stem",
    "sat",
)
TABLE3_TASKS: tuple[str, ...] = ("gsm8k", "math", "svamp", "asdiv", "mawps", "mathqa")
TABLE4_TASKS = TABLE3_TASKS
TABLE5_TASKS = TABLE1_TASKS
_META: dict[str, tuple[str, ...]] = {
    "table1": ("model", "params", "data", "unique_tokens", "train_tokens"),
    "table3": ("model", "score_function", "data", "unique_tokens", "train_tokens"),
    "table4": ("score_function", "select_ratio", "effective_ratio"),
    "table5": ("model", "train_tokens"),
}
_TASKS: dict[str, tuple[str, ...]] = {
    "table1": TABLE1_TASKS,
    "table3": TABLE3_TASKS,
    "table4": TABLE4_TASKS,
    "table5": TABLE5_TASKS,
}


def load_paper_table(name: str, paper_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Load one of the paper's tables (``"table1"`` .. ``"table5"``) as printed, numbers as floats."""
    if name not in TABLE_FILES:
        raise AnalysisInputError(f"unknown paper table {name!r}; choose one of {sorted(TABLE_FILES)}")
    path = Path(paper_dir or PAPER_DIR) / TABLE_FILES[name]
    if not path.is_file():
        raise AnalysisInputError(
            f"paper table {path} is missing; copy it from the paper's tables into {path.parent}"
        )
    text_cols = {
        "group",
        "model",
        "params",
        "data",
        "unique_tokens",
        "train_tokens",
        "score_function",
        "select_ratio",
        "effective_ratio",
        "size",
        "tools",
        "sft_data",
    }
    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={c: "string" for c in header if c in text_cols})


def comparison_table(
    name: Literal["table1", "table3", "table4", "table5"],
    ours: pd.DataFrame,
    *,
    profile: str,
    run_info: Mapping[str, Mapping[str, object]] | pd.DataFrame | None = None,
    ours_in: Literal["fraction", "percent"] = "fraction",
    paper_rows: Sequence[int] | None = None,
    paper_dir: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """The paper's table ``name`` with our runs appended, in the paper's layout.

    ``ours`` has columns ``run`` (or ``model``), ``task``, ``value``; tasks outside the table are
    ignored and a table task we did not run stays empty. ``run_info`` gives the descriptive columns
    of our runs (e.g. ``{"slm": {"model": "SLM", "score_function": "L_delta", "select_ratio": "60%"}}``);
    ``model`` defaults to the run name. ``avg`` of our rows is the mean over the table's tasks we
    ran, and ``n_tasks`` says how many that is (the paper's avg is over all its tasks). ``paper_rows``
    picks rows of the paper's table by position (default: all).
    """
    if name not in _TASKS:
        raise AnalysisInputError(f"comparison tables exist for {sorted(_TASKS)}, not {name!r}")
    tasks, meta = list(_TASKS[name]), list(_META[name])
    paper = load_paper_table(name, paper_dir)
    if paper_rows is not None:
        paper = paper.iloc[list(paper_rows)]
    paper = paper.assign(source="paper", profile="paper")
    paper["n_tasks"] = paper[tasks].notna().sum(axis=1)
    mine = _ours_wide(ours, tasks, ours_in)
    if mine.empty:
        out = paper
    else:
        info = _run_info(run_info, mine["run"].tolist(), meta)
        mine = mine.merge(info, on="run", how="left")
        if "model" in meta:
            mine["model"] = mine["model"].fillna(mine["run"])
        mine = mine.assign(source="ours", profile=profile)
        out = pd.concat([paper, mine], ignore_index=True)
    cols = (
        ["source", "profile"]
        + (["group"] if "group" in out.columns else [])
        + meta
        + tasks
        + ["avg", "n_tasks"]
    )
    for c in cols:
        if c not in out.columns:
            out[c] = pd.NA
    return out[cols].reset_index(drop=True)


def add_delta_row(
    table: pd.DataFrame, base: str, other: str, *, key: str = "model", label: str | None = None
) -> pd.DataFrame:
    """Append a row ``other - base`` over the numeric columns (the paper's Δ rows).

    ``base`` and ``other`` are values of column ``key`` among the rows with ``source == "ours"``
    if present there, else among all rows; each must match exactly one row.
    """

    def pick(v: str) -> pd.Series:
        rows = (
            table[(table[key] == v) & (table["source"] == "ours")]
            if "source" in table
            else table[table[key] == v]
        )
        if len(rows) == 0:
            rows = table[table[key] == v]
        if len(rows) != 1:
            raise AnalysisInputError(f"{key} == {v!r} matches {len(rows)} rows; it must name exactly one row")
        return rows.iloc[0]

    b, o = pick(base), pick(other)
    num = [c for c in table.columns if pd.api.types.is_float_dtype(table[c]) and c != "n_tasks"]
    delta = {c: (o[c] - b[c]) for c in num}
    delta.update(
        {
            key: label or f"Δ ({other} - {base})",
            "source": o.get("source", pd.NA),
            "profile": o.get("profile", pd.NA),
        }
    )
    return pd.concat([table, pd.DataFrame([delta])], ignore_index=True)


def _ours_wide(ours: pd.DataFrame, tasks: list[str], ours_in: str) -> pd.DataFrame:
    run_col = "run" if "run" in ours.columns else "model" if "model" in ours.columns else None
    missing = [c for c in ("task", "value") if c not in ours.columns]
    if run_col is None or missing:
        raise AnalysisInputError(
            f"our results need columns run (or model), task, value; got {list(ours.columns)}"
        )
    if ours_in not in ("fraction", "percent"):
        raise AnalysisInputError(f"ours_in must be 'fraction' or 'percent', got {ours_in!r}")
    df = ours[[run_col, "task", "value"]].rename(columns={run_col: "run"})
    df = df.assign(value=pd.to_numeric(df["value"], errors="raise").astype(np.float64))
    if df.duplicated(["run", "task"]).any():
        dup = (
            df[df.duplicated(["run", "task"], keep=False)][["run", "task"]].drop_duplicates().values.tolist()
        )
        raise AnalysisInputError(f"several values for (run, task) {dup[:3]}; aggregate them first")
    hi = 1.0 if ours_in == "fraction" else 100.0
    if ((df["value"] < 0) | (df["value"] > hi)).any():
        raise AnalysisInputError(
            f"our values must lie in [0, {hi:g}] for ours_in={ours_in!r}; "
            + ("pass ours_in='percent' for percentages" if ours_in == "fraction" else "check the values")
        )
    if ours_in == "fraction":
        df = df.assign(value=df["value"] * 100.0)
    df = df[df["task"].isin(tasks)]
    if df.empty:
        return pd.DataFrame()
    wide = df.pivot(index="run", columns="task", values="value").reindex(columns=tasks)
    wide["avg"] = wide[tasks].mean(axis=1, skipna=True)
    wide["n_tasks"] = wide[tasks].notna().sum(axis=1)
    order = list(dict.fromkeys(df["run"]))
    return wide.reindex(order).reset_index()


def _run_info(
    run_info: Mapping[str, Mapping[str, object]] | pd.DataFrame | None, runs: list[str], meta: list[str]
) -> pd.DataFrame:
    if run_info is None:
        info = pd.DataFrame({"run": runs})
    elif isinstance(run_info, pd.DataFrame):
        if "run" not in run_info.columns:
            raise AnalysisInputError("run_info frame needs a 'run' column")
        info = run_info.copy()
    else:
        info = pd.DataFrame([{"run": r, **dict(v)} for r, v in run_info.items()])
    unknown = [c for c in info.columns if c != "run" and c not in meta]
    if unknown:
        raise AnalysisInputError(f"run_info columns {unknown} are not in this table's layout {meta}")
    for c in meta:
        info[c] = (
            info[c].astype("string")
            if c in info.columns
            else pd.Series(pd.NA, index=info.index, dtype="string")
        )
    return info[["run", *meta]]


def paper_value(
    name: str, row: Mapping[str, str], column: str, paper_dir: str | os.PathLike | None = None
) -> float:
    """One number of a paper table: the row where every ``row`` column equals its value (exactly one)."""
    t = load_paper_table(name, paper_dir)
    mask = np.ones(len(t), dtype=bool)
    for k, v in row.items():
        mask &= (t[k] == v).fillna(False).to_numpy()
    if mask.sum() != 1:
        raise AnalysisInputError(f"{dict(row)} matches {int(mask.sum())} rows of {name}; it must match one")
    return float(t.loc[mask, column].iloc[0])
