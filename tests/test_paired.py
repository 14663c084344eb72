"""Paired comparison of two arms on the same problems (rho.analysis.paired)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rho.analysis.errors import AnalysisInputError
from rho.analysis.paired import (
    arm_matrix,
    compare_arms,
    lm_eval_outcomes,
    mcnemar_exact,
    paired_difference,
    problem_outcomes,
    seed_spread,
)


def _outcomes(correct: dict[str, list[int]]) -> pd.DataFrame:
    rows = [
        {"task": t, "id": f"{t}-{i}", "correct": float(c)}
        for t, cs in correct.items()
        for i, c in enumerate(cs)
    ]
    return pd.DataFrame(rows)


def test_lm_eval_outcomes_reads_per_document_scores(tmp_path):
    rows = [
        {"task": "rho_prose_next", "doc_id": 0, "acc": 1.0, "acc_norm": 0.0},
        {"task": "rho_prose_next", "doc_id": 1, "acc": 0.0},
        {"task": "rho_prose_ppl", "doc_id": 0, "target": "x"},  # perplexity: no acc, left out
        {"task": "rho_code_next", "doc_id": 0, "acc": 1.0},
    ]
    with pytest.raises(AnalysisInputError, match="lm_eval_samples.jsonl"):
        lm_eval_outcomes(tmp_path)
    (tmp_path / "lm_eval_samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = lm_eval_outcomes(tmp_path)
    assert df.to_dict("records") == [
        {"task": "rho_prose_next", "id": "0", "correct": 1.0},
        {"task": "rho_prose_next", "id": "1", "correct": 0.0},
        {"task": "rho_code_next", "id": "0", "correct": 1.0},
    ]
    assert lm_eval_outcomes(tmp_path, metric="acc_norm")["correct"].tolist() == [0.0]
    assert lm_eval_outcomes(tmp_path, tasks=["rho_code_next"])["id"].tolist() == ["0"]


def test_problem_outcomes_reads_completions(tmp_path):
    (tmp_path / "final").mkdir()
    rows = [
        {"task": "gsm", "id": "g0", "correct": True, "completion": "x"},
        {"task": "gsm", "id": "g1", "correct": False},
        {"task": "sat", "id": "s0", "correct": True, "correct_norm": False},
    ]
    (tmp_path / "final" / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = problem_outcomes(tmp_path)
    assert df.to_dict("records") == [
        {"task": "gsm", "id": "g0", "correct": 1.0},
        {"task": "gsm", "id": "g1", "correct": 0.0},
        {"task": "sat", "id": "s0", "correct": 1.0},
    ]
    assert list(problem_outcomes(tmp_path, tasks=["sat"])["id"]) == ["s0"]
    with pytest.raises(AnalysisInputError, match="evaluate the run first"):
        problem_outcomes(tmp_path / "nowhere")


def test_difference_is_task_averaged_and_exact():
    # task x: a 1/4, b 3/4 ; task y: a 0/2, b 1/2 -> averages a 0.125, b 0.625
    a = _outcomes({"x": [1, 0, 0, 0], "y": [0, 0]})
    b = _outcomes({"x": [1, 1, 1, 0], "y": [1, 0]})
    r = paired_difference([a], [b], n_boot=500, seed=1)
    assert r.a_mean == pytest.approx(0.125) and r.b_mean == pytest.approx(0.625)
    assert r.diff == pytest.approx(0.5)
    assert r.n_problems == 6 and r.n_tasks == 2 and r.n_seeds == 1
    assert r.se_seeds == 0.0 and r.se == pytest.approx(r.se_problems)
    assert r.ci_low <= r.diff <= r.ci_high
    # deterministic for a seed
    assert paired_difference([a], [b], n_boot=500, seed=1) == r


def test_pairing_beats_independent_errors():
    """Both arms share which problems are hard: the paired stderr is far below the unpaired one."""
    rng = np.random.default_rng(0)
    hard = rng.random(400) < 0.5
    a_c = (~hard & (rng.random(400) < 0.9)).astype(int)
    b_c = a_c.copy()
    flip = np.flatnonzero(a_c == 0)[:20]  # b gets 20 extra problems right
    b_c[flip] = 1
    a, b = _outcomes({"t": list(a_c)}), _outcomes({"t": list(b_c)})
    r = paired_difference([a], [b], n_boot=2000)
    unpaired = np.sqrt(a_c.var() / 400 + b_c.var() / 400)
    assert r.diff == pytest.approx(20 / 400)
    assert r.se_problems < 0.5 * unpaired
    assert r.p_bootstrap < 0.01 and r.ci_low > 0
    assert r.mcnemar_p == pytest.approx(2 * 0.5**20)


def test_seed_term_uses_paired_seed_differences():
    base = {"t": [1, 0, 1, 0, 1, 0, 1, 0]}
    a = [_outcomes(base)] * 3
    # b's seeds differ from a by +1/8, +2/8, +3/8 problems right
    b = []
    for k in (1, 2, 3):
        c = list(base["t"])
        for j in range(k):
            c[2 * j + 1] = 1
        b.append(_outcomes({"t": c}))
    r = paired_difference(a, b, n_boot=200)
    assert r.seed_diffs == pytest.approx((0.125, 0.25, 0.375))
    assert r.se_seeds == pytest.approx(np.std([0.125, 0.25, 0.375], ddof=1) / np.sqrt(3))
    assert r.se == pytest.approx(np.hypot(r.se_problems, r.se_seeds))
    spread = seed_spread(b)
    assert spread["mean"] == pytest.approx(0.75) and spread["n_seeds"] == 3
    assert spread["min"] == pytest.approx(0.625) and spread["max"] == pytest.approx(0.875)


def test_mismatched_problems_are_refused():
    a = _outcomes({"t": [1, 0]})
    b = _outcomes({"u": [1, 0]})
    with pytest.raises(AnalysisInputError, match="different problems"):
        paired_difference([a], [b])
    with pytest.raises(AnalysisInputError, match="different problems"):
        arm_matrix([a, b])
    with pytest.raises(AnalysisInputError, match="at least one"):
        arm_matrix([])


def test_mcnemar_exact_values():
    assert mcnemar_exact(np.array([1, 1]), np.array([1, 1])) is None
    # 1 discordant pair: p = 1
    assert mcnemar_exact(np.array([0, 1]), np.array([1, 1])) == pytest.approx(1.0)
    # 6 discordant all one way: p = 2 / 64
    assert mcnemar_exact(np.zeros(6), np.ones(6)) == pytest.approx(2 / 64)
    # thousands of discordant problems (the mini study has 4,500 per arm): no float overflow
    a = np.array([1] * 1500 + [0] * 1500)
    assert mcnemar_exact(a, 1 - a) == pytest.approx(1.0)
    assert mcnemar_exact(np.zeros(3000), np.ones(3000)) == 0.0


def test_compare_arms_rows():
    a = _outcomes({"t": [0, 0, 1, 1]})
    b = _outcomes({"t": [1, 0, 1, 1]})
    df = compare_arms({"clm": [a], "slm": [b]}, [("clm", "slm")], n_boot=100)
    assert list(df[["a", "b"]].iloc[0]) == ["clm", "slm"] and df["diff"].iloc[0] == pytest.approx(0.25)
    with pytest.raises(AnalysisInputError, match="unknown arm"):
        compare_arms({"clm": [a]}, [("clm", "slm")])
