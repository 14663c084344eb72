"""The study's parts, one function per notebook: read what the stages wrote, make tables and figures.

Each part writes its tables (CSV + Markdown), figures (PNG) and a ``measured.json`` of the
quantities the claim scorecard checks into ``results/<profile>/<part>/``, and returns them so a
notebook can display them.  Accuracies are fractions in [0, 1] (tables show percent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rho.io import read_json, write_json_atomic
from rho.report.markdown import write_table
from rho.report.plots import save_figure
from rho.study.config import Study, StudyError
from rho.study.stages import snapshots

#: The nine tasks of the paper's Table 1, in its column order (our suite's ``role``).
TABLE1_ROLES = ("gsm8k", "math", "svamp", "asdiv", "mawps", "tabmwp", "mathqa", "mmlu_stem", "sat")
#: Tasks reported beside Table 1 but not in it (held-out gsm templates: generalisation).
HELDOUT_TASKS = ("gsm_unseen",)
#: Primary metric per task kind: free-form answers are exact match, multiple choice is accuracy.
PRIMARY = {"exact_match", "acc"}


def write_table3(df: pd.DataFrame, out_stem: str | Path, **kw: Any) -> tuple[Path, Path]:
    """``write_table`` with three decimals (fractions and losses; paper-layout tables are in %)."""
    return write_table(df, out_stem, floatfmt=".3f", **kw)


def part_dir(study: Study, part: str) -> Path:
    """``results/<profile>/<part>/`` (created)."""
    d = study.results_dir / part
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_measured(study: Study, part: str, measured: dict[str, Any]) -> Path:
    """Write the part's measured quantities (inputs of the claim scorecard)."""
    path = part_dir(study, part) / "measured.json"
    write_json_atomic(path, measured)
    return path


# ------------------------------------------------------------------ evaluation results
def eval_results(study: Study, runs: list[str]) -> pd.DataFrame:
    """Primary-metric rows of the runs' final evaluations: run, task, role, value, stderr, n."""
    frames = []
    for run in runs:
        path = study.eval_dir(run) / "results.csv"
        if not path.is_file():
            raise StudyError(f"no evaluation of {run!r} at {path}: run `dvc repro evaluate@{run}` first")
        df = pd.read_csv(path)
        df["run"] = run
        frames.append(df[df["metric"].isin(PRIMARY)])
    out = pd.concat(frames, ignore_index=True)
    out["in_table1"] = out["role"].isin(TABLE1_ROLES) & ~out["task"].isin(HELDOUT_TASKS)
    return out


def mean_stderr(stderr: pd.Series) -> float:
    """Standard error of a mean of independent per-task accuracies (missing stderr counts as 0)."""
    return float(np.sqrt((stderr.fillna(0) ** 2).sum()) / max(len(stderr), 1))


def average_accuracy(results: pd.DataFrame, roles: tuple[str, ...] = TABLE1_ROLES) -> pd.DataFrame:
    """Per run: mean primary metric over the ``roles`` it has (default: Table 1's), and its stderr."""
    t1 = results[results["in_table1"] & results["role"].isin(roles)]
    g = t1.groupby("run")
    out = pd.DataFrame(
        {
            "avg_acc": g["value"].mean(),
            "avg_stderr": g["stderr"].apply(mean_stderr),
            "n_tasks": g["task"].nunique(),
        }
    )
    return out.reset_index()


def accuracy_wide(results: pd.DataFrame) -> pd.DataFrame:
    """Runs x roles table of the primary metric (fractions), plus ``avg`` over Table-1 roles."""
    r = results.assign(column=np.where(results["in_table1"], results["role"], results["task"]))
    wide = r.pivot_table(index="run", columns="column", values="value", aggfunc="first")
    cols = [c for c in TABLE1_ROLES if c in wide.columns] + [c for c in wide.columns if c not in TABLE1_ROLES]
    wide = wide[cols]
    wide["avg"] = wide[[c for c in cols if c in TABLE1_ROLES]].mean(axis=1)
    return wide


