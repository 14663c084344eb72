"""What every part reads: runs, their training logs, evaluations and completions, as tidy tables.

Shared by the notebook parts (``rho.study.parts.<part>``): the final evaluations of runs
(:func:`eval_results`), their averages and per-task tables, training-loss curves from the run logs,
sample completions, the claim verdicts a part tests, and the helpers that write
``results/<profile>/<part>/``.  Accuracies are fractions in [0, 1] (tables show percent).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rho.io import write_json_atomic
from rho.report.markdown import write_table
from rho.study.config import Study, StudyError

#: The nine tasks of the paper's Table 1, in its column order (our suite's ``role``).
TABLE1_ROLES = ("gsm8k", "math", "svamp", "asdiv", "mawps", "tabmwp", "mathqa", "mmlu_stem", "sat")
#: Tasks reported beside Table 1 but not in it (held-out gsm templates: generalisation).
HELDOUT_TASKS = ("gsm_unseen",)
#: Primary metric per task kind: free-form answers are exact match, multiple choice is accuracy.
PRIMARY = {"exact_match", "acc"}
#: Per-part file of wall-clock measurements (C13, the sparse-backward ablation): committed in git as
#: a measurement, ignored by DVC (.dvcignore), so the reproducible results stay byte-identical.
STEP_TIME_FILE = "step_time.json"


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


def titled(study: Study, text: str) -> str:
    """``text`` with the profile (scale) it was obtained at."""
    return f"{text} (`{study.profile}` profile)"


# ------------------------------------------------------------------ runs and their training logs
def runs_table(study: Study, runs: Sequence[str]) -> pd.DataFrame:
    """One row per run: its spec (part, objective, corpus, base, score, ratio) and what its log says.

    ``steps``, ``tokens`` and ``final_loss`` come from the run's ``log.jsonl`` (empty for a run
    without a log, e.g. a released base model); ``selected_frac`` is the mean logged selected
    fraction (1.0 for CLM).
    """
    from rho.analysis import read_log
    from rho.analysis.errors import AnalysisInputError

    rows = []
    for run in runs:
        spec = study.run_spec(run) if run in study.run_names else {"part": run, "objective": "clm"}
        row = {
            "run": run,
            **{k: spec.get(k) for k in ("part", "objective", "corpus", "base", "score", "ratio")},
        }
        try:
            log = read_log(study.run_dir(run))
        except AnalysisInputError:
            log = None
        if log is not None:
            col = "selected_frac" if "selected_frac" in log.columns else "selected_fraction"
            row |= {
                "steps": int(log["step"].iloc[-1]),
                "tokens": int(log["tokens"].iloc[-1]),
                "final_loss": float(log["loss"].iloc[-1]) if "loss" in log.columns else None,
                "selected_frac": float(log[col].mean()) if col in log.columns else None,
            }
        rows.append(row)
    return pd.DataFrame(rows)


#: Loss metrics of a run log as the training-curve steps show them (``loss_all``: every valid token).
CURVE_METRICS = ("loss_all", "loss_selected", "loss_unselected")


def with_all_token_loss(log: pd.DataFrame) -> pd.DataFrame:
    """The log with ``loss_all``: the mean loss over every valid token of a step, selected or not.

    ``loss`` is what the run trained on (SLM: the selected tokens only); ``loss_all`` weighs
    ``loss_selected`` and ``loss_unselected`` by ``n_selected`` and ``n_valid - n_selected``.  A step
    without unselected tokens (CLM) has ``loss_all = loss``.
    """
    need = {"loss_selected", "loss_unselected", "n_selected", "n_valid"}
    out = log.copy()
    if "loss" not in out.columns:
        return out
    out["loss_all"] = out["loss"].astype(float)
    if need <= set(out.columns):
        ls = pd.to_numeric(out["loss_selected"], errors="coerce")
        lu = pd.to_numeric(out["loss_unselected"], errors="coerce")
        ns, nv = out["n_selected"].astype(float), out["n_valid"].astype(float)
        mixed = (ls * ns + lu * (nv - ns)) / nv.where(nv > 0)
        out["loss_all"] = mixed.where(lu.notna(), out["loss_all"])
    return out


def training_curves(
    study: Study, runs: Sequence[str], metrics: Sequence[str] = CURVE_METRICS, smooth: int = 1
) -> pd.DataFrame:
    """Loss curves of the runs' logs: ``run, step, tokens, metric, value``.

    Metrics (default :data:`CURVE_METRICS`): ``loss_all`` (every valid token), ``loss_selected``
    and ``loss_unselected`` (SLM: the tokens the run trained on / dropped; CLM selects all and logs
    no unselected loss), or ``loss`` (what the run trained on).  ``smooth > 1``: a trailing mean
    over that many steps.
    """
    from rho.analysis import loss_curves, read_log

    logs = {r: with_all_token_loss(read_log(study.run_dir(r))) for r in runs}
    return loss_curves(logs, metrics=metrics, smooth=smooth)


def plot_training_curves(curves: pd.DataFrame, title: str) -> Any:
    """One panel per logged loss metric (all / selected / unselected tokens), one line per run."""
    from rho.report.plots import training_loss_curves

    present = set(curves["metric"])
    metrics = [m for m in (*CURVE_METRICS, "loss") if m in present]
    return training_loss_curves(curves, metrics=metrics, title=title)


def selected_fraction(study: Study, run: str) -> float:
    """Mean logged selected fraction of a run (the effective ratio)."""
    from rho.analysis import read_log

    log = read_log(study.run_dir(run))
    col = "selected_frac" if "selected_frac" in log.columns else "selected_fraction"
    return float(log[col].mean())


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


def task_accuracy(results: pd.DataFrame) -> pd.DataFrame:
    """Per task (rows) and run (columns): the primary metric as ``accuracy ± standard error``.

    ``n`` is the number of graded questions of the task (the same for every run).
    """
    r = results.assign(
        cell=[f"{v:.3f} ± {s:.3f}" for v, s in zip(results["value"], results["stderr"].fillna(0))]
    )
    wide = r.pivot_table(index=["task", "role", "n"], columns="run", values="cell", aggfunc="first")
    runs = list(dict.fromkeys(results["run"]))
    return wide[runs]


def paper_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Rows for ``rho.report.comparison_table``: run, task (the paper's column name), value."""
    r = results[results["in_table1"]]
    return pd.DataFrame({"run": r["run"], "task": r["role"], "value": r["value"]})


