"""Per-token cross-entropy, the SLM loss (Rho-1 eq. 4) and a soft reweighting variant.

Alignment (docs/design.md): ``logits[:, t]`` predicts ``labels[:, t]``; nothing here shifts.
Per-token losses are float32 and exactly 0 where ``labels == ignore_index``.

The pieces compose for a training loop that selects globally (across data-parallel ranks or
accumulation steps)::

    tl = token_loss(logits, labels, chunk_size=...)                 # [B, T] fp32, with grad
    valid = valid_mask(labels, ref_loss)                             # rho.selection
    s = score("excess", train_loss=tl, ref_loss=ref_loss)            # detached
    mask = topk_mask(s, ratio, valid)        # or select_global(...) over gathered scores
    loss = masked_mean(tl, mask, denom=global_selected_count)

:func:`slm_loss` does all of this for one batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rho.selection import (
    SelectionError,
    check_ratio,
    score,
    softmax_weights,
    topk_mask,
    valid_mask,
)


class LossInputError(ValueError):
    """Logits / labels / reference losses of the wrong shape, dtype or range."""


def _check_inputs(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> None:
    if logits.dim() < 2:
        raise LossInputError(f"logits must be [..., V], got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise LossInputError(f"logits must be a float tensor, got {logits.dtype}")
    if labels.shape != logits.shape[:-1]:
        raise LossInputError(
            f"labels {tuple(labels.shape)} must match logits {tuple(logits.shape)} without the vocab dim; "
            "labels are aligned with logits (labels[:, t] is what logits[:, t] predicts), no shifting"
        )
    if labels.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool):
        raise LossInputError(f"labels must be integer token ids, got {labels.dtype}")
    _check_labels(labels, logits.shape[-1], ignore_index)


def _check_labels(labels: torch.Tensor, v: int, ignore_index: int) -> None:
    if labels.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool):
        raise LossInputError(f"labels must be integer token ids, got {labels.dtype}")
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= v))
    if bool(bad.any()):
        raise LossInputError(
            f"labels hold ids outside [0, {v}) other than ignore_index={ignore_index}; "
            "is the model's vocabulary smaller than the tokenizer's?"
        )


def _logsumexp_(x: torch.Tensor) -> torch.Tensor:
    """Row-wise log-sum-exp of a float32 ``[n, V]`` tensor that it overwrites (no temporaries)."""
    m = x.amax(dim=-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # all -inf rows: lse = -inf, not NaN
    return torch.log(x.sub_(m).exp_().sum(-1)).add_(m.squeeze(-1))


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Per-row cross-entropy over ``[N, V]`` logits, one chunk of rows in float32 at a time.

    Forward keeps only the per-row log-sum-exp (``[N]`` float32).  Backward recomputes each
    chunk's softmax from the (low-precision) logits: ``grad = (softmax - onehot) * grad_out``,
    written straight into a gradient tensor of the logits' dtype.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, chunk_size: int):
        n = logits.shape[0]
        valid = labels != ignore_index
        safe = torch.where(valid, labels, torch.zeros_like(labels))
        loss = torch.empty(n, dtype=torch.float32, device=logits.device)
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        for s in range(0, n, chunk_size):
            e = min(n, s + chunk_size)
            x = logits[s:e].to(torch.float32, copy=True)
            tgt = x.gather(1, safe[s:e, None]).squeeze(1)
            lse_c = _logsumexp_(x)
            lse[s:e] = lse_c
            loss[s:e] = torch.where(valid[s:e], lse_c - tgt, torch.zeros_like(lse_c))
            del x
        ctx.save_for_backward(logits, safe, valid, lse)
        ctx.chunk_size = chunk_size
        return loss

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, safe, valid, lse = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        n = logits.shape[0]
        cs = ctx.chunk_size
        g_rows = torch.where(valid, grad_out.float(), torch.zeros_like(grad_out, dtype=torch.float32))
        grad = torch.empty_like(logits)
        for s in range(0, n, cs):
            e = min(n, s + cs)
            p = logits[s:e].to(torch.float32, copy=True)
            p.sub_(lse[s:e, None]).exp_()  # softmax, in place
            p.scatter_add_(1, safe[s:e, None], torch.full((e - s, 1), -1.0, device=p.device))
            p.mul_(g_rows[s:e, None])
            grad[s:e].copy_(p)
            del p
        return grad, None, None, None


def token_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Per-token float32 cross-entropy ``[B, T]`` (any leading shape), 0 where ignored.

    ``logits[..., t, :]`` predicts ``labels[..., t]`` (already aligned; no shift).  Logits may be
    any float dtype (bf16 under autocast); the loss is computed in float32.

    ``chunk_size=None`` upcasts all logits at once (``F.cross_entropy`` on the fp32 copy).  With
    ``chunk_size=c`` no more than ``c`` rows of float32 logits exist at a time, in forward or
    backward; values and gradients equal the unchunked path up to float rounding.
    """
    _check_inputs(logits, labels, ignore_index)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise LossInputError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    lead = labels.shape
    v = logits.shape[-1]
    flat_logits = logits.reshape(-1, v)
    flat_labels = labels.reshape(-1).long()
    if chunk_size is None:
        out = F.cross_entropy(flat_logits.float(), flat_labels, ignore_index=ignore_index, reduction="none")
    else:
        out = _ChunkedCrossEntropy.apply(flat_logits, flat_labels, ignore_index, chunk_size)
    return out.view(lead)


