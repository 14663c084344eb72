"""Provenance label names shared by the analyses (0 = content, >0 = noise kinds)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rho.analysis.errors import AnalysisInputError

LabelNames = Sequence[str] | Mapping[int, str] | None


def label_name_map(labels: np.ndarray, label_names: LabelNames) -> dict[int, str]:
    """Map every label value present in ``labels`` to a name.

    ``label_names`` is either the shard's ``meta["label_names"]`` list (index = label value), a
    dict ``{label: name}``, or None; missing names become ``"content"`` for 0 and ``"label_<k>"``
    otherwise.
    """
    present = sorted(int(v) for v in np.unique(labels))
    if label_names is None:
        given: dict[int, str] = {}
    elif isinstance(label_names, Mapping):
        given = {int(k): str(v) for k, v in label_names.items()}
    else:
        given = {i: str(n) for i, n in enumerate(label_names)}
    names = {}
    for v in present:
        names[v] = given.get(v, "content" if v == 0 else f"label_{v}")
    dup = {n for n in names.values() if list(names.values()).count(n) > 1}
    if dup:
        raise AnalysisInputError(
            f"label names {sorted(dup)} are used for more than one label value; give each label a distinct name"
        )
    return names


def as_labels(labels: np.ndarray | Sequence[int], n: int, what: str = "labels") -> np.ndarray:
    """Return ``labels`` as a 1-D int64 array of length ``n`` (non-negative), or raise."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise AnalysisInputError(
            f"{what} has shape {arr.shape}, expected ({n},): pass one provenance label per token, aligned "
            "with the other per-token arrays"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise AnalysisInputError(
            f"{what} must be integers (0 = content, >0 = noise kinds), got dtype {arr.dtype}"
        )
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise AnalysisInputError(
            f"{what} has negative values; provenance labels are 0 (content) or >0 (noise)"
        )
    return arr
