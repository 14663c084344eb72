"""Part 04 (notebook ``04_math_cpt``): paper 3.2, Table 1 and Figure 1, CLM vs SLM on noisy math."""

from __future__ import annotations

from typing import Any

import pandas as pd

from rho.io import write_json_atomic
from rho.report.markdown import write_table
from rho.report.plots import save_figure
from rho.study.config import Study
from rho.study.parts.reader import (
    accuracy_wide,
    average_accuracy,
    avg_curve,
    eval_results,
    paper_rows,
    part_dir,
    selected_fraction,
    titled,
    trained_tokens,
    write_measured,
    write_table3,
)

#: The claims this part tests (rho.report.claims).
CLAIMS = ("C3", "C4", "C13")
#: Per-part file of wall-clock measurements (C13), ignored by git and DVC.
STEP_TIME_FILE = "step_time.json"


def compared_runs(study: Study) -> dict[str, Any]:
    """The part's runs: ``runs`` (all math_cpt runs), ``clm`` and ``slm`` (the main SLM run)."""
    runs = study.runs_of("math_cpt")
    clm = [r for r in runs if study.run_spec(r)["objective"] == "clm"][0]
    slm = [r for r in runs if study.run_spec(r)["group"] == "slm_runs"][0]
    return {"runs": runs, "clm": clm, "slm": slm}


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


def measured_of(study: Study, avg: pd.DataFrame, curves: pd.DataFrame, clm: str, slm: str) -> dict[str, Any]:
    """The quantities claims C3, C4 and C13 check."""
    a = avg.set_index("run")
    clm_final = float(a.loc[clm, "avg_acc"])
    slm_curve = curves[curves["run"] == slm]
    return {
        "clm_avg_acc": clm_final,
        "slm_avg_acc": float(a.loc[slm, "avg_acc"]),
        "avg_acc_stderr": float(a.loc[[clm, slm], "avg_stderr"].max()),
        "clm_curve": curves[curves["run"] == clm][["tokens", "acc"]].values.tolist(),
        "slm_curve": slm_curve[["tokens", "acc"]].values.tolist(),
        "slm_tokens_to_clm_final": tokens_to_reach(slm_curve, clm_final),
        "selected_frac": selected_fraction(study, slm),
        "target_ratio": float(study.run_spec(slm)["ratio"]),
    }


def run_step_time_ratio(study: Study, slm_run: str, clm_run: str) -> float | None:
    """SLM / CLM median step time of two runs from their logs (C13); None if a log lacks step times."""
    from rho.analysis import step_time_ratio
    from rho.analysis.errors import AnalysisInputError

    try:
        return step_time_ratio(study.run_dir(slm_run), study.run_dir(clm_run))
    except AnalysisInputError:
        return None


def math_cpt_part(study: Study) -> dict[str, Any]:
    """Sec. 3.2, Table 1 and Figure 1: CLM vs SLM continual pretraining on the noisy math corpus."""
    cr = compared_runs(study)
    runs, clm, main_slm = cr["runs"], cr["clm"], cr["slm"]
    res = eval_results(study, ["base", *runs])
    d = part_dir(study, "math_cpt")
    table = table1(study, res, runs)
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
    curves = figure1_curves(study, (clm, main_slm))
    curves.to_csv(d / "figure1_curves.csv", index=False)
    fig = figure1(study, curves)
    save_figure(fig, d / "figure1_accuracy_vs_tokens.png")
    measured = measured_of(study, avg, curves, clm, main_slm)
    write_measured(study, "math_cpt", measured)
    # Wall-clock, so never the same twice: kept beside the tables but out of git and of DVC's hash
    # (.gitignore, .dvcignore), so the reproducible results (and the scorecard) stay byte-identical.
    timing = {
        "slm_run": main_slm,
        "clm_run": clm,
        "step_time_ratio": run_step_time_ratio(study, main_slm, clm),
    }
    write_json_atomic(part_dir(study, "math_cpt") / STEP_TIME_FILE, timing)
    return {
        "table": table,
        "average": avg,
        "curves": curves,
        "figure": fig,
        "measured": measured,
        "results": res,
        "timing": timing,
    }
