"""Selection against ground-truth noise labels: counts, precision/recall/F1, kept share per label."""

import math

import numpy as np
import pytest

from rho.analysis import (
    AnalysisInputError,
    detection_metrics,
    kept_by_label,
    label_counts_from_masks,
    sum_label_counts,
)

# 10 tokens: 6 content (label 0), 3 gibberish (1), 1 boilerplate (2)
LABELS = np.array([[0, 0, 0, 1, 1], [0, 0, 0, 1, 2]])
SELECTED = np.array([[1, 1, 0, 0, 1], [1, 1, 1, 0, 0]], dtype=bool)


def test_counts_from_masks():
    counts = label_counts_from_masks(SELECTED, LABELS)
    assert counts == {0: (6, 5), 1: (3, 1), 2: (1, 0)}


def test_counts_respect_valid_mask_and_refuse_invalid_selection():
    valid = np.ones_like(SELECTED)
    valid[:, -1] = False
    sel = SELECTED.copy()
    sel[0, -1] = False
    assert label_counts_from_masks(sel, LABELS, valid) == {0: (6, 5), 1: (2, 0)}
    with pytest.raises(AnalysisInputError, match="not valid"):
        label_counts_from_masks(SELECTED, LABELS, valid)
    with pytest.raises(AnalysisInputError, match="boolean"):
        label_counts_from_masks(SELECTED.astype(int), LABELS)
    with pytest.raises(AnalysisInputError, match="shape"):
        label_counts_from_masks(SELECTED, LABELS[:, :3])


def test_detection_metrics_hand_computed():
    counts = label_counts_from_masks(SELECTED, LABELS)
    df = detection_metrics(counts, ["content", "gibberish", "boilerplate"]).set_index("target")
    # dropped: 1 content + 2 gibberish + 1 boilerplate; noise total 4
    d = df.loc["dropped~noise"]
    assert (d["tp"], d["fp"], d["fn"]) == (3, 1, 1)
    assert (
        d["precision"] == pytest.approx(0.75)
        and d["recall"] == pytest.approx(0.75)
        and d["f1"] == pytest.approx(0.75)
    )
    assert d["prevalence"] == pytest.approx(0.4)
    s = df.loc["selected~content"]
    assert (s["tp"], s["fp"], s["fn"]) == (5, 1, 1)
    assert s["precision"] == pytest.approx(5 / 6) and s["recall"] == pytest.approx(5 / 6)


def test_detection_metrics_undefined_is_nan_and_zero_f1():
    df = detection_metrics({0: (4, 4), 1: (2, 2)}).set_index("target")  # nothing dropped
    assert math.isnan(df.loc["dropped~noise", "precision"])
    assert df.loc["dropped~noise", "recall"] == 0.0
    assert math.isnan(df.loc["dropped~noise", "f1"])
    df = detection_metrics({0: (4, 0), 1: (2, 2)}).set_index("target")  # dropped only content
    assert df.loc["dropped~noise", "precision"] == 0.0 and df.loc["dropped~noise", "f1"] == 0.0


def test_kept_by_label_with_names_and_string_keys():
    df = kept_by_label({0: (6, 5), 1: (3, 1), 2: (1, 0)}, ["content", "gibberish", "boilerplate"])
    assert list(df["label_name"]) == ["content", "gibberish", "boilerplate"]  # content first, then by id
    np.testing.assert_allclose(df["kept_fraction"], [5 / 6, 1 / 3, 0.0])
    assert list(df["kind"]) == ["content", "noise", "noise"]
    # counts as logged in JSON (string keys) and summed over steps
    total = sum_label_counts([{"0": [3, 2], "gibberish": [1, 0]}, {"0": [3, 3], "gibberish": [2, 1]}])
    assert total == {0: (6, 5), "gibberish": (3, 1)}
    df = kept_by_label(total)
    assert df.set_index("label_name").loc["gibberish", "kept_fraction"] == pytest.approx(1 / 3)


def test_counts_validation():
    with pytest.raises(AnalysisInputError, match="n_selected <= n_valid"):
        detection_metrics({0: (2, 3)})
    with pytest.raises(AnalysisInputError, match="not a pair"):
        kept_by_label({0: 5})
    with pytest.raises(AnalysisInputError, match="non-empty"):
        detection_metrics({})


def test_name_keyed_counts_get_their_label_ids_from_the_shard_names():
    """Training logs key counts by name; with the shard's label names the ids come back, in id order."""
    names = ["content", "forum", "navigation", "gibberish"]
    df = kept_by_label({"gibberish": (4, 1), "content": (10, 9), "forum": (5, 2)}, names)
    assert df["label"].tolist() == [0, 1, 3] and df["label_name"].tolist() == [
        "content",
        "forum",
        "gibberish",
    ]
    assert df["kind"].tolist() == ["content", "noise", "noise"]
