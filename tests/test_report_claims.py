"""Claims scorecard: each check on both sides of its threshold, missing inputs, rendering."""

import json

import numpy as np
import pandas as pd
import pytest

from rho.analysis import AnalysisInputError, category_shares
from rho.report import CLAIMS, STATUSES, load_claim_texts, scorecard, write_scorecard
from rho.report.claims import FIT_R2_MIN, NOISE_Z
from rho.report.paper_tables import TABLE3_TASKS

BY_ID = {c.id: c for c in CLAIMS}
R, N, P, T = "reproduced", "not reproduced", "partially", "not tested at this scale"


def status(cid, **measured):
    return BY_ID[cid].evaluate(measured).status


def test_fourteen_claims_matching_the_papers_file_and_our_control():
    texts = load_claim_texts()
    assert [c.id for c in CLAIMS][:14] == [f"C{i}" for i in range(1, 15)] == list(texts)
    assert [c.id for c in CLAIMS][14:] == ["C15"]  # ours: SLM vs random selection (not a paper claim)
    assert "51% L->L" in texts["C1"] and "log(a*L + c)" in texts["C9"]
    assert set(STATUSES) == {R, N, P, T}


@pytest.mark.parametrize(
    ("shares", "expected"),
    [
        ({"H->H": 0.11, "L->H": 0.12, "H->L": 0.26, "L->L": 0.51}, R),
        ({"H->H": 0.30, "L->H": 0.10, "H->L": 0.20, "L->L": 0.40}, P),
        ({"H->H": 0.10, "L->H": 0.10, "H->L": 0.45, "L->L": 0.35}, N),
    ],
)
def test_c1_category_order(shares, expected):
    assert status("C1", category_shares=shares) == expected


def test_c1_accepts_the_category_shares_frame():
    frame = category_shares(["L->L"] * 6 + ["H->L"] * 3 + ["H->H"])
    v = BY_ID["C1"].evaluate({"category_shares": frame})
    assert v.status == R and "L->L 60%" in v.ours


@pytest.mark.parametrize(
    ("fl", "base", "expected"), [(0.7, 0.3, R), (0.4, 0.3, P), (0.25, 0.3, N), (0.6, 0.7, N)]
)
def test_c2_noise_enrichment(fl, base, expected):
    assert status("C2", fluctuating_noise_share=fl, noise_share=base) == expected


@pytest.mark.parametrize(
    ("clm", "slm", "se", "expected"),
    [
        (0.20, 0.25, None, R),
        (0.20, 0.20, None, N),
        (0.20, 0.19, None, N),
        (0.20, 0.25, 0.01, R),
        (0.20, 0.22, 0.01, P),
    ],
)
def test_c3_gain_direction_and_noise(clm, slm, se, expected):
    assert status("C3", clm_avg_acc=clm, slm_avg_acc=slm, avg_acc_stderr=se) == expected


def test_c3_refuses_percentages():
    with pytest.raises(AnalysisInputError, match="fractions"):
        BY_ID["C3"].evaluate({"clm_avg_acc": 21.6, "slm_avg_acc": 38.1})


def test_c4_speedup():
    clm = [(1e6, 0.05), (2e6, 0.10), (4e6, 0.20)]
    v = BY_ID["C4"].evaluate({"clm_curve": clm, "slm_curve": [(1e6, 0.21), (2e6, 0.3)]})
    assert v.status == R and "4.0x" in v.ours
    frame = pd.DataFrame(clm, columns=["tokens", "acc"])
    assert status("C4", clm_curve=frame, slm_curve=[(1e6, 0.05), (4e6, 0.2)]) == N  # same speed
    assert status("C4", clm_curve=clm, slm_curve=[(1e6, 0.1), (4e6, 0.19)]) == N  # never reaches
    # the shared starting point does not count as reaching the target
    start = [(0, 0.3), (1e6, 0.1), (2e6, 0.2)]
    v = BY_ID["C4"].evaluate({"clm_curve": start, "slm_curve": [(0, 0.3), (1e6, 0.25)]})
    assert v.status == N and "undefined" in v.note
    assert status("C4", clm_curve=[(0, 0.05), (2e6, 0.2)], slm_curve=[(0, 0.05), (1e6, 0.2)]) == R


