"""Perplexity of the tokens selected at different checkpoints (paper Section 3.5, Figure 8).

For a fixed token set, ``losses[e, j]`` is token ``j``'s loss under evaluation checkpoint ``e`` and
``masks[s, j]`` says whether checkpoint ``s`` selected it (e.g. top-k% excess loss at that
checkpoint). Cell ``(s, e)`` is the perplexity ``exp(mean loss)`` under checkpoint ``e`` of the
tokens that checkpoint ``s`` selected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from rho.analysis.errors import AnalysisInputError


def selected_ppl_matrix(
    losses: np.ndarray,
    masks: np.ndarray,
    *,
    eval_checkpoints: Sequence[float] | None = None,
    select_checkpoints: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Tidy ``selected_at, evaluated_at, n_selected, mean_loss, ppl`` rows for every (s, e) pair.

    ``losses`` is ``[n_eval, n_tokens]`` (finite), ``masks`` a boolean ``[n_select, n_tokens]``;
    labels default to row indices. A checkpoint that selected no token is an error. Use
    :func:`ppl_pivot` for the ``[selected_at x evaluated_at]`` matrix.
    """
    loss = np.asarray(losses, dtype=np.float64)
    mask = np.asarray(masks)
    if loss.ndim != 2 or mask.ndim != 2 or loss.shape[1] != mask.shape[1]:
        raise AnalysisInputError(
            f"losses {loss.shape} and masks {mask.shape} must be [n_eval, n_tokens] and [n_select, n_tokens] "
            "over the same tokens"
        )
    if mask.dtype != np.bool_:
        raise AnalysisInputError(f"masks must be boolean, got {mask.dtype}; use masks.astype(bool)")
    if not np.isfinite(loss).all():
        raise AnalysisInputError("losses has NaN/inf; drop tokens without a prediction (block starts) first")
    empty = np.flatnonzero(mask.sum(axis=1) == 0)
    if empty.size:
        raise AnalysisInputError(f"selection rows {empty.tolist()} select no token; check the masks/ratio")
    ev = _labels(eval_checkpoints, loss.shape[0], "eval_checkpoints")
    se = _labels(select_checkpoints, mask.shape[0], "select_checkpoints")
    counts = mask.sum(axis=1)
    means = (mask.astype(np.float64) @ loss.T) / counts[:, None]  # [n_select, n_eval]
    rows = [
        {
            "selected_at": se[s],
            "evaluated_at": ev[e],
            "n_selected": int(counts[s]),
            "mean_loss": means[s, e],
            "ppl": float(np.exp(means[s, e])),
        }
        for s in range(mask.shape[0])
        for e in range(loss.shape[0])
    ]
    return pd.DataFrame(rows)


def ppl_pivot(table: pd.DataFrame, value: str = "ppl") -> pd.DataFrame:
    """The ``[selected_at x evaluated_at]`` matrix of ``value`` from :func:`selected_ppl_matrix`."""
    return table.pivot(index="selected_at", columns="evaluated_at", values=value)


def is_double_descent(values: Sequence[float], tol: float = 0.0) -> bool:
    """True if the sequence first rises above its start and then falls below its peak (rise-then-fall).

    This is the "sample-wise double descent" shape the paper reports for selected-token perplexity
    along training: the peak is strictly inside the sequence, exceeds the first value by more than
    ``tol`` and the last value is below the peak by more than ``tol``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size < 3:
        return False
    k = int(np.argmax(v))
    return bool(0 < k < v.size - 1 and v[k] - v[0] > tol and v[k] - v[-1] > tol)


def _labels(labels: Sequence[float] | None, n: int, what: str) -> list:
    if labels is None:
        return list(range(n))
    out = list(labels)
    if len(out) != n:
        raise AnalysisInputError(f"{what} has {len(out)} labels for {n} rows")
    if len(set(out)) != n:
        raise AnalysisInputError(f"{what} labels must be distinct, got {out}")
    return out
