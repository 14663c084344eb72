"""Part 07 (notebook ``07_analysis``): paper 3.5, Figures 6-9, Appendix F/G, Table 5 (weak-to-strong),
the token-ratio ablation, and selection against the world's ground-truth noise labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from rho.report.markdown import write_table
from rho.report.plots import save_figure
from rho.study.config import Study
from rho.study.parts.reader import (
    arm_of,
    arms,
    average_accuracy,
    avg_curve,
    eval_results,
    paired_comparisons,
    paper_rows,
    part_dir,
    titled,
    trained_tokens,
    write_measured,
    write_table3,
)
from rho.study.stages import snapshots

#: The claims this part tests (rho.report.claims).
CLAIMS = ("C8", "C9", "C10", "C11", "C12")


def compared_runs(study: Study) -> dict[str, str]:
    """The math CLM run and the main SLM run."""
    runs = study.runs_of("math_cpt")
    clm = [r for r in runs if study.run_spec(r)["objective"] == "clm"][0]
    slm = [r for r in runs if study.run_spec(r)["group"] == "slm_runs"][0]
    return {"clm": clm, "slm": slm}


def fixed_selection(study: Study, max_blocks: int | None) -> dict[str, Any]:
    """Tokens of owm_val that SLM would select from the base model's view (excess loss vs the RM)."""
    import torch

    from rho.data.shards import TokenShard
    from rho.selection import topk_mask
    from rho.study.probes import block_labels, token_losses

    z = study.sizes
    shard = TokenShard.open(study.shard("owm_val"))
    bs = int(z["block_size"])
    ref = token_losses(study.final_model("reference"), shard, bs, max_blocks).reshape(-1)
    base = token_losses(study.final_model("base"), shard, bs, max_blocks).reshape(-1)
    ratio = float(study.params["slm"]["ratio"])
    sel = topk_mask(torch.from_numpy(base - ref), ratio).numpy()
    return {"shard": shard, "ref": ref, "selected": sel, "labels": block_labels(shard, bs, max_blocks)}


