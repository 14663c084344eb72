"""Part 02 (notebook ``02_token_dynamics``): paper 2.1 / D.1, categories of token loss trajectories."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from rho.report.plots import save_figure
from rho.study.config import Study, StudyError
from rho.study.parts.reader import part_dir, titled, write_measured, write_table3
from rho.study.stages import snapshots

#: The claims this part tests (rho.report.claims).
CLAIMS = ("C1", "C2")


def token_losses(study: Study, run: str = "math_clm", max_blocks: int | None = None) -> dict[str, Any]:
    """Per-token loss of ``owm_val`` under every checkpoint of ``run``: ``losses`` [checkpoints x tokens].

    Also returns the checkpoints' token counts (``tokens``), the tokens' provenance ``labels`` (or
    None) and the ``shard``.  The expensive step: one forward pass per checkpoint.
    """
    from rho.data.shards import TokenShard
    from rho.study.probes import block_labels, loss_matrix

    z = study.sizes
    max_blocks = max_blocks or z.get("dynamics_blocks")
    shard = TokenShard.open(study.shard("owm_val"))
    cps = snapshots(study, run)
    if len(cps) < 3:
        raise StudyError(
            f"{run} has {len(cps)} checkpoints; token dynamics needs at least 3 (raise `snapshots`)"
        )
    losses = loss_matrix(cps, shard, int(z["block_size"]), max_blocks)
    labels = block_labels(shard, int(z["block_size"]), max_blocks)
    return {"run": run, "shard": shard, "tokens": [t for t, _ in cps], "losses": losses, "labels": labels}


def base_content_curve(study: Study, max_blocks: int | None = None) -> pd.DataFrame:
    """Mean loss of the base model's snapshots on the CPT domain's content tokens (``owm_val``).

    The paper probes token dynamics while continuing an already pretrained model; this curve shows
    whether the study's base had flattened on the CPT domain's content before continual pretraining.
    Columns: tokens (base pretraining tokens), content_loss (nats), rel_change (change from the
    previous snapshot, relative).
    """
    import pandas as pd

    from rho.data.shards import TokenShard
    from rho.study.probes import block_labels, loss_matrix

    z = study.sizes
    max_blocks = max_blocks or z.get("dynamics_blocks")
    shard = TokenShard.open(study.shard("owm_val"))
    cps = snapshots(study, "base")
    losses = loss_matrix(cps, shard, int(z["block_size"]), max_blocks)
    labels = block_labels(shard, int(z["block_size"]), max_blocks)
    keep = np.ones(losses.shape[1], bool) if labels is None else labels == shard.label_names.index("content")
    mean = losses[:, keep].mean(axis=1).astype(float)
    df = pd.DataFrame({"tokens": [t for t, _ in cps], "content_loss": mean})
    df["rel_change"] = df["content_loss"].pct_change()
    return df


def categorize(probe: dict[str, Any]) -> dict[str, Any]:
    """Classify each token's loss trajectory (H->H / L->H / H->L / L->L) and summarise the categories."""
    from rho.analysis import (
        category_shares,
        category_shares_by_label,
        fluctuating_tokens,
        mean_loss_curves,
        noise_among_fluctuating,
    )
    from rho.dynamics import classify_tokens

    losses, labels, shard = probe["losses"], probe["labels"], probe["shard"]
    cats = classify_tokens(losses)
    return {
        "categories": cats,
        "shares": category_shares(cats),
        "curves": mean_loss_curves(losses, cats, checkpoints=probe["tokens"]),
        "fluctuating": fluctuating_tokens(
            losses, cats, top_k=10, labels=labels, label_names=shard.label_names
        ),
        "by_label": category_shares_by_label(cats, labels, shard.label_names) if labels is not None else None,
        "noise": noise_among_fluctuating(losses, cats, labels) if labels is not None else {},
    }


def figure3(study: Study, probe: dict[str, Any], cats: dict[str, Any]) -> Any:
    """Figure 3 analog: mean loss per category over checkpoints, with example token trajectories."""
    from rho.report.plots import category_loss_curves, token_loss_trajectories

    examples = token_loss_trajectories(
        probe["losses"], cats["fluctuating"], checkpoints=probe["tokens"], per_category=3
    )
    fig = category_loss_curves(cats["curves"], examples=examples)
    fig.suptitle(titled(study, f"Figure 3 analog: token loss over checkpoints of `{probe['run']}`"))
    return fig


def measured_of(probe: dict[str, Any], cats: dict[str, Any]) -> dict[str, Any]:
    """The quantities claims C1 and C2 check."""
    shares = cats["shares"]
    return {
        "category_shares": dict(zip(shares["category"], shares["share"], strict=True)),
        "dynamics_checkpoints": probe["tokens"],
        "dynamics_tokens": int(np.asarray(probe["losses"]).shape[1]),
        **cats["noise"],
    }


def token_dynamics_part(
    study: Study, run: str = "math_clm", max_blocks: int | None = None, probe: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Paper 2.1 / D.1: categories of token loss trajectories over the checkpoints of a CLM run.

    ``probe`` is :func:`token_losses` of the same run when a notebook already has it (the
    expensive step is then not repeated).
    """
    if probe is None:
        probe = token_losses(study, run, max_blocks)
    elif probe["run"] != run:
        raise StudyError(f"probe is of run {probe['run']!r}, not {run!r}; pass token_losses(study, {run!r})")
    cats = categorize(probe)
    shares, curves, fluct, by_label = cats["shares"], cats["curves"], cats["fluctuating"], cats["by_label"]
    d = part_dir(study, "token_dynamics")
    write_table3(
        shares,
        d / "category_shares",
        title=f"Token categories over {len(probe['tokens'])} checkpoints of `{run}` ({study.profile}), paper: C1",
    )
    curves.to_csv(d / "category_curves.csv", index=False)
    write_table3(fluct, d / "fluctuating_tokens", title=titled(study, "Most fluctuating L->L / H->H tokens"))
    if by_label is not None:
        write_table3(
            by_label, d / "categories_by_label", title=titled(study, "Categories by provenance label")
        )
    fig = figure3(study, probe, cats)
    save_figure(fig, d / "figure3_category_curves.png")
    measured = measured_of(probe, cats)
    base = base_curve_part(study, max_blocks)
    measured["base_content_loss"] = base[["tokens", "content_loss"]].values.tolist()
    measured["base_last_rel_change"] = float(base["rel_change"].iloc[-1]) if len(base) > 1 else None
    write_measured(study, "token_dynamics", measured)
    return {
        "shares": shares,
        "curves": curves,
        "fluctuating": fluct,
        "by_label": by_label,
        "figure": fig,
        "measured": measured,
        "losses": probe["losses"],
        "base_curve": base,
    }


def base_curve_part(study: Study, max_blocks: int | None = None) -> pd.DataFrame:
    """Write the base model's content-loss curve on the CPT domain (table + figure); return it."""
    from matplotlib.figure import Figure

    base = base_content_curve(study, max_blocks)
    d = part_dir(study, "token_dynamics")
    write_table3(
        base,
        d / "base_content_loss",
        title=titled(
            study, "Base model: mean loss on the CPT domain's content tokens (owm_val) per snapshot"
        ),
    )
    fig = Figure(figsize=(5.2, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.plot(base["tokens"], base["content_loss"], marker="o")
    ax.set_xlabel("base pretraining tokens")
    ax.set_ylabel("loss on owm content (nats)")
    ax.set_title(titled(study, "Base model before continual pretraining"))
    save_figure(fig, d / "base_content_loss.png")
    return base
