"""Part 06 (notebook ``06_self_reference``): paper 3.4, Tables 3 and 4, self-reference scores."""

from __future__ import annotations

from typing import Any

import pandas as pd

from rho.report.markdown import write_table
from rho.study.config import Study
from rho.study.parts.reader import (
    average_accuracy,
    eval_results,
    paper_rows,
    part_dir,
    selected_fraction,
    trained_tokens,
    write_measured,
)

#: The claims this part tests (rho.report.claims).
CLAIMS = ("C7",)
#: The CLM run the self-reference runs are compared with (and whose model scores their corpus).
CLM_RUN = "math_clm"
#: Score kinds as the paper's tables name them.
SCORE_NAMES = {"ref_loss": "L_RM", "ref_entropy": "H_RM", "excess": "L_delta", "random": "random"}


def score_functions(study: Study, runs: list[str], fracs: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Per run (and the CLM run): score function, select ratio and effective (logged) ratio, as text."""
    info: dict[str, dict[str, Any]] = {
        CLM_RUN: {"score_function": "none", "select_ratio": "100%", "effective_ratio": "100%"}
    }
    for r in runs:
        s = study.run_spec(r)
        fn = SCORE_NAMES[s["score"]]
        sel = f"{s['ratio']:.0%}"
        if "score2" in s:
            op = " intersect " if s.get("op", "intersection") == "intersection" else " union "
            fn = f"{SCORE_NAMES[s['score2']]}{op}{fn}"
            sel = f"{s['ratio2']:.0%} {'n' if 'intersect' in op else 'u'} {s['ratio']:.0%}"
        info[r] = {"score_function": fn, "select_ratio": sel, "effective_ratio": f"{fracs[r]:.0%}"}
    return info


def table4(study: Study, results: pd.DataFrame, info: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Table 4 layout: one row per score function (%), the paper's rows beside ours."""
    from rho.report import comparison_table

    return comparison_table("table4", paper_rows(results), profile=study.profile, run_info=info)


def table3(
    study: Study, results: pd.DataFrame, info: dict[str, dict[str, Any]], fracs: dict[str, float]
) -> pd.DataFrame:
    """Table 3 layout: CLM and the self-reference runs with their train tokens (%)."""
    from rho.report import comparison_table

    info3 = {
        r: {
            "model": r,
            "score_function": v["score_function"] if r != CLM_RUN else None,
            "data": "owm",
            "train_tokens": trained_tokens(study, r, fracs.get(r)),
        }
        for r, v in info.items()
    }
    return comparison_table("table3", paper_rows(results), profile=study.profile, run_info=info3)


def measured_of(
    study: Study, results: pd.DataFrame, runs: list[str], fracs: dict[str, float]
) -> dict[str, Any]:
    """The quantities claim C7 checks: averages over the six tasks of Tables 3 and 4."""
    from rho.report.paper_tables import TABLE3_TASKS

    tab = average_accuracy(results, roles=TABLE3_TASKS).set_index("run")
    avg = tab["avg_acc"]
    pick = {
        s: [r for r in runs if study.run_spec(r)["score"] == s and "score2" not in study.run_spec(r)]
        for s in ("ref_loss", "ref_entropy")
    }
    inter = [r for r in runs if study.run_spec(r).get("op") == "intersection"]
    return {
        "selfref_clm_avg_acc": float(avg[CLM_RUN]),
        **({"selfref_lrm_avg_acc": float(avg[pick["ref_loss"][0]])} if pick["ref_loss"] else {}),
        **({"selfref_hrm_avg_acc": float(avg[pick["ref_entropy"][0]])} if pick["ref_entropy"] else {}),
        **({"selfref_intersect_avg_acc": float(avg[inter[0]])} if inter else {}),
        "selfref_avg_stderr": float(tab["avg_stderr"].max()),
        "selfref_tasks": list(TABLE3_TASKS),
        "effective_ratios": fracs,
    }


def self_reference_part(study: Study) -> dict[str, Any]:
    """Sec. 3.4, Tables 3 and 4: reference = the CLM model on its own corpus; L_RM, H_RM, and both."""
    runs = study.runs_of("self_reference")
    res = eval_results(study, [CLM_RUN, *runs])
    fracs = {r: selected_fraction(study, r) for r in runs}  # the effective ratios, read once from the logs
    info = score_functions(study, runs, fracs)
    d = part_dir(study, "self_reference")
    t4 = table4(study, res, info)
    write_table(
        t4,
        d / "table4",
        title=f"Table 4 layout: self-reference score functions (%), ours at `{study.profile}`",
        note="The paper labels its loss-based rows `L_delta`; its 70% row equals Table 3's `L_RM` row: "
        "both are the self-reference loss score, written `L_RM` in our rows.",
    )
    t3 = table3(study, res, info, fracs)
    write_table(t3, d / "table3", title=f"Table 3 layout (%), ours at `{study.profile}`")
    measured = measured_of(study, res, runs, fracs)
    write_measured(study, "self_reference", measured)
    return {"table3": t3, "table4": t4, "measured": measured, "results": res}
