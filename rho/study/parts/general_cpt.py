"""Part 05 (notebook ``05_general_cpt``): paper 3.3 and Figure 5, CLM vs SLM on the general mix."""

from __future__ import annotations

from typing import Any

import pandas as pd

from rho.report.plots import save_figure
from rho.study.config import Study
from rho.study.parts.reader import (
    PRIMARY,
    eval_results,
    mean_stderr,
    part_dir,
    table1_tasks,
    titled,
    write_measured,
    write_table3,
)

#: The claims this part tests (rho.report.claims).
CLAIMS = ("C6",)


def compared_runs(study: Study) -> dict[str, Any]:
    """The part's runs: ``runs``, ``clm`` and ``slm``."""
    runs = study.runs_of("general_cpt")
    clm = [r for r in runs if study.run_spec(r)["objective"] == "clm"][0]
    slm = [r for r in runs if study.run_spec(r)["objective"] == "slm"][0]
    return {"runs": runs, "clm": clm, "slm": slm}


def all_results(study: Study, runs: list[str]) -> pd.DataFrame:
    """Math (Table-1 roles, named as the paper names them) and general (lm-eval) results of the runs.

    Columns: run, task, value, stderr, n, suite (``math`` or ``general``).
    """
    res = eval_results(study, runs)
    t1 = res[res["in_table1"]]
    frames = [t1.assign(task=t1["role"], suite="math")[["run", "task", "value", "stderr", "n", "suite"]]]
    for r in runs:
        g = study.eval_dir(r) / "general.csv"
        if g.is_file():
            gd = pd.read_csv(g)
            gd = gd[gd["metric"].isin(PRIMARY)]
            frames.append(gd.assign(run=r, suite="general")[["run", "task", "value", "stderr", "n", "suite"]])
    return pd.concat(frames, ignore_index=True)


def figure5_table(
    allres: pd.DataFrame, runs: list[str], clm: str, slm: str
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Tasks x runs with the math / general / all averages and SLM - CLM; and the C6 measurements."""
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
    return wide, measured


def run_outcomes(study: Study, run: str) -> pd.DataFrame:
    """Per-problem outcomes of a run on the tasks of the `all` average: the Table-1 math problems and
    the general (lm-eval) documents with an ``acc``, as columns task, id, correct."""
    from rho.analysis.paired import lm_eval_outcomes, problem_outcomes

    frames = [problem_outcomes(study.eval_dir(run), table1_tasks(study, run))]
    general = study.eval_dir(run) / "general"
    if general.is_dir():
        frames.append(lm_eval_outcomes(general))
    return pd.concat(frames, ignore_index=True)


def paired_all_average(study: Study, clm: str, slm: str) -> dict[str, Any]:
    """SLM - CLM on the `all` average, paired on the same problems and documents (C6's margin).

    Returns the :class:`rho.analysis.paired.PairedDiff` fields (``diff``, ``se``, McNemar's p, ...).
    """
    from rho.analysis.paired import paired_difference

    return paired_difference([run_outcomes(study, clm)], [run_outcomes(study, slm)], seed=0).to_dict()


def general_cpt_part(study: Study) -> dict[str, Any]:
    """Sec. 3.3, Figure 5: CLM vs SLM on the 6:3:1 general mix; math and general (lm-eval) tasks."""
    from rho.report.plots import benchmark_bars

    cr = compared_runs(study)
    runs, clm, slm = cr["runs"], cr["clm"], cr["slm"]
    allres = all_results(study, runs)
    d = part_dir(study, "general_cpt")
    wide, measured = figure5_table(allres, runs, clm, slm)
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
    paired = paired_all_average(study, clm, slm)
    measured["general_acc_diff_se"] = float(paired["se"])  # C6's margin: the paired difference's
    write_measured(study, "general_cpt", measured)
    return {"table": wide, "figure": fig, "measured": measured, "results": allres, "paired": paired}
