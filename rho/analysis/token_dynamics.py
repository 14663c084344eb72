"""Summaries of token loss trajectories over checkpoints (paper Section 2.1, Appendix D, Figures 3, 10-12).

Input is a loss matrix ``losses[n_checkpoints, n_tokens]`` (the loss of each token of a fixed
validation set under each checkpoint) and the per-token categories ``"H->H" | "L->H" | "H->L" |
"L->L"`` that ``rho.dynamics.classify_tokens`` returns (Appendix D.1), where ``"NA"`` marks a token
without a defined trajectory (a non-finite loss, e.g. a block start). Undefined tokens are left out
of every summary, and their loss columns may hold NaN. Every function returns a tidy
``pandas.DataFrame`` (one row per observation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from rho.analysis._labels import LabelNames, as_labels, label_name_map
from rho.analysis.errors import AnalysisInputError

CATEGORIES: tuple[str, ...] = ("H->H", "L->H", "H->L", "L->L")
#: Shares reported in Section 2.1 for Tinyllama-1B on OpenWebMath (15 checkpoints, ~320k tokens).
PAPER_CATEGORY_SHARES: dict[str, float] = {"H->H": 0.11, "L->H": 0.12, "H->L": 0.26, "L->L": 0.51}
#: Category of a token without a defined trajectory (same value as ``rho.dynamics.UNDEFINED``).
UNDEFINED = "NA"


def _matrix(losses: np.ndarray) -> np.ndarray:
    arr = np.asarray(losses, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise AnalysisInputError(
            f"losses has shape {arr.shape}; expected [n_checkpoints >= 2, n_tokens >= 1] "
            "(one row per checkpoint, one column per token)"
        )
    return arr


def as_loss_matrix(losses: np.ndarray) -> np.ndarray:
    """Validate a ``[n_checkpoints, n_tokens]`` loss matrix of finite values and return it as float64."""
    arr = _matrix(losses)
    if not np.isfinite(arr).all():
        raise AnalysisInputError(
            "losses contains NaN/inf (e.g. block-start tokens, which have no prediction); drop those "
            "columns first: losses[:, np.isfinite(losses).all(axis=0)]"
        )
    return arr


def as_categories(categories: np.ndarray | Sequence[str], n_tokens: int | None = None) -> np.ndarray:
    """Validate per-token categories (:data:`CATEGORIES` or :data:`UNDEFINED`) and return them as an object array."""
    arr = np.asarray(categories, dtype=object)
    if arr.ndim != 1:
        raise AnalysisInputError(f"categories must be 1-D (one per token), got shape {arr.shape}")
    if n_tokens is not None and arr.shape[0] != n_tokens:
        raise AnalysisInputError(
            f"{arr.shape[0]} categories for {n_tokens} tokens; classify the same tokens as the loss matrix columns"
        )
    bad = sorted({str(c) for c in arr} - set(CATEGORIES) - {UNDEFINED})
    if bad:
        raise AnalysisInputError(
            f"unknown categories {bad[:5]}; expected values in {list(CATEGORIES)} (or {UNDEFINED!r} for undefined)"
        )
    return arr


def category_shares(categories: np.ndarray | Sequence[str]) -> pd.DataFrame:
    """Share of tokens in each category next to the paper's 11/12/26/51 %.

    Returns columns ``category, n_tokens, share, paper_share, diff`` (``diff = share -
    paper_share``), one row per category in the order of :data:`CATEGORIES`; shares are over the
    defined tokens (``"NA"`` tokens are not counted).
    """
    cats = as_categories(categories)
    n_defined = int((cats != UNDEFINED).sum())
    if n_defined == 0:
        raise AnalysisInputError("no tokens to summarise: categories is empty or all undefined")
    counts = pd.Series(cats).value_counts().reindex(list(CATEGORIES), fill_value=0)
    out = pd.DataFrame({"category": list(CATEGORIES), "n_tokens": counts.to_numpy(dtype=np.int64)})
    out["share"] = out["n_tokens"] / n_defined
    out["paper_share"] = out["category"].map(PAPER_CATEGORY_SHARES)
    out["diff"] = out["share"] - out["paper_share"]
    return out


def mean_loss_curves(
    losses: np.ndarray,
    categories: np.ndarray | Sequence[str],
    checkpoints: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Mean (and std) loss of each category at each checkpoint (Figure 3a).

    ``checkpoints`` labels the rows of ``losses`` (e.g. tokens seen); default 0..n-1. Returns columns
    ``checkpoint, category, mean_loss, std_loss, n_tokens``; categories with no tokens are omitted.
    """
    raw = _matrix(losses)
    cats = as_categories(categories, raw.shape[1])
    arr = as_loss_matrix(raw[:, cats != UNDEFINED])
    cats = cats[cats != UNDEFINED]
    xs = _checkpoint_axis(checkpoints, arr.shape[0])
    rows = []
    for cat in CATEGORIES:
        sel = cats == cat
        n = int(sel.sum())
        if n == 0:
            continue
        sub = arr[:, sel]
        for x, m, s in zip(xs, sub.mean(axis=1), sub.std(axis=1)):
            rows.append({"checkpoint": x, "category": cat, "mean_loss": m, "std_loss": s, "n_tokens": n})
    return pd.DataFrame(rows, columns=["checkpoint", "category", "mean_loss", "std_loss", "n_tokens"])


