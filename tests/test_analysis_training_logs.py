"""Training logs (log.jsonl) to tidy loss curves."""

import json

import numpy as np
import pytest

from rho.analysis import (
    AnalysisInputError,
    kept_by_label,
    label_counts,
    loss_curves,
    read_log,
    values_at_tokens,
)


def _write_log(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def runs(tmp_path):
    slm = [
        {
            "step": s,
            "tokens": 100 * s,
            "loss": 3.0 - 0.1 * s,
            "loss_selected": 3.2 - 0.2 * s,
            "loss_unselected": 2.5 + 0.05 * s,
            "selected_frac": 0.6,
        }
        for s in (3, 1, 2)  # out of order on purpose
    ]
    clm = [{"step": s, "tokens": 100 * s, "loss": 3.0 - 0.05 * s, "loss_selected": None} for s in (1, 2, 3)]
    (tmp_path / "slm").mkdir()
    _write_log(tmp_path / "slm" / "log.jsonl", slm)
    _write_log(tmp_path / "clm.jsonl", clm)
    return tmp_path


def test_read_log_sorts_and_accepts_run_dir(runs):
    df = read_log(runs / "slm")
    assert list(df["step"]) == [1, 2, 3]
    np.testing.assert_allclose(df["loss_selected"], [3.0, 2.8, 2.6])


def test_loss_curves_tidy(runs):
    curves = loss_curves({"SLM": runs / "slm", "CLM": runs / "clm.jsonl"})
    assert list(curves.columns) == ["run", "step", "tokens", "metric", "value"]
    per = curves.groupby(["run", "metric"]).size().to_dict()
    assert per == {
        ("SLM", "loss"): 3,
        ("SLM", "loss_selected"): 3,
        ("SLM", "loss_unselected"): 3,
        ("CLM", "loss"): 3,
    }
    smooth = loss_curves({"SLM": read_log(runs / "slm")}, ["loss_selected"], smooth=2)
    np.testing.assert_allclose(smooth["value"], [3.0, 2.9, 2.7])


def test_values_at_tokens(runs):
    curves = loss_curves({"SLM": runs / "slm"}, ["loss_selected"])
    at = values_at_tokens(curves, [150, 300])
    np.testing.assert_allclose(at["value"], [3.0, 2.6])
    assert list(at["step"]) == [1, 3]
    with pytest.raises(AnalysisInputError, match="first at 100"):
        values_at_tokens(curves, [50])


def test_read_log_errors_name_the_line(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text('{"step": 1, "tokens": 10}\n{"step": 2, "tok')
    with pytest.raises(AnalysisInputError, match=r"log.jsonl:2: not valid JSON"):
        read_log(p)
    p.write_text('{"step": 1}\n')
    with pytest.raises(AnalysisInputError, match=r":1: record lacks \['tokens'\]"):
        read_log(p)
    with pytest.raises(AnalysisInputError, match="no training log"):
        read_log(tmp_path / "missing")
    with pytest.raises(AnalysisInputError, match="none of the metrics"):
        loss_curves({"x": _write_log(tmp_path / "l2.jsonl", [{"step": 1, "tokens": 1}])})


def test_label_counts_sum_over_steps(tmp_path):
    recs = [
        {
            "step": 1,
            "tokens": 10,
            "label_counts": {"content": [6, 5], "gibberish": [4, 1]},
        },
        {
            "step": 2,
            "tokens": 20,
            "label_counts": {"content": [8, 6], "gibberish": [2, 0]},
        },
    ]
    log = read_log(_write_log(tmp_path / "log.jsonl", recs))
    assert label_counts(log) == {"content": (14, 11), "gibberish": (6, 1)}
    assert label_counts(log, min_step=2) == {"content": (8, 6), "gibberish": (2, 0)}
    kept = kept_by_label(label_counts(log)).set_index("label_name")
    assert (
        kept.loc["gibberish", "kept_fraction"] == pytest.approx(1 / 6)
        and kept.loc["content", "kind"] == "content"
    )
    with pytest.raises(AnalysisInputError, match="provenance labels"):
        label_counts(log.drop(columns="label_counts"))
