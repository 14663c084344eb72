"""Part 04 (notebook ``04_math_cpt``): paper 3.2, Table 1 and Figure 1, CLM vs SLM on noisy math."""

from __future__ import annotations

from typing import Any

import pandas as pd

from rho.io import write_json_atomic
from rho.report.markdown import write_table
from rho.report.plots import save_figure
from rho.study.config import Study
from rho.study.parts.reader import (
    STEP_TIME_FILE,
    accuracy_wide,
    arm_results,
    arm_summary,
    arms,
    average_accuracy,
    avg_curve,
    eval_results,
    label_arms,
    paired_comparisons,
    paper_rows,
    part_dir,
    selected_fraction,
    titled,
    trained_tokens,
    write_measured,
    write_table3,
)

#: The claims this part tests (rho.report.claims).
CLAIMS = ("C3", "C4", "C13", "C15")


def compared_runs(study: Study) -> dict[str, Any]:
    """The part's runs and arms.

    ``runs``: every math_cpt run; ``arms``: arm -> its seed replicates (``rho.study.parts.reader.arms``);
    ``clm``, ``slm``, ``slm_70``, ``random``: the arm names of CLM, the main SLM setting
    (``slm_runs``, ratio ``slm.ratio``), SLM at 70% and random selection (``score: random``); an
    arm the params do not have is None. ``clm_run``/``slm_run``: the first seed of each.
    """
    runs = study.runs_of("math_cpt")
    by_arm = arms(study, runs)

    def find(pred) -> str | None:
        hit = [a for a, rs in by_arm.items() if pred(study.run_spec(rs[0]))]
        return hit[0] if hit else None

    clm = find(lambda s: s["objective"] == "clm")
    slm = find(lambda s: s["group"] == "slm_runs")
    main_ratio = float(study.run_spec(by_arm[slm][0])["ratio"])
    slm_70 = find(
        lambda s: s["objective"] == "slm" and s.get("score") == "excess" and s["group"] != "slm_runs"
    )
    rand = find(lambda s: s.get("score") == "random" and float(s["ratio"]) == main_ratio)
    return {
        "runs": runs,
        "arms": by_arm,
        "clm": clm,
        "slm": slm,
        "slm_70": slm_70,
        "random": rand,
        "clm_run": by_arm[clm][0],
        "slm_run": by_arm[slm][0],
    }


def comparisons(cr: dict[str, Any]) -> list[tuple[str, str]]:
    """The paired comparisons of the part, ``(a, b)`` for ``b - a``: CPT vs base, SLM vs CLM, SLM vs
    random selection at the same ratio, random vs CLM."""
    pairs = [("base", cr["clm"]), (cr["clm"], cr["slm"])]
    if cr["slm_70"]:
        pairs.append((cr["clm"], cr["slm_70"]))
    if cr["random"]:
        pairs += [(cr["random"], cr["slm"]), (cr["clm"], cr["random"])]
    return pairs


def table1(study: Study, results: pd.DataFrame, runs: list[str]) -> pd.DataFrame:
    """Table 1 layout: the paper's rows and ours (%), with data and train tokens per run."""
    from rho.report import comparison_table

    info = {r: {"model": r, "data": "owm", "train_tokens": trained_tokens(study, r)} for r in runs}
    info["base"] = {"model": "base", "data": None, "train_tokens": None}
    return comparison_table("table1", paper_rows(results), profile=study.profile, run_info=info)


def figure1_curves(study: Study, runs: tuple[str, ...]) -> pd.DataFrame:
    """Average Table-1 accuracy at every evaluated snapshot of the runs: run, tokens, acc, stderr."""
    return pd.concat([avg_curve(study, r) for r in runs], ignore_index=True)


def figure1(study: Study, curves: pd.DataFrame) -> Any:
    """Figure 1 analog: average accuracy against training tokens, one line per run."""
    from rho.report.plots import accuracy_vs_tokens

    return accuracy_vs_tokens(
        curves, col=None, title=titled(study, "Figure 1 analog: average accuracy vs training tokens")
    )


def tokens_to_reach(curve: pd.DataFrame, target: float) -> float | None:
    """First training-token count > 0 at which a (tokens, acc) curve reaches ``target`` (None: never).

    The 0-token point is the base model, not a result of training, so it never counts.
    """
    c = curve[curve["tokens"] > 0].sort_values("tokens")
    hit = c[c["acc"] >= target]
    return float(hit["tokens"].iloc[0]) if len(hit) else None


def measured_of(
    study: Study, summary: pd.DataFrame, paired: pd.DataFrame, curves: pd.DataFrame, cr: dict[str, Any]
) -> dict[str, Any]:
    """The quantities claims C3, C4, C13 and C15 check (arm means over seeds, paired standard errors)."""
    mean = summary.set_index("arm")["mean"]
    pr = paired.set_index(["a", "b"])
    clm, slm = cr["clm"], cr["slm"]
    clm_final = float(mean[clm])
    arm_curve = arm_curves(curves, cr["arms"])
    slm_curve = arm_curve[arm_curve["run"] == slm]
    clm_curve = arm_curve[arm_curve["run"] == clm].sort_values("tokens")
    # C4 compares curves of the same seeds: CLM's final point on its own curve (its curve runs' final
    # evaluation), not the mean over all of CLM's seeds
    clm_curve_final = float(clm_curve["acc"].iloc[-1]) if len(clm_curve) else clm_final
    m = {
        "clm_avg_acc": clm_final,
        "slm_avg_acc": float(mean[slm]),
        "avg_acc_diff_se": float(pr.loc[(clm, slm), "se"]),
        "n_seeds": int(summary.set_index("arm").loc[slm, "n_seeds"]),
        "clm_curve": clm_curve[["tokens", "acc"]].values.tolist(),
        "slm_curve": slm_curve[["tokens", "acc"]].values.tolist(),
        "slm_tokens_to_clm_final": tokens_to_reach(slm_curve, clm_curve_final),
        "selected_frac": selected_fraction(study, cr["slm_run"]),
        "target_ratio": float(study.run_spec(cr["slm_run"])["ratio"]),
    }
    if cr["random"]:
        m |= {
            "random_avg_acc": float(mean[cr["random"]]),
            "random_slm_diff_se": float(pr.loc[(cr["random"], slm), "se"]),
        }
    return m


