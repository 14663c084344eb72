"""Paired comparison of two training arms on the same evaluation problems.

Two arms (e.g. CLM and SLM) are each a set of runs that differ only in their seed; all runs answer
the same problems. Judging the gap between their average accuracies with two independent
standard errors wastes the pairing: most of the variation is which problems are hard, which both
arms share. Here the difference is measured on the same problems:

* per problem, the arm's score is its mean correctness over the arm's seeds;
* the arm's average is the mean over roles (tasks) of the mean over the role's problems, as in
  Table 1;
* problem noise: a paired bootstrap resamples problems within each task (the same draw for both
  arms) and recomputes the difference of averages;
* seed noise: with ``s > 1`` seeds on each arm, seed ``i`` of one arm is paired with seed ``i`` of
  the other (same data order) and the spread of the per-seed differences gives
  ``var(d_seed) / s``;
* the standard error of the difference combines both (independent sources):
  ``se = sqrt(se_problems^2 + var(d_seed) / s)``.

McNemar's exact test on the discordant problems (one arm right, the other wrong) is given for
single-seed arms, as a check a reader knows.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rho.analysis.errors import AnalysisInputError

#: Primary per-problem outcome field of an evaluation's ``completions.jsonl`` (both task kinds).
OUTCOME = "correct"


def problem_outcomes(eval_dir: str | os.PathLike, tasks: Iterable[str] | None = None) -> pd.DataFrame:
    """Per-problem outcomes of one evaluation: columns task, id, correct (0/1).

    Reads ``<eval_dir>/final/completions.jsonl`` (written by :func:`rho.evaluate.evaluate_model`);
    ``tasks`` keeps only those tasks.
    """
    path = Path(eval_dir) / "final" / "completions.jsonl"
    if not path.is_file():
        raise AnalysisInputError(f"no per-problem outcomes at {path}: evaluate the run first")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    df = pd.DataFrame([{"task": r["task"], "id": r["id"], OUTCOME: float(bool(r[OUTCOME]))} for r in rows])
    if tasks is not None:
        df = df[df["task"].isin(list(tasks))]
    return df.reset_index(drop=True)


def lm_eval_outcomes(
    samples_dir: str | os.PathLike, tasks: Iterable[str] | None = None, metric: str = "acc"
) -> pd.DataFrame:
    """Per-document outcomes of an lm-eval run: columns task, id (``doc_id``), correct (0/1).

    Reads ``<samples_dir>/lm_eval_samples.jsonl`` (:func:`rho.evaluate.run_lm_eval` with
    ``out_dir``); documents without ``metric`` (e.g. perplexity tasks) are left out.
    """
    path = Path(samples_dir) / "lm_eval_samples.jsonl"
    if not path.is_file():
        raise AnalysisInputError(
            f"no per-document lm-eval records at {path}: run lm-eval with out_dir (rho.evaluate.run_lm_eval)"
        )
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    df = pd.DataFrame(
        [{"task": r["task"], "id": str(r["doc_id"]), OUTCOME: float(r[metric])} for r in rows if metric in r],
        columns=["task", "id", OUTCOME],
    )
    if tasks is not None:
        df = df[df["task"].isin(list(tasks))]
    return df.reset_index(drop=True)


def arm_matrix(outcomes: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Stack one arm's per-seed outcomes: index (task, id), one column per seed (0/1)."""
    if not outcomes:
        raise AnalysisInputError("an arm needs at least one run's outcomes")
    cols = []
    for i, df in enumerate(outcomes):
        s = df.set_index(["task", "id"])[OUTCOME].rename(i)
        if s.index.duplicated().any():
            raise AnalysisInputError(f"seed {i}: duplicated (task, id) rows in the outcomes")
        cols.append(s)
    m = pd.concat(cols, axis=1, join="outer").sort_index()
    if m.isna().any().any():
        raise AnalysisInputError(
            "the arm's runs were evaluated on different problems (compare like with like)"
        )
    return m


def _avg(per_problem: pd.Series) -> float:
    """Mean over tasks of the mean over each task's problems."""
    return float(per_problem.groupby(level="task").mean().mean())


