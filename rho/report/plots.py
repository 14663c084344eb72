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
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

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


TOKENS_LABEL = "training tokens"


def _tokens_axis(ax: Axes, label: str | None = TOKENS_LABEL) -> None:
    """Token counts on the x axis: engineering ticks (250k, 1M) so small-run ticks do not run together."""
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    if label is not None:
        ax.set_xlabel(label)


def _eng(v: object) -> str:
    """A token count as a short label (40000 -> "40k"); non-numbers unchanged."""
    if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool):
        return EngFormatter(sep="").format_data(float(v))
    return str(v)


def _hue_palette(df: pd.DataFrame, hue: str | None) -> tuple[list | None, dict | None]:
    if hue is None:
        return None, None
    order = list(dict.fromkeys(df[hue]))
    return order, dict(zip(order, sns.color_palette(n_colors=len(order)), strict=True))


def _lines_with_stderr(
    ax: Axes, df: pd.DataFrame, x: str, y: str, hue: str | None, err: str | None = "stderr", **kw
) -> None:
    """``sns.lineplot`` of ``y`` over ``x`` per ``hue``; with an ``err`` column also ±err error bars.

    Without the column the plot is exactly the seaborn default. With it, repeated (hue, x) rows are
    averaged and their errors combined as the standard error of the mean of independent estimates.
    """
    order, palette = _hue_palette(df, hue)
    has_err = err is not None and err in df.columns
    sns.lineplot(
        data=df,
        x=x,
        y=y,
        hue=hue,
        hue_order=order,
        palette=palette,
        marker="o",
        ax=ax,
        **({"errorbar": None} if has_err else {}),
        **kw,
    )
    if not has_err:
        return
    groups = [(None, df)] if hue is None else [(h, df[df[hue] == h]) for h in order]
    for h, sub in groups:
        agg = sub.groupby(x, sort=True).agg(
            _y=(y, "mean"),
            _se=(err, lambda e: float(np.sqrt(np.nansum(np.square(e)))) / max(1, e.notna().sum())),
        )
        ok = agg["_se"].notna() & (agg["_se"] > 0)
        if not ok.any():
            continue
        color = palette[h] if palette is not None else ax.get_lines()[-1].get_color()
        ax.errorbar(
            agg.index[ok],
            agg["_y"][ok],
            yerr=agg["_se"][ok],
            fmt="none",
            ecolor=color,
            elinewidth=1,
            capsize=3,
            alpha=0.8,
        )


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
    err: str | None = "stderr",
) -> Figure:
    """Figure 1: accuracy against training tokens, one line per run, one panel per ``col`` value.

    When ``df`` has an ``err`` column (default ``stderr``, same units as ``y``) each point gets a
    ±err error bar. The x axis shows token counts with engineering ticks (250k, 1M). The title is
    the figure title; with ``col`` each panel is titled by its value, otherwise the single panel
    has no title of its own.
    """
    _need(df, [x, y, hue] + ([col] if col else []), "accuracy_vs_tokens")
    panels = sorted(df[col].unique()) if col else [None]
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, p in zip(axes, panels):
        sub = df if p is None else df[df[col] == p]
        _lines_with_stderr(ax, sub, x, y, hue, err)
        if p is not None:
            ax.set_title(str(p))
        _tokens_axis(ax)
        ax.set_ylabel("accuracy")
    fig.suptitle(title)
    return fig