def arm_curves(curves: pd.DataFrame, by_arm: dict[str, list[str]]) -> pd.DataFrame:
    """Accuracy curves averaged over each arm's seeds at every token count (``run`` = arm)."""
    c = label_arms(curves, by_arm)
    return c.groupby(["run", "tokens"], sort=False, as_index=False).agg(
        acc=("acc", "mean"), stderr=("stderr", "mean")
    )


def run_step_time_ratio(study: Study, slm_run: str, clm_run: str) -> float | None:
    """SLM / CLM median step time of two runs from their logs (C13); None if a log lacks step times."""
    from rho.analysis import step_time_ratio
    from rho.analysis.errors import AnalysisInputError

    try:
        return step_time_ratio(study.run_dir(slm_run), study.run_dir(clm_run))
    except AnalysisInputError:
        return None


def step_time_ratios(study: Study, cr: dict[str, Any]) -> dict[str, Any]:
    """SLM / CLM (and random / CLM) median step-time ratios of seed-paired runs, from their logs (C13)."""
    out: dict[str, Any] = {}
    for arm in ("slm", "random"):
        if not cr[arm]:
            continue
        ratios = [
            run_step_time_ratio(study, s, c) for s, c in zip(cr["arms"][cr[arm]], cr["arms"][cr["clm"]])
        ]
        ratios = [r for r in ratios if r is not None]
        out[f"{arm}_runs"] = cr["arms"][cr[arm]]
        out[f"{arm}_step_time_ratios"] = ratios
        out[f"{arm}_step_time_ratio"] = float(pd.Series(ratios).median()) if ratios else None
    out["clm_runs"] = cr["arms"][cr["clm"]]
    out["step_time_ratio"] = out.get("slm_step_time_ratio")
    return out


def math_cpt_part(study: Study) -> dict[str, Any]:
    """Sec. 3.2, Table 1 and Figure 1: CLM vs SLM (and random selection) continual pretraining on the
    noisy math corpus, every arm with its seeds; differences judged on the same problems."""
    cr = compared_runs(study)
    runs, by_arm = cr["runs"], {"base": ["base"], **cr["arms"]}
    res = eval_results(study, ["base", *runs])
    d = part_dir(study, "math_cpt")
    arm_res = arm_results(res, by_arm)
    table = table1(study, arm_res, list(cr["arms"]))
    write_table(
        table,
        d / "table1",
        title=f"Table 1 layout: few-shot CoT accuracy (%), ours at `{study.profile}` (mean over each arm's seeds)",
    )
    avg = average_accuracy(res)
    write_table3(
        avg,
        d / "average_accuracy",
        title=titled(study, "Average accuracy over the nine Table-1 roles per run (fraction)"),
    )
    summary = arm_summary(avg, by_arm)
    write_table3(
        summary,
        d / "arm_summary",
        title=titled(study, "Average accuracy per arm over its seeds (fraction): mean, std, min, max"),
    )
    paired = paired_comparisons(study, by_arm, comparisons(cr))
    write_table3(
        paired,
        d / "paired_comparisons",
        title=titled(
            study,
            "Paired differences b - a on the same problems (fraction): se = sqrt(se_problems^2 + se_seeds^2)",
        ),
    )
    wide = accuracy_wide(res).reset_index()
    write_table3(
        wide,
        d / "accuracy_by_task",
        title=titled(
            study, "Accuracy per task (fraction); gsm_unseen = held-out two-step templates, not in Table 1"
        ),
    )
    # accuracy at every snapshot: the first seed of CLM and of SLM (stages.CURVE_PARTS)
    curves = figure1_curves(study, (cr["clm_run"], cr["slm_run"]))
    curves.to_csv(d / "figure1_curves.csv", index=False)
    fig = figure1(study, arm_curves(curves, cr["arms"]))
    save_figure(fig, d / "figure1_accuracy_vs_tokens.png")
    measured = measured_of(study, summary, paired, curves, cr)
    write_measured(study, "math_cpt", measured)
    # Wall-clock, so never the same twice: kept beside the tables but out of DVC's hash (.dvcignore),
    # so the reproducible results (and the scorecard) stay byte-identical; committed as a measurement.
    timing = step_time_ratios(study, cr)
    write_json_atomic(part_dir(study, "math_cpt") / STEP_TIME_FILE, timing)
    return {
        "table": table,
        "average": avg,
        "arms": summary,
        "paired": paired,
        "curves": curves,
        "figure": fig,
        "measured": measured,
        "results": res,
        "timing": timing,
    }
