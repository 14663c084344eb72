"""The sparse-backward ablation (issue 13, reported in notebook ``07_analysis``).

SLM's exact sparse backward skips the unselected tokens in the head only, where their gradient is
exactly zero. ``sparse_backward: layers`` (the Collider approximation, :mod:`rho.train.sparse_layers`)
also drops the unselected tokens' rows from every transformer layer's weight gradient, although
their gradient there is not zero (attention carries the selected tokens' loss back through them).
A run with the flag is compared with the main SLM run of the same seed and data order, so the only
difference is the approximation: accuracy paired on the same problems, the training loss of the
selected tokens, the downstream loss, and the wall-clock step time from both runs' logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from rho.study.config import Study
from rho.study.parts.reader import STEP_TIME_FILE, paired_comparisons, write_table3

#: The ``part`` of the ablation's runs in params.yaml.
PART = "sparse_backward"


def ablation_pairs(study: Study) -> list[tuple[str, str]]:
    """``(exact, approximate)`` run pairs: each ``sparse_backward`` run and the main SLM run it varies.

    The exact run is the ``slm_runs`` run of the math part with the same seed (default: the study's).
    """
    exact = {
        study.run_spec(r).get("seed", study.seed): r
        for r in study.runs_of("math_cpt")
        if study.run_spec(r)["group"] == "slm_runs"
    }
    pairs = []
    for run in study.runs_of(PART):
        seed = study.run_spec(run).get("seed", study.seed)
        if seed in exact:
            pairs.append((exact[seed], run))
    return pairs


def _final_loss(study: Study, run: str, last: int = 20) -> float:
    """Mean training loss of the selected tokens over the run's last ``last`` logged steps."""
    from rho.analysis import read_log

    log = read_log(study.run_dir(run))
    return float(pd.to_numeric(log["loss_selected"]).tail(last).mean())


def _downstream(study: Study, run: str) -> float:
    """The run's final downstream loss (mean over tasks at its last snapshot)."""
    d = pd.read_csv(study.eval_dir(run) / "downstream.csv")
    return float(d[d["tokens"] == d["tokens"].max()]["downstream_loss"].mean())


def _step_time(study: Study, run: str) -> float | None:
    from rho.analysis import median_step_time
    from rho.analysis.errors import AnalysisInputError

    try:
        return median_step_time(study.run_dir(run))
    except AnalysisInputError:  # no timing.jsonl (e.g. a run restored from the DVC cache)
        return None


def ablation_table(study: Study) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per run of the ablation (exact and approximate) and the measured differences.

    Columns: run, sparse_backward, acc, train_loss_selected, downstream_loss. The measurements
    (``sparse_layers``, per approximate run) hold the paired accuracy difference (approximate -
    exact), its standard error and McNemar's p. Wall-clock step times are apart
    (:func:`ablation_step_times`).
    """
    rows, measured = [], {}
    for exact, approx in ablation_pairs(study):
        paired = paired_comparisons(study, {exact: [exact], approx: [approx]}, [(exact, approx)]).iloc[0]
        for run, acc in ((exact, paired["a_mean"]), (approx, paired["b_mean"])):
            rows.append(
                {
                    "run": run,
                    "sparse_backward": study.run_spec(run).get("sparse_backward", "exact"),
                    "acc": float(acc),
                    "train_loss_selected": _final_loss(study, run),
                    "downstream_loss": _downstream(study, run),
                }
            )
        measured[approx] = {
            "exact_run": exact,
            "acc_diff": float(paired["diff"]),
            "acc_diff_se": float(paired["se"]),
            "mcnemar_p": None if pd.isna(paired["mcnemar_p"]) else float(paired["mcnemar_p"]),
        }
    return pd.DataFrame(rows), {"sparse_layers": measured} if measured else {}


def ablation_step_times(study: Study) -> dict[str, Any]:
    """Median wall-clock step time of each ablation pair and the ratio approximate / exact.

    Wall clock (``timing.jsonl``): never the same twice, so it is written apart from the
    reproducible results (``step_time.json``, committed as a measurement, ignored by DVC).
    """
    out: dict[str, Any] = {}
    for exact, approx in ablation_pairs(study):
        te, ta = _step_time(study, exact), _step_time(study, approx)
        out[approx] = {
            "exact_run": exact,
            "exact_step_time_s": te,
            "step_time_s": ta,
            "step_time_ratio": ta / te if te and ta else None,
        }
    return out


def write_ablation(study: Study, out_dir: Path) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Write ``sparse_backward.md``/``.csv`` and the wall-clock ``step_time.json`` into ``out_dir``.

    Returns the table, its measurements and the step times.
    """
    from rho.io import write_json_atomic

    table, measured = ablation_table(study)
    if table.empty:
        return table, measured, {}
    write_table3(
        table,
        out_dir / "sparse_backward",
        title=(
            f"Sparse backward ablation at `{study.profile}`: exact (head only) vs `layers` (Collider "
            "approximation), same seed; acc = 9-task average on the same problems"
        ),
    )
    times = ablation_step_times(study)
    write_json_atomic(out_dir / STEP_TIME_FILE, times)
    return table, measured, times
