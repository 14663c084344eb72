"""How well token selection separates injected noise from content (our addition to the paper).

The miniature corpora carry a provenance label per token (0 = content, >0 = a kind of injected
noise). Treating "dropped by selection" as a detector of "noise", this module reports precision,
recall and F1 of that detector (and of "selected" as a detector of "content"), plus the share of
each label's tokens that selection kept. Inputs are either boolean masks with aligned labels or
per-label counts ``{label: (n_valid, n_selected)}`` as a training log accumulates them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from rho.analysis._labels import LabelNames, label_name_map
from rho.analysis.errors import AnalysisInputError

Counts = Mapping[int | str, tuple[int, int] | list[int]]


def label_counts_from_masks(
    selected: np.ndarray,
    labels: np.ndarray,
    valid: np.ndarray | None = None,
) -> dict[int, tuple[int, int]]:
    """Count ``(n_valid, n_selected)`` tokens per provenance label.

    ``selected``, ``labels`` and the optional ``valid`` mask (tokens that carry a loss, e.g.
    ``labels != -100`` of the training batch) share one shape (any, e.g. ``[B, L]``). Selected tokens
    outside ``valid`` are an error: selection must only pick tokens that have a loss.
    """
    sel = np.asarray(selected)
    lab = np.asarray(labels)
    if sel.dtype != np.bool_:
        raise AnalysisInputError(
            f"selected must be a boolean mask, got dtype {sel.dtype}; use mask.astype(bool)"
        )
    if sel.shape != lab.shape:
        raise AnalysisInputError(
            f"selected has shape {sel.shape} but labels {lab.shape}; align the provenance labels with the mask"
        )
    if lab.size and (not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0):
        raise AnalysisInputError("labels must be non-negative integers (0 = content, >0 = noise kinds)")
    if valid is None:
        val = np.ones(sel.shape, dtype=bool)
    else:
        val = np.asarray(valid)
        if val.shape != sel.shape or val.dtype != np.bool_:
            raise AnalysisInputError(
                f"valid must be a boolean mask of shape {sel.shape}, got {val.dtype} {val.shape}"
            )
        if (sel & ~val).any():
            raise AnalysisInputError(
                f"{int((sel & ~val).sum())} selected tokens are not valid; selection must only keep tokens with a loss"
            )
    out: dict[int, tuple[int, int]] = {}
    for v in np.unique(lab[val]):
        m = val & (lab == v)
        out[int(v)] = (int(m.sum()), int((m & sel).sum()))
    return out


def sum_label_counts(
    records: list[Mapping[int | str, tuple[int, int] | list[int]]],
) -> dict[int | str, tuple[int, int]]:
    """Add per-label ``(n_valid, n_selected)`` counts over many records (e.g. one per training step)."""
    total: dict[int | str, list[int]] = {}
    for rec in records:
        for k, pair in _check_counts(rec).items():
            acc = total.setdefault(k, [0, 0])
            acc[0] += pair[0]
            acc[1] += pair[1]
    return {k: (v[0], v[1]) for k, v in total.items()}


def kept_by_label(counts: Counts, label_names: LabelNames = None) -> pd.DataFrame:
    """Fraction of each label's valid tokens that selection kept.

    Returns columns ``label, label_name, kind, n_valid, n_selected, kept_fraction``, content first.
    Keys of ``counts`` are label values (named through ``label_names``) or names; the content key is
    ``0`` or ``"content"``.
    """
    rows = _rows(counts, label_names)
    df = pd.DataFrame(rows, columns=["label", "label_name", "kind", "n_valid", "n_selected"])
    df["kept_fraction"] = np.where(
        df["n_valid"] > 0, df["n_selected"] / df["n_valid"].where(df["n_valid"] > 0, 1), np.nan
    )
    return df


def detection_metrics(counts: Counts, label_names: LabelNames = None) -> pd.DataFrame:
    """Precision, recall and F1 of "dropped" as a noise detector and of "selected" as a content detector.

    Returns two rows, ``target = "dropped~noise"`` and ``"selected~content"``, with columns
    ``target, tp, fp, fn, precision, recall, f1, prevalence``; ``prevalence`` is the share of the
    target class among valid tokens (the precision a random selection of the same size would get).
    Undefined ratios (0/0) are NaN.
    """
    rows = _rows(counts, label_names)
    content_valid = sum(r["n_valid"] for r in rows if r["kind"] == "content")
    content_sel = sum(r["n_selected"] for r in rows if r["kind"] == "content")
    noise_valid = sum(r["n_valid"] for r in rows if r["kind"] == "noise")
    noise_sel = sum(r["n_selected"] for r in rows if r["kind"] == "noise")
    total = content_valid + noise_valid
    if total == 0:
        raise AnalysisInputError("no valid tokens in counts; nothing to score")
    out = []
    # dropped ~ noise: tp = dropped noise, fp = dropped content, fn = kept noise
    out.append(
        _prf(
            "dropped~noise",
            noise_valid - noise_sel,
            content_valid - content_sel,
            noise_sel,
            noise_valid / total,
        )
    )
    # selected ~ content: tp = kept content, fp = kept noise, fn = dropped content
    out.append(
        _prf("selected~content", content_sel, noise_sel, content_valid - content_sel, content_valid / total)
    )
    return pd.DataFrame(out)


def _prf(target: str, tp: int, fp: int, fn: int, prevalence: float) -> dict:
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    if np.isnan(precision) or np.isnan(recall):
        f1 = float("nan")
    else:
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {
        "target": target,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "prevalence": prevalence,
    }


def _check_counts(counts: Counts) -> dict[int | str, tuple[int, int]]:
    if not isinstance(counts, Mapping) or not counts:
        raise AnalysisInputError("counts must be a non-empty mapping {label: (n_valid, n_selected)}")
    out: dict[int | str, tuple[int, int]] = {}
    for k, pair in counts.items():
        key: int | str = k
        if isinstance(k, str) and k.isdigit():
            key = int(k)  # JSON object keys are strings
        try:
            n_valid, n_sel = (int(x) for x in pair)
        except (TypeError, ValueError):
            raise AnalysisInputError(
                f"counts[{k!r}] = {pair!r} is not a pair (n_valid, n_selected)"
            ) from None
        if n_valid < 0 or n_sel < 0 or n_sel > n_valid:
            raise AnalysisInputError(
                f"counts[{k!r}] = ({n_valid}, {n_sel}): need 0 <= n_selected <= n_valid; check the log's counters"
            )
        out[key] = (n_valid, n_sel)
    return out


def _rows(counts: Counts, label_names: LabelNames) -> list[dict]:
    checked = _check_counts(counts)
    int_keys = np.array([k for k in checked if isinstance(k, int)], dtype=np.int64)
    names = label_name_map(int_keys, label_names) if int_keys.size else {}
    if label_names is None:
        ids: dict[str, int] = {}
    elif isinstance(label_names, Mapping):
        ids = {str(v): int(k) for k, v in label_names.items()}
    else:
        ids = {str(n): i for i, n in enumerate(label_names)}
    rows = []
    for k, (n_valid, n_sel) in checked.items():
        if isinstance(k, int):
            label, name, content = k, names[k], k == 0
        else:  # a name, as training logs key their counts: its id comes from label_names
            label, name = ids.get(k), k
            content = k == "content" if label is None else label == 0
        rows.append(
            {
                "label": label,
                "label_name": name,
                "kind": "content" if content else "noise",
                "n_valid": n_valid,
                "n_selected": n_sel,
            }
        )
    rows.sort(
        key=lambda r: (r["kind"] != "content", r["label"] is None, r["label"] or 0, str(r["label_name"]))
    )
    return rows
