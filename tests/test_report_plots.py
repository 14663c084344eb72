"""Figure helpers: each draws what it is given and saves a PNG atomically."""

import numpy as np
import pandas as pd
import pytest

from rho.analysis import (
    AnalysisInputError,
    fit_log_accuracy,
    loss_curves,
    mean_loss_curves,
    selected_ppl_matrix,
)
from rho.report import plots


def _lines(ax):
    return [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1]


def test_category_loss_curves_one_line_per_category(tmp_path):
    losses = np.linspace(3, 1, 5)[:, None] + np.arange(4)[None, :] * np.ones((5, 4))
    curves = mean_loss_curves(losses, ["H->H", "L->H", "H->L", "L->L"], checkpoints=[1, 2, 3, 4, 5])
    ex = pd.DataFrame(
        {
            "checkpoint": np.tile([1, 2, 3], 2),
            "token_index": np.repeat([7, 9], 3),
            "loss": [1, 3, 1, 2, 0, 2.0],
        }
    )
    fig = plots.category_loss_curves(curves, ex)
    ax = fig.axes[0]
    assert len(_lines(ax)) == 4
    ys = sorted(tuple(ln.get_ydata()) for ln in _lines(ax))
    assert ys[0] == pytest.approx((3.0, 2.5, 2.0, 1.5, 1.0))
    assert len(_lines(fig.axes[1])) == 2
    out = plots.save_figure(fig, tmp_path / "fig3.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["fig3.png"]


def test_training_loss_curves_panels(tmp_path):
    logs = {
        "SLM": pd.DataFrame(
            {"step": [1, 2], "tokens": [10, 20], "loss_selected": [3.0, 2.0], "loss_unselected": [2.0, 2.5]}
        ),
        "CLM": pd.DataFrame({"step": [1, 2], "tokens": [10, 20], "loss_selected": [3.0, 2.7]}),
    }
    fig = plots.training_loss_curves(loss_curves(logs), ["loss_selected", "loss_unselected"])
    assert [a.get_title() for a in fig.axes[:2]] == ["loss_selected", "loss_unselected"]
    assert len(_lines(fig.axes[0])) == 2 and len(_lines(fig.axes[1])) == 1
    with pytest.raises(AnalysisInputError, match="no rows for metric 'loss'"):
        plots.training_loss_curves(loss_curves(logs), ["loss"])


def test_accuracy_vs_loss_draws_fit():
    loss = np.array([1.0, 1.2, 1.4, 1.6])
    acc = np.log(-0.5 * loss + 2.0)
    pts = pd.DataFrame({"loss_kind": "selected", "loss": loss, "acc": acc})
    fig = plots.accuracy_vs_loss(pts, {"selected": fit_log_accuracy(loss, acc)})
    (curve,) = _lines(fig.axes[0])
    np.testing.assert_allclose(curve.get_ydata()[[0, -1]], acc[[0, -1]], rtol=1e-6)
    assert "a=-0.5" in fig.axes[0].get_legend().get_texts()[0].get_text()


def test_other_figures_build(tmp_path):
    t = pd.DataFrame(
        {
            "tokens": [1, 2, 1, 2],
            "acc": [0.1, 0.2, 0.15, 0.3],
            "run": ["CLM", "CLM", "SLM", "SLM"],
            "task": "gsm8k",
        }
    )
    assert len(_lines(plots.accuracy_vs_tokens(t).axes[0])) == 2
    bars = plots.benchmark_bars(t.rename(columns={"acc": "value"}).query("tokens == 2"))
    assert len(bars.axes[0].patches) >= 2
    ppl = selected_ppl_matrix(np.ones((3, 4)), np.eye(4, dtype=bool)[:2], select_checkpoints=[2, 5])
    assert len(_lines(plots.selected_ppl_lines(ppl).axes[0])) == 2
    r = pd.DataFrame({"ratio": [0.4, 0.6, 1.0], "acc": [0.2, 0.3, 0.25], "task": "avg"})
    ax = plots.accuracy_vs_ratio(r).axes[0]
    np.testing.assert_allclose(_lines(ax)[0].get_xdata(), [40, 60, 100])
    plots.save_figure(plots.accuracy_vs_ratio(r), tmp_path / "fig9.png")
    with pytest.raises(AnalysisInputError, match="missing \\['ratio'\\]"):
        plots.accuracy_vs_ratio(r.drop(columns="ratio"))