def fit_lines(losses: np.ndarray) -> pd.DataFrame:
    """Least-squares line through each token's losses over checkpoints x = 0..n-1 (Appendix D.1, eq. 6).

    Returns one row per token with ``slope, intercept, loss_start`` (= intercept), ``loss_end``
    (= slope * (n-1) + intercept), ``delta_loss`` (end - start), ``final_loss`` (the last
    checkpoint's observed loss) and ``residual_std`` (std of the residuals around the line, the
    fluctuation measure of Appendix D.2).
    """
    from rho.dynamics import fit_trend  # the one implementation of the Appendix D.1 fit

    arr = as_loss_matrix(losses)
    slope, intercept, delta, fluct = fit_trend(arr)
    return pd.DataFrame(
        {
            "slope": slope,
            "intercept": intercept,
            "loss_start": intercept,
            "loss_end": intercept + delta,
            "delta_loss": delta,
            "final_loss": arr[-1],
            "residual_std": fluct,
        }
    )


def fluctuating_tokens(
    losses: np.ndarray,
    categories: np.ndarray | Sequence[str] | None = None,
    *,
    top_k: int = 10,
    within: Sequence[str] = ("L->L", "H->H"),
    labels: np.ndarray | Sequence[int] | None = None,
    label_names: LabelNames = None,
) -> pd.DataFrame:
    """The ``top_k`` tokens whose loss fluctuates most around their fitted line (Figure 3b/c, D.2).

    Tokens are ranked by ``residual_std`` (see :func:`fit_lines`), restricted to the categories in
    ``within`` when ``categories`` is given (the paper shows L->L and H->H examples). Returns columns
    ``token_index, category, residual_std, delta_loss, final_loss`` (+ ``label, label_name`` when
    ``labels`` is given), sorted by ``residual_std`` descending, ties broken by token index.
    """
    arr = as_loss_matrix(losses)
    if top_k < 1:
        raise AnalysisInputError(f"top_k must be >= 1, got {top_k}")
    fits = fit_lines(arr)
    fits.insert(0, "token_index", np.arange(arr.shape[1]))
    if categories is not None:
        cats = as_categories(categories, arr.shape[1])
        unknown = sorted(set(within) - set(CATEGORIES))
        if unknown:
            raise AnalysisInputError(
                f"within has unknown categories {unknown}; use values of {list(CATEGORIES)}"
            )
        fits.insert(1, "category", cats)
        fits = fits[fits["category"].isin(list(within))]
    if labels is not None:
        lab = as_labels(labels, arr.shape[1])
        names = label_name_map(lab, label_names)
        fits["label"] = lab[fits["token_index"].to_numpy()]
        fits["label_name"] = fits["label"].map(names)
    fits = fits.sort_values(["residual_std", "token_index"], ascending=[False, True], kind="stable")
    keep = ["token_index"] + (["category"] if categories is not None else [])
    keep += ["residual_std", "delta_loss", "final_loss"] + (
        ["label", "label_name"] if labels is not None else []
    )
    return fits[keep].head(top_k).reset_index(drop=True)


