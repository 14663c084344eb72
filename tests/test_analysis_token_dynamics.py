"""Token dynamics summaries: category shares, mean curves, line fits, fluctuating tokens, shares by label."""

import numpy as np
import pandas as pd
import pytest

from rho.analysis import (
    AnalysisInputError,
    category_shares,
    category_shares_by_label,
    fit_lines,
    fluctuating_tokens,
    mean_loss_curves,
    noise_among_fluctuating,
)


def test_category_shares_counts_and_paper_column():
    cats = ["L->L"] * 5 + ["H->L"] * 3 + ["H->H"] * 2
    df = category_shares(cats)
    assert list(df["category"]) == ["H->H", "L->H", "H->L", "L->L"]
    assert list(df["n_tokens"]) == [2, 0, 3, 5]
    np.testing.assert_allclose(df["share"], [0.2, 0.0, 0.3, 0.5])
    np.testing.assert_allclose(df["paper_share"], [0.11, 0.12, 0.26, 0.51])
    np.testing.assert_allclose(df["diff"], [0.09, -0.12, 0.04, -0.01], atol=1e-12)


def test_category_shares_rejects_unknown_category():
    with pytest.raises(AnalysisInputError, match="unknown categories"):
        category_shares(["L->L", "low"])


def test_mean_loss_curves_per_category_and_checkpoint():
    losses = np.array([[1.0, 3.0, 5.0], [2.0, 4.0, 7.0]])
    df = mean_loss_curves(losses, ["L->L", "L->L", "H->H"], checkpoints=[100, 200])
    ll = df[df["category"] == "L->L"].set_index("checkpoint")
    assert ll.loc[100, "mean_loss"] == 2.0 and ll.loc[200, "mean_loss"] == 3.0
    assert ll.loc[100, "std_loss"] == 1.0 and set(ll["n_tokens"]) == {2}
    hh = df[df["category"] == "H->H"].set_index("checkpoint")
    assert hh.loc[200, "mean_loss"] == 7.0
    assert set(df["category"]) == {"L->L", "H->H"}  # empty categories omitted


def test_mean_loss_curves_refuses_nan_and_mismatch():
    losses = np.array([[1.0, np.nan], [2.0, 1.0]])
    with pytest.raises(AnalysisInputError, match="NaN"):
        mean_loss_curves(losses, ["L->L", "L->L"])
    with pytest.raises(AnalysisInputError, match="2 categories for 3 tokens"):
        mean_loss_curves(np.ones((2, 3)), ["L->L", "L->L"])
    with pytest.raises(AnalysisInputError, match="checkpoint labels"):
        mean_loss_curves(np.ones((2, 1)), ["L->L"], checkpoints=[1, 2, 3])


def test_fit_lines_recovers_line_and_residual_std():
    x = np.arange(5.0)
    clean = 3.0 - 0.25 * x  # delta over 4 steps = -1.0
    wiggle = 2.0 + np.array([1.0, -1.0, 1.0, -1.0, 1.0]) * 0.5
    fits = fit_lines(np.stack([clean, wiggle], axis=1))
    np.testing.assert_allclose(
        fits.loc[0, ["slope", "intercept", "delta_loss", "loss_end"]], [-0.25, 3.0, -1.0, 2.0]
    )
    assert fits.loc[0, "residual_std"] == pytest.approx(0.0, abs=1e-12)
    assert fits.loc[1, "residual_std"] > 0.4
    assert fits.loc[1, "final_loss"] == 2.5


def test_fluctuating_tokens_ranks_by_residual_std_within_categories():
    n_ck = 8
    x = np.arange(n_ck)[:, None]
    amp = np.array([0.0, 0.9, 0.1, 2.0, 0.5, 3.0])
    losses = 2.0 + 0.01 * x + amp * np.where(np.arange(n_ck)[:, None] % 2 == 0, 1, -1)
    cats = ["L->L", "L->L", "H->H", "H->H", "H->L", "L->H"]
    df = fluctuating_tokens(
        losses, cats, top_k=3, labels=[0, 1, 0, 2, 1, 0], label_names=["content", "junk", "html"]
    )
    # token 5 (largest amplitude) is L->H, excluded by within=("L->L", "H->H")
    assert list(df["token_index"]) == [3, 1, 2]
    assert list(df["category"]) == ["H->H", "L->L", "H->H"]
    assert list(df["label_name"]) == ["html", "junk", "content"]
    assert df["residual_std"].is_monotonic_decreasing
    all_df = fluctuating_tokens(losses, top_k=2)
    assert list(all_df["token_index"]) == [5, 3]


def test_category_shares_by_label_within_label():
    cats = ["L->L", "L->L", "H->L", "H->H", "H->H", "L->L"]
    labels = np.array([0, 0, 0, 1, 1, 1], dtype=np.uint8)
    df = category_shares_by_label(cats, labels, ["content", "gibberish"])
    assert len(df) == 8
    s = df.set_index(["label_name", "category"])["share"]
    assert s[("content", "L->L")] == pytest.approx(2 / 3)
    assert s[("content", "H->L")] == pytest.approx(1 / 3)
    assert s[("gibberish", "H->H")] == pytest.approx(2 / 3)
    assert s[("gibberish", "H->L")] == 0.0
    assert set(df[df["label"] == 1]["kind"]) == {"noise"}
    assert df.groupby("label")["share"].sum().tolist() == pytest.approx([1.0, 1.0])


def test_category_shares_by_label_checks_lengths():
    with pytest.raises(AnalysisInputError, match="expected \\(2,\\)"):
        category_shares_by_label(["L->L", "H->H"], [0, 1, 1])
    with pytest.raises(AnalysisInputError, match="more than one label value"):
        category_shares_by_label(["L->L", "H->H"], [0, 1], {0: "x", 1: "x"})


def test_outputs_are_tidy_frames():
    df = mean_loss_curves(np.ones((3, 2)), ["L->L", "H->H"])
    assert isinstance(df, pd.DataFrame) and list(df.columns) == [
        "checkpoint",
        "category",
        "mean_loss",
        "std_loss",
        "n_tokens",
    ]
    assert len(df) == 6


def test_noise_among_fluctuating_feeds_claim_c2():
    # 10 L->L/H->H tokens, the 2 with the largest wiggle are noise; one L->H noise token is outside the pool
    n_ck = 6
    sign = np.where(np.arange(n_ck) % 2 == 0, 1.0, -1.0)[:, None]
    amp = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 2.0, 3.0, 5.0])
    losses = 2.0 + amp * sign
    cats = ["L->L"] * 5 + ["H->H"] * 5 + ["L->H"]
    labels = [0, 0, 0, 1, 0, 0, 0, 0, 2, 1, 1]
    out = noise_among_fluctuating(losses, cats, labels, top_frac=0.2)
    assert out == {"fluctuating_noise_share": 1.0, "noise_share": pytest.approx(0.3), "n_fluctuating": 2.0}
    out = noise_among_fluctuating(losses, cats, labels, top_frac=0.5)
    assert out["fluctuating_noise_share"] == pytest.approx(0.4)  # tokens 9, 8, 7, 6, 5
    with pytest.raises(AnalysisInputError, match="top_frac"):
        noise_among_fluctuating(losses, cats, labels, top_frac=0.0)