def _ours(results: pd.DataFrame) -> pd.DataFrame:
    """Rows for ``rho.report.comparison_table``: run, task (the paper's column name), value."""
    r = results[results["in_table1"]]
    return pd.DataFrame({"run": r["run"], "task": r["role"], "value": r["value"]})


def tokens_label(n: float) -> str:
    """A token count as the paper writes it: 15B, 10.5B, 750K."""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.0f}"


def trained_tokens(study: Study, run: str, selected: float | None = None) -> str:
    """Tokens a run trained on, as the paper's "train tokens" column counts them (SLM: selected).

    ``selected`` is the run's :func:`selected_fraction` when the caller already has it.
    """
    n = float(study.sizes["cpt_tokens"])
    if study.run_spec(run)["objective"] != "clm":
        n *= selected if selected is not None else selected_fraction(study, run)
    return tokens_label(n)


def titled(study: Study, text: str) -> str:
    """``text`` with the profile (scale) it was obtained at."""
    return f"{text} (`{study.profile}` profile)"


def selected_fraction(study: Study, run: str) -> float:
    """Mean logged selected fraction of a run (the effective ratio)."""
    from rho.analysis import read_log

    log = read_log(study.run_dir(run))
    col = "selected_frac" if "selected_frac" in log.columns else "selected_fraction"
    return float(log[col].mean())


#: Per-part file of wall-clock measurements (C13), ignored by git and DVC.
STEP_TIME_FILE = "step_time.json"


def run_step_time_ratio(study: Study, slm_run: str, clm_run: str) -> float | None:
    """SLM / CLM median step time of two runs from their logs (C13); None if a log lacks step times."""
    from rho.analysis import step_time_ratio
    from rho.analysis.errors import AnalysisInputError

    try:
        return step_time_ratio(study.run_dir(slm_run), study.run_dir(clm_run))
    except AnalysisInputError:
        return None


# ------------------------------------------------------------------ 01 data
def data_part(study: Study) -> dict[str, Any]:
    """Build the world; corpus table (documents, tokens, noise share by kind) and a figure."""
    import seaborn as sns
    from matplotlib.figure import Figure

    from rho.data.stats import corpus_table
    from rho.study.stages import build_data

    manifest = build_data(study)
    table = corpus_table(study.world_dir)
    d = part_dir(study, "data")
    # What the world is, in one line a reader can diff: a drift shows up in git (results/<profile>/data).
    identity = {k: manifest[k] for k in ("fingerprint", "seed", "general_source") if k in manifest}
    write_json_atomic(d / "world_identity.json", identity)
    flat = table.reset_index()  # the corpus name is the index; tables keep it as a column
    write_table3(
        flat, d / "corpus_table", title=titled(study, f"Corpora of the miniature world (seed {study.seed})")
    )
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
    save_figure(fig, d / "noise_shares.png")
    return {"manifest": manifest, "table": table, "figure": fig}


