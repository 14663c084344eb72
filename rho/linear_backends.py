"""CUDA kernels from the field behind :func:`rho.loss.linear_token_loss` (optional, by name).

- ``cce``: Apple's cut-cross-entropy (``pip install cut-cross-entropy``), ``reduction="none"``,
  ``filter_eps=None`` (exact gradients); it takes no bias.
- ``liger``: Liger-Kernel's fused linear cross-entropy; only ``liger-kernel >= 0.8.2`` is correct
  with ``reduction="none"``, older versions are refused.

Both run only on CUDA tensors and only when named.  ``auto`` (the default of training and
scoring) is rho's own chunked PyTorch path on every device.  On one H200 (bf16, hidden 2048, vocab
32000, 8192 tokens: the paper's TinyLlama head; ``benchmarks/results/gpu_check_h200.md``) that path
with GPU-sized chunks (4096 rows) took 10.5 ms fwd+bwd for CLM and 9.3 ms with a 60% selection,
against cut-cross-entropy's 17.1 / 17.2 ms and Liger's 12.0 / 9.9 ms.  It is also the only one with
the sparse backward (the kernels compute every token's gradient), ``keep_softmax`` and the
``uniform_grad`` hint.  The kernels hold less memory (cce 0.05x of the dense path's peak, Liger
0.09x, rho's torch path 0.39x at that size): name one when memory, not time, is what runs out.
:func:`fused_backend_loss` returns None for ``torch``/``auto`` and the caller runs the torch path.
Values are float32.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging

import torch

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "cce", "liger")
_LIGER_MIN = (0, 8, 2)


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def available(name: str) -> bool:
    """Whether backend ``name`` is installed (and, for Liger, recent enough to be correct)."""
    if name == "torch":
        return True
    if name == "cce":
        return importlib.util.find_spec("cut_cross_entropy") is not None
    if name == "liger":
        if importlib.util.find_spec("liger_kernel") is None:
            return False
        try:
            return _version_tuple(importlib.metadata.version("liger-kernel")) >= _LIGER_MIN
        except importlib.metadata.PackageNotFoundError:
            return False
    raise ValueError(f"unknown linear-loss backend {name!r}; choose one of {BACKENDS}")


def pick(name: str, device: torch.device, *, bias: bool = False, keep_softmax: bool = False) -> str:
    """The backend to run for ``name`` on ``device``: ``auto`` and ``torch`` give ``"torch"``.

    A named kernel must be able to do what is asked: it has no ``keep_softmax`` (that is rho's own
    backward), cce takes no bias (``bias``: the head has one; cut-cross-entropy 25.1, seen on an
    H200), and it needs CUDA tensors and the package installed.  Otherwise ``ValueError`` says why.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown linear-loss backend {name!r}; choose one of {BACKENDS}")
    if name in ("torch", "auto"):
        return "torch"
    if keep_softmax:
        raise ValueError(
            f"keep_softmax (fused_loss=keep) keeps the softmax for rho's own backward; backend {name!r} "
            "has none: use backend='auto' (fused_backend=auto)"
        )
    if name == "cce" and bias:
        raise ValueError("backend 'cce' has no bias term; use backend='liger' or 'torch' for a biased head")
    if device.type != "cuda":
        raise ValueError(f"backend {name!r} needs CUDA tensors; use backend='torch' (or 'auto') on {device}")
    if not available(name):
        pkg = "cut-cross-entropy" if name == "cce" else "liger-kernel>=0.8.2"
        raise ValueError(f"backend {name!r} is not installed: pip install '{pkg}', or use backend='torch'")
    return name


def fused_backend_loss(
    name: str,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    ignore_index: int,
) -> torch.Tensor | None:
    """Per-row float32 loss ``[N]`` (0 where ignored) from a CUDA kernel, or None to use torch."""
    chosen = pick(name, hidden.device, bias=bias is not None)
    if chosen == "torch":
        return None
    if chosen == "cce":
        from cut_cross_entropy import linear_cross_entropy

        # filter_eps=None: no gradient filtering, so the gradients are exact (the default "high"
        # skips small softmax entries in the backward).
        out = linear_cross_entropy(
            hidden, weight, labels, ignore_index=ignore_index, reduction="none", shift=False, filter_eps=None
        )
    else:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        out = liger_fused_linear_cross_entropy(
            hidden, weight, labels, bias=bias, ignore_index=ignore_index, reduction="none"
        )
    out = out.float()
    return torch.where(labels != ignore_index, out, torch.zeros_like(out))
