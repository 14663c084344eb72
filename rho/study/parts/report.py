"""Part 08 (notebook ``08_report``): the claim scorecard, the token-selection page and metrics.json."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from rho.io import read_json, write_json_atomic
from rho.study.config import Study
from rho.study.parts.reader import part_dir, titled

#: The parts whose ``measured.json`` the scorecard reads, in pipeline order.
PARTS = ("data", "token_dynamics", "reference_model", "math_cpt", "general_cpt", "self_reference", "analysis")


def collect_measured(study: Study) -> dict[str, Any]:
    """Merge every part's ``measured.json``."""
    measured: dict[str, Any] = {}
    for part in PARTS:
        p = study.results_dir / part / "measured.json"
        if p.is_file():
            measured.update(read_json(p))
    return measured


def claim_scorecard(study: Study, measured: dict[str, Any]) -> pd.DataFrame:
    """Every claim C1..C14 evaluated on the merged measurements."""
    from rho.report import scorecard

    m = dict(measured)
    if "ppl_matrix" in m:
        m["ppl_matrix"] = pd.DataFrame(m["ppl_matrix"])
    return scorecard(m, profile=study.profile)


def selected_tokens(study: Study, n_docs: int = 3) -> dict[str, Any]:
    """Figure 13 analog: per token of ``n_docs`` blocks of owm_val, whether the final SLM model selects it.

    Returns ``docs`` (per block: (text, selected, label, excess loss) per token; the first token is
    context), the ``run`` and the shard's ``label_names``.
    """
    import torch
    from transformers import AutoTokenizer

    from rho.data.shards import TokenShard
    from rho.selection import topk_mask
    from rho.study.probes import token_losses

    tok = AutoTokenizer.from_pretrained(str(study.tokenizer_dir))
    shard = TokenShard.open(study.shard("owm_val"))
    bs = int(study.sizes["block_size"])
    slm = [r for r in study.runs_of("math_cpt") if study.run_spec(r)["group"] == "slm_runs"][0]
    ref = token_losses(study.final_model("reference"), shard, bs, n_docs)
    cur = token_losses(study.final_model(slm), shard, bs, n_docs)
    ratio = float(study.params["slm"]["ratio"])
    docs = []
    for b in range(ref.shape[0]):
        ids = shard.block(b, bs)
        excess = torch.from_numpy(cur[b] - ref[b])
        mask = topk_mask(excess, ratio).numpy()
        labs = shard.block_labels(np.array([b]), bs)
        doc = [
            (tok.decode([int(ids[0])]), None, int(labs[0, 0]) if labs is not None else None, None)
        ]  # context
        for t in range(1, bs):
            doc.append(
                (
                    tok.decode([int(ids[t])]),
                    bool(mask[t - 1]),
                    int(labs[0, t]) if labs is not None else None,
                    float(excess[t - 1]),
                )
            )
        docs.append(doc)
    return {"docs": docs, "run": slm, "label_names": shard.label_names}


def metrics_of(study: Study, card: pd.DataFrame, measured: dict[str, Any]) -> dict[str, Any]:
    """``results/<profile>/metrics.json``: profile, environment, scorecard counts and scalar measurements."""
    import torch

    from rho.environment import environment

    return {
        "profile": study.profile,
        "environment": environment("cuda" if torch.cuda.is_available() else "cpu"),
        "scorecard": card["status"].value_counts().to_dict(),
        **{
            k: (None if isinstance(v, float) and not np.isfinite(v) else v)  # NaN is not JSON: null
            for k, v in measured.items()
            if v is None or (isinstance(v, int | float) and not isinstance(v, bool))
        },
    }


def report_part(study: Study, n_docs: int = 3) -> dict[str, Any]:
    """The claim scorecard, the token-selection HTML page (Figure 13 analog) and metrics.json."""
    from rho.report import render_token_html, write_scorecard

    d = part_dir(study, "report")
    measured = collect_measured(study)
    card = claim_scorecard(study, measured)
    write_scorecard(card, d / "scorecard")
    sel = selected_tokens(study, n_docs)
    html = render_token_html(
        sel["docs"],
        d / "token_selection.html",
        title=titled(study, f"Tokens selected by `{sel['run']}` in blocks of owm_val"),
        label_names=sel["label_names"],
        unit="block",
    )
    metrics = metrics_of(study, card, measured)
    write_json_atomic(study.results_dir / "metrics.json", metrics)
    return {"scorecard": card, "html": html, "metrics": metrics}
