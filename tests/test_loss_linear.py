"""Tests for rho.loss.linear_token_loss: values and gradients equal the dense lm_head + token_loss path."""

from __future__ import annotations

import pytest
import torch

import rho.loss as loss_mod
from rho.linear_backends import available, pick
from rho.loss import (
    LossInputError,
    _chunk_rows,
    clm_loss,
    linear_token_loss,
    masked_mean,
    token_loss,
)
from rho.selection import score, topk_mask


def _inputs(b=2, t=7, h=16, v=50, dtype=torch.float32, seed=0, bias=False):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, t, h, generator=g).to(dtype).requires_grad_()
    weight = (torch.randn(v, h, generator=g) * 0.5).to(dtype).requires_grad_()
    bb = (torch.randn(v, generator=g) * 0.1).to(dtype).requires_grad_() if bias else None
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[0, 0] = -100
    labels[-1, -2] = -100
    return hidden, weight, bb, labels


def _grads(loss, *ts):
    gs = torch.autograd.grad(loss, [t for t in ts if t is not None])
    return list(gs)


@pytest.fixture
def logit_rows(monkeypatch) -> list[int]:
    """Rows of every logits chunk the fused loss computes from here on (forward and backward)."""
    rows_seen: list[int] = []
    real = loss_mod._chunk_logits

    def counting(h, w, b):
        rows_seen.append(h.shape[0])
        return real(h, w, b)

    monkeypatch.setattr(loss_mod, "_chunk_logits", counting)
    return rows_seen


def _dense(hidden, weight, bias, labels):
    logits = hidden @ weight.t() if bias is None else torch.nn.functional.linear(hidden, weight, bias)
    return token_loss(logits, labels)


@pytest.mark.parametrize("chunk", [None, 1, 3, 100])
@pytest.mark.parametrize("bias", [False, True])
def test_fp32_values_and_grads_equal_dense(chunk, bias):
    hidden, weight, b, labels = _inputs(bias=bias)
    dense = _dense(hidden, weight, b, labels)
    fused = linear_token_loss(hidden, weight, labels, chunk_size=chunk, bias=b)
    assert fused.dtype == torch.float32 and fused.shape == labels.shape
    torch.testing.assert_close(fused, dense, rtol=1e-5, atol=1e-5)
    assert float(fused.detach()[0, 0]) == 0.0 and float(fused.detach()[-1, -2]) == 0.0  # ignored tokens
    up = torch.rand(labels.shape, generator=torch.Generator().manual_seed(1))
    gd = _grads((dense * up).sum(), hidden, weight, b)
    gf = _grads((fused * up).sum(), hidden, weight, b)
    for a, e in zip(gf, gd, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)
    assert float(gf[0][0, 0].abs().sum()) == 0.0  # no gradient from an ignored token


def test_bf16_values_and_grads_equal_dense():
    hidden, weight, _, labels = _inputs(b=3, t=9, h=32, v=64, dtype=torch.bfloat16)
    dense = _dense(hidden, weight, None, labels)
    fused = linear_token_loss(hidden, weight, labels, chunk_size=4)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, dense, rtol=1e-5, atol=1e-5)  # same bf16 logits, fp32 softmax
    gd = _grads(dense.sum(), hidden, weight)
    gf = _grads(fused.sum(), hidden, weight)
    assert gf[0].dtype == torch.bfloat16 and gf[1].dtype == torch.bfloat16
    for a, e in zip(gf, gd, strict=True):
        torch.testing.assert_close(a.float(), e.float(), rtol=2e-2, atol=2e-2)