# ------------------------------------------------------------------ 02 token dynamics
def token_dynamics_part(study: Study, run: str = "math_clm", max_blocks: int | None = None) -> dict[str, Any]:
    """Paper 2.1 / D.1: categories of token loss trajectories over the checkpoints of a CLM run."""
    from rho.analysis import (
        category_shares,
        category_shares_by_label,
        fluctuating_tokens,
        mean_loss_curves,
        noise_among_fluctuating,
    )
    from rho.data.shards import TokenShard
    from rho.dynamics import classify_tokens
    from rho.report.plots import category_loss_curves, token_loss_trajectories
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
    cats = classify_tokens(losses)
    labels = block_labels(shard, int(z["block_size"]), max_blocks)
    tokens = [t for t, _ in cps]
    shares = category_shares(cats)
    curves = mean_loss_curves(losses, cats, checkpoints=tokens)
    fluct = fluctuating_tokens(losses, cats, top_k=10, labels=labels, label_names=shard.label_names)
    by_label = category_shares_by_label(cats, labels, shard.label_names) if labels is not None else None
    noise = noise_among_fluctuating(losses, cats, labels) if labels is not None else {}
    d = part_dir(study, "token_dynamics")
    write_table3(
        shares,
        d / "category_shares",
        title=f"Token categories over {len(cps)} checkpoints of `{run}` ({study.profile}), paper: C1",
    )
    curves.to_csv(d / "category_curves.csv", index=False)
    write_table3(fluct, d / "fluctuating_tokens", title=titled(study, "Most fluctuating L->L / H->H tokens"))
    if by_label is not None:
        write_table3(
            by_label, d / "categories_by_label", title=titled(study, "Categories by provenance label")
        )
    examples = token_loss_trajectories(losses, fluct, checkpoints=tokens, per_category=3)
    fig = category_loss_curves(curves, examples=examples)
    fig.suptitle(titled(study, f"Figure 3 analog: token loss over checkpoints of `{run}`"))
    save_figure(fig, d / "figure3_category_curves.png")
    measured = {
        "category_shares": dict(zip(shares["category"], shares["share"], strict=True)),
        "dynamics_checkpoints": tokens,
        "dynamics_tokens": int(losses.shape[1]),
        **noise,
    }
    write_measured(study, "token_dynamics", measured)
    return {
        "shares": shares,
        "curves": curves,
        "fluctuating": fluct,
        "by_label": by_label,
        "figure": fig,
        "measured": measured,
    }


# ------------------------------------------------------------------ 03 reference model
def reference_part(study: Study) -> dict[str, Any]:
    """Sec. 3.1: the reference model's training, its accuracy vs the base, and its scores by label."""
    from rho.analysis import loss_curves, read_log
    from rho.data.shards import TokenShard
    from rho.report.plots import training_loss_curves
    from rho.scoring import load_scores

    d = part_dir(study, "reference_model")
    res = eval_results(study, ["base", "reference"])
    acc = accuracy_wide(res)
    write_table3(
        acc.reset_index(), d / "accuracy", title=titled(study, "Base model vs reference model (fractions)")
    )
    curves = loss_curves({"reference": read_log(study.run_dir("reference"))}, metrics=("loss",))
    fig = training_loss_curves(curves, metrics=["loss"], title=titled(study, "Reference model training loss"))
    save_figure(fig, d / "training_loss.png")
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
    by_label = pd.DataFrame(rows)
    write_table3(
        by_label,
        d / "ref_scores_by_label",
        title=titled(study, "Reference-model loss and entropy on owm, by provenance"),
    )
    return {"accuracy": acc, "curves": curves, "figure": fig, "scores_by_label": by_label}


# ------------------------------------------------------------------ 04 math continual pretraining
def tokens_to_reach(curve: pd.DataFrame, target: float) -> float | None:
    """First training-token count > 0 at which a (tokens, acc) curve reaches ``target`` (None: never).

    The 0-token point is the base model, not a result of training, so it never counts.
    """
    c = curve[curve["tokens"] > 0].sort_values("tokens")
    hit = c[c["acc"] >= target]
    return float(hit["tokens"].iloc[0]) if len(hit) else None


def avg_curve(study: Study, run: str) -> pd.DataFrame:
    """Average Table-1 accuracy of a run at each evaluated snapshot: columns tokens, acc."""
    df = pd.read_csv(study.eval_dir(run) / "curve.csv")
    df = df[df["metric"].isin(PRIMARY) & df["role"].isin(TABLE1_ROLES) & ~df["task"].isin(HELDOUT_TASKS)]
    g = df.groupby("tokens")
    out = pd.DataFrame({"acc": g["value"].mean(), "stderr": g["stderr"].apply(mean_stderr)}).reset_index()
    out.insert(0, "run", run)
    return out


