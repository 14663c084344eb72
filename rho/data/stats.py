"""Corpus statistics of a built world: documents, tokens and noise share by kind."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from rho.data.shards import TokenShard
from rho.io import read_json


def label_shares(shard: TokenShard) -> dict[str, float]:
    """Share of tokens carrying each provenance label (all zeros if the shard has no labels)."""
    names = shard.label_names
    if shard.labels is None or not names:
        return {}
    counts = np.bincount(np.asarray(shard.labels), minlength=len(names))
    return {n: float(c) / max(shard.n_tokens, 1) for n, c in zip(names, counts)}


def corpus_table(out_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per corpus of the world at ``out_dir``: docs, tokens, noise share and share per noise kind."""
    out = Path(out_dir)
    manifest = read_json(out / "world.json")
    rows = []
    for name, info in manifest["corpora"].items():
        shard = TokenShard.open(out / info["shard"])
        shares = label_shares(shard)
        row = {
            "corpus": name,
            "documents": shard.meta["n_docs"],
            "tokens": shard.n_tokens,
            "tokens/doc": round(shard.n_tokens / max(shard.meta["n_docs"], 1), 1),
        }
        if name == "val_math":
            row["prompt (question) share"] = round(shares.get("prompt", 0.0), 3)
        else:
            row["noise share"] = round(1.0 - shares.get("content", 1.0), 3)
            for kind in manifest["label_names"][1:]:
                row[kind] = round(shares.get(kind, 0.0), 3)
        rows.append(row)
    return pd.DataFrame(rows).set_index("corpus")