def avg_curve(study: Study, run: str) -> pd.DataFrame:
    """Average Table-1 accuracy of a run at each evaluated snapshot: columns tokens, acc."""
    df = pd.read_csv(study.eval_dir(run) / "curve.csv")
    df = df[df["metric"].isin(PRIMARY) & df["role"].isin(TABLE1_ROLES) & ~df["task"].isin(HELDOUT_TASKS)]
    g = df.groupby("tokens")
    out = pd.DataFrame({"acc": g["value"].mean(), "stderr": g["stderr"].apply(mean_stderr)}).reset_index()
    out.insert(0, "run", run)
    return out


# ------------------------------------------------------------------ completions
def read_completions(study: Study, run: str) -> pd.DataFrame:
    """The graded completions of a run's final evaluation (``evals/<profile>/<run>/final/completions.jsonl``)."""
    path = study.eval_dir(run) / "final" / "completions.jsonl"
    if not path.is_file():
        raise StudyError(f"no completions of {run!r} at {path}: run `dvc repro evaluate@{run}` first")
    with path.open() as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return pd.DataFrame(rows).assign(run=run)


def sample_completions(
    study: Study, runs: Sequence[str], per_task: int = 1, width: int = 160
) -> pd.DataFrame:
    """Up to ``per_task`` right and ``per_task`` wrong completions per run and task, first in file order.

    Columns: run, task, correct, question, completion (free-form tasks; the choices' log-probabilities
    for multiple choice), prediction, gold.  Long texts are cut to ``width`` characters.
    """

    def cut(s: Any) -> str:
        s = " ".join(str(s).split())
        return s if len(s) <= width else s[: width - 1] + "…"

    frames = []
    for run in runs:
        c = read_completions(study, run)
        if "completion" not in c.columns:
            c["completion"] = None
        if "logprobs" in c.columns:  # multiple choice: show the scores behind the choice
            lp = c["logprobs"].map(lambda v: None if not isinstance(v, list) else [round(x, 2) for x in v])
            c["completion"] = c["completion"].where(c["completion"].notna(), lp.map(str))
        pick = c.groupby(["task", "correct"], sort=False, group_keys=False).head(per_task)
        frames.append(pick)
    out = pd.concat(frames, ignore_index=True)
    out = out[["run", "task", "correct", "question", "completion", "prediction", "gold"]]
    for col in ("question", "completion"):
        out[col] = out[col].map(cut)
    return out.sort_values(["task", "run", "correct"], kind="stable", ignore_index=True)