def math_cpt_part(study: Study) -> dict[str, Any]:
    """Sec. 3.2, Table 1 and Figure 1: CLM vs SLM continual pretraining on the noisy math corpus."""
    from rho.report import comparison_table
    from rho.report.plots import accuracy_vs_tokens

    runs = study.runs_of("math_cpt")
    clm = [r for r in runs if study.run_spec(r)["objective"] == "clm"][0]
    main_slm = [r for r in runs if study.run_spec(r)["group"] == "slm_runs"][0]
    res = eval_results(study, ["base", *runs])
    d = part_dir(study, "math_cpt")
    info = {r: {"model": r, "data": "owm", "train_tokens": trained_tokens(study, r)} for r in runs}
    info["base"] = {"model": "base", "data": None, "train_tokens": None}
    table = comparison_table("table1", _ours(res), profile=study.profile, run_info=info)
    write_table(
        table, d / "table1", title=f"Table 1 layout: few-shot CoT accuracy (%), ours at `{study.profile}`"
    )
    avg = average_accuracy(res)
    write_table3(
        avg,
        d / "average_accuracy",
        title=titled(study, "Average accuracy over the nine Table-1 roles (fraction)"),
    )
    wide = accuracy_wide(res).reset_index()
    write_table3(
        wide,
        d / "accuracy_by_task",
        title=titled(
            study, "Accuracy per task (fraction); gsm_unseen = held-out gsm templates, not in Table 1"
        ),
    )
    curves = pd.concat([avg_curve(study, r) for r in (clm, main_slm)], ignore_index=True)
    curves.to_csv(d / "figure1_curves.csv", index=False)
    fig = accuracy_vs_tokens(
        curves, col=None, title=titled(study, "Figure 1 analog: average accuracy vs training tokens")
    )
    save_figure(fig, d / "figure1_accuracy_vs_tokens.png")
    a = avg.set_index("run")
    clm_final = float(a.loc[clm, "avg_acc"])
    slm_curve = curves[curves["run"] == main_slm]
    reach = tokens_to_reach(slm_curve, clm_final)
    measured = {
        "clm_avg_acc": clm_final,
        "slm_avg_acc": float(a.loc[main_slm, "avg_acc"]),
        "avg_acc_stderr": float(a.loc[[clm, main_slm], "avg_stderr"].max()),
        "clm_curve": curves[curves["run"] == clm][["tokens", "acc"]].values.tolist(),
        "slm_curve": slm_curve[["tokens", "acc"]].values.tolist(),
        "slm_tokens_to_clm_final": reach,
        "selected_frac": selected_fraction(study, main_slm),
        "target_ratio": float(study.run_spec(main_slm)["ratio"]),
    }
    write_measured(study, "math_cpt", measured)
    # Wall-clock, so never the same twice: kept beside the tables but out of git and of DVC's hash
    # (.gitignore, .dvcignore), so the reproducible results (and the scorecard) stay byte-identical.
    timing = {
        "slm_run": main_slm,
        "clm_run": clm,
        "step_time_ratio": run_step_time_ratio(study, main_slm, clm),
    }
    write_json_atomic(part_dir(study, "math_cpt") / STEP_TIME_FILE, timing)
    return {"table": table, "average": avg, "curves": curves, "figure": fig, "measured": measured}


