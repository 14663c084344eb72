"""Token loss dynamics across training checkpoints (Rho-1 §2.1, Appendix D).

Given the loss of the same tokens at ``n`` checkpoints (a ``[n_checkpoints, n_tokens]`` matrix),
each token's trajectory is fitted with a least-squares line and classified by the rule of
Appendix D.1 into four categories::

    H->L   dL < -0.2          (the loss fell: the token was learned)
    L->H   dL >  0.2          (the loss rose)
    L->L   |dL| <= 0.2 and l_last <= mean(l_last over all tokens)
    H->H   |dL| <= 0.2 and l_last >  mean(l_last over all tokens)

where ``dL = fitted end - fitted start``.  The paper writes the trajectory as ``(l_0, ..., l_n)``
with ``x_0 = 0`` for the initial and ``x_n = n`` for the final checkpoint, i.e. ``n + 1``
checkpoints at unit spacing.  Here row ``i`` of the matrix sits at ``x = i``
(``i = 0 .. n_checkpoints - 1``), which is the same thing: the last row is the paper's ``x_n``,
so ``dL = slope * (n_checkpoints - 1)``.  Only the relative spacing matters for the fitted
end points, so equally spaced checkpoints (the paper saves one every 1B tokens) are assumed.

Tokens with a non-finite loss at any checkpoint (e.g. block starts, NaN in score files) get the
category ``"NA"`` and are left out of ``L_mean`` and of category shares.

Paper D.2 / claim C2 is about tokens whose loss *fluctuates*; :func:`fluctuation` measures it
as the root-mean-square residual of the trajectory around its fitted line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CATEGORIES: tuple[str, ...] = ("H->H", "L->H", "H->L", "L->L")
UNDEFINED = "NA"
_CHUNK = 1 << 18


class DynamicsError(ValueError):
    """A loss matrix of the wrong shape or type."""


@dataclass
class TokenDynamics:
    """Per-token trajectory fit and category (arrays of length ``n_tokens``)."""

    categories: np.ndarray
    delta: np.ndarray
    slope: np.ndarray
    intercept: np.ndarray
    last: np.ndarray
    last_mean: float
    fluctuation: np.ndarray

    def shares(self) -> dict[str, float]:
        """Fraction of defined tokens in each category, in :data:`CATEGORIES` order (all 0 if none).

        ``rho.analysis.category_shares`` gives the same shares as a table beside the paper's.
        """
        defined = self.categories[self.categories != UNDEFINED]
        n = defined.size
        return {c: (float(np.count_nonzero(defined == c)) / n if n else 0.0) for c in CATEGORIES}


def _as_matrix(losses: np.ndarray) -> np.ndarray:
    arr = np.asarray(losses)
    if arr.ndim != 2:
        raise DynamicsError(
            f"losses must be a 2-D [n_checkpoints, n_tokens] matrix, got shape {arr.shape}; "
            "stack one row of per-token losses per checkpoint"
        )
    if arr.shape[0] < 2:
        raise DynamicsError(f"need at least 2 checkpoints to fit a trend, got {arr.shape[0]}")
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise DynamicsError(f"losses must be numeric, got dtype {arr.dtype}")
    return arr


def fit_trend(losses: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares line per token over ``x = 0 .. n_checkpoints-1``.

    Returns ``(slope, intercept, delta, fluctuation)`` as float64 arrays, where
    ``delta = slope * (n_checkpoints - 1)`` (fitted end minus fitted start) and ``fluctuation`` is
    the RMS residual around the line.  Tokens with a non-finite loss get NaN everywhere.
    Vectorised and chunked over tokens, so 1e6 tokens take well under a second.
    """
    arr = _as_matrix(losses)
    n, m = arr.shape
    x = np.arange(n, dtype=np.float64)
    xc = x - x.mean()
    sxx = float(xc @ xc)
    slope = np.empty(m, np.float64)
    intercept = np.empty(m, np.float64)
    fluct = np.empty(m, np.float64)
    for s in range(0, m, _CHUNK):
        e = min(m, s + _CHUNK)
        y = np.asarray(arr[:, s:e], dtype=np.float64)
        ybar = y.mean(axis=0)
        a = (xc @ (y - ybar)) / sxx
        b = ybar - a * x.mean()
        resid = y - (np.outer(x, a) + b)
        slope[s:e] = a
        intercept[s:e] = b
        fluct[s:e] = np.sqrt((resid * resid).mean(axis=0))
    bad = ~np.isfinite(arr).all(axis=0)
    slope[bad] = intercept[bad] = fluct[bad] = np.nan
    return slope, intercept, slope * (n - 1), fluct


def analyze_dynamics(losses: np.ndarray, threshold: float = 0.2) -> TokenDynamics:
    """Fit and classify every token (Appendix D.1); see the module docstring for the rule.

    Boundaries are inclusive as in the paper: ``|dL| == threshold`` falls in ``L->L``/``H->H``.
    "Equal" allows for float rounding: 0.2 has no exact binary form, so a trajectory written as
    ``4.0 -> 4.2`` fits ``dL = 0.19999981`` in float32 and ``0.20000000000000018`` in float64.
    A ``dL`` within ``16 * eps(dtype) * max(1, max |loss|)`` of ``±threshold`` (a few ulps of the
    token's losses in the input precision) therefore counts as on the boundary.
    """
    arr = _as_matrix(losses)
    if not (threshold >= 0 and np.isfinite(threshold)):
        raise DynamicsError(f"threshold must be a non-negative finite number, got {threshold!r}")
    slope, intercept, delta, fluct = fit_trend(arr)
    eps = np.finfo(arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64).eps
    tol = 16 * float(eps) * np.maximum(1.0, np.abs(arr).max(axis=0).astype(np.float64))
    last = np.asarray(arr[-1], dtype=np.float64)
    defined = np.isfinite(delta)
    last_mean = float(last[defined].mean()) if defined.any() else float("nan")
    cat = np.full(arr.shape[1], UNDEFINED, dtype="<U4")
    down = defined & (delta < -threshold - tol)
    up = defined & (delta > threshold + tol)
    flat = defined & ~down & ~up
    cat[down] = "H->L"
    cat[up] = "L->H"
    cat[flat & (last <= last_mean)] = "L->L"
    cat[flat & (last > last_mean)] = "H->H"
    return TokenDynamics(cat, delta, slope, intercept, last, last_mean, fluct)


def classify_tokens(losses: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """Category per token, ``"H->H" | "L->H" | "H->L" | "L->L"`` (``"NA"`` for non-finite rows).

    ``losses`` is ``[n_checkpoints, n_tokens]``.  Use :func:`analyze_dynamics` for the fitted
    ``dL``, slope, intercept and fluctuation as well.
    """
    return analyze_dynamics(losses, threshold).categories


def loss_change(losses: np.ndarray) -> np.ndarray:
    """Fitted ``dL`` (end minus start of the least-squares line) per token."""
    return fit_trend(losses)[2]


def fluctuation(losses: np.ndarray) -> np.ndarray:
    """RMS residual of each token's loss around its fitted line: how much it fluctuates."""
    return fit_trend(losses)[3]
