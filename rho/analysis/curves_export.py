"""Training-loss curves of runs as one tidy CSV, the data behind the study's loss plots.

``dvc plots`` draws the file (one line per run and metric; see ``dvc.yaml``), so ``dvc plots diff``
compares the training of the same runs across experiments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from rho.analysis.errors import AnalysisInputError
from rho.analysis.training_logs import loss_curves
from rho.io import atomic_path

#: Columns of the CSV.
COLUMNS = ("run", "step", "tokens", "metric", "value")


def write_training_losses(
    logs: Mapping[str, str | os.PathLike], out: str | os.PathLike, *, max_points: int = 500
) -> Path:
    """Write the loss, selected-token and unselected-token losses of each run's log to ``out``.

    ``logs`` maps a run name to its ``log.jsonl`` (or the run folder). Rows: ``run, step, tokens,
    metric, value`` in the order of ``logs``, then by metric and step; values with 6 significant
    digits. A run logged over more than ``max_points`` steps keeps every k-th step (k the smallest
    stride that fits) and its last one, so a long run's file stays small. Written atomically.
    """
    if max_points < 2:
        raise AnalysisInputError(f"max_points must be >= 2, got {max_points}")
    if not logs:
        raise AnalysisInputError("no runs to export; pass {run name: log.jsonl or run folder}")
    missing = [f"{run}: {p}" for run, p in logs.items() if not _log_file(p).is_file()]
    if missing:
        raise AnalysisInputError(f"no training log for {', '.join(missing)}: train these runs first")
    curves = thin(loss_curves({run: _log_file(p) for run, p in logs.items()}), max_points)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".csv") as tmp:
        curves[list(COLUMNS)].to_csv(tmp, index=False, float_format="%.6g")
    return out


def thin(curves: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """Keep at most ``max_points`` steps per run and metric: every k-th one and the last."""
    parts = []
    for _, sub in curves.groupby(["run", "metric"], sort=False):
        k = -(-len(sub) // max_points) if len(sub) > max_points else 1
        idx = np.arange(len(sub))
        keep = (idx % k == 0) | (idx == len(sub) - 1)
        if keep.sum() > max_points:  # the last step on top of the stride: drop the one before it
            keep[np.flatnonzero(keep)[-2]] = False
        parts.append(sub[keep])
    return pd.concat(parts, ignore_index=True)


def _log_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p / "log.jsonl" if p.is_dir() or p.suffix != ".jsonl" else p