# ------------------------------------------------------------------ claims
def claim_verdicts(study: Study, measured: dict[str, Any], ids: Sequence[str]) -> pd.DataFrame:
    """The scorecard rows of the claims ``ids`` (e.g. ``["C3", "C4"]``) on this part's measurements."""
    from rho.report.claims import CLAIMS, scorecard

    known = {c.id for c in CLAIMS}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise StudyError(f"unknown claims {unknown}; the scorecard has {sorted(known)}")
    m = dict(measured)
    if isinstance(m.get("ppl_matrix"), dict):
        m["ppl_matrix"] = pd.DataFrame(m["ppl_matrix"])
    card = scorecard(m, profile=study.profile, claims=[c for c in CLAIMS if c.id in ids])
    return card[["id", "section", "claim", "status", "ours", "paper", "note"]]


# ------------------------------------------------------------------ arms: one setting, several seeds
def arm_of(study: Study, run: str) -> str:
    """The arm a run belongs to: its name without the ``_s<seed>`` suffix of a seed replicate.

    Replicates of one setting differ only in their ``seed`` field (data order and any randomness of
    the run); ``math_clm``, ``math_clm_s1`` and ``math_clm_s2`` are the arm ``math_clm``.
    """
    if run not in study.run_names:  # base, base_large, reference: one model each
        return run
    seed = study.run_spec(run).get("seed")
    suffix = f"_s{seed}"
    return run[: -len(suffix)] if seed is not None and run.endswith(suffix) else run


def arms(study: Study, runs: Sequence[str]) -> dict[str, list[str]]:
    """Runs grouped by arm (:func:`arm_of`), arms and their seeds in file order."""
    out: dict[str, list[str]] = {}
    for r in runs:
        out.setdefault(arm_of(study, r), []).append(r)
    return out


def label_arms(df: pd.DataFrame, by_arm: dict[str, list[str]]) -> pd.DataFrame:
    """The rows of ``df`` whose ``run`` belongs to an arm of ``by_arm``, with ``run`` set to the arm."""
    to_arm = {r: a for a, rs in by_arm.items() for r in rs}
    return df[df["run"].isin(to_arm)].assign(run=lambda d: d["run"].map(to_arm))


def arm_results(results: pd.DataFrame, by_arm: dict[str, list[str]]) -> pd.DataFrame:
    """Per arm and task, the mean over its seeds of the primary metric (``run`` holds the arm name).

    ``stderr`` is the per-task stderr of one seed (the problem noise of one evaluation).
    """
    r = label_arms(results, by_arm)
    keys = ["run", "task", "role", "metric", "in_table1"]
    out = r.groupby(keys, sort=False, as_index=False).agg(
        value=("value", "mean"), stderr=("stderr", "mean"), n=("n", "first")
    )
    return out


def arm_summary(avg: pd.DataFrame, by_arm: dict[str, list[str]]) -> pd.DataFrame:
    """Per arm: mean, sample std, min and max over seeds of the task-averaged accuracy, and seeds."""
    a = avg.set_index("run")["avg_acc"]
    rows = []
    for arm, rs in by_arm.items():
        v = a.loc[rs].to_numpy(dtype=float)
        rows.append(
            {
                "arm": arm,
                "mean": float(v.mean()),
                "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                "min": float(v.min()),
                "max": float(v.max()),
                "n_seeds": len(v),
                "runs": " ".join(rs),
            }
        )
    return pd.DataFrame(rows)


def table1_tasks(study: Study, run: str) -> list[str]:
    """The Table-1 tasks of a run's evaluation (one per role, held-out tasks excluded)."""
    res = eval_results(study, [run])
    return sorted(res.loc[res["in_table1"], "task"].unique())


def paired_comparisons(
    study: Study, by_arm: dict[str, list[str]], pairs: Sequence[tuple[str, str]], *, n_boot: int = 2000
) -> pd.DataFrame:
    """Paired differences ``b - a`` of arms on the same Table-1 problems (rho.analysis.paired).

    One row per pair: the arms' means, the difference, its standard error (problems and seeds), the
    95% paired-bootstrap interval over problems, the bootstrap and McNemar p-values, and the
    per-seed differences. Deterministic (fixed bootstrap seed).
    """
    from rho.analysis.paired import compare_arms, problem_outcomes

    needed = {a for pair in pairs for a in pair}
    first = next(iter(by_arm[next(iter(needed))]))
    tasks = table1_tasks(study, first)
    outcomes = {a: [problem_outcomes(study.eval_dir(r), tasks) for r in by_arm[a]] for a in needed}
    return compare_arms(outcomes, pairs, n_boot=n_boot, seed=0)
