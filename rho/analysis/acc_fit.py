"""Fit of downstream accuracy against token loss, Acc(L) = log(a * L + c) (paper Figure 7, Appendix F).

Sign convention. Because the domain guard keeps ``a * L + c > 0`` on the data, the slope
``dAcc/dL = a / (a * L + c)`` has the sign of ``a``: ``a < 0`` means accuracy rises as the loss
falls, ``a > 0`` means accuracy rises as the loss rises.

What the paper says. Appendix F states: "If the loss of selected tokens L_s is used for fitting,
then a > 0. Conversely, if the loss of unselected tokens L_us is used for fitting, then a < 0",
and concludes that training on selected tokens helps downstream accuracy while unselected tokens
hurt it. Section 3.5 and Figure 6 say the same in words: under SLM the selected-token loss falls
and the unselected-token loss rises while accuracy improves. With eq. 7 taken literally that
narrative needs ``a < 0`` for selected tokens and ``a > 0`` for unselected ones, the opposite of
the printed signs. What is unambiguous in the paper is (i) the two fits have opposite signs and
(ii) accuracy improves as the selected-token loss falls. The scorecard (claim C9) checks exactly
that, using the slope direction, and quotes the paper's printed signs alongside.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit

from rho.analysis.errors import AnalysisInputError

_EPS = 1e-12


@dataclass(frozen=True)
class LogFit:
    """Result of :func:`fit_log_accuracy`: ``Acc(L) = log(a * L + c)``."""

    a: float
    c: float
    r2: float
    n: int

    @property
    def slope_sign(self) -> int:
        """Sign of dAcc/dL on the fitted domain (= sign of ``a``): -1, 0 or +1."""
        return int(np.sign(self.a))

    def predict(self, loss: np.ndarray | float) -> np.ndarray:
        """Fitted accuracy at ``loss``; NaN where ``a * L + c <= 0`` (outside the model's domain)."""
        z = self.a * np.asarray(loss, dtype=np.float64) + self.c
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(z > 0, np.log(np.where(z > 0, z, 1.0)), np.nan)


def _model(loss: np.ndarray, a: float, c: float) -> np.ndarray:
    # Outside the domain the value is clamped, so the optimizer sees a large residual and moves back.
    return np.log(np.maximum(a * loss + c, _EPS))


def fit_log_accuracy(loss: Sequence[float] | np.ndarray, acc: Sequence[float] | np.ndarray) -> LogFit:
    """Least-squares fit of ``acc = log(a * loss + c)`` (scipy ``curve_fit``) with ``a * L + c > 0``.

    ``acc`` are accuracies as fractions in [0, 1] (percentages are refused: ``exp(40)`` makes the fit
    ill-conditioned). Initial values come from the exact linearisation ``exp(acc) = a * loss + c``
    (ordinary least squares), which the nonlinear fit then refines in accuracy space. Needs at least
    three points with distinct losses. ``r2`` is the coefficient of determination in accuracy space.
    If the nonlinear fit does not converge or would leave the domain, the linearised estimate is returned.
    """
    x = np.asarray(loss, dtype=np.float64)
    y = np.asarray(acc, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise AnalysisInputError(f"loss {x.shape} and acc {y.shape} must be 1-D and of equal length")
    if x.size < 3:
        raise AnalysisInputError(f"need at least 3 (loss, accuracy) points to fit 2 parameters, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise AnalysisInputError("loss and acc must be finite; drop checkpoints without an evaluation")
    if y.min() < 0 or y.max() > 1:
        raise AnalysisInputError(
            f"accuracies must be fractions in [0, 1], got range [{y.min():g}, {y.max():g}]; divide percentages by 100"
        )
    if np.ptp(x) == 0:
        raise AnalysisInputError("all losses are equal; the fit needs checkpoints with different losses")
    a0, c0 = np.polyfit(x, np.exp(y), 1)
    if np.any(a0 * x + c0 <= 0):  # cannot happen for exp(y) > 0 data in practice; keep the guard honest
        a0, c0 = 0.0, float(np.exp(y).mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            (a, c), _ = curve_fit(_model, x, y, p0=(a0, c0), maxfev=10000)
        except RuntimeError:
            a, c = a0, c0
    if np.any(a * x + c <= 0):
        a, c = a0, c0
    pred = np.log(a * x + c)
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return LogFit(a=float(a), c=float(c), r2=r2, n=int(x.size))


def fit_log_accuracy_table(
    df: pd.DataFrame, loss_col: str, acc_col: str, by: str | Sequence[str] | None = None
) -> pd.DataFrame:
    """Fit :func:`fit_log_accuracy` per group of a tidy frame.

    Returns one row per group with the group columns, ``loss_col`` (the name of the loss used), ``a,
    c, r2, n`` and ``direction`` (``"acc falls as loss rises"`` for a < 0, ``"acc rises as loss
    rises"`` for a > 0).
    """
    missing = [c for c in [loss_col, acc_col, *(_as_list(by))] if c not in df.columns]
    if missing:
        raise AnalysisInputError(f"columns {missing} not in the frame (has {list(df.columns)})")
    groups = [((), df)] if by is None else df.groupby(_as_list(by), sort=True)
    rows = []
    for key, sub in groups:
        fit = fit_log_accuracy(sub[loss_col].to_numpy(), sub[acc_col].to_numpy())
        row = dict(zip(_as_list(by), key if isinstance(key, tuple) else (key,)))
        row.update(
            {
                "loss": loss_col,
                "a": fit.a,
                "c": fit.c,
                "r2": fit.r2,
                "n": fit.n,
                "direction": "acc falls as loss rises" if fit.a < 0 else "acc rises as loss rises",
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _as_list(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)
