"""Figure helpers: each draws what it is given and saves a PNG atomically."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.container import ErrorbarContainer
from matplotlib.ticker import EngFormatter

from rho.analysis import (
    AnalysisInputError,
    fit_log_accuracy,
    fluctuating_tokens,
    loss_curves,
    mean_loss_curves,
    selected_ppl_matrix,
)
from rho.report import plots


def _lines(ax):
    return [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1 and ln.get_linestyle() != "None"]


def _errorbars(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _yerr(container):
    """Half-lengths of the vertical error bars of one ErrorbarContainer, in drawing order."""
    (segs,) = container.lines[2]
    return [float(s[1, 1] - s[0, 1]) / 2 for s in segs.get_segments()]


def _xticklabels(fig, ax):
    fig.draw_without_rendering()
    return [t.get_text() for t in ax.get_xticklabels() if t.get_text()]


def _assert_tokens_axis(fig, ax, label="training tokens"):
    assert isinstance(ax.xaxis.get_major_formatter(), EngFormatter)
    assert ax.get_xlabel() == label
    ticks = _xticklabels(fig, ax)
    assert ticks and all(len(t) <= 6 for t in ticks), ticks  # "40k", "1.5M", never "010000200003000040000"


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
    assert [a.get_title() for a in fig.axes] == ["(a) mean loss per category", "(b) fluctuating tokens"]
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


def _runs_frame(stderr=True):
    t = pd.DataFrame(
        {
            "tokens": [10_000, 20_000, 40_000] * 2,
            "acc": [0.10, 0.20, 0.25, 0.15, 0.30, 0.31],
            "run": ["CLM"] * 3 + ["SLM"] * 3,
            "task": "avg",
        }
    )
    return t.assign(stderr=[0.01, 0.02, 0.0, 0.03, 0.01, 0.02]) if stderr else t


def test_accuracy_vs_tokens_title_once_and_tokens_axis():
    fig = plots.accuracy_vs_tokens(_runs_frame(False), col=None, title="Figure 1 analog")
    assert fig.get_suptitle() == "Figure 1 analog"
    assert [a.get_title() for a in fig.axes] == [""]  # not repeated as the panel title
    _assert_tokens_axis(fig, fig.axes[0])
    assert "10k" in _xticklabels(fig, fig.axes[0]) or "20k" in _xticklabels(fig, fig.axes[0])
    fig = plots.accuracy_vs_tokens(pd.concat([_runs_frame(False), _runs_frame(False).assign(task="gsm8k")]))
    assert [a.get_title() for a in fig.axes] == [
        "avg",
        "gsm8k",
    ] and fig.get_suptitle() == "Accuracy vs training tokens"


def test_accuracy_vs_tokens_stderr_bars():
    ax = plots.accuracy_vs_tokens(_runs_frame(False), col=None).axes[0]
    assert _errorbars(ax) == [] and len(_lines(ax)) == 2  # no stderr column: as before
    ax = plots.accuracy_vs_tokens(_runs_frame(), col=None).axes[0]
    bars = _errorbars(ax)
    assert len(bars) == 2 and len(_lines(ax)) == 2
    assert _yerr(bars[0]) == pytest.approx([0.01, 0.02])  # the 0-stderr point has no bar
    assert _yerr(bars[1]) == pytest.approx([0.03, 0.01, 0.02])
    clm_line = next(ln for ln in _lines(ax) if ln.get_ydata()[0] == pytest.approx(0.10))
    assert to_rgb(bars[0].lines[2][0].get_color()[0]) == pytest.approx(
        to_rgb(clm_line.get_color())
    )  # same colour


def test_accuracy_vs_ratio_stderr_bars():
    r = pd.DataFrame({"ratio": [0.4, 0.6, 1.0], "acc": [0.2, 0.3, 0.25], "stderr": [0.02, 0.03, 0.01]})
    ax = plots.accuracy_vs_ratio(r, hue=None).axes[0]
    (bars,) = _errorbars(ax)
    assert _yerr(bars) == pytest.approx([0.02, 0.03, 0.01])
    np.testing.assert_allclose(bars.lines[2][0].get_segments()[0][:, 0], [40, 40])
    assert _errorbars(plots.accuracy_vs_ratio(r.drop(columns="stderr"), hue=None).axes[0]) == []
    two = pd.concat([r.assign(task="a"), r.assign(task="b")])
    assert len(_errorbars(plots.accuracy_vs_ratio(two).axes[0])) == 2


def test_benchmark_bars_stderr_zero_and_missing():
    df = pd.DataFrame(
        {
            "task": ["gsm8k", "math", "mmlu", "gsm8k", "math"],  # SLM has no mmlu row
            "run": ["CLM", "CLM", "CLM", "SLM", "SLM"],
            "value": [0.30, 0.0, 0.25, 0.35, 0.05],
            "stderr": [0.02, 0.0, 0.01, 0.02, 0.01],
        }
    )
    ax = plots.benchmark_bars(df).axes[0]
    assert len(ax.patches) == 5  # a missing task draws no bar
    heights = {round(p.get_x() + p.get_width() / 2, 2): p.get_height() for p in ax.patches}
    assert sorted(heights.values()) == pytest.approx([0.0, 0.05, 0.25, 0.30, 0.35])
    bars = _errorbars(ax)
    assert len(bars) == 2
    assert _yerr(bars[0]) == pytest.approx([0.02, 0.01]) and _yerr(bars[1]) == pytest.approx([0.02, 0.01])
    zeros = [t for t in ax.texts if t.get_text() == "0"]
    assert len(zeros) == 1 and zeros[0].xy[0] == pytest.approx(1 - 0.4 + 0.2)  # above CLM's math bar
    assert [t.get_text() for t in ax.get_xticklabels()] == ["gsm8k", "math", "mmlu"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["CLM", "SLM"]
    plain = plots.benchmark_bars(df.drop(columns="stderr")).axes[0]
    assert _errorbars(plain) == [] and len(plain.patches) == 5


def test_token_axes_use_engineering_ticks():
    logs = {
        "SLM": pd.DataFrame(
            {"step": [1, 2, 3], "tokens": [10_000, 20_000, 40_000], "loss_selected": [3.0, 2.0, 1.5]}
        ),
    }
    fig = plots.training_loss_curves(loss_curves(logs))
    _assert_tokens_axis(fig, fig.axes[0])
    ppl = selected_ppl_matrix(
        np.ones((3, 4)),
        np.eye(4, dtype=bool)[:2],
        eval_checkpoints=[10_000, 20_000, 40_000],
        select_checkpoints=[10_000, 40_000],
    )
    fig = plots.selected_ppl_lines(ppl)
    _assert_tokens_axis(fig, fig.axes[0], "evaluating checkpoint (training tokens)")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["10k", "40k"]


def _dynamics():
    rng = np.random.default_rng(0)
    cps = [250_000, 500_000, 750_000, 1_000_000, 1_250_000]
    cats = np.array(["H->H", "L->H", "H->L", "L->L", "L->L", "H->H", "L->L"], dtype=object)
    losses = rng.uniform(0.5, 4.0, size=(len(cps), len(cats)))
    return cps, cats, losses


def test_category_loss_curves_panels_b_and_c():
    cps, cats, losses = _dynamics()
    curves = mean_loss_curves(losses, cats, checkpoints=cps)
    fluct = fluctuating_tokens(losses, cats, top_k=10)
    ex = plots.token_loss_trajectories(losses, fluct, checkpoints=cps, per_category=2)
    assert list(ex.columns) == ["checkpoint", "token_index", "category", "loss"]
    assert ex.groupby("category")["token_index"].nunique().to_dict() == {"H->H": 2, "L->L": 2}
    t = int(ex["token_index"].iloc[0])
    np.testing.assert_allclose(ex[ex.token_index == t]["loss"], losses[:, t])
    fig = plots.category_loss_curves(curves, ex, title="Figure 3 analog")
    assert [a.get_title() for a in fig.axes] == [
        "(a) mean loss per category",
        "(b) fluctuating L->L tokens",
        "(c) fluctuating H->H tokens",
    ]
    assert fig.get_suptitle() == "Figure 3 analog"
    assert len(_lines(fig.axes[0])) == 4 and len(_lines(fig.axes[1])) == 2 and len(_lines(fig.axes[2])) == 2
    for cat, ax in (("L->L", fig.axes[1]), ("H->H", fig.axes[2])):
        want = sorted(tuple(losses[:, i]) for i in set(ex[ex.category == cat].token_index))
        np.testing.assert_allclose(sorted(tuple(ln.get_ydata()) for ln in _lines(ax)), want)
    for ax in fig.axes:
        _assert_tokens_axis(fig, ax)
        assert ax.get_ylabel() in ("mean token loss", "token loss")
    only_ll = plots.category_loss_curves(curves, ex[ex.category == "L->L"])
    assert len(only_ll.axes) == 3 and "no such tokens" in [t.get_text() for t in only_ll.axes[2].texts]
    fig = plots.category_loss_curves(
        curves.assign(checkpoint=curves.checkpoint.rank(method="dense")), xlabel="checkpoint"
    )
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "checkpoint"
    with pytest.raises(AnalysisInputError, match="missing \\['category'\\]"):
        plots.token_loss_trajectories(losses, fluct.drop(columns="category"))
    with pytest.raises(AnalysisInputError, match="4 checkpoints for 5 loss rows"):
        plots.token_loss_trajectories(losses, fluct, checkpoints=cps[:4])