# ------------------------------------------------------------------ 05 general continual pretraining
def general_cpt_part(study: Study) -> dict[str, Any]:
    """Sec. 3.3, Figure 5: CLM vs SLM on the 6:3:1 general mix; math and general (lm-eval) tasks."""
    from rho.report.plots import benchmark_bars

    runs = study.runs_of("general_cpt")
    clm = [r for r in runs if study.run_spec(r)["objective"] == "clm"][0]
    slm = [r for r in runs if study.run_spec(r)["objective"] == "slm"][0]
    res = eval_results(study, runs)
    t1 = res[res["in_table1"]]  # the Table-1 roles, named as the paper names them
    frames = [t1.assign(task=t1["role"], suite="math")[["run", "task", "value", "stderr", "n", "suite"]]]
    for r in runs:
        g = study.eval_dir(r) / "general.csv"
        if g.is_file():
            gd = pd.read_csv(g)
            gd = gd[gd["metric"].isin(PRIMARY)]
            frames.append(gd.assign(run=r, suite="general")[["run", "task", "value", "stderr", "n", "suite"]])
    allres = pd.concat(frames, ignore_index=True)
    d = part_dir(study, "general_cpt")
    wide = allres.pivot_table(index=["suite", "task"], columns="run", values="value").reset_index()
    averages, measured = [], {}
    for suite, sub in (
        ("math", allres[allres.suite == "math"]),
        ("general", allres[allres.suite == "general"]),
        ("all", allres),
    ):
        if sub.empty:
            continue
        g = sub.groupby("run")
        mean, stderr = g["value"].mean(), g["stderr"].apply(mean_stderr)
        row = {"suite": "average", "task": f"{suite} ({sub['task'].nunique()} tasks)"}
        averages.append(row | {r: float(mean[r]) for r in runs})
        key = "" if suite == "all" else f"{suite}_"
        measured |= {
            f"general_clm_{key}avg_acc": float(mean[clm]),
            f"general_slm_{key}avg_acc": float(mean[slm]),
            f"general_{key}acc_stderr": float(stderr[[clm, slm]].max()),
        }
    wide = pd.concat([wide, pd.DataFrame(averages)], ignore_index=True)
    wide["delta"] = wide[slm] - wide[clm]
    write_table3(
        wide,
        d / "figure5_table",
        title=titled(
            study, "General continual pretraining, CLM vs SLM (fractions; C6 uses the `all` average)"
        ),
    )
    fig = benchmark_bars(
        allres, title=titled(study, "Figure 5 analog: CLM vs SLM after general continual pretraining")
    )
    save_figure(fig, d / "figure5_bars.png")
    write_measured(study, "general_cpt", measured)
    return {"table": wide, "figure": fig, "measured": measured}


# ------------------------------------------------------------------ 06 self-reference
def self_reference_part(study: Study) -> dict[str, Any]:
    """Sec. 3.4, Tables 3 and 4: reference = the CLM model on its own corpus; L_RM, H_RM, and both."""
    from rho.report import comparison_table

    runs = study.runs_of("self_reference")
    clm = "math_clm"
    res = eval_results(study, [clm, *runs])
    name = {"ref_loss": "L_RM", "ref_entropy": "H_RM", "excess": "L_delta", "random": "random"}
    fracs = {r: selected_fraction(study, r) for r in runs}  # the effective ratios, read once from the logs
    info: dict[str, dict[str, Any]] = {
        clm: {"score_function": "none", "select_ratio": "100%", "effective_ratio": "100%"}
    }
    for r in runs:
        s = study.run_spec(r)
        fn = name[s["score"]]
        sel = f"{s['ratio']:.0%}"
        if "score2" in s:
            op = " intersect " if s.get("op", "intersection") == "intersection" else " union "
            fn = f"{name[s['score2']]}{op}{fn}"
            sel = f"{s['ratio2']:.0%} {'n' if 'intersect' in op else 'u'} {s['ratio']:.0%}"
        info[r] = {"score_function": fn, "select_ratio": sel, "effective_ratio": f"{fracs[r]:.0%}"}
    d = part_dir(study, "self_reference")
    t4 = comparison_table("table4", _ours(res), profile=study.profile, run_info=info)
    write_table(
        t4,
        d / "table4",
        title=f"Table 4 layout: self-reference score functions (%), ours at `{study.profile}`",
        note="The paper labels its loss-based rows `L_delta`; its 70% row equals Table 3's `L_RM` row: "
        "both are the self-reference loss score, written `L_RM` in our rows.",
    )
    info3 = {
        r: {
            "model": r,
            "score_function": v["score_function"] if r != clm else None,
            "data": "owm",
            "train_tokens": trained_tokens(study, r, fracs.get(r)),
        }
        for r, v in info.items()
    }
    t3 = comparison_table("table3", _ours(res), profile=study.profile, run_info=info3)
    write_table(t3, d / "table3", title=f"Table 3 layout (%), ours at `{study.profile}`")
    from rho.report.paper_tables import TABLE3_TASKS

    tab = average_accuracy(res, roles=TABLE3_TASKS).set_index("run")  # the six tasks of Tables 3 and 4
    avg = tab["avg_acc"]
    pick = {
        s: [r for r in runs if study.run_spec(r)["score"] == s and "score2" not in study.run_spec(r)]
        for s in ("ref_loss", "ref_entropy")
    }
    inter = [r for r in runs if study.run_spec(r).get("op") == "intersection"]
    measured = {
        "selfref_clm_avg_acc": float(avg[clm]),
        **({"selfref_lrm_avg_acc": float(avg[pick["ref_loss"][0]])} if pick["ref_loss"] else {}),
        **({"selfref_hrm_avg_acc": float(avg[pick["ref_entropy"][0]])} if pick["ref_entropy"] else {}),
        **({"selfref_intersect_avg_acc": float(avg[inter[0]])} if inter else {}),
        "selfref_avg_stderr": float(tab["avg_stderr"].max()),
        "selfref_tasks": list(TABLE3_TASKS),
        "effective_ratios": fracs,
    }
    write_measured(study, "self_reference", measured)
    return {"table3": t3, "table4": t4, "measured": measured}