def test_autocast_matches_lm_head_under_autocast():
    hidden, weight, _, labels = _inputs(h=32, v=40)
    head = torch.nn.Linear(32, 40, bias=False)
    with torch.no_grad():
        head.weight.copy_(weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dense = token_loss(head(hidden), labels)
        fused = linear_token_loss(hidden, head.weight, labels, chunk_size=5)
    torch.testing.assert_close(fused, dense, rtol=1e-5, atol=1e-5)
    gd = _grads(dense.sum(), hidden, head.weight)
    gf = _grads(fused.sum(), hidden, head.weight)
    assert gf[1].dtype == torch.float32  # the grad reaches the fp32 master weight
    for a, e in zip(gf, gd, strict=True):
        torch.testing.assert_close(a, e, rtol=2e-2, atol=2e-2)


def test_sparse_backward_visits_only_selected_rows_and_is_exact(logit_rows):
    hidden, weight, _, labels = _inputs(b=4, t=10, h=16, v=30, seed=3)
    ref = torch.rand(labels.shape, generator=torch.Generator().manual_seed(4)) * 3
    dense = _dense(hidden, weight, None, labels)
    fused = linear_token_loss(hidden, weight, labels, chunk_size=4)
    mask_d = topk_mask(score("excess", train_loss=dense, ref_loss=ref), 0.4, labels != -100)
    mask_f = topk_mask(score("excess", train_loss=fused, ref_loss=ref), 0.4, labels != -100)
    assert torch.equal(mask_d, mask_f)
    logit_rows.clear()  # count the backward's rows only
    gf = _grads(masked_mean(fused, mask_f), hidden, weight)
    assert sum(logit_rows) == int(mask_f.sum()) == 15  # keep_count(38, 0.4): the backward skips the rest
    gd = _grads(masked_mean(dense, mask_d), hidden, weight)
    for a, e in zip(gf, gd, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)
    assert float(gf[0][~mask_f].abs().sum()) == 0.0


def test_ties_select_the_same_tokens_as_dense():
    hidden, weight, _, labels = _inputs(b=2, t=8, h=8, v=20)
    hidden = torch.zeros_like(hidden).requires_grad_()  # uniform logits: every loss is log V, all tie
    fused = linear_token_loss(hidden, weight, labels)
    dense = _dense(hidden, weight, None, labels)
    torch.testing.assert_close(fused[labels != -100], torch.full((14,), float(torch.log(torch.tensor(20.0)))))
    ref = torch.zeros(labels.shape)
    for ratio in (0.3, 0.5):
        a = topk_mask(score("excess", train_loss=fused, ref_loss=ref), ratio, labels != -100)
        b = topk_mask(score("excess", train_loss=dense, ref_loss=ref), ratio, labels != -100)
        assert torch.equal(a, b)


def test_slm_ratio_one_equals_clm():
    hidden, weight, _, labels = _inputs(seed=5)
    fused = linear_token_loss(hidden, weight, labels)
    ref = torch.rand(labels.shape)
    mask = topk_mask(score("excess", train_loss=fused, ref_loss=ref), 1.0, labels != -100)
    slm = masked_mean(fused, mask)
    clm = clm_loss(hidden @ weight.t(), labels)
    torch.testing.assert_close(slm, clm, rtol=1e-6, atol=1e-6)
    g1 = _grads(slm, hidden, weight)
    g2 = _grads(clm_loss(hidden @ weight.t(), labels), hidden, weight)
    for a, e in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)


def test_bad_inputs_say_what_to_fix():
    hidden, weight, _, labels = _inputs()
    with pytest.raises(LossInputError, match=r"weight must be \[V, H\]"):
        linear_token_loss(hidden, weight.t(), labels)
    with pytest.raises(LossInputError, match="no shifting"):
        linear_token_loss(hidden, weight, labels[:, 1:])
    with pytest.raises(LossInputError, match="outside"):
        linear_token_loss(hidden, weight, labels + 100)
    with pytest.raises(LossInputError, match="chunk_size"):
        linear_token_loss(hidden, weight, labels, chunk_size=0)
    with pytest.raises(LossInputError, match="dtypes differ"):
        linear_token_loss(hidden, weight.detach().bfloat16(), labels)


def test_backend_choice_auto_is_the_torch_path_and_kernels_need_cuda():
    # auto is rho's torch path on every device (faster than both kernels on an H200, and the only
    # one with the sparse backward); a kernel runs only when named, on CUDA
    for dev in ("cpu", "cuda"):
        assert pick("auto", torch.device(dev)) == "torch"
        assert pick("torch", torch.device(dev)) == "torch"
    with pytest.raises(ValueError, match="needs CUDA"):
        pick("cce", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown"):
        pick("triton", torch.device("cpu"))


def test_cce_has_no_bias_so_a_named_cce_is_refused_and_auto_stays_on_torch():
    # cut-cross-entropy 25.1 takes no bias (seen on an H200): never pass one.
    import rho.linear_backends as lb

    hidden, weight, b, labels = _inputs(bias=True)
    flat_h, flat_y = hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)
    assert lb.fused_backend_loss("auto", flat_h, weight, b, flat_y, -100) is None  # torch path
    with pytest.raises(ValueError, match="no bias"):  # refused whatever the device
        lb.fused_backend_loss("cce", flat_h, weight, b, flat_y, -100)


def test_keep_softmax_with_a_named_kernel_is_refused():
    hidden, weight, _, labels = _inputs()
    with pytest.raises(LossInputError, match="keep_softmax"):
        linear_token_loss(hidden, weight, labels, backend="cce", keep_softmax=True)
    out = linear_token_loss(hidden, weight, labels, backend="auto", keep_softmax=True)
    torch.testing.assert_close(out, _dense(hidden, weight, None, labels), rtol=1e-5, atol=1e-5)