def token_loss_trajectories(
    losses: np.ndarray,
    tokens: pd.DataFrame,
    checkpoints: Sequence[float] | None = None,
    per_category: int | None = 5,
) -> pd.DataFrame:
    """The ``examples`` frame of :func:`category_loss_curves` from a loss matrix and chosen tokens.

    ``losses`` is ``[n_checkpoints, n_tokens]``; ``tokens`` has ``token_index, category`` (e.g. the
    output of ``rho.analysis.fluctuating_tokens(losses, categories)``, already ranked); at most
    ``per_category`` tokens of each category are kept, in the given order. ``checkpoints`` labels the
    rows (e.g. training tokens; default 0..n-1). Returns ``checkpoint, token_index, category, loss``.
    """
    _need(tokens, ["token_index", "category"], "token_loss_trajectories")
    arr = np.asarray(losses, dtype=np.float64)
    if arr.ndim != 2:
        raise AnalysisInputError(f"losses must be [n_checkpoints, n_tokens], got shape {arr.shape}")
    cps = list(range(arr.shape[0])) if checkpoints is None else list(checkpoints)
    if len(cps) != arr.shape[0]:
        raise AnalysisInputError(f"{len(cps)} checkpoints for {arr.shape[0]} loss rows")
    chosen = tokens if per_category is None else tokens.groupby("category", sort=False).head(per_category)
    rows = []
    for ti, cat in zip(chosen["token_index"], chosen["category"], strict=True):
        if not 0 <= int(ti) < arr.shape[1]:
            raise AnalysisInputError(f"token_index {ti} is outside the {arr.shape[1]} loss columns")
        rows += [
            {"checkpoint": c, "token_index": int(ti), "category": cat, "loss": float(v)}
            for c, v in zip(cps, arr[:, int(ti)], strict=True)
        ]
    return pd.DataFrame(rows, columns=["checkpoint", "token_index", "category", "loss"])


EXAMPLE_PANELS = (("L->L", "(b) fluctuating L->L tokens"), ("H->H", "(c) fluctuating H->H tokens"))


def category_loss_curves(
    curves: pd.DataFrame,
    examples: pd.DataFrame | None = None,
    title: str = "Token loss by category",
    *,
    xlabel: str | None = TOKENS_LABEL,
) -> Figure:
    """Figure 3: (a) mean loss per category per checkpoint, (b)/(c) loss of single fluctuating tokens.

    ``curves`` is the output of ``rho.analysis.mean_loss_curves`` (``checkpoint, category,
    mean_loss``). ``examples`` (optional) is a long frame with one row per (token, checkpoint):
    columns ``checkpoint`` (same axis as ``curves``), ``token_index`` (one line per value),
    ``category`` and ``loss``; :func:`token_loss_trajectories` builds it. Tokens of category
    ``L->L`` are drawn in panel (b), ``H->H`` in panel (c), as in the paper (other categories are
    ignored; a panel without tokens says so). A frame without ``category`` is drawn as one panel
    "(b) fluctuating tokens". The checkpoint axis is labelled ``xlabel`` with engineering ticks
    (checkpoints are training-token counts in the study; pass another label otherwise).
    """
    _need(curves, ["checkpoint", "category", "mean_loss"], "category_loss_curves")
    panels: list[tuple[str, pd.DataFrame]] = []
    if examples is not None:
        _need(examples, ["checkpoint", "token_index", "loss"], "category_loss_curves examples")
        if "category" in examples.columns:
            panels = [(name, examples[examples["category"] == cat]) for cat, name in EXAMPLE_PANELS]
        else:
            panels = [("(b) fluctuating tokens", examples)]
    n = 1 + len(panels)
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
    _tokens_axis(axes[0], xlabel)
    for ax, (name, ex) in zip(axes[1:], panels, strict=True):
        if ex.empty:
            ax.text(
                0.5, 0.5, "no such tokens", ha="center", va="center", transform=ax.transAxes, color="#777"
            )
        else:
            sns.lineplot(
                data=ex.astype({"token_index": str}),
                x="checkpoint",
                y="loss",
                hue="token_index",
                palette="tab10",
                marker=".",
                ax=ax,
                legend=False,
            )
        ax.set_title(name)
        ax.set_ylabel("token loss")
        _tokens_axis(ax, xlabel)
    fig.suptitle(title)
    return fig


