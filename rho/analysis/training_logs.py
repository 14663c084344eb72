"""Per-step training logs (``<run>/log.jsonl``) as tidy frames (paper Section 3.5, Figure 6).

A log has one JSON object per optimizer step with at least ``step`` and ``tokens`` and, as
``rho.train`` writes it, ``loss``, ``loss_selected``, ``loss_unselected`` (null when no token is in
the group), ``selected_fraction``, ``n_valid``, ``n_selected`` and, for shards with provenance
labels, ``label_counts`` ({label name: [n_valid, n_selected]}). :func:`read_log` loads
one log, :func:`loss_curves` stacks several runs into ``run, step, tokens, metric, value`` rows and
:func:`label_counts` sums the per-label counts for ``rho.analysis.selection_noise``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rho.analysis.errors import AnalysisInputError

REQUIRED_KEYS: tuple[str, ...] = ("step", "tokens")
LOSS_METRICS: tuple[str, ...] = ("loss", "loss_selected", "loss_unselected")


def read_log(path: str | os.PathLike) -> pd.DataFrame:
    """Read a JSONL training log into a frame sorted by step (one row per record).

    ``path`` is the ``log.jsonl`` file or the run directory holding it. Blank lines are skipped; a
    line that is not a JSON object, or a record without ``step``/``tokens``, is an error naming the
    line. Nested values (e.g. per-label counts) are kept as Python objects.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "log.jsonl"
    if not p.is_file():
        raise AnalysisInputError(f"no training log at {p}; pass a run directory or its log.jsonl")
    records = []
    with open(p) as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise AnalysisInputError(
                    f"{p}:{i}: not valid JSON ({e.msg}); is the log truncated?"
                ) from None
            if not isinstance(rec, dict):
                raise AnalysisInputError(
                    f"{p}:{i}: expected a JSON object per line, got {type(rec).__name__}"
                )
            missing = [k for k in REQUIRED_KEYS if k not in rec]
            if missing:
                raise AnalysisInputError(
                    f"{p}:{i}: record lacks {missing}; every step must log step and tokens"
                )
            records.append(rec)
    if not records:
        raise AnalysisInputError(f"{p} has no records; did the run log any step?")
    df = pd.DataFrame.from_records(records)
    timing = p.with_name("timing.jsonl")  # wall-clock times are logged apart (rho.train.metrics.TIMING_LOG)
    if timing.is_file() and "step_time_s" not in df.columns:
        times = pd.read_json(timing, lines=True)
        if len(times):
            df = df.merge(times.drop_duplicates("step", keep="last"), on="step", how="left")
    return df.sort_values("step", kind="stable").reset_index(drop=True)


def loss_curves(
    logs: Mapping[str, pd.DataFrame | str | os.PathLike],
    metrics: Sequence[str] = LOSS_METRICS,
    *,
    smooth: int = 1,
) -> pd.DataFrame:
    """Stack the loss columns of several runs into tidy ``run, step, tokens, metric, value`` rows.

    ``logs`` maps a run name (e.g. ``"CLM"``, ``"SLM"``) to a frame from :func:`read_log` or a path.
    Metrics a run does not log (CLM has no ``loss_unselected``) or logs as null are left out.
    ``smooth > 1`` applies a trailing rolling mean over that many steps, per run and metric.
    """
    if not logs:
        raise AnalysisInputError("logs is empty; pass {run_name: log frame or path}")
    if smooth < 1:
        raise AnalysisInputError(f"smooth must be >= 1 steps, got {smooth}")
    frames = []
    for run, log in logs.items():
        df = log if isinstance(log, pd.DataFrame) else read_log(log)
        missing = [k for k in REQUIRED_KEYS if k not in df.columns]
        if missing:
            raise AnalysisInputError(f"log of run {run!r} lacks columns {missing}")
        for m in metrics:
            if m not in df.columns:
                continue
            sub = df[["step", "tokens", m]].rename(columns={m: "value"})
            sub = sub[pd.to_numeric(sub["value"], errors="coerce").notna()].astype({"value": np.float64})
            if smooth > 1:
                sub = sub.assign(value=sub["value"].rolling(smooth, min_periods=1).mean())
            frames.append(sub.assign(run=run, metric=m))
    if not frames:
        raise AnalysisInputError(f"none of the metrics {list(metrics)} is in any log")
    out = pd.concat(frames, ignore_index=True)
    return out[["run", "step", "tokens", "metric", "value"]]