# ------------------------------------------------------------------ 07 analysis
def _fixed_selection(study: Study, max_blocks: int | None) -> dict[str, Any]:
    """Tokens of owm_val that SLM would select from the base model's view (excess loss vs the RM)."""
    from rho.data.shards import TokenShard
    from rho.study.probes import block_labels, token_losses

    z = study.sizes
    shard = TokenShard.open(study.shard("owm_val"))
    bs = int(z["block_size"])
    ref = token_losses(study.final_model("reference"), shard, bs, max_blocks).reshape(-1)
    base = token_losses(study.final_model("base"), shard, bs, max_blocks).reshape(-1)
    import torch

    from rho.selection import topk_mask

    ratio = float(study.params["slm"]["ratio"])
    sel = topk_mask(torch.from_numpy(base - ref), ratio).numpy()
    return {"shard": shard, "ref": ref, "selected": sel, "labels": block_labels(shard, bs, max_blocks)}


def analysis_part(study: Study, max_blocks: int | None = None) -> dict[str, Any]:
    """Sec. 3.5, Figures 6-9, Appendix F/G, Table 5, and selection vs ground-truth noise."""
    import torch

    from rho.analysis import (
        detection_metrics,
        fit_log_accuracy,
        kept_by_label,
        label_counts,
        ppl_pivot,
        read_log,
        selected_ppl_matrix,
    )
    from rho.report import comparison_table
    from rho.report.plots import accuracy_vs_loss, accuracy_vs_ratio, selected_ppl_lines, training_loss_curves
    from rho.selection import topk_mask
    from rho.study.probes import loss_matrix

    z = study.sizes
    max_blocks = max_blocks or z.get("dynamics_blocks")
    d = part_dir(study, "analysis")
    out: dict[str, Any] = {}
    measured: dict[str, Any] = {}
    runs = study.runs_of("math_cpt")
    clm = [r for r in runs if study.run_spec(r)["objective"] == "clm"][0]
    slm = [r for r in runs if study.run_spec(r)["group"] == "slm_runs"][0]

    # Figure 6: loss of the tokens SLM selects / drops, over checkpoints, under CLM and SLM
    fx = _fixed_selection(study, max_blocks)
    sel = fx["selected"]
    rows, mats = [], {}
    for run in (clm, slm):
        cps = snapshots(study, run)
        m = loss_matrix(cps, fx["shard"], int(z["block_size"]), max_blocks)
        mats[run] = (cps, m)
        for (tok, _), row in zip(cps, m, strict=True):
            rows.append(
                {"run": run, "tokens": tok, "metric": "loss_selected", "value": float(row[sel].mean())}
            )
            rows.append(
                {"run": run, "tokens": tok, "metric": "loss_unselected", "value": float(row[~sel].mean())}
            )
    for run in (clm, slm):
        ds = pd.read_csv(study.eval_dir(run) / "downstream.csv").groupby("tokens")["downstream_loss"].mean()
        rows += [
            {"run": run, "tokens": int(t), "metric": "downstream_loss", "value": float(v)}
            for t, v in ds.items()
        ]
    fig6 = pd.DataFrame(rows)
    fig6.to_csv(d / "figure6_losses.csv", index=False)
    save_figure(
        training_loss_curves(
            fig6,
            metrics=["loss_selected", "downstream_loss", "loss_unselected"],
            title=titled(study, "Figure 6 analog"),
        ),
        d / "figure6_losses.png",
    )

    def change(run: str, metric: str) -> float:
        s = fig6[(fig6.run == run) & (fig6.metric == metric)].sort_values("tokens")["value"].to_numpy()
        return float(s[-1] - s[0])

    def last(run: str, metric: str) -> float:
        return float(
            fig6[(fig6.run == run) & (fig6.metric == metric)].sort_values("tokens")["value"].iloc[-1]
        )

    measured.update(
        {
            "slm_selected_loss_change": change(slm, "loss_selected"),
            "clm_selected_loss_change": change(clm, "loss_selected"),
            "slm_unselected_loss_change": change(slm, "loss_unselected"),
            "slm_downstream_loss": last(slm, "downstream_loss"),
            "clm_downstream_loss": last(clm, "downstream_loss"),
        }
    )

    # Figure 7 / Appendix F: accuracy vs selected / unselected token loss at the SLM run's checkpoints
    # (the paper's fit is over SLM checkpoints; the 0-token point is the base model, counted once)
    acc = avg_curve(study, slm)[["run", "tokens", "acc"]]
    pts = fig6[(fig6.run == slm) & fig6.metric.isin(["loss_selected", "loss_unselected"])].merge(
        acc, on=["run", "tokens"]
    )
    pts = pts.rename(columns={"value": "loss", "metric": "loss_kind"})
    fits = {}
    for kind in ("loss_selected", "loss_unselected"):
        p = pts[pts.loss_kind == kind]
        try:
            fits[kind] = fit_log_accuracy(p["loss"].to_numpy(), p["acc"].to_numpy())
        except Exception as e:  # a degenerate fit (e.g. constant accuracy) is reported, not fatal
            out.setdefault("fit_errors", {})[kind] = str(e)
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
    cps, m = mats[slm]
    ref = torch.from_numpy(fx["ref"])
    ratio = float(study.params["slm"]["ratio"])
    masks = np.stack([topk_mask(torch.from_numpy(row) - ref, ratio).numpy() for row in m])
    toks = [t for t, _ in cps]
    ppl = selected_ppl_matrix(m, masks, eval_checkpoints=toks, select_checkpoints=toks)
    ppl.to_csv(d / "figure8_ppl.csv", index=False)
    save_figure(
        selected_ppl_lines(ppl, title=titled(study, "PPL of tokens selected at each checkpoint")),
        d / "figure8_selected_ppl.png",
    )
    measured["ppl_matrix"] = ppl_pivot(ppl).to_dict()

    # Figure 9: token select ratio ablation (CLM = ratio 1.0)
    ratio_runs = {clm: 1.0}
    for r in study.run_names:
        s = study.run_spec(r)
        if s["objective"] == "slm" and s["part"] in ("math_cpt", "ratio_ablation") and s["score"] == "excess":
            ratio_runs[r] = float(s["ratio"])
    res = eval_results(study, list(ratio_runs))
    avg = average_accuracy(res).set_index("run")
    by_ratio = pd.DataFrame({"run": list(ratio_runs), "ratio": list(ratio_runs.values())})
    by_ratio["acc"] = [float(avg.loc[r, "avg_acc"]) for r in by_ratio.run]
    by_ratio["stderr"] = [float(avg.loc[r, "avg_stderr"]) for r in by_ratio.run]
    write_table3(
        by_ratio.sort_values("ratio"),
        d / "figure9_ratio",
        title=titled(study, "Average accuracy by token select ratio (1.0 = CLM)"),
    )
    save_figure(
        accuracy_vs_ratio(by_ratio, hue=None, title=titled(study, "Figure 9 analog: token select ratio")),
        d / "figure9_ratio.png",
    )
    measured["acc_by_ratio"] = {str(k): v for k, v in zip(by_ratio.ratio, by_ratio.acc, strict=True)}
    measured["acc_by_ratio_stderr"] = {
        str(k): v for k, v in zip(by_ratio.ratio, by_ratio.stderr, strict=True)
    }

    # Table 5: weak-to-strong (the small reference model guiding a larger model)
    w2s = study.runs_of("weak_to_strong")
    if w2s:
        wres = eval_results(study, w2s)
        t5 = comparison_table(
            "table5",
            _ours(wres),
            profile=study.profile,
            run_info={r: {"model": r, "train_tokens": trained_tokens(study, r)} for r in w2s},
        )
        write_table(t5, d / "table5", title=f"Table 5 layout: weak-to-strong (%), ours at `{study.profile}`")
        wtab = average_accuracy(wres).set_index("run")
        wavg = wtab["avg_acc"]
        wc = [r for r in w2s if study.run_spec(r)["objective"] == "clm"][0]
        ws = [r for r in w2s if study.run_spec(r)["objective"] == "slm"][0]
        measured.update(
            {
                "w2s_clm_avg_acc": float(wavg[wc]),
                "w2s_slm_avg_acc": float(wavg[ws]),
                "w2s_acc_stderr": float(wtab.loc[[wc, ws], "avg_stderr"].max()),
            }
        )
        out["table5"] = t5

    # Selection vs ground-truth noise (our addition): from the SLM run's per-label training counts
    log = read_log(study.run_dir(slm))
    counts = label_counts(log)
    names = fx["shard"].label_names  # owm_val shares the owm shard's label names
    kept = kept_by_label(counts, names)
    det = detection_metrics(counts, names)
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