def test_c5_and_c14_never_tested_with_reason():
    v = BY_ID["C5"].evaluate({})
    assert v.status == T and "ToRA" in v.note
    assert BY_ID["C14"].evaluate({"anything": 1}).status == T


def test_missing_inputs_are_not_tested_and_named():
    v = BY_ID["C6"].evaluate({"general_clm_avg_acc": 0.3})
    assert v.status == T and "general_slm_avg_acc" in v.note


@pytest.mark.parametrize(
    ("arms", "expected"),
    [((0.25, 0.24, 0.27), R), ((0.27, 0.24, 0.25), P), ((0.19, 0.18, 0.20), N)],
)
def test_c7_self_reference(arms, expected):
    lrm, hrm, inter = arms
    m = dict(
        selfref_clm_avg_acc=0.215,
        selfref_lrm_avg_acc=lrm,
        selfref_hrm_avg_acc=hrm,
        selfref_intersect_avg_acc=inter,
    )
    assert status("C7", **m) == expected


SELFREF = dict(
    selfref_clm_avg_acc=0.215,
    selfref_lrm_avg_acc=0.25,
    selfref_hrm_avg_acc=0.24,
    selfref_intersect_avg_acc=0.27,
)


@pytest.mark.parametrize(("se", "expected"), [(None, R), (0.005, R), (0.01, P), (0.03, P)])
def test_c7_noise_margin_per_arm(se, expected):
    # gains over CLM: lrm +3.5, hrm +2.5, intersect +5.5 pts; margin 2*sqrt(2)*se: 1.4 pts at se 0.005,
    # 2.8 at 0.01 (hrm inside the noise), 8.5 at 0.03 (every arm inside the noise: still only "partially")
    v = BY_ID["C7"].evaluate({**SELFREF, "selfref_avg_stderr": se})
    assert v.status == expected
    if se is not None:
        assert f"noise margin {100 * NOISE_Z * np.sqrt(2) * se:.1f} pts" in v.note
    if se == 0.01:
        assert "hrm ahead of CLM within noise" in v.note and "lrm beats CLM beyond noise" in v.note
    # the same margin as C3 applies to each arm
    c3 = status("C3", clm_avg_acc=0.215, slm_avg_acc=0.24, avg_acc_stderr=se)
    assert (c3 == R) == ("hrm beats" in v.note)


def test_c7_no_arm_beyond_noise_is_never_reproduced_and_lists_tasks():
    m = {**SELFREF, "selfref_avg_stderr": 0.05, "selfref_tasks": list(TABLE3_TASKS)}
    v = BY_ID["C7"].evaluate(m)
    assert v.status == P and "averages over 6 tasks: " + ", ".join(TABLE3_TASKS) in v.note
    assert "Tables 3-4 average" not in v.note
    v = BY_ID["C7"].evaluate({**SELFREF, "selfref_tasks": ["gsm8k", "math"]})
    assert v.status == R and "averages over 2 tasks: gsm8k, math" in v.note
    assert "Tables 3-4 average 6" in v.note  # a different task set than the paper's is flagged
    below = {
        **SELFREF,
        "selfref_lrm_avg_acc": 0.2,
        "selfref_hrm_avg_acc": 0.21,
        "selfref_intersect_avg_acc": 0.215,
    }
    assert status("C7", **below, selfref_avg_stderr=0.01) == N


@pytest.mark.parametrize(
    ("sel_s", "ds_s", "unsel", "expected"),
    [(-0.5, 1.0, 0.1, R), (-0.5, 1.5, 0.1, P), (-0.1, 1.5, -0.1, N)],
)
def test_c8_loss_directions(sel_s, ds_s, unsel, expected):
    m = dict(
        slm_selected_loss_change=sel_s,
        clm_selected_loss_change=-0.3,
        slm_unselected_loss_change=unsel,
        slm_downstream_loss=ds_s,
        clm_downstream_loss=1.2,
    )
    assert status("C8", **m) == expected


