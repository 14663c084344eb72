"""Part 01 (notebook ``01_data``): build the miniature world; its corpus table and noise shares."""

from __future__ import annotations

from typing import Any

import pandas as pd

from rho.io import write_json_atomic
from rho.report.plots import save_figure
from rho.study.config import Study
from rho.study.parts.reader import part_dir, titled, write_table3


def build(study: Study) -> dict[str, Any]:
    """Build (or reuse) ``data/<profile>/``; return the world's manifest."""
    from rho.study.stages import build_data

    return build_data(study)


def world_identity(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the world is, in one line a reader can diff: fingerprint, seed, general-text source."""
    return {k: manifest[k] for k in ("fingerprint", "seed", "general_source") if k in manifest}


def corpus_table(study: Study) -> pd.DataFrame:
    """Documents, tokens and noise share by kind of every corpus (index: corpus)."""
    from rho.data.stats import corpus_table as table

    return table(study.world_dir)


def noise_shares_figure(study: Study, table: pd.DataFrame, manifest: dict[str, Any]) -> Any:
    """Bar chart of the share of each corpus's tokens per noise kind (provenance labels)."""
    import seaborn as sns
    from matplotlib.figure import Figure

    flat = table.reset_index()
    kinds = [k for k in manifest.get("label_names", [])[1:] if k in flat.columns]
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.subplots()
    if kinds:
        long = flat.melt(id_vars="corpus", value_vars=kinds, var_name="kind", value_name="share")
        long["share"] = pd.to_numeric(long["share"], errors="coerce")
        sns.barplot(long.dropna(subset=["share"]), x="corpus", y="share", hue="kind", ax=ax)
        ax.set_ylabel("share of the corpus's tokens")
    else:  # hub corpora (paper profile) carry no provenance labels
        ax.text(0.5, 0.5, "no provenance labels in this world", ha="center", va="center")
    ax.set_title(titled(study, "Noise share of tokens by kind (provenance labels)"))
    return fig


def data_part(study: Study) -> dict[str, Any]:
    """Build the world; corpus table (documents, tokens, noise share by kind) and a figure."""
    manifest = build(study)
    table = corpus_table(study)
    d = part_dir(study, "data")
    # A drift of the world shows up in git (results/<profile>/data).
    write_json_atomic(d / "world_identity.json", world_identity(manifest))
    flat = table.reset_index()  # the corpus name is the index; tables keep it as a column
    write_table3(
        flat, d / "corpus_table", title=titled(study, f"Corpora of the miniature world (seed {study.seed})")
    )
    fig = noise_shares_figure(study, table, manifest)
    save_figure(fig, d / "noise_shares.png")
    return {"manifest": manifest, "table": table, "figure": fig}