# ------------------------------------------------------------------ 08 report
PARTS = ("data", "token_dynamics", "reference_model", "math_cpt", "general_cpt", "self_reference", "analysis")


def collect_measured(study: Study) -> dict[str, Any]:
    """Merge every part's ``measured.json``."""
    measured: dict[str, Any] = {}
    for part in PARTS:
        p = study.results_dir / part / "measured.json"
        if p.is_file():
            measured.update(read_json(p))
    return measured


def report_part(study: Study, n_docs: int = 3) -> dict[str, Any]:
    """The claim scorecard, the token-selection HTML page (Figure 13 analog) and metrics.json."""
    import torch

    from rho.data.shards import TokenShard
    from rho.environment import environment
    from rho.report import render_token_html, scorecard, write_scorecard
    from rho.selection import topk_mask
    from rho.study.probes import token_losses

    d = part_dir(study, "report")
    measured = collect_measured(study)
    if "ppl_matrix" in measured:
        measured["ppl_matrix"] = pd.DataFrame(measured["ppl_matrix"])
    card = scorecard(measured, profile=study.profile)
    write_scorecard(card, d / "scorecard")

    # Figure 13 analog: tokens the final SLM model selects (vs the RM) in blocks of the validation shard
    from transformers import AutoTokenizer

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
    html = render_token_html(
        docs,
        d / "token_selection.html",
        title=titled(study, f"Tokens selected by `{slm}` in blocks of owm_val"),
        label_names=shard.label_names,
        unit="block",
    )
    status_counts = card["status"].value_counts().to_dict()
    metrics = {
        "profile": study.profile,
        "environment": environment("cuda" if torch.cuda.is_available() else "cpu"),
        "scorecard": status_counts,
        **{
            k: (None if isinstance(v, float) and not np.isfinite(v) else v)  # NaN is not JSON: null
            for k, v in measured.items()
            if v is None or (isinstance(v, int | float) and not isinstance(v, bool))
        },
    }
    write_json_atomic(study.results_dir / "metrics.json", metrics)
    return {"scorecard": card, "html": html, "metrics": metrics}