def figure6_losses(
    study: Study, fx: dict[str, Any], runs: tuple[str, str], max_blocks: int | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Figure 6: loss of the fixed selected / unselected tokens at every checkpoint, and downstream loss.

    Returns tidy ``run, tokens, metric, value`` rows and, per run, ``(checkpoints, loss matrix)``.
    """
    from rho.study.probes import loss_matrix

    sel = fx["selected"]
    rows, mats = [], {}
    for run in runs:
        cps = snapshots(study, run)
        m = loss_matrix(cps, fx["shard"], int(study.sizes["block_size"]), max_blocks)
        mats[run] = (cps, m)
        for (tok, _), row in zip(cps, m, strict=True):
            rows.append(
                {"run": run, "tokens": tok, "metric": "loss_selected", "value": float(row[sel].mean())}
            )
            rows.append(
                {"run": run, "tokens": tok, "metric": "loss_unselected", "value": float(row[~sel].mean())}
            )
    for run in runs:
        ds = pd.read_csv(study.eval_dir(run) / "downstream.csv").groupby("tokens")["downstream_loss"].mean()
        rows += [
            {"run": run, "tokens": int(t), "metric": "downstream_loss", "value": float(v)}
            for t, v in ds.items()
        ]
    return pd.DataFrame(rows), mats


def figure6_measured(fig6: pd.DataFrame, clm: str, slm: str) -> dict[str, float]:
    """C8: change (end - start) of selected / unselected loss, and final downstream loss."""

    def change(run: str, metric: str) -> float:
        s = fig6[(fig6.run == run) & (fig6.metric == metric)].sort_values("tokens")["value"].to_numpy()
        return float(s[-1] - s[0])

    def last(run: str, metric: str) -> float:
        return float(
            fig6[(fig6.run == run) & (fig6.metric == metric)].sort_values("tokens")["value"].iloc[-1]
        )

    return {
        "slm_selected_loss_change": change(slm, "loss_selected"),
        "clm_selected_loss_change": change(clm, "loss_selected"),
        "slm_unselected_loss_change": change(slm, "loss_unselected"),
        "slm_downstream_loss": last(slm, "downstream_loss"),
        "clm_downstream_loss": last(clm, "downstream_loss"),
    }


def figure7_fit(
    study: Study, fig6: pd.DataFrame, slm: str
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, str]]:
    """Figure 7 / Appendix F: accuracy vs selected / unselected loss at the SLM run's checkpoints.

    The paper's fit is over SLM checkpoints; the 0-token point is the base model, counted once.
    Returns the points, the fits by loss kind, and the errors of degenerate fits.
    """
    from rho.analysis import fit_log_accuracy

    acc = avg_curve(study, slm)[["run", "tokens", "acc"]]
    pts = fig6[(fig6.run == slm) & fig6.metric.isin(["loss_selected", "loss_unselected"])].merge(
        acc, on=["run", "tokens"]
    )
    pts = pts.rename(columns={"value": "loss", "metric": "loss_kind"})
    fits, errors = {}, {}
    for kind in ("loss_selected", "loss_unselected"):
        p = pts[pts.loss_kind == kind]
        try:
            fits[kind] = fit_log_accuracy(p["loss"].to_numpy(), p["acc"].to_numpy())
        except Exception as e:  # a degenerate fit (e.g. constant accuracy) is reported, not fatal
            errors[kind] = str(e)
    return pts, fits, errors


def figure8_ppl(study: Study, fx: dict[str, Any], cps: list, m: np.ndarray) -> pd.DataFrame:
    """Figure 8: perplexity of the tokens each SLM checkpoint selects, under every checkpoint."""
    import torch

    from rho.analysis import selected_ppl_matrix
    from rho.selection import topk_mask

    ref = torch.from_numpy(fx["ref"])
    ratio = float(study.params["slm"]["ratio"])
    masks = np.stack([topk_mask(torch.from_numpy(row) - ref, ratio).numpy() for row in m])
    toks = [t for t, _ in cps]
    return selected_ppl_matrix(m, masks, eval_checkpoints=toks, select_checkpoints=toks)


def ratio_runs(study: Study, clm: str) -> dict[str, float]:
    """Runs of the token select ratio ablation (Figure 9) and their ratios; CLM (every seed) is 1.0.

    Excess-loss SLM runs of the math and ratio-ablation parts, and random-selection runs (the
    control), with all their seed replicates.
    """
    out = {r: 1.0 for r in arms(study, study.runs_of("math_cpt")).get(arm_of(study, clm), [clm])}
    for r in study.run_names:
        s = study.run_spec(r)
        if (
            s["objective"] == "slm"
            and s["part"] in ("math_cpt", "ratio_ablation")
            and s["score"]
            in (
                "excess",
                "random",
            )
        ):
            out[r] = float(s["ratio"])
    return out


def figure9_ratio(study: Study, clm: str) -> pd.DataFrame:
    """Figure 9: average accuracy by token select ratio, per arm (mean over its seeds).

    Columns: run (the arm), selection (``excess``: SLM, ``random``: the control; CLM is ``excess``
    at 1.0), ratio, acc, stderr (one seed's stderr of the average), n_seeds.
    """
    runs = ratio_runs(study, clm)
    res = eval_results(study, list(runs))
    avg = average_accuracy(res).set_index("run")
    rows = []
    for arm, rs in arms(study, list(runs)).items():
        spec = study.run_spec(rs[0])
        rows.append(
            {
                "run": arm,
                "selection": "random" if spec.get("score") == "random" else "excess",
                "ratio": runs[rs[0]],
                "acc": float(avg.loc[rs, "avg_acc"].mean()),
                "stderr": float(avg.loc[rs, "avg_stderr"].mean()),
                "n_seeds": len(rs),
            }
        )
    return pd.DataFrame(rows)


def table5(study: Study, w2s: list[str]) -> tuple[pd.DataFrame, dict[str, float]]:
    """Table 5 (weak-to-strong: the small reference model guiding a larger model) and the C12 measurements."""
    from rho.report import comparison_table

    wres = eval_results(study, w2s)
    t5 = comparison_table(
        "table5",
        paper_rows(wres),
        profile=study.profile,
        run_info={r: {"model": r, "train_tokens": trained_tokens(study, r)} for r in w2s},
    )
    wtab = average_accuracy(wres).set_index("run")
    wavg = wtab["avg_acc"]
    wc = [r for r in w2s if study.run_spec(r)["objective"] == "clm"][0]
    ws = [r for r in w2s if study.run_spec(r)["objective"] == "slm"][0]
    measured = {
        "w2s_clm_avg_acc": float(wavg[wc]),
        "w2s_slm_avg_acc": float(wavg[ws]),
        "w2s_acc_stderr": float(wtab.loc[[wc, ws], "avg_stderr"].max()),
        "w2s_acc_diff_se": float(paired_comparisons(study, {wc: [wc], ws: [ws]}, [(wc, ws)])["se"].iloc[0]),
    }
    return t5, measured


def selection_vs_noise(study: Study, slm: str, label_names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Share of tokens the SLM run kept per provenance label, and its detection of ground-truth noise."""
    from rho.analysis import detection_metrics, kept_by_label, label_counts, read_log

    counts = label_counts(read_log(study.run_dir(slm)))
    return kept_by_label(counts, label_names), detection_metrics(counts, label_names)


def analysis_part(study: Study, max_blocks: int | None = None) -> dict[str, Any]:
    """Sec. 3.5, Figures 6-9, Appendix F/G, Table 5, and selection vs ground-truth noise."""
    from rho.analysis import ppl_pivot
    from rho.report.plots import accuracy_vs_loss, accuracy_vs_ratio, selected_ppl_lines, training_loss_curves

    max_blocks = max_blocks or study.sizes.get("dynamics_blocks")
    d = part_dir(study, "analysis")
    out: dict[str, Any] = {}
    measured: dict[str, Any] = {}
    cr = compared_runs(study)
    clm, slm = cr["clm"], cr["slm"]

    # Figure 6: loss of the tokens SLM selects / drops, over checkpoints, under CLM and SLM
    fx = fixed_selection(study, max_blocks)
    fig6, mats = figure6_losses(study, fx, (clm, slm), max_blocks)
    fig6.to_csv(d / "figure6_losses.csv", index=False)
    save_figure(
        training_loss_curves(
            fig6,
            metrics=["loss_selected", "downstream_loss", "loss_unselected"],
            title=titled(study, "Figure 6 analog"),
        ),
        d / "figure6_losses.png",
    )
    measured.update(figure6_measured(fig6, clm, slm))

    # Figure 7 / Appendix F: accuracy vs selected / unselected token loss at the SLM run's checkpoints
    pts, fits, errors = figure7_fit(study, fig6, slm)
    if errors:
        out["fit_errors"] = errors
    pts.to_csv(d / "figure7_points.csv", index=False)
    save_figure(
        accuracy_vs_loss(
            pts,
            fits,
            title=titled(study, f"Acc = log(aL + c) over `{slm}` checkpoints (9-task average accuracy)"),
        ),
        d / "figure7_acc_vs_loss.png",
    )
    for kind, short in (("loss_selected", "selected"), ("loss_unselected", "unselected")):
        if kind in fits:
            measured[f"fit_{short}_a"] = float(fits[kind].a)
            measured[f"fit_{short}_r2"] = float(fits[kind].r2)

    # Figure 8: perplexity of the tokens each SLM checkpoint selects, under every checkpoint
    ppl = figure8_ppl(study, fx, *mats[slm])
    ppl.to_csv(d / "figure8_ppl.csv", index=False)
    save_figure(
        selected_ppl_lines(ppl, title=titled(study, "PPL of tokens selected at each checkpoint")),
        d / "figure8_selected_ppl.png",
    )
    measured["ppl_matrix"] = ppl_pivot(ppl).to_dict()

    # Figure 9: token select ratio ablation (CLM = ratio 1.0)
    by_ratio = figure9_ratio(study, clm)
    write_table3(
        by_ratio.sort_values("ratio"),
        d / "figure9_ratio",
        title=titled(study, "Average accuracy by token select ratio (1.0 = CLM)"),
    )
    hue = "selection" if by_ratio["selection"].nunique() > 1 else None
    save_figure(
        accuracy_vs_ratio(by_ratio, hue=hue, title=titled(study, "Figure 9 analog: token select ratio")),
        d / "figure9_ratio.png",
    )
    slm_ratios = by_ratio[by_ratio["selection"] == "excess"]
    measured["acc_by_ratio"] = {str(k): v for k, v in zip(slm_ratios.ratio, slm_ratios.acc, strict=True)}
    measured["acc_by_ratio_stderr"] = {
        str(k): v for k, v in zip(slm_ratios.ratio, slm_ratios.stderr, strict=True)
    }
    rand = by_ratio[by_ratio["selection"] == "random"]
    if len(rand):
        measured["random_acc_by_ratio"] = {str(k): v for k, v in zip(rand.ratio, rand.acc, strict=True)}

    # Table 5: weak-to-strong (the small reference model guiding a larger model)
    w2s = study.runs_of("weak_to_strong")
    if w2s:
        t5, w2s_measured = table5(study, w2s)
        write_table(t5, d / "table5", title=f"Table 5 layout: weak-to-strong (%), ours at `{study.profile}`")
        measured.update(w2s_measured)
        out["table5"] = t5

    # Sparse backward ablation (issue 13): the Collider approximation vs the exact SLM run
    from rho.study.parts.sparse_backward import write_ablation

    sparse, sparse_measured, sparse_times = write_ablation(study, d)
    measured.update(sparse_measured)
    out["sparse_backward"] = sparse
    out["sparse_backward_timing"] = sparse_times

    # Selection vs ground-truth noise (our addition): from the SLM run's per-label training counts
    kept, det = selection_vs_noise(study, slm, fx["shard"].label_names)  # owm_val shares owm's labels
    write_table3(
        kept, d / "kept_by_label", title=titled(study, f"Share of tokens `{slm}` kept, by provenance label")
    )
    write_table3(
        det, d / "selection_vs_noise", title=titled(study, f"Selection of `{slm}` against ground-truth noise")
    )
    measured["selection_detection"] = det.to_dict(orient="records")
    write_measured(study, "analysis", measured)
    out.update(
        {
            "figure6": fig6,
            "figure7": pts,
            "fits": fits,
            "figure8": ppl,
            "figure9": by_ratio,
            "kept_by_label": kept,
            "detection": det,
            "measured": measured,
        }
    )
    return out