@pytest.mark.parametrize(("a_s", "a_u", "expected"), [(-0.3, 0.2, R), (-0.3, -0.1, P), (0.3, -0.2, N)])
def test_c9_slope_signs(a_s, a_u, expected):
    assert status("C9", fit_selected_a=a_s, fit_unselected_a=a_u) == expected


@pytest.mark.parametrize(
    ("a_s", "a_u", "r2_s", "r2_u", "expected", "weak"),
    [
        (-0.3, 0.2, 0.9, 0.8, R, None),
        (-0.3, 0.2, 0.9, 0.3, P, "unselected"),
        (-0.3, 0.2, 0.2, 0.8, P, "selected"),
        (-0.3, 0.2, 0.2, 0.3, P, "selected and unselected"),
        (-0.3, 0.2, FIT_R2_MIN, FIT_R2_MIN, R, None),
        (-0.3, -0.1, 0.9, 0.9, P, None),
        (0.3, 0.2, 0.9, 0.9, P, None),
        (0.3, -0.2, 0.9, 0.9, N, None),
    ],
)
def test_c9_signs_and_fit_quality(a_s, a_u, r2_s, r2_u, expected, weak):
    m = dict(fit_selected_a=a_s, fit_unselected_a=a_u, fit_selected_r2=r2_s, fit_unselected_r2=r2_u)
    v = BY_ID["C9"].evaluate(m)
    assert v.status == expected
    # the note states each sign condition, whether it held, with the numbers and R^2
    assert f"a_selected = {a_s:.3g} < 0" in v.note and f"a_unselected = {a_u:.3g} > 0" in v.note
    assert f"accuracy rises as selected-token loss falls): {'held' if a_s < 0 else 'failed'}" in v.note
    assert f"unselected-token loss): {'held' if a_u > 0 else 'failed'}" in v.note
    assert f"R^2 {r2_u:.2f}" in v.note
    if weak is None:
        assert "weak" not in v.note
    else:
        assert f"the {weak} fit is weak (R^2 < {FIT_R2_MIN})" in v.note


def test_c9_degenerate_fit_reads_no_sign():
    """Constant accuracy gives a ~0 slope with undefined R^2: no sign can be read from it."""
    v = BY_ID["C9"].evaluate(
        {
            "fit_selected_a": -2e-16,
            "fit_unselected_a": 0.2,
            "fit_selected_r2": float("nan"),
            "fit_unselected_r2": 0.8,
        }
    )
    assert v.status == T and "selected fit is degenerate" in v.note


def test_c9_without_r2_keeps_the_sign_verdict_and_says_so():
    v = BY_ID["C9"].evaluate({"fit_selected_a": -0.3, "fit_unselected_a": 0.2})
    assert v.status == R and "R^2 not given" in v.note and "fit quality not checked" in v.note


def _ppl(rows):
    return pd.DataFrame(rows, index=[2, 5, 8], columns=[2, 5, 8, 11])


def test_c10_string_labels_from_json_sort_as_numbers():
    # checkpoint token counts of different digit counts: as text they sort "1003520" < "253952" < "98304"
    rows, cols = [98304, 253952, 1003520], [98304, 253952, 1003520, 12058624]
    good = pd.DataFrame([[6, 7, 5, 3], [5, 8, 6, 4], [4, 9, 7, 5]], index=rows, columns=cols)
    expected = BY_ID["C10"].evaluate({"ppl_matrix": good})
    assert expected.status == R and "-1.00 at the first evaluated ckpt, +1.00 at the last" in expected.ours
    d = json.loads(json.dumps(good.to_dict()))  # what measured.json gives back: string labels
    assert set(d) == {str(c) for c in cols}
    for mat in (pd.DataFrame(d), d):
        v = BY_ID["C10"].evaluate({"ppl_matrix": mat})
        assert (v.status, v.ours, v.note) == (expected.status, expected.ours, expected.note)
    # the rows and columns, shuffled and as strings, still give the same answer
    shuffled = good.iloc[[2, 0, 1], [3, 1, 0, 2]]
    shuffled.index, shuffled.columns = shuffled.index.map(str), shuffled.columns.map(str)
    assert BY_ID["C10"].evaluate({"ppl_matrix": shuffled}).ours == expected.ours
    # float labels that are not integral stay floats; non-numeric labels are refused
    frac = good.rename(index={98304: 0.5}, columns={98304: "0.5"})
    assert BY_ID["C10"].evaluate({"ppl_matrix": frac}).status == R
    with pytest.raises(AnalysisInputError, match="token counts"):
        BY_ID["C10"].evaluate({"ppl_matrix": good.rename(columns={98304: "first"})})