def category_shares_by_label(
    categories: np.ndarray | Sequence[str],
    labels: np.ndarray | Sequence[int],
    label_names: LabelNames = None,
) -> pd.DataFrame:
    """Share of each category among the tokens of each provenance label (content vs noise kinds).

    Returns columns ``label, label_name, kind ("content"|"noise"), category, n_tokens, share``
    where ``share`` is within the label (shares of one label sum to 1); every category appears for
    every label present (zero counts included); undefined (``"NA"``) tokens are left out.
    """
    cats = as_categories(categories)
    lab = as_labels(labels, cats.shape[0])
    defined = cats != UNDEFINED
    cats, lab = cats[defined], lab[defined]
    if cats.size == 0:
        raise AnalysisInputError("no tokens to summarise: categories is empty or all undefined")
    names = label_name_map(lab, label_names)
    rows = []
    for v, name in names.items():
        sel = lab == v
        total = int(sel.sum())
        sub = cats[sel]
        for cat in CATEGORIES:
            n = int((sub == cat).sum())
            rows.append(
                {
                    "label": v,
                    "label_name": name,
                    "kind": "content" if v == 0 else "noise",
                    "category": cat,
                    "n_tokens": n,
                    "share": n / total,
                }
            )
    return pd.DataFrame(rows)


def _checkpoint_axis(checkpoints: Sequence[float] | None, n: int) -> list:
    if checkpoints is None:
        return list(range(n))
    xs = list(checkpoints)
    if len(xs) != n:
        raise AnalysisInputError(
            f"{len(xs)} checkpoint labels for {n} loss rows; give one label per checkpoint"
        )
    return xs


def noise_among_fluctuating(
    losses: np.ndarray,
    categories: np.ndarray | Sequence[str],
    labels: np.ndarray | Sequence[int],
    *,
    top_frac: float = 0.1,
    within: Sequence[str] = ("L->L", "H->H"),
) -> dict[str, float]:
    """Share of noise (label > 0) among the most fluctuating tokens vs among all tokens of ``within``.

    The most fluctuating tokens are the ``top_frac`` share (at least one) of the ``within`` tokens
    with the largest ``residual_std``. Returns ``{"fluctuating_noise_share", "noise_share",
    "n_fluctuating"}``, the inputs of claim C2 in ``rho.report.claims``.
    """
    raw = _matrix(losses)
    n_tokens = raw.shape[1]
    cats = as_categories(categories, n_tokens)
    lab = as_labels(labels, n_tokens)
    if not 0 < top_frac <= 1:
        raise AnalysisInputError(f"top_frac must be in (0, 1], got {top_frac}")
    pool = np.flatnonzero(np.isin(cats, list(within)))
    if pool.size == 0:
        raise AnalysisInputError(f"no tokens in categories {list(within)}; nothing to rank")
    std = fit_lines(raw[:, pool])["residual_std"].to_numpy()
    k = max(1, int(round(top_frac * pool.size)))
    top = pool[np.lexsort((pool, -std))[:k]]
    return {
        "fluctuating_noise_share": float((lab[top] > 0).mean()),
        "noise_share": float((lab[pool] > 0).mean()),
        "n_fluctuating": float(k),
    }