def masked_mean(
    token_losses: torch.Tensor, mask: torch.Tensor, denom: float | torch.Tensor | None = None
) -> torch.Tensor:
    """``sum(token_losses[mask]) / denom`` with ``denom`` defaulting to ``mask.sum()``.

    Unmasked tokens get exactly zero gradient.  Pass ``denom`` to normalise by a count taken
    elsewhere (e.g. the selected tokens of every rank and accumulation step).  An empty mask with
    no ``denom`` gives a loss of 0 (still connected to the graph).
    """
    if mask.shape != token_losses.shape:
        raise LossInputError(
            f"mask {tuple(mask.shape)} does not match token losses {tuple(token_losses.shape)}"
        )
    total = selected_loss_sum(token_losses, mask)
    if denom is None:
        denom = mask.sum().clamp_min(1).to(total.dtype)
    elif not torch.is_tensor(denom) and denom <= 0:
        raise LossInputError(f"denom must be positive, got {denom!r}")
    return total / denom


def selected_loss_sum(token_losses: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of the per-token losses where ``mask`` is True (zero gradient elsewhere)."""
    return torch.where(mask, token_losses, torch.zeros_like(token_losses)).sum()


def clm_loss(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100, chunk_size: int | None = None
) -> torch.Tensor:
    """Ordinary causal-LM loss (eq. 2): mean cross-entropy over tokens whose label is not ignored."""
    tl = token_loss(logits, labels, ignore_index=ignore_index, chunk_size=chunk_size)
    return masked_mean(tl, labels != ignore_index)


def slm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ref_loss: torch.Tensor | None,
    ratio: float,
    *,
    score_kind: str = "excess",
    ref_entropy: torch.Tensor | None = None,
    ignore_index: int = -100,
    chunk_size: int | None = None,
    denom: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective LM loss (eq. 4): mean cross-entropy over the top ``ratio`` tokens of the batch.

    Tokens are ranked by ``rho.selection.score(score_kind, ...)`` computed from the detached
    per-token loss; a token is a candidate when its label is not ignored and its reference
    loss (and entropy, when given) is finite — NaN reference values mark tokens with no
    prediction (block starts, dropped tail).  Returns ``(loss, mask)``; unselected tokens get
    exactly zero gradient.  With ``ratio=1`` every candidate is kept and, when the candidates are
    exactly the non-ignored labels, the loss is bit-identical to :func:`clm_loss`.
    """
    try:
        r = check_ratio(ratio)
    except SelectionError as e:
        raise LossInputError(str(e)) from None
    for name, t in (("ref_loss", ref_loss), ("ref_entropy", ref_entropy)):
        if t is not None and t.shape != labels.shape:
            raise LossInputError(f"{name} {tuple(t.shape)} must have the labels' shape {tuple(labels.shape)}")
    tl = token_loss(logits, labels, ignore_index=ignore_index, chunk_size=chunk_size)
    s = score(score_kind, train_loss=tl, ref_loss=ref_loss, ref_entropy=ref_entropy)
    valid = valid_mask(labels, ref_loss, ref_entropy, ignore_index=ignore_index)
    mask = topk_mask(s, r, valid)
    return masked_mean(tl, mask, denom), mask


def reweighted_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ref_loss: torch.Tensor,
    temperature: float = 1.0,
    *,
    ignore_index: int = -100,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft SLM (off by default; the paper's suggested extension of hard selection).

    Instead of a 0/1 mask, every valid token gets a detached weight from its excess loss,
    ``w = n_valid * softmax(excess / T)`` over valid tokens, and the loss is
    ``sum(w * l) / n_valid``.  Large ``T`` approaches plain CLM; small ``T`` concentrates on the
    tokens with the largest excess loss.  Returns ``(loss, weights)``.
    """
    if ref_loss.shape != labels.shape:
        raise LossInputError(
            f"ref_loss {tuple(ref_loss.shape)} must have the labels' shape {tuple(labels.shape)}"
        )
    tl = token_loss(logits, labels, ignore_index=ignore_index, chunk_size=chunk_size)
    valid = valid_mask(labels, ref_loss, ignore_index=ignore_index)
    excess = score("excess", train_loss=tl, ref_loss=ref_loss)
    try:
        w = softmax_weights(excess, valid, temperature)
    except SelectionError as e:
        raise LossInputError(str(e)) from None
    n_valid = valid.sum().clamp_min(1).to(tl.dtype)
    return torch.where(valid, w * tl, torch.zeros_like(tl)).sum() / n_valid, w


# ---------------------------------------------------------------------------- fused linear + CE
#: Elements of float32 logits one chunk may hold (rows = this // vocab), by device type: 32 MiB on
#: CPU; 512 MiB on CUDA, where small chunks starve the GPU (H200, hidden 2048, vocab 32000, 8192
#: tokens: 262-row chunks took 2.8x the dense path's time, 4096-row chunks 1.4x).
_LINEAR_CHUNK_ELEMS = {"cpu": 1 << 23, "cuda": 1 << 27}


def _chunk_rows(chunk_size: int | None, vocab: int, device: torch.device) -> int:
    if chunk_size is None:
        budget = _LINEAR_CHUNK_ELEMS.get(device.type, _LINEAR_CHUNK_ELEMS["cpu"])
        return max(16, budget // max(1, vocab))
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise LossInputError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    return chunk_size


def _chunk_logits(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """float32 logits of a chunk of rows, the matmul in the inputs' dtype (as ``lm_head`` does)."""
    x = h @ weight.t() if bias is None else torch.addmm(bias, h, weight.t())
    return x.float() if x.dtype != torch.float32 else x


def _head_grads_(
    p: torch.Tensor,
    h: torch.Tensor,
    weight: torch.Tensor,
    safe: torch.Tensor,
    scale: torch.Tensor,
    grad_h: torch.Tensor | None,
    grad_w: torch.Tensor | None,
    grad_b: torch.Tensor | None,
    rows: slice | torch.Tensor,
) -> None:
    """Turn a chunk's softmax ``p`` into ``(p - onehot) * scale`` and add the head's gradients."""
    ar = torch.arange(p.shape[0], device=p.device)
    p[ar, safe] -= 1.0
    p.mul_(scale[:, None])
    gl = p.to(h.dtype)
    if grad_h is not None:
        grad_h[rows] = gl @ weight
    if grad_w is not None:
        if gl.dtype == torch.float32:
            grad_w.addmm_(gl.t(), h)
        else:
            grad_w.add_(gl.t() @ h)
    if grad_b is not None:
        grad_b.add_(gl.float().sum(0))


class _LinearCrossEntropy(torch.autograd.Function):
    """Per-row cross-entropy of ``hidden @ weight.T (+ bias)`` without ever holding ``[N, V]``.

    Forward keeps the per-row log-sum-exp (``[N]`` float32).  Backward visits only the rows whose
    upstream gradient is nonzero (the selected tokens of SLM: the sparse backward), recomputes
    their logits one chunk at a time, and accumulates the head's gradients over those rows only.

    With ``precompute`` the forward also computes the gradients for a *uniform* upstream gradient
    (1 on every labelled row: CLM's case) while it holds each chunk's softmax; if the backward's
    upstream gradient is indeed one constant on the labelled rows it only scales them (no
    recomputation: the cost of the dense path), otherwise it recomputes as above.

    With ``keep`` (and not ``precompute``) the forward keeps every chunk's softmax (``[N, V]``
    float32 in all, the logits path's memory) and the backward takes the selected rows from it
    instead of recomputing their logits: the head costs ``1 + 2r`` matmuls per token at selected
    fraction ``r`` instead of ``1 + 3r``.
    """

    @staticmethod
    def forward(
        ctx, hidden, weight, bias, labels, ignore_index: int, rows: int, precompute: bool, keep: bool
    ):
        n = hidden.shape[0]
        valid = labels != ignore_index
        safe = torch.where(valid, labels, torch.zeros_like(labels))
        lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
        tgt = torch.empty(n, dtype=torch.float32, device=hidden.device)
        units = None
        if precompute:
            units = (
                torch.zeros_like(hidden),
                torch.zeros(weight.shape, dtype=torch.float32, device=weight.device),
                torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device)
                if bias is not None
                else None,
            )
        kept: list[torch.Tensor | None] | None = [] if keep and units is None else None
        for s in range(0, n, rows):
            e = min(n, s + rows)
            x = _chunk_logits(hidden[s:e], weight, bias)  # a fresh tensor: overwritten below
            tgt[s:e] = x.gather(1, safe[s:e, None]).squeeze(1)
            lse[s:e] = _logsumexp_(x)  # x now holds exp(x - max)
            if units is not None:
                x.div_(x.sum(-1, keepdim=True))  # softmax
                _head_grads_(x, hidden[s:e], weight, safe[s:e], valid[s:e].float(), *units, slice(s, e))
            elif kept is not None:
                kept.append(x.div_(x.sum(-1, keepdim=True)))  # softmax, for the backward
            del x
        loss = torch.where(valid, lse - tgt, torch.zeros_like(lse))
        ctx.save_for_backward(hidden, weight, bias, safe, valid, lse)
        ctx.units = units
        ctx.kept = kept
        ctx.rows = rows
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, bias, safe, valid, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        g = torch.where(valid, grad_out.float(), torch.zeros_like(lse))
        units, ctx.units = ctx.units, None
        if units is not None:
            gv = g[valid]
            if gv.numel() and bool((gv == gv[0]).all()):  # one constant on every labelled row
                c = gv[0]
                grad_h = units[0].mul_(c.to(hidden.dtype)) if need_h else None
                grad_w = units[1].mul_(c).to(weight.dtype) if need_w else None
                grad_b = units[2].mul_(c).to(bias.dtype) if need_b else None
                return grad_h, grad_w, grad_b, None, None, None, None, None
            del units
        grad_h = torch.zeros_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) if need_b else None
        rows = ctx.rows
        kept, ctx.kept = ctx.kept, None
        if kept is not None:  # the forward's softmax, chunk by chunk: no recomputation
            for c in range(len(kept)):
                s, e = c * rows, min(hidden.shape[0], (c + 1) * rows)
                p, kept[c] = kept[c], None
                local = torch.nonzero(g[s:e], as_tuple=True)[0]  # selected, labelled rows of the chunk
                if local.numel() == 0:
                    continue
                sel: slice | torch.Tensor = slice(s, e)
                if local.numel() < e - s:
                    p, sel = p[local], local + s
                _head_grads_(p, hidden[sel], weight, safe[sel], g[sel], grad_h, grad_w, grad_b, sel)
                del p
        else:
            idx = torch.nonzero(g, as_tuple=True)[0]  # rows with an upstream gradient (selected, labelled)
            dense = idx.numel() == hidden.shape[0]
            for s in range(0, idx.numel(), rows):
                e = min(idx.numel(), s + rows)
                sel = slice(s, e) if dense else idx[s:e]
                h = hidden[sel]
                p = _chunk_logits(h, weight, bias)
                p.sub_(lse[sel, None]).exp_()  # softmax, in place
                _head_grads_(p, h, weight, safe[sel], g[sel], grad_h, grad_w, grad_b, sel)
                del p
        grad_w = grad_w.to(weight.dtype) if need_w else None
        grad_b = grad_b.to(bias.dtype) if need_b else None
        return grad_h, grad_w, grad_b, None, None, None, None, None