def test_c10_order_and_double_descent():
    # later-selected tokens: lower ppl at the first evaluated ckpt, higher at the last; rows rise then fall
    good = _ppl([[6, 7, 5, 3], [5, 8, 6, 4], [4, 9, 7, 5]])
    assert status("C10", ppl_matrix=good) == R
    no_dd = _ppl([[6, 5, 4, 3], [5, 4.5, 4.2, 4], [4, 4.5, 4.8, 5]])  # order holds, rows not rise-then-fall
    assert status("C10", ppl_matrix=no_dd) == P
    neither = _ppl([[4, 3, 2, 5], [5, 4, 3, 4], [6, 5, 4, 3]])
    assert status("C10", ppl_matrix=neither) == N
    with pytest.raises(AnalysisInputError, match="ppl_matrix"):
        BY_ID["C10"].evaluate({"ppl_matrix": good.iloc[:, :2]})


@pytest.mark.parametrize(
    ("by_ratio", "expected"),
    [
        ({0.4: 0.20, 0.6: 0.30, 0.8: 0.28, 1.0: 0.25}, R),
        ({0.4: 0.31, 0.6: 0.30, 1.0: 0.25}, P),
        ({0.6: 0.20, 1.0: 0.25}, N),
        ({0.5: 0.3, 0.7: 0.2, 1.0: 0.1}, R),
    ],
)
def test_c11_best_ratio(by_ratio, expected):
    assert status("C11", acc_by_ratio=by_ratio) == expected


@pytest.mark.parametrize(
    ("by_ratio", "expected", "words"),
    [
        # a tie with keeping all tokens is no gain: the "selection beats all tokens" half fails
        ({0.6: 0.30, 1.0: 0.30}, P, ["best ratio 60% within 50-70%: held", "(+0.0 pts): failed (no gain)"]),
        ({0.4: 0.30, 0.8: 0.30, 1.0: 0.30}, N, ["best ratio 40% not within", "failed (no gain)"]),
        ({0.4: 0.30, 0.6: 0.30, 1.0: 0.30}, P, ["best ratio 60% within", "failed (no gain)"]),
        ({0.6: 0.30, 1.0: 0.31}, N, ["best ratio is 100%", "(-1.0 pts): failed (no gain)"]),
        # without ratio 100% the selection half cannot hold
        ({0.5: 0.3, 0.7: 0.2}, P, ["best ratio 50% within", "not tested (ratio 100% not measured)"]),
    ],
)
def test_c11_ties_and_missing_full_ratio(by_ratio, expected, words):
    v = BY_ID["C11"].evaluate({"acc_by_ratio": by_ratio})
    assert v.status == expected
    for w in words:
        assert w in v.note