def benchmark_bars(
    df: pd.DataFrame,
    *,
    x: str = "task",
    y: str = "value",
    hue: str = "run",
    title: str = "Benchmark accuracy",
    err: str | None = "stderr",
) -> Figure:
    """Figure 5: per-benchmark bars of accuracy, one bar per run.

    Repeated (``x``, ``hue``) rows are averaged. When ``df`` has an ``err`` column (default
    ``stderr``, same units as ``y``) each bar gets a ±err error bar. A bar of exactly 0 is labelled
    "0" so it cannot be mistaken for a missing task (which has no bar and no label).
    """
    _need(df, [x, y, hue], "benchmark_bars")
    tasks = list(dict.fromkeys(df[x]))
    order, palette = _hue_palette(df, hue)
    has_err = err is not None and err in df.columns
    agg = df.groupby([hue, x], sort=False).agg(
        _y=(y, "mean"),
        **(
            {"_se": (err, lambda e: float(np.sqrt(np.nansum(np.square(e)))) / max(1, e.notna().sum()))}
            if has_err
            else {}
        ),
    )
    fig = Figure(figsize=(max(5.0, 0.7 * len(tasks) * max(1, len(order))), 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(order)
    top = float(np.nanmax(np.abs(agg["_y"]))) if len(agg) else 1.0
    for i, h in enumerate(order):
        sub = agg.loc[h]
        pos = np.array([tasks.index(t) for t in sub.index]) - 0.4 + width * (i + 0.5)
        vals = sub["_y"].to_numpy(dtype=float)
        ax.bar(pos, vals, width=width, color=palette[h], label=str(h))
        if has_err:
            se = sub["_se"].to_numpy(dtype=float)
            ok = np.isfinite(se) & (se > 0)
            if ok.any():
                ax.errorbar(
                    pos[ok], vals[ok], yerr=se[ok], fmt="none", ecolor="#333", elinewidth=1, capsize=2
                )
        for p_, v in zip(pos, vals, strict=True):
            if v == 0:
                ax.annotate(
                    "0",
                    (p_, 0),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color="#333",
                )
    ax.set_xticks(range(len(tasks)), [str(t) for t in tasks], rotation=45, ha="right")
    ax.set_xlim(-0.6, len(tasks) - 0.4)
    if top == 0 or not np.isfinite(top):
        ax.set_ylim(0, 1)
    ax.set_xlabel(x)
    ax.set_ylabel("accuracy")
    ax.legend(title=hue, fontsize=8)
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
        _tokens_axis(ax)
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
    table: pd.DataFrame,
    title: str = "PPL of tokens selected at each checkpoint",
    *,
    xlabel: str | None = "evaluating checkpoint (training tokens)",
) -> Figure:
    """Figure 8: perplexity (y) under each evaluating checkpoint (x), one line per selecting checkpoint.

    ``table`` is the tidy output of ``rho.analysis.selected_ppl_matrix``; checkpoints are training
    token counts in the study (engineering ticks and legend labels such as "40k").
    """
    _need(table, ["selected_at", "evaluated_at", "ppl"], "selected_ppl_lines")
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.subplots()
    sel = table.assign(selected_at=[_eng(v) for v in table["selected_at"]])
    sns.lineplot(
        data=sel,
        x="evaluated_at",
        y="ppl",
        hue="selected_at",
        marker="o",
        ax=ax,
    )
    _tokens_axis(ax, xlabel)
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
    err: str | None = "stderr",
) -> Figure:
    """Figure 9: accuracy against the token select ratio (x in (0, 1], shown in %), one line per task.

    When ``df`` has an ``err`` column (default ``stderr``, same units as ``y``) each point gets a
    ±err error bar.
    """
    _need(df, [x, y] + ([hue] if hue else []), "accuracy_vs_ratio")
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.subplots()
    _lines_with_stderr(ax, df.assign(**{x: 100 * df[x]}), x, y, hue, err)
    ax.set_xlabel("token select ratio (%)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    return fig