@dataclass(frozen=True)
class PairedDiff:
    """Difference ``b - a`` of two arms' task-averaged accuracies on the same problems."""

    a_mean: float
    b_mean: float
    diff: float
    se: float  # combined standard error of ``diff`` (problems and seeds)
    se_problems: float
    se_seeds: float
    ci_low: float  # 95% paired-bootstrap interval over problems (seed noise not included)
    ci_high: float
    p_bootstrap: float  # two-sided, from the bootstrap distribution of the difference
    n_seeds: int
    n_problems: int
    n_tasks: int
    seed_diffs: tuple[float, ...]
    mcnemar_p: float | None  # exact McNemar on seed 0 (None with no discordant problem)

    def to_dict(self) -> dict:
        """JSON-ready view."""
        d = asdict(self)
        d["seed_diffs"] = list(self.seed_diffs)
        return d


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided exact McNemar p-value for paired 0/1 outcomes (None when no pair is discordant)."""
    a, b = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    n01, n10 = int(np.sum(~a & b)), int(np.sum(a & ~b))
    n = n01 + n10
    if n == 0:
        return None
    k = min(n01, n10)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n  # exact integers: no overflow for large n
    return float(min(1.0, 2.0 * tail))


def paired_difference(
    a: Sequence[pd.DataFrame], b: Sequence[pd.DataFrame], *, n_boot: int = 2000, seed: int = 0
) -> PairedDiff:
    """Compare arm ``b`` with arm ``a`` (each: per-seed outcomes from :func:`problem_outcomes`).

    Seeds are paired by position (seed ``i`` of ``a`` with seed ``i`` of ``b``); arms with
    different seed counts use the first ``min`` seeds for the seed term. Deterministic for a given
    ``seed``.
    """
    ma, mb = arm_matrix(a), arm_matrix(b)
    if not ma.index.equals(mb.index):
        raise AnalysisInputError(
            "the two arms were evaluated on different problems; evaluate both on the same tasks and limit"
        )
    pa, pb = ma.mean(axis=1), mb.mean(axis=1)
    a_mean, b_mean = _avg(pa), _avg(pb)
    d = (pb - pa).to_numpy()
    tasks = ma.index.get_level_values("task").to_numpy()
    rng = np.random.default_rng(seed)
    names = sorted(set(tasks))
    idx = [np.flatnonzero(tasks == t) for t in names]
    boots = np.zeros(n_boot)
    for t_idx in idx:  # task-wise resampling, same draw for both arms (we resample the difference)
        draws = rng.integers(0, len(t_idx), size=(n_boot, len(t_idx)))
        boots += d[t_idx][draws].mean(axis=1)
    boots /= len(idx)
    diff = b_mean - a_mean
    se_problems = float(boots.std(ddof=1)) if n_boot > 1 else 0.0
    s = min(ma.shape[1], mb.shape[1])
    seed_diffs = tuple(_avg(mb[i]) - _avg(ma[i]) for i in range(s))
    se_seeds = float(np.std(seed_diffs, ddof=1) / math.sqrt(s)) if s > 1 else 0.0
    lo, hi = np.quantile(boots, [0.025, 0.975])
    p = float(min(1.0, 2.0 * min(np.mean(boots <= 0), np.mean(boots >= 0))))
    return PairedDiff(
        a_mean=a_mean,
        b_mean=b_mean,
        diff=float(diff),
        se=float(math.hypot(se_problems, se_seeds)),
        se_problems=se_problems,
        se_seeds=se_seeds,
        ci_low=float(lo),
        ci_high=float(hi),
        p_bootstrap=p,
        n_seeds=s,
        n_problems=len(d),
        n_tasks=len(idx),
        seed_diffs=seed_diffs,
        mcnemar_p=mcnemar_exact(ma[0].to_numpy(), mb[0].to_numpy()),
    )


def seed_spread(outcomes: Sequence[pd.DataFrame]) -> dict[str, float]:
    """Task-averaged accuracy of each seed of one arm: mean, sample std and min/max over seeds."""
    m = arm_matrix(outcomes)
    per_seed = np.array([_avg(m[i]) for i in m.columns])
    return {
        "mean": float(per_seed.mean()),
        "std": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0,
        "min": float(per_seed.min()),
        "max": float(per_seed.max()),
        "n_seeds": len(per_seed),
    }


def compare_arms(
    arms: Mapping[str, Sequence[pd.DataFrame]], pairs: Iterable[tuple[str, str]], **kw
) -> pd.DataFrame:
    """One row per ``(a, b)`` pair of :func:`paired_difference` (columns: a, b and its fields)."""
    rows = []
    for a, b in pairs:
        if a not in arms or b not in arms:
            raise AnalysisInputError(f"unknown arm in pair ({a!r}, {b!r}); arms: {sorted(arms)}")
        r = paired_difference(arms[a], arms[b], **kw).to_dict()
        r["seed_diffs"] = " ".join(f"{x:+.4f}" for x in r["seed_diffs"])
        rows.append({"a": a, "b": b, **r})
    return pd.DataFrame(rows)