@pytest.mark.parametrize(("acc60", "se", "expected"), [(0.32, 0.005, R), (0.32, 0.01, P), (0.35, 0.01, R)])
def test_c11_gain_over_all_tokens_needs_to_clear_the_noise(acc60, se, expected):
    # keys as measured.json gives them back (strings); the margin is C3's: 2 * sqrt(2) * se for equal stderrs
    m = {
        "acc_by_ratio": {"0.4": 0.2, "0.6": acc60, "1.0": 0.30},
        "acc_by_ratio_stderr": {"0.4": se, "0.6": se, "1.0": se},
    }
    v = BY_ID["C11"].evaluate(m)
    assert v.status == expected
    assert status("C3", clm_avg_acc=0.30, slm_avg_acc=acc60, avg_acc_stderr=se) == expected
    margin = NOISE_Z * np.sqrt(2) * se
    assert (
        f"60% {100 * acc60:.1f} vs 100% 30.0 (+{100 * (acc60 - 0.3):.1f} pts, noise margin {100 * margin:.1f} pts)"
        in v.note
    )
    assert ("within noise" in v.note) == (expected == P) and "best ratio 60% within 50-70%: held" in v.note
    # out of the range and inside the noise: only "partially"; unequal stderrs combine as sqrt(a^2 + b^2)
    m = {"acc_by_ratio": {0.3: 0.32, 1.0: 0.30}, "acc_by_ratio_stderr": {0.3: 0.003, 1.0: 0.006}}
    v = BY_ID["C11"].evaluate(m)
    assert v.status == P and f"noise margin {100 * NOISE_Z * np.hypot(0.003, 0.006):.1f} pts" in v.note


def test_noise_margin_ignores_nan_stderr_and_refuses_negative():
    assert status("C3", clm_avg_acc=0.20, slm_avg_acc=0.21, avg_acc_stderr=float("nan")) == R
    m = {"acc_by_ratio": {0.6: 0.32, 1.0: 0.30}, "acc_by_ratio_stderr": {0.6: float("nan"), "1.0": None}}
    v = BY_ID["C11"].evaluate(m)
    assert v.status == R and "noise margin" not in v.note
    with pytest.raises(AnalysisInputError, match="standard errors"):
        BY_ID["C7"].evaluate({**SELFREF, "selfref_avg_stderr": -0.01})


def test_c12_weak_to_strong():
    assert status("C12", w2s_clm_avg_acc=0.43, w2s_slm_avg_acc=0.44) == R
    assert status("C12", w2s_clm_avg_acc=0.43, w2s_slm_avg_acc=0.42) == N
    # a gain inside the noise is only "partially"
    assert status("C12", w2s_clm_avg_acc=0.43, w2s_slm_avg_acc=0.44, w2s_acc_stderr=0.01) == P
    assert status("C6", general_clm_avg_acc=0.30, general_slm_avg_acc=0.31, general_acc_stderr=0.01) == P
    assert status("C6", general_clm_avg_acc=0.30, general_slm_avg_acc=0.40, general_acc_stderr=0.01) == R


@pytest.mark.parametrize(
    ("frac", "t", "expected"), [(0.6, 1.05, R), (0.605, None, P), (0.6, 1.3, P), (0.65, 1.0, N)]
)
def test_c13_selection_fraction_and_cost(frac, t, expected):
    assert status("C13", target_ratio=0.6, selected_frac=frac, step_time_ratio=t) == expected


def test_scorecard_rows_and_files(tmp_path):
    measured = {"clm_avg_acc": 0.2, "slm_avg_acc": 0.3, "fit_selected_a": -1.0, "fit_unselected_a": -1.0}
    card = scorecard(measured, profile="mini", claim_texts=load_claim_texts())
    assert len(card) == 15 and set(card["profile"]) == {"mini"}
    s = card.set_index("id")["status"]
    assert s["C3"] == R and s["C9"] == P and s["C1"] == T
    assert card.set_index("id").loc["C3", "paper"].startswith("+16.5")
    csv, md = write_scorecard(card, tmp_path / "scorecard")
    text = md.read_text()
    assert "Profile: **mini**" in text and "direction of each effect" in text
    assert "1 reproduced, 0 not reproduced, 13 not tested at this scale, 1 partially" in text
    assert pd.read_csv(csv)["status"].tolist() == card["status"].tolist()
    with pytest.raises(AnalysisInputError, match="profile"):
        scorecard(measured, profile="")


def test_c11_refuses_percentages_and_bad_ratios():
    with pytest.raises(AnalysisInputError, match="fractions"):
        BY_ID["C11"].evaluate({"acc_by_ratio": {0.6: 30.0, 1.0: 25.0}})
    with pytest.raises(AnalysisInputError, match=r"ratios in \(0, 1\]"):
        BY_ID["C11"].evaluate({"acc_by_ratio": {60: 0.3, 100: 0.25}})
