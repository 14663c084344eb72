"""Part 03 (notebook ``03_reference_model``): paper 3.1, the reference model and its scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from rho.report.plots import save_figure
from rho.study.config import Study
from rho.study.parts.reader import accuracy_wide, eval_results, part_dir, titled, write_table3

#: The runs this part compares: the base model and the reference model trained from it.
RUNS = ("base", "reference")


def training_curve(study: Study) -> pd.DataFrame:
    """The reference model's logged training loss: ``run, step, tokens, metric, value``."""
    from rho.analysis import loss_curves, read_log

    return loss_curves({"reference": read_log(study.run_dir("reference"))}, metrics=("loss",))


def scores_by_label(study: Study) -> pd.DataFrame:
    """Mean reference loss and entropy on the ``owm`` shard's tokens, per provenance label."""
    from rho.data.shards import TokenShard
    from rho.scoring import load_scores

    shard = TokenShard.open(study.shard("owm"))
    scores = load_scores(study.scores_dir("rm_owm"), shard)
    ok = np.isfinite(np.asarray(scores.loss))
    rows = []
    labels = np.asarray(shard.labels) if shard.labels is not None else np.zeros(shard.n_tokens, np.uint8)
    for lab in np.unique(labels[ok]):
        m = ok & (labels == lab)
        name = shard.label_names[lab] if lab < len(shard.label_names) else str(lab)
        rows.append(
            {
                "label": name,
                "tokens": int(m.sum()),
                "ref_loss": float(np.mean(scores.loss[m])),
                "ref_entropy": float(np.nanmean(scores.entropy[m])),
            }
        )
    return pd.DataFrame(rows)


def reference_part(study: Study) -> dict[str, Any]:
    """Sec. 3.1: the reference model's training, its accuracy vs the base, and its scores by label."""
    from rho.report.plots import training_loss_curves

    d = part_dir(study, "reference_model")
    res = eval_results(study, list(RUNS))
    acc = accuracy_wide(res)
    write_table3(
        acc.reset_index(), d / "accuracy", title=titled(study, "Base model vs reference model (fractions)")
    )
    curves = training_curve(study)
    fig = training_loss_curves(curves, metrics=["loss"], title=titled(study, "Reference model training loss"))
    save_figure(fig, d / "training_loss.png")
    by_label = scores_by_label(study)
    write_table3(
        by_label,
        d / "ref_scores_by_label",
        title=titled(study, "Reference-model loss and entropy on owm, by provenance"),
    )
    return {"accuracy": acc, "curves": curves, "figure": fig, "scores_by_label": by_label, "results": res}
