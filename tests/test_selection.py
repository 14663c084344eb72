"""Tests for rho.selection: count rule, batch-level top-k with ties, scores, combinations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rho.selection import (
    SelectionError,
    check_ratio,
    combine_masks,
    effective_ratio,
    keep_count,
    score,
    select_combined,
    select_global,
    softmax_weights,
    topk_mask,
    valid_mask,
)

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def scored_batch(draw, max_b: int = 4, max_t: int = 12):
    """Scores with many ties (small integer range), random NaNs and a random validity mask."""
    b = draw(st.integers(1, max_b))
    t = draw(st.integers(1, max_t))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scores = rng.integers(-3, 4, size=(b, t)).astype(np.float32)
    scores[rng.random((b, t)) < 0.1] = np.nan
    scores[rng.random((b, t)) < 0.05] = np.inf
    valid = rng.random((b, t)) < 0.8
    ratio = draw(st.floats(0.01, 1.0))
    return torch.from_numpy(scores), torch.from_numpy(valid), ratio


@pytest.mark.parametrize(
    ("n", "ratio", "expected"),
    [
        (5, 0.5, 3),  # 2.5 rounds half up (Python's round gives 2)
        (4, 0.5, 2),
        (3, 0.5, 2),  # 1.5 -> 2
        (7, 0.3, 2),  # 2.1 -> 2
        (7, 0.36, 3),  # 2.52 -> 3
        (10, 0.05, 1),  # 0.5 -> 1
        (10, 0.01, 1),  # 0.1 -> 0, but a non-empty batch keeps one token
        (0, 0.5, 0),
        (9, 1.0, 9),
    ],
)
def test_keep_count_rounds_half_up(n, ratio, expected):
    assert keep_count(n, ratio) == expected


def test_keep_count_differs_from_bankers_rounding():
    assert round(0.5 * 5) == 2
    assert keep_count(5, 0.5) == 3


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.0001, 2, float("nan"), "x", None])
def test_bad_ratio_is_refused(bad):
    with pytest.raises(SelectionError, match=r"\(0, 1\]"):
        check_ratio(bad)
    with pytest.raises(SelectionError):
        topk_mask(torch.zeros(3), bad)


@SETTINGS
@given(scored_batch())
def test_topk_mask_properties(batch):
    scores, valid, ratio = batch
    mask = topk_mask(scores, ratio, valid)
    ok = valid & torch.isfinite(scores)
    n_valid = int(ok.sum())
    assert mask.shape == scores.shape and mask.dtype == torch.bool
    assert int(mask.sum()) == keep_count(n_valid, ratio)
    assert not bool((mask & ~ok).any()), "an invalid or non-finite token was selected"
    kept = scores[mask]
    dropped = scores[ok & ~mask]
    if kept.numel() and dropped.numel():
        assert float(kept.min()) >= float(dropped.max())
        # ties at the threshold are resolved by flat position: earlier wins
        thr = float(kept.min())
        flat_mask, flat_s, flat_ok = mask.reshape(-1), scores.reshape(-1), ok.reshape(-1)
        tied = torch.nonzero(flat_ok & (flat_s == thr)).reshape(-1)
        tied_kept = tied[flat_mask[tied]]
        tied_drop = tied[~flat_mask[tied]]
        if tied_kept.numel() and tied_drop.numel():
            assert int(tied_kept.max()) < int(tied_drop.min())


def test_topk_mask_hand_example_with_ties():
    s = torch.tensor([[1.0, 3.0, 3.0], [3.0, 0.0, float("nan")]])
    valid = torch.tensor([[True, True, True], [True, True, True]])
    # 5 valid finite tokens, ratio 0.5 -> 3 kept; the three 3.0s (positions 1, 2, 3)
    assert topk_mask(s, 0.5, valid).tolist() == [[False, True, True], [True, False, False]]
    # ratio 0.4 -> 2 kept: the first two 3.0s by flat position
    assert topk_mask(s, 0.4, valid).tolist() == [[False, True, True], [False, False, False]]
    valid[0, 1] = False
    assert topk_mask(s, 0.4, valid).tolist() == [[False, False, True], [True, False, False]]


def test_topk_mask_is_batch_level_not_per_row():
    s = torch.tensor([[10.0, 9.0, 8.0, 7.0], [1.0, 2.0, 3.0, 4.0]])
    assert topk_mask(s, 0.5).tolist() == [[True, True, True, True], [False, False, False, False]]


def test_topk_mask_no_valid_tokens_keeps_nothing():
    s = torch.tensor([float("nan"), 1.0])
    assert topk_mask(s, 1.0, torch.tensor([True, False])).tolist() == [False, False]


def test_topk_mask_ratio_one_keeps_exactly_valid_finite():
    s = torch.tensor([1.0, float("nan"), -float("inf"), 2.0])
    assert topk_mask(s, 1.0).tolist() == [True, False, False, True]


def test_topk_mask_rejects_mismatched_valid():
    with pytest.raises(SelectionError, match="does not match"):
        topk_mask(torch.zeros(2, 3), 0.5, torch.ones(3, 2, dtype=torch.bool))


@SETTINGS
@given(st.lists(scored_batch(max_b=3, max_t=8), min_size=1, max_size=4))
def test_global_selection_equals_selection_on_concatenation(parts):
    ratio = parts[0][2]
    scores = [p[0] for p in parts]
    valids = [p[1] for p in parts]
    got = select_global(scores, ratio, valids)
    ref = topk_mask(
        torch.cat([s.reshape(-1) for s in scores]), ratio, torch.cat([v.reshape(-1) for v in valids])
    )
    assert torch.equal(torch.cat([g.reshape(-1) for g in got]), ref)
    for g, s in zip(got, scores):
        assert g.shape == s.shape


def test_global_selection_over_equal_shaped_ranks_matches_batch_concat():
    torch.manual_seed(0)
    ranks = [torch.randint(0, 5, (2, 6)).float() for _ in range(3)]
    got = select_global(ranks, 0.4)
    whole = topk_mask(torch.cat(ranks, dim=0), 0.4)
    assert torch.equal(torch.cat(got, dim=0), whole)
    # differs from selecting per rank in general (that is why the global path exists)
    assert sum(int(g.sum()) for g in got) == keep_count(36, 0.4)


def test_select_global_errors():
    with pytest.raises(SelectionError, match="at least one"):
        select_global([], 0.5)
    with pytest.raises(SelectionError, match="valid masks"):
        select_global([torch.zeros(2)], 0.5, [])


def test_score_kinds_values_and_detach():
    tl = torch.tensor([2.0, 1.0, 3.0], requires_grad=True)
    ref = torch.tensor([1.5, 0.0, 3.5])
    ent = torch.tensor([0.1, 2.0, 0.5])
    ex = score("excess", train_loss=tl, ref_loss=ref)
    assert not ex.requires_grad and ex.dtype == torch.float32
    assert ex.tolist() == [0.5, 1.0, -0.5]
    assert score("ref_loss", ref_loss=ref).tolist() == [-1.5, -0.0, -3.5]
    assert score("ref_entropy", ref_entropy=ent).tolist() == pytest.approx([-0.1, -2.0, -0.5])
    # low RM loss / entropy ranks high
    assert topk_mask(score("ref_loss", ref_loss=ref), 1 / 3).tolist() == [False, True, False]
    assert topk_mask(score("ref_entropy", ref_entropy=ent), 1 / 3).tolist() == [True, False, False]
    assert topk_mask(ex, 1 / 3).tolist() == [False, True, False]


def test_score_missing_inputs_and_unknown_kind():
    x = torch.zeros(3)
    with pytest.raises(SelectionError, match="missing ref_loss"):
        score("excess", train_loss=x)
    with pytest.raises(SelectionError, match="missing train_loss"):
        score("excess", ref_loss=x)
    with pytest.raises(SelectionError, match="missing ref_entropy"):
        score("ref_entropy", ref_loss=x)
    with pytest.raises(SelectionError, match="unknown score kind 'bogus'"):
        score("bogus", ref_loss=x)
    with pytest.raises(SelectionError, match="differ in shape"):
        score("excess", train_loss=torch.zeros(2), ref_loss=torch.zeros(3))


def test_valid_mask():
    labels = torch.tensor([[5, -100, 3]])
    ref = torch.tensor([[1.0, 1.0, float("nan")]])
    assert valid_mask(labels, ref).tolist() == [[True, False, False]]
    assert valid_mask(labels, None, ignore_index=3).tolist() == [[True, True, False]]
    with pytest.raises(SelectionError):
        valid_mask()
    with pytest.raises(SelectionError, match="shape mismatch"):
        valid_mask(labels, torch.zeros(3))


def test_combine_masks_intersection_union():
    a = torch.tensor([True, True, False, False, True])
    b = torch.tensor([True, False, True, False, True])
    valid = torch.tensor([True, True, True, True, False])
    m, r = combine_masks(a, b, "intersection", valid)
    assert m.tolist() == [True, False, False, False, False] and r == pytest.approx(1 / 4)
    m, r = combine_masks(a, b, "union", valid)
    assert m.tolist() == [True, True, True, False, False] and r == pytest.approx(3 / 4)
    m, r = combine_masks(a, b, "union")
    assert r == pytest.approx(4 / 5)
    with pytest.raises(SelectionError, match="intersection"):
        combine_masks(a, b, "xor")


def test_select_combined_matches_separate_selections():
    g = torch.Generator().manual_seed(1)
    sa = torch.randn(8, 50, generator=g)
    sb = torch.randn(8, 50, generator=g)
    sb[0, :5] = float("nan")
    both = torch.isfinite(sa) & torch.isfinite(sb)
    m, r = select_combined(sa, 0.7, sb, 0.7, "intersection")
    ma, mb = topk_mask(sa, 0.7, both), topk_mask(sb, 0.7, both)
    assert torch.equal(m, ma & mb)
    assert r == pytest.approx(int((ma & mb).sum()) / int(both.sum()))
    # independent scores: 70% n 70% keeps about 49%; the union about 91%
    assert 0.40 < r < 0.58
    mu, ru = select_combined(sa, 0.7, sb, 0.7, "union")
    assert torch.equal(mu, ma | mb) and 0.85 < ru < 0.97
    # perfectly correlated scores: the intersection of 80% and 90% is the 80% set
    m2, r2 = select_combined(sa, 0.8, sa.clone(), 0.9, "intersection")
    assert torch.equal(m2, topk_mask(sa, 0.8)) and r2 == pytest.approx(keep_count(400, 0.8) / 400)
    assert not bool(m[0, :5].any())


def test_effective_ratio_empty():
    assert effective_ratio(torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)) == 0.0


def test_softmax_weights():
    s = torch.tensor([[0.0, 1.0, 2.0, float("nan")]])
    valid = torch.tensor([[True, True, False, True]])
    w = softmax_weights(s, valid, temperature=1.0)
    e = math.e
    assert w.tolist()[0] == pytest.approx([2 / (1 + e), 2 * e / (1 + e), 0.0, 0.0])
    assert float(w.sum()) == pytest.approx(2.0)
    flat = softmax_weights(s, valid, temperature=1e6)
    assert flat.tolist()[0] == pytest.approx([1.0, 1.0, 0.0, 0.0], abs=1e-5)
    for bad in (0, -1.0, float("inf"), "a"):
        with pytest.raises(SelectionError, match="temperature"):
            softmax_weights(s, valid, bad)
