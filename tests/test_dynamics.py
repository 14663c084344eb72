"""Tests for rho.dynamics: Appendix D.1 classification, boundaries, fit, shares, fluctuation."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rho.dynamics import (
    CATEGORIES,
    DynamicsError,
    analyze_dynamics,
    classify_tokens,
    fit_trend,
    fluctuation,
    loss_change,
)


def test_hand_built_trajectories_each_category():
    # columns = tokens, rows = 5 checkpoints
    traj = np.array(
        [
            [5.0, 5.0, 5.0, 1.0],  # H->L falls 4; L->H rises; H->H stays high; L->L stays low
            [4.0, 5.5, 5.1, 1.1],
            [3.0, 6.0, 4.9, 0.9],
            [2.0, 6.5, 5.0, 1.0],
            [1.0, 7.0, 5.0, 1.0],
        ]
    )
    dyn = analyze_dynamics(traj)
    assert dyn.categories.tolist() == ["H->L", "L->H", "H->H", "L->L"]
    np.testing.assert_allclose(dyn.delta[:2], [-4.0, 2.0])
    assert dyn.last_mean == pytest.approx((1 + 7 + 5 + 1) / 4)
    assert classify_tokens(traj).tolist() == dyn.categories.tolist()


def test_fit_matches_numpy_polyfit():
    rng = np.random.default_rng(0)
    traj = rng.normal(3, 1, size=(7, 50))
    slope, intercept, delta, fl = fit_trend(traj)
    for j in range(50):
        a, b = np.polyfit(np.arange(7), traj[:, j], 1)
        assert slope[j] == pytest.approx(a, abs=1e-10)
        assert intercept[j] == pytest.approx(b, abs=1e-10)
        # dL = fitted end (x = n-1, the paper's x_n) minus fitted start (x = 0)
        assert delta[j] == pytest.approx((a * 6 + b) - b, abs=1e-10)
        resid = traj[:, j] - (a * np.arange(7) + b)
        assert fl[j] == pytest.approx(np.sqrt(np.mean(resid**2)), abs=1e-10)
    np.testing.assert_allclose(loss_change(traj), delta)
    np.testing.assert_allclose(fluctuation(traj), fl)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_boundaries_exactly_plus_minus_threshold(dtype):
    # columns = tokens; dL is +-0.2 as written in decimal (not exact in binary, see docstring)
    traj = np.array(
        [
            [0.0, 0.2, 4.0, 4.2, 8.0, 4.0],
            [0.1, 0.1, 4.1, 4.1, 8.2, 4.1],
            [0.2, 0.0, 4.2, 4.0, 8.4, 4.2001],
        ],
        dtype=dtype,
    )
    dyn = analyze_dynamics(traj)
    np.testing.assert_allclose(dyn.delta[:4], [0.2, -0.2, 0.2, -0.2], atol=1e-6)
    # |dL| == 0.2 is not a change: L->L / H->H by last loss vs mean last loss (~3.43)
    assert dyn.categories.tolist() == ["L->L", "L->L", "H->H", "H->H", "L->H", "L->H"]
    # just inside the boundary on the other side stays flat; just outside is a change
    eps = np.array([[0.0, 0.0], [0.0, 0.0], [0.2 - 1e-3, -0.2 - 1e-3]], dtype=dtype)
    assert classify_tokens(eps).tolist() == ["H->H", "H->L"]  # last 0.199 > mean -0.001


def test_boundary_last_loss_equal_to_mean_is_low():
    traj = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])  # flat tokens; last losses 1, 2, 3; mean 2
    assert classify_tokens(traj).tolist() == ["L->L", "L->L", "H->H"]


def test_threshold_is_a_parameter():
    traj = np.array([[1.0, 1.0], [1.3, 1.0]])
    assert classify_tokens(traj).tolist() == ["L->H", "L->L"]
    assert classify_tokens(traj, threshold=0.5)[0] in ("H->H", "L->L")


def test_non_finite_tokens_are_na_and_excluded():
    traj = np.array([[np.nan, 1.0, 5.0, 5.0], [np.nan, 1.0, 5.0, 1.0]])
    dyn = analyze_dynamics(traj)
    assert dyn.categories.tolist() == ["NA", "L->L", "H->H", "H->L"]
    assert dyn.last_mean == pytest.approx((1 + 5 + 1) / 3)
    assert np.isnan(dyn.delta[0]) and np.isnan(dyn.fluctuation[0])
    shares = dyn.shares()
    assert list(shares) == list(CATEGORIES)
    assert shares == pytest.approx({"H->H": 1 / 3, "L->H": 0.0, "H->L": 1 / 3, "L->L": 1 / 3})


def test_category_shares_sum_to_one_and_empty():
    """The shares table (rho.analysis) over classify_tokens output: NA tokens are not counted."""
    from rho.analysis import AnalysisInputError, category_shares

    cats = np.array(["H->L", "L->L", "L->L", "H->H", "L->H", "NA"])
    s = category_shares(cats).set_index("category")["share"]
    assert list(s.index) == list(CATEGORIES) and s.sum() == pytest.approx(1.0)
    assert s["L->L"] == pytest.approx(0.4)
    with pytest.raises(AnalysisInputError, match="all undefined"):
        category_shares(np.array(["NA"]))


def test_fluctuation_and_fluctuating_tokens():
    from rho.analysis import AnalysisInputError, fluctuating_tokens

    x = np.arange(9)  # odd length: the zig-zag has an exactly flat fit
    calm = 1.0 + 0.0 * x
    wiggle = 1.0 + 0.5 * (-1.0) ** x  # zig-zag around a flat line
    wiggle_hi = 6.0 + 1.0 * (-1.0) ** x
    falling = 5.0 - 0.5 * x
    traj = np.stack([calm, wiggle, wiggle_hi, falling], axis=1)
    dyn = analyze_dynamics(traj)
    assert dyn.fluctuation[0] == pytest.approx(0.0, abs=1e-12)
    assert dyn.fluctuation[3] == pytest.approx(0.0, abs=1e-12)
    assert dyn.fluctuation[2] > dyn.fluctuation[1] > 0.4
    top = fluctuating_tokens(traj, dyn.categories, top_k=2)  # 3 tokens in L->L/H->H, 2 largest first
    assert top["token_index"].tolist() == [2, 1]
    assert top["residual_std"].to_numpy() == pytest.approx(dyn.fluctuation[[2, 1]])
    assert fluctuating_tokens(traj, dyn.categories, within=("H->L",))["token_index"].tolist() == [3]
    with pytest.raises(AnalysisInputError, match="unknown categories"):
        fluctuating_tokens(traj, dyn.categories, within=("X->Y",))
    with pytest.raises(AnalysisInputError, match="top_k"):
        fluctuating_tokens(traj, dyn.categories, top_k=0)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros(5), "2-D"),
        (np.zeros((1, 5)), "at least 2 checkpoints"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
    ],
)
def test_bad_input(bad, match):
    with pytest.raises(DynamicsError, match=match):
        classify_tokens(bad)


def test_bad_threshold():
    with pytest.raises(DynamicsError, match="threshold"):
        analyze_dynamics(np.zeros((2, 2)), threshold=-1)


def test_million_tokens_vectorised_and_consistent():
    rng = np.random.default_rng(1)
    n_ck, n_tok = 8, 1_000_000
    start = rng.uniform(0, 6, n_tok).astype(np.float32)
    change = rng.normal(0, 1, n_tok).astype(np.float32)
    frac = np.linspace(0, 1, n_ck, dtype=np.float32)[:, None]
    traj = start + change * frac + rng.normal(0, 0.05, (n_ck, n_tok)).astype(np.float32)
    t0 = time.perf_counter()
    dyn = analyze_dynamics(traj)
    elapsed = time.perf_counter() - t0
    assert elapsed < 30  # a loose sanity bound, not a benchmark: a Python loop would take minutes
    # spot-check a few tokens against polyfit
    for j in rng.integers(0, n_tok, 5):
        a, _ = np.polyfit(np.arange(n_ck), traj[:, j].astype(np.float64), 1)
        assert dyn.delta[j] == pytest.approx(a * (n_ck - 1), abs=1e-6)
    # categories follow from the true change up to the fit noise
    far = np.abs(change) > 0.4
    assert np.mean(dyn.categories[far & (change < 0)] == "H->L") > 0.99
    assert np.mean(dyn.categories[far & (change > 0)] == "L->H") > 0.99
    assert sum(dyn.shares().values()) == pytest.approx(1.0)
