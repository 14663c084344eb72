"""Claims scorecard: each check on both sides of its threshold, missing inputs, rendering."""

import pandas as pd
import pytest

from rho.analysis import AnalysisInputError, category_shares
from rho.report import CLAIMS, STATUSES, load_claim_texts, scorecard, write_scorecard

BY_ID = {c.id: c for c in CLAIMS}
R, N, P, T = "reproduced", "not reproduced", "partially", "not tested at this scale"


def status(cid, **measured):
    return BY_ID[cid].evaluate(measured).status


def test_fourteen_claims_matching_the_papers_file():
    texts = load_claim_texts()
    assert [c.id for c in CLAIMS] == [f"C{i}" for i in range(1, 15)] == list(texts)
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


def _ppl(rows):
    return pd.DataFrame(rows, index=[2, 5, 8], columns=[2, 5, 8, 11])


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
    assert len(card) == 14 and set(card["profile"]) == {"mini"}
    s = card.set_index("id")["status"]
    assert s["C3"] == R and s["C9"] == P and s["C1"] == T
    assert card.set_index("id").loc["C3", "paper"].startswith("+16.5")
    csv, md = write_scorecard(card, tmp_path / "scorecard")
    text = md.read_text()
    assert "Profile: **mini**" in text and "direction of each effect" in text
    assert "1 reproduced, 0 not reproduced, 12 not tested at this scale, 1 partially" in text
    assert pd.read_csv(csv)["status"].tolist() == card["status"].tolist()
    with pytest.raises(AnalysisInputError, match="profile"):
        scorecard(measured, profile="")


def test_c11_refuses_percentages_and_bad_ratios():
    with pytest.raises(AnalysisInputError, match="fractions"):
        BY_ID["C11"].evaluate({"acc_by_ratio": {0.6: 30.0, 1.0: 25.0}})
    with pytest.raises(AnalysisInputError, match=r"ratios in \(0, 1\]"):
        BY_ID["C11"].evaluate({"acc_by_ratio": {60: 0.3, 100: 0.25}})