def values_at_tokens(curves: pd.DataFrame, tokens: Sequence[int]) -> pd.DataFrame:
    """For each run/metric, the logged value at the last step with ``tokens <= t`` for each ``t``.

    Used to pair training-loss values with evaluations taken at checkpoints (Figure 7). Returns
    ``run, metric, at_tokens, step, tokens, value``; a ``t`` before the first logged step is an error.
    """
    rows = []
    for (run, metric), sub in curves.sort_values("tokens").groupby(["run", "metric"], sort=True):
        tok = sub["tokens"].to_numpy()
        for t in tokens:
            i = int(np.searchsorted(tok, t, side="right")) - 1
            if i < 0:
                raise AnalysisInputError(f"run {run!r} logged {metric} first at {tok[0]} tokens, after {t}")
            r = sub.iloc[i]
            rows.append(
                {
                    "run": run,
                    "metric": metric,
                    "at_tokens": t,
                    "step": r["step"],
                    "tokens": r["tokens"],
                    "value": r["value"],
                }
            )
    return pd.DataFrame(rows)


def label_counts(
    log: pd.DataFrame | str | os.PathLike,
    *,
    min_step: int | None = None,
    max_step: int | None = None,
) -> dict[str, tuple[int, int]]:
    """Sum the logged per-label counts over steps into {name: (n_valid, n_selected)}.

    ``rho.train`` logs ``label_counts = {label name: [n_valid, n_selected]}`` in every step record
    of a run whose shard has provenance labels. Restrict to ``min_step <= step <= max_step`` when
    given. The result feeds ``rho.analysis.kept_by_label`` and ``detection_metrics`` (label
    ``"content"`` is content).
    """
    df = log if isinstance(log, pd.DataFrame) else read_log(log)
    missing = [c for c in ("step", "label_counts") if c not in df.columns]
    if missing:
        raise AnalysisInputError(
            f"log lacks {missing}; per-label counts are logged only for shards with provenance labels"
        )
    if min_step is not None:
        df = df[df["step"] >= min_step]
    if max_step is not None:
        df = df[df["step"] <= max_step]
    if df.empty:
        raise AnalysisInputError(f"no log records with {min_step} <= step <= {max_step}")
    total: dict[str, list[int]] = {}
    for counts in df["label_counts"]:
        if not isinstance(counts, dict):
            raise AnalysisInputError(
                "label_counts must be a {label name: [n_valid, n_selected]} object in every record"
            )
        for name, pair in counts.items():
            if len(pair) != 2:
                raise AnalysisInputError(
                    f"label_counts[{name!r}] must be [n_valid, n_selected], got {pair!r}"
                )
            acc = total.setdefault(str(name), [0, 0])
            acc[0] += int(pair[0])
            acc[1] += int(pair[1])
    return {k: (v[0], v[1]) for k, v in total.items()}


def median_step_time(path: str | os.PathLike, skip: int = 1) -> float:
    """Median ``step_time_s`` of a run's logged steps, leaving out the first ``skip`` (warm-up).

    ``path`` is a run directory or its ``log.jsonl``.  All steps count when the log has no more
    than ``skip`` of them.
    """
    log = read_log(path)
    if "step_time_s" not in log.columns:
        raise AnalysisInputError(f"the log of {path} has no step_time_s; it was not written by rho.train")
    t = pd.to_numeric(log["step_time_s"], errors="coerce").dropna()
    if t.empty:
        raise AnalysisInputError(f"the log of {path} has no numeric step_time_s")
    if len(t) > skip:
        t = t.iloc[skip:]
    return float(t.median())


def step_time_ratio(slm_run: str | os.PathLike, clm_run: str | os.PathLike, skip: int = 1) -> float:
    """SLM / CLM median seconds per optimizer step, from the two runs' ``log.jsonl`` (C13).

    Meaningful when both runs took the same batches on the same kind of machine; runs that shared
    a busy machine with other work carry its noise.
    """
    return median_step_time(slm_run, skip) / median_step_time(clm_run, skip)
