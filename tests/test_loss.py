"""Tests for rho.loss: per-token CE (chunked and not), SLM loss, CLM equivalence, reweighting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rho.loss import (
    LossInputError,
    clm_loss,
    masked_mean,
    reweighted_loss,
    selected_loss_sum,
    slm_loss,
    token_loss,
)
from rho.selection import keep_count, score, topk_mask, valid_mask

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def lm_batch(draw, dtype=torch.float32):
    """Random logits [B, T, V], aligned labels with ignored positions, ref losses with NaNs."""
    b = draw(st.integers(1, 3))
    t = draw(st.integers(1, 9))
    v = draw(st.integers(2, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, t, v, generator=g) * 3).to(dtype)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[torch.rand(b, t, generator=g) < 0.2] = -100
    ref = torch.rand(b, t, generator=g) * 4
    ref[labels == -100] = float("nan")
    return logits, labels, ref


def _grad(fn, logits):
    x = logits.clone().requires_grad_(True)
    out = fn(x)
    (g,) = torch.autograd.grad(out, x)
    return out.detach(), g


def test_token_loss_matches_log_softmax_and_zero_where_ignored():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 7, generator=g)
    labels = torch.tensor([[1, 2, -100, 6], [0, -100, 3, 3]])
    tl = token_loss(logits, labels)
    assert tl.dtype == torch.float32 and tl.shape == (2, 4)
    lp = torch.log_softmax(logits, -1)
    for b in range(2):
        for t in range(4):
            want = 0.0 if labels[b, t] == -100 else float(-lp[b, t, labels[b, t]])
            assert float(tl[b, t]) == pytest.approx(want, abs=1e-6)
    # no shifting: changing the logits at t only changes the loss at t
    logits2 = logits.clone()
    logits2[0, 1] += torch.randn(7, generator=g)
    diff = token_loss(logits2, labels) != tl
    assert diff.tolist() == [[False, True, False, False], [False, False, False, False]]


@SETTINGS
@given(lm_batch(), st.integers(1, 8))
def test_chunked_equals_unchunked_fp32(batch, chunk):
    logits, labels, _ = batch
    w = torch.rand(labels.shape)  # a non-trivial upstream gradient
    a, ga = _grad(lambda x: (token_loss(x, labels) * w).sum(), logits)
    b, gb = _grad(lambda x: (token_loss(x, labels, chunk_size=chunk) * w).sum(), logits)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    assert torch.allclose(ga, gb, rtol=1e-5, atol=1e-6)
    assert torch.equal(token_loss(logits, labels, chunk_size=chunk) == 0, token_loss(logits, labels) == 0)


@SETTINGS
@given(lm_batch(dtype=torch.bfloat16), st.integers(1, 8))
def test_chunked_equals_unchunked_bf16(batch, chunk):
    logits, labels, _ = batch
    a, ga = _grad(lambda x: token_loss(x, labels).sum(), logits)
    b, gb = _grad(lambda x: token_loss(x, labels, chunk_size=chunk).sum(), logits)
    assert a.dtype == torch.float32 and b.dtype == torch.float32
    assert ga.dtype == torch.bfloat16 and gb.dtype == torch.bfloat16
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    # both paths round the same fp32 gradient to bf16; allow one bf16 ulp
    assert torch.allclose(ga.float(), gb.float(), rtol=1e-2, atol=1e-3)


def test_chunked_path_never_saves_full_fp32_logits():
    n, v, chunk = 64, 50, 8
    logits = torch.randn(n, v).bfloat16().requires_grad_(True)
    labels = torch.randint(0, v, (n,))

    def saved_fp32_sizes(chunk_size):
        sizes = []

        def pack(t):
            if t.dtype == torch.float32:
                sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = token_loss(logits, labels, chunk_size=chunk_size)
        out.sum().backward()
        return sizes

    assert max(saved_fp32_sizes(None)) >= n * v  # the naive path keeps an fp32 copy
    assert max(saved_fp32_sizes(chunk), default=0) <= n  # chunked keeps only per-row stats


def test_chunk_larger_than_tokens_and_leading_dims():
    logits = torch.randn(3, 2, 5, 11)
    labels = torch.randint(0, 11, (3, 2, 5))
    assert torch.allclose(token_loss(logits, labels, chunk_size=1000), token_loss(logits, labels), atol=1e-6)


@SETTINGS
@given(lm_batch(), st.sampled_from([None, 3]))
def test_ratio_one_equals_clm_exactly(batch, chunk):
    logits, labels, ref = batch
    loss, mask = slm_loss(logits, labels, ref, 1.0, chunk_size=chunk)
    assert torch.equal(loss, clm_loss(logits, labels, chunk_size=chunk))
    assert torch.equal(mask, labels != -100)


@SETTINGS
@given(lm_batch(), st.floats(0.05, 1.0), st.sampled_from([None, 4]))
def test_slm_selects_top_excess_and_zero_grad_elsewhere(batch, ratio, chunk):
    logits, labels, ref = batch
    x = logits.clone().requires_grad_(True)
    loss, mask = slm_loss(x, labels, ref, ratio, chunk_size=chunk)
    tl = token_loss(logits, labels)
    valid = valid_mask(labels, ref)
    assert int(mask.sum()) == keep_count(int(valid.sum()), ratio)
    assert not bool((mask & ~valid).any())
    assert torch.equal(mask, topk_mask(score("excess", train_loss=tl, ref_loss=ref), ratio, valid))
    if mask.any():
        assert float(loss.detach()) == pytest.approx(float(tl[mask].mean()), rel=1e-5, abs=1e-6)
        loss.backward()
        g = x.grad
        assert torch.all(g[~mask] == 0), "an unselected token received gradient"
        assert bool((g[mask].abs().sum(-1) > 0).all())
    else:
        assert float(loss.detach()) == 0.0


def test_slm_hand_example_excess_ranking():
    v = 4
    logits = torch.zeros(1, 4, v)  # uniform: every token loss is log(4)
    labels = torch.tensor([[0, 1, 2, -100]])
    ref = torch.tensor([[1.0, 0.2, 2.0, float("nan")]])
    loss, mask = slm_loss(logits, labels, ref, 0.34)  # 3 valid -> round(1.02) = 1 token
    assert mask.tolist() == [[False, True, False, False]]  # largest excess log4 - 0.2
    assert float(loss) == pytest.approx(np.log(4), rel=1e-6)
    _, mask = slm_loss(logits, labels, None, 0.34, score_kind="ref_entropy", ref_entropy=ref)
    assert mask.tolist() == [[False, True, False, False]]
    _, mask = slm_loss(logits, labels, ref, 0.67, score_kind="ref_loss")
    assert mask.tolist() == [[True, True, False, False]]


def test_slm_nan_ref_never_selected():
    logits = torch.randn(2, 5, 9)
    labels = torch.randint(0, 9, (2, 5))
    ref = torch.full((2, 5), float("nan"))
    ref[0, 0] = -100.0  # huge excess, the only valid token
    _, mask = slm_loss(logits, labels, ref, 1.0)
    assert int(mask.sum()) == 1 and bool(mask[0, 0])


def test_slm_external_denominator():
    logits = torch.randn(2, 6, 10)
    labels = torch.randint(0, 10, (2, 6))
    ref = torch.rand(2, 6)
    loss, mask = slm_loss(logits, labels, ref, 0.5)
    loss2, mask2 = slm_loss(logits, labels, ref, 0.5, denom=24)
    assert torch.equal(mask, mask2)
    assert float(loss2) == pytest.approx(float(loss) * int(mask.sum()) / 24, rel=1e-6)


def test_masked_mean_and_sum():
    tl = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    m = torch.tensor([True, False, True])
    assert selected_loss_sum(tl, m).item() == 5.0
    out = masked_mean(tl, m)
    assert out.item() == 2.5
    out.backward()
    assert tl.grad.tolist() == [0.5, 0.0, 0.5]
    assert masked_mean(tl, torch.zeros(3, dtype=torch.bool)).item() == 0.0
    assert masked_mean(tl, m, denom=10).item() == 0.5
    with pytest.raises(LossInputError, match="denom"):
        masked_mean(tl, m, denom=0)
    with pytest.raises(LossInputError, match="does not match"):
        masked_mean(tl, torch.ones(2, dtype=torch.bool))


@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [
        (torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long), "no shifting"),
        (torch.randn(2, 3, 5), torch.zeros(2, 3), "integer"),
        (torch.randn(2, 3, 5), torch.full((2, 3), 5), r"outside \[0, 5\)"),
        (torch.randn(2, 3, 5), torch.full((2, 3), -1), "outside"),
        (torch.zeros(2, 3, 5, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), "float"),
        (torch.randn(5), torch.zeros((), dtype=torch.long), r"\[\.\.\., V\]"),
    ],
)
def test_bad_inputs_raise(logits, labels, match):
    with pytest.raises(LossInputError, match=match):
        token_loss(logits, labels)


def test_bad_chunk_ratio_and_ref_shape():
    logits, labels = torch.randn(1, 3, 5), torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(LossInputError, match="chunk_size"):
        token_loss(logits, labels, chunk_size=0)
    with pytest.raises(LossInputError, match=r"\(0, 1\]"):
        slm_loss(logits, labels, torch.zeros(1, 3), 0.0)
    with pytest.raises(LossInputError, match="ref_loss"):
        slm_loss(logits, labels, torch.zeros(1, 4), 0.5)
    with pytest.raises(ValueError, match="missing ref_entropy"):
        slm_loss(logits, labels, torch.zeros(1, 3), 0.5, score_kind="ref_entropy")


def test_reweighted_loss():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 6, 12, generator=g)
    labels = torch.randint(0, 12, (2, 6), generator=g)
    labels[1, 5] = -100
    ref = torch.rand(2, 6, generator=g)
    ref[0, 0] = float("nan")
    valid = valid_mask(labels, ref)
    tl = token_loss(logits, labels)
    n_valid = int(valid.sum())

    # T -> inf: every valid token weighs 1, i.e. the mean over valid tokens
    loss_flat, w_flat = reweighted_loss(logits, labels, ref, temperature=1e7)
    assert float(loss_flat) == pytest.approx(float(tl[valid].mean()), rel=1e-5)
    assert torch.allclose(w_flat[valid], torch.ones(n_valid), atol=1e-4)

    x = logits.clone().requires_grad_(True)
    loss, w = reweighted_loss(x, labels, ref, temperature=0.5)
    assert not w.requires_grad
    assert float(w.sum()) == pytest.approx(n_valid, rel=1e-5)
    assert torch.all(w[~valid] == 0)
    excess = (tl - ref)[valid]
    assert int(torch.argmax(w[valid])) == int(torch.argmax(excess))
    want = torch.softmax(excess / 0.5, 0) * n_valid
    assert torch.allclose(w[valid], want, rtol=1e-5)
    assert loss.item() == pytest.approx(float((want * tl[valid]).sum() / n_valid), rel=1e-5)
    loss.backward()
    assert torch.all(x.grad[~valid] == 0)
    with pytest.raises(LossInputError, match="temperature"):
        reweighted_loss(logits, labels, ref, temperature=0.0)