def linear_token_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    chunk_size: int | None = None,
    bias: torch.Tensor | None = None,
    backend: str = "torch",
    uniform_grad: bool = False,
    keep_softmax: bool = False,
) -> torch.Tensor:
    """Per-token float32 cross-entropy ``[B, T]`` straight from the last hidden states.

    Equals ``token_loss(hidden @ weight.T + bias, labels)`` (``hidden [..., H]``, ``weight [V, H]``
    as in ``lm_head.weight``, ``labels [...]`` aligned, 0 where ignored) but never holds a
    ``[tokens, V]`` tensor: ``chunk_size`` rows of float32 logits at a time (default: 32 MiB
    worth on CPU, 512 MiB on CUDA).  The matmul runs in the inputs' dtype (under autocast, the
    autocast dtype, as the model's ``lm_head`` would); softmax and loss in float32.

    **Sparse backward**: the backward visits only tokens whose upstream gradient is nonzero, so
    with an SLM selection (``torch.where(mask, loss, 0).sum()``, :func:`masked_mean`) the head's
    gradient costs are proportional to the selected fraction; gradients equal the dense path's.

    ``uniform_grad=True`` is a speed hint for CLM-like use (every labelled token gets the same
    weight): the forward then also computes the gradients while it holds each chunk's softmax,
    and the backward only scales them (the dense path's cost: no recomputation), keeping a
    ``[V, H]`` float32 buffer until the backward.  If the upstream gradient turns out not to be
    uniform, the backward recomputes as usual; results are the same either way.

    ``keep_softmax=True`` trades memory for time in SLM's sparse backward: the forward keeps every
    token's float32 softmax (``[tokens, V]``, what the logits path holds) and the backward reads
    the selected rows from it instead of recomputing their logits, so the head costs ``1 + 2r``
    matmuls per token at selected fraction ``r`` (CLM: 3) instead of ``1 + 3r``.  Ignored with
    ``uniform_grad`` (which already needs no recomputation) and outside autograd.

    ``backend``: ``"torch"`` or ``"auto"`` (this chunked implementation, on every device: on an
    H200 it was faster than both CUDA kernels, see :mod:`rho.linear_backends`), or ``"cce"`` /
    ``"liger"`` (CUDA kernels that hold less memory; they compute every token's gradient and take
    neither hint, and ``keep_softmax=True`` with them raises :class:`LossInputError`).
    """
    if hidden.dim() < 2 or not hidden.is_floating_point():
        raise LossInputError(
            f"hidden must be a float [..., H] tensor, got {hidden.dtype} {tuple(hidden.shape)}"
        )
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise LossInputError(
            f"weight must be [V, H] with H={hidden.shape[-1]} (lm_head.weight), got {tuple(weight.shape)}"
        )
    if bias is not None and bias.shape != weight.shape[:1]:
        raise LossInputError(f"bias must be [V]={weight.shape[0]}, got {tuple(bias.shape)}")
    if labels.shape != hidden.shape[:-1]:
        raise LossInputError(
            f"labels {tuple(labels.shape)} must match hidden {tuple(hidden.shape)} without the hidden dim; "
            "labels are aligned (labels[:, t] is what position t predicts), no shifting"
        )
    v = weight.shape[0]
    _check_labels(labels, v, ignore_index)
    rows = _chunk_rows(chunk_size, v, hidden.device)
    if keep_softmax and backend not in ("torch", "auto"):
        raise LossInputError(
            f"keep_softmax keeps the softmax for rho's own backward; backend {backend!r} has none: "
            "use backend='torch' (or 'auto') with keep_softmax=True"
        )
    if torch.is_autocast_enabled(hidden.device.type):
        dt = torch.get_autocast_dtype(hidden.device.type)
        hidden, weight = hidden.to(dt), weight.to(dt)
        bias = bias.to(dt) if bias is not None else None
    elif weight.dtype != hidden.dtype:
        raise LossInputError(
            f"hidden ({hidden.dtype}) and weight ({weight.dtype}) dtypes differ outside autocast"
        )
    flat_h = hidden.reshape(-1, hidden.shape[-1])
    flat_y = labels.reshape(-1).long()
    if backend != "torch":
        from rho.linear_backends import fused_backend_loss

        out = fused_backend_loss(backend, flat_h, weight, bias, flat_y, ignore_index)
        if out is not None:
            return out.view(labels.shape)
    with torch.autocast(hidden.device.type, enabled=False):
        grad = torch.is_grad_enabled() and (flat_h.requires_grad or weight.requires_grad)
        precompute = uniform_grad and grad
        keep = keep_softmax and grad and not precompute
        out = _LinearCrossEntropy.apply(flat_h, weight, bias, flat_y, ignore_index, rows, precompute, keep)
    return out.view(labels.shape)
