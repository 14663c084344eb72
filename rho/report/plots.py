"""Figures of the study (analogs of the paper's Figures 1, 3, 5, 6, 7, 8, 9) from tidy frames.

Every function takes tidy frames (the outputs of ``rho.analysis`` or evaluation tables), draws on a
fresh ``matplotlib.figure.Figure`` (no pyplot state, no display needed) and returns it;
:func:`save_figure` writes a PNG atomically. Notebooks only call these.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from rho.analysis.acc_fit import LogFit
from rho.analysis.errors import AnalysisInputError
from rho.analysis.token_dynamics import CATEGORIES
from rho.io import atomic_path

CATEGORY_COLORS = {
    "H->H": "#e6b800",
    "L->H": "#d62728",
    "H->L": "#1f77b4",
    "L->L": "#2ca02c",
}  # as in Figure 11


def _need(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise AnalysisInputError(
            f"{what} needs columns {list(cols)}; missing {missing} (has {list(df.columns)})"
        )
    if df.empty:
        raise AnalysisInputError(f"{what}: the frame is empty, nothing to plot")


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically; return the path."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


def accuracy_vs_tokens(
    df: pd.DataFrame,
    *,
    x: str = "tokens",
    y: str = "acc",
    hue: str = "run",
    col: str | None = "task",
    title: str = "Accuracy vs training tokens",
) -> Figure:
    """Figure 1: accuracy against training tokens, one line per run, one panel per ``col`` value."""
    _need(df, [x, y, hue] + ([col] if col else []), "accuracy_vs_tokens")
    panels = sorted(df[col].unique()) if col else [None]
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, p in zip(axes, panels):
        sub = df if p is None else df[df[col] == p]
        sns.lineplot(data=sub, x=x, y=y, hue=hue, marker="o", ax=ax)
        ax.set_title(str(p) if p is not None else title)
        ax.set_xlabel("training tokens")
        ax.set_ylabel("accuracy")
    fig.suptitle(title)
    return fig


def category_loss_curves(
    curves: pd.DataFrame, examples: pd.DataFrame | None = None, title: str = "Token loss by category"
) -> Figure:
    """Figure 3: mean loss per category per checkpoint (from ``mean_loss_curves``).

    ``examples`` (optional) is a long frame ``checkpoint, token_index, loss`` of fluctuating tokens,
    drawn in a second panel.
    """
    _need(curves, ["checkpoint", "category", "mean_loss"], "category_loss_curves")
    n = 2 if examples is not None else 1
    fig = Figure(figsize=(5.2 * n, 3.6), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    order = [c for c in CATEGORIES if c in set(curves["category"])]
    sns.lineplot(
        data=curves,
        x="checkpoint",
        y="mean_loss",
        hue="category",
        hue_order=order,
        palette=CATEGORY_COLORS,
        marker="o",
        ax=axes[0],
    )
    axes[0].set_ylabel("mean token loss")
    axes[0].set_title("(a) mean loss per category")
    if examples is not None:
        _need(examples, ["checkpoint", "token_index", "loss"], "category_loss_curves examples")
        sns.lineplot(
            data=examples,
            x="checkpoint",
            y="loss",
            hue="token_index",
            palette="tab10",
            marker=".",
            ax=axes[1],
            legend=False,
        )
        axes[1].set_title("(b) fluctuating tokens")
        axes[1].set_ylabel("token loss")
    fig.suptitle(title)
    return fig


def benchmark_bars(
    df: pd.DataFrame,
    *,
    x: str = "task",
    y: str = "value",
    hue: str = "run",
    title: str = "Benchmark accuracy",
) -> Figure:
    """Figure 5: per-benchmark bars of accuracy, one bar per run."""
    _need(df, [x, y, hue], "benchmark_bars")
    fig = Figure(
        figsize=(max(5.0, 0.7 * df[x].nunique() * max(1, df[hue].nunique())), 3.6), layout="constrained"
    )
    ax = fig.subplots()
    sns.barplot(data=df, x=x, y=y, hue=hue, ax=ax)
    ax.tick_params(axis="x", rotation=45)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    return fig


def training_loss_curves(
    curves: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    title: str = "Training loss of selected / unselected tokens",
) -> Figure:
    """Figure 6: one panel per metric (``loss_selected``, downstream loss, ``loss_unselected``), one line per run.

    ``curves`` is the output of ``rho.analysis.loss_curves`` (``run, tokens, metric, value``).
    """
    _need(curves, ["run", "tokens", "metric", "value"], "training_loss_curves")
    metrics = list(metrics) if metrics is not None else list(dict.fromkeys(curves["metric"]))
    fig = Figure(figsize=(4.4 * len(metrics), 3.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, m in zip(axes, metrics):
        sub = curves[curves["metric"] == m]
        if sub.empty:
            raise AnalysisInputError(
                f"no rows for metric {m!r}; metrics present: {sorted(set(curves['metric']))}"
            )
        sns.lineplot(data=sub, x="tokens", y="value", hue="run", ax=ax)
        ax.set_title(m)
        ax.set_xlabel("training tokens")
        ax.set_ylabel("loss")
    fig.suptitle(title)
    return fig


def accuracy_vs_loss(
    points: pd.DataFrame,
    fits: dict[str, LogFit] | None = None,
    *,
    x: str = "loss",
    y: str = "acc",
    panel: str = "loss_kind",
    title: str = "Accuracy vs token loss, Acc = log(aL + c)",
) -> Figure:
    """Figure 7: accuracy against selected / unselected token loss with the fitted log curve per panel."""
    _need(points, [x, y, panel], "accuracy_vs_loss")
    kinds = list(dict.fromkeys(points[panel]))
    fig = Figure(figsize=(4.4 * len(kinds), 3.4), layout="constrained")
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    for ax, k in zip(axes, kinds):
        sub = points[points[panel] == k]
        ax.scatter(sub[x], sub[y], color="#1f77b4", zorder=3)
        if fits and k in fits:
            f = fits[k]
            grid = np.linspace(sub[x].min(), sub[x].max(), 100)
            ax.plot(grid, f.predict(grid), color="#d62728", label=f"a={f.a:.3g}, c={f.c:.3g}, R²={f.r2:.2f}")
            ax.legend(fontsize=8)
        ax.set_title(str(k))
        ax.set_xlabel("loss")
        ax.set_ylabel("accuracy")
    fig.suptitle(title)
    return fig


def selected_ppl_lines(
    table: pd.DataFrame, title: str = "PPL of tokens selected at each checkpoint"
) -> Figure:
    """Figure 8: perplexity (y) under each evaluating checkpoint (x), one line per selecting checkpoint.

    ``table`` is the tidy output of ``rho.analysis.selected_ppl_matrix``.
    """
    _need(table, ["selected_at", "evaluated_at", "ppl"], "selected_ppl_lines")
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.subplots()
    sns.lineplot(
        data=table.astype({"selected_at": str}),
        x="evaluated_at",
        y="ppl",
        hue="selected_at",
        marker="o",
        ax=ax,
    )
    ax.set_xlabel("evaluating checkpoint")
    ax.set_ylabel("perplexity of selected tokens")
    ax.legend(title="selected at", fontsize=8)
    ax.set_title(title)
    return fig


def accuracy_vs_ratio(
    df: pd.DataFrame,
    *,
    x: str = "ratio",
    y: str = "acc",
    hue: str | None = "task",
    title: str = "Effect of token select ratio",
) -> Figure:
    """Figure 9: accuracy against the token select ratio (x in (0, 1], shown in %), one line per task."""
    _need(df, [x, y] + ([hue] if hue else []), "accuracy_vs_ratio")
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.subplots()
    sns.lineplot(data=df.assign(**{x: 100 * df[x]}), x=x, y=y, hue=hue, marker="o", ax=ax)
    ax.set_xlabel("token select ratio (%)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    return fig