def test_default_chunks_are_gpu_sized_on_cuda():
    # H200, vocab 32000: 262-row chunks took 2.8x the dense time, 4096-row chunks 1.4x
    assert _chunk_rows(None, 32000, torch.device("cpu")) == (1 << 23) // 32000 == 262
    assert _chunk_rows(None, 32000, torch.device("cuda")) == (1 << 27) // 32000 == 4194
    assert _chunk_rows(None, 10**7, torch.device("cpu")) == 16  # never fewer than 16 rows
    assert _chunk_rows(7, 32000, torch.device("cuda")) == 7


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(
    ("backend", "bias"),
    [("torch", False), ("cce", False), ("liger", False), ("auto", True), ("liger", True)],
)
def test_cuda_backends_equal_dense_bf16(backend, bias):
    if backend not in ("torch", "auto") and not available(backend):
        pytest.skip(f"{backend} not installed")
    hidden, weight, b, labels = _inputs(b=4, t=256, h=256, v=4096, dtype=torch.bfloat16, bias=bias)
    hidden = hidden.detach().cuda().requires_grad_()
    weight = weight.detach().cuda().requires_grad_()
    b = None if b is None else b.detach().cuda().requires_grad_()
    labels = labels.cuda()
    # the reference in float32 from the same bf16 inputs (bf16 logits round by up to ~0.03 at |logit| ~ 8)
    dense = _dense(hidden.float(), weight.float(), None if b is None else b.float(), labels)
    fused = linear_token_loss(hidden, weight, labels, backend=backend, bias=b)
    torch.testing.assert_close(fused, dense, rtol=2e-2, atol=2e-2)
    mask = labels != -100
    mask[:, ::2] = False  # a sparse selection: zero upstream gradient on half the tokens
    gd = _grads(masked_mean(dense, mask), hidden, weight, b)
    gf = _grads(masked_mean(fused, mask), hidden, weight, b)
    for a, e in zip(gf, gd, strict=True):
        torch.testing.assert_close(a.float(), e.float(), rtol=5e-2, atol=5e-3)


@pytest.mark.parametrize("bias", [False, True])
def test_uniform_grad_hint_skips_the_recomputation_and_stays_exact(logit_rows, bias):
    hidden, weight, b, labels = _inputs(b=3, t=9, h=16, v=40, seed=7, bias=bias)
    dense = _dense(hidden, weight, b, labels)
    gd = _grads(masked_mean(dense, labels != -100), hidden, weight, b)
    fused = linear_token_loss(hidden, weight, labels, chunk_size=4, bias=b, uniform_grad=True)
    assert sum(logit_rows) == 27  # the forward's pass only
    gf = _grads(masked_mean(fused, labels != -100), hidden, weight, b)  # CLM: uniform upstream grad
    assert sum(logit_rows) == 27  # no recomputation in the backward
    for a, e in zip(gf, gd, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)
    # a non-uniform upstream gradient with the hint still gets the exact gradients (recomputed)
    up = torch.rand(labels.shape, generator=torch.Generator().manual_seed(3))
    fused = linear_token_loss(hidden, weight, labels, chunk_size=4, bias=b, uniform_grad=True)
    gf = _grads((fused * up).sum(), hidden, weight, b)
    gd = _grads((_dense(hidden, weight, b, labels) * up).sum(), hidden, weight, b)
    for a, e in zip(gf, gd, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("ratio", [0.4, 1.0])
def test_keep_softmax_backward_needs_no_recomputation_and_is_exact(logit_rows, bias, ratio):
    hidden, weight, b, labels = _inputs(b=4, t=10, h=16, v=30, seed=5, bias=bias)
    ref = torch.rand(labels.shape, generator=torch.Generator().manual_seed(6)) * 3
    dense = _dense(hidden, weight, b, labels)
    mask = topk_mask(score("excess", train_loss=dense, ref_loss=ref), ratio, labels != -100)
    gd = _grads(masked_mean(dense, mask), hidden, weight, b)
    fused = linear_token_loss(hidden, weight, labels, chunk_size=3, bias=b, keep_softmax=True)
    torch.testing.assert_close(fused, dense, rtol=1e-5, atol=1e-5)
    assert sum(logit_rows) == 40  # the forward's pass over every token
    gf = _grads(masked_mean(fused, mask), hidden, weight, b)
    assert sum(logit_rows) == 40  # the backward read the kept softmax: no logits recomputed
    for a, e in zip(gf, gd, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)
    assert float(gf[0][~mask].abs().sum()) == 0.0  # unselected and ignored tokens get nothing


def test_keep_softmax_is_ignored_without_autograd_and_with_uniform_grad():
    hidden, weight, _, labels = _inputs(seed=8)
    with torch.no_grad():
        a = linear_token_loss(hidden, weight, labels, keep_softmax=True)
    b = linear_token_loss(hidden, weight, labels, keep_softmax=True, uniform_grad=True)
    torch.testing.assert_close(a, b.detach())
    gk = _grads(masked_mean(b, labels != -100), hidden, weight)
    gd = _grads(masked_mean(_dense(hidden, weight, None, labels), labels != -100), hidden, weight)
    for x, e in zip(gk, gd, strict=True):
        torch.testing.assert_close(x, e, rtol=1e-5, atol=1e-6)
