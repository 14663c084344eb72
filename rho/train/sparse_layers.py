"""``sparse_backward: layers``: the Collider approximation of SLM's backward (off by default).

SLM's loss has zero upstream gradient at the unselected tokens, and the fused head
(:func:`rho.loss.linear_token_loss`) already skips them exactly.  Inside the transformer layers
those tokens still carry gradient (later selected tokens attend to them), so skipping them there is
an **approximation**: every ``nn.Linear`` of the model except the output head computes

* its weight (and bias) gradient over the selected rows only: ``dW = dY[sel]^T X[sel]``
  instead of ``dY^T X`` (the unselected tokens' contributions are dropped), fewer FLOPs in
  proportion to the selection ratio;
* its input gradient densely and exactly (``dX = dY W``), so gradient still flows through
  attention to the selected tokens from every position.

Use: :meth:`SparseLayers.install` once on the model (it swaps the forward of each wrapped linear
layer), then per micro-step run the backward inside :meth:`SparseLayers.rows` with the
micro-batch's ``[B, T]`` selection mask (aligned with the positions, like the per-token loss).  A
backward outside :meth:`~SparseLayers.rows` (or a forward without gradients: scoring passes,
evaluation) is the ordinary dense one.  The config field is ``sparse_backward`` (``exact``, the
default, installs nothing; ``layers`` installs this), see :mod:`rho.train.config`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MODES", "SparseLayers", "SparseLinearFunction"]

#: Values of the ``sparse_backward`` train-config field.
MODES = ("exact", "layers")


class _RowState:
    """The flat indices of the selected rows for the backward now running (None: dense).

    ``gathered`` holds the last layer input's selected rows: q/k/v (and gate/up) read the same
    input, and their backwards run one after another, so it is gathered once for them.
    """

    def __init__(self) -> None:
        self.index: torch.Tensor | None = None
        self.n_rows: int = 0
        # (key, source, rows): holding the source keeps its memory from being reused under the key
        self.gathered: tuple[tuple[Any, ...], torch.Tensor, torch.Tensor] | None = None

    def rows_of(self, x2: torch.Tensor) -> torch.Tensor:
        """``x2[index]`` (``x2``: a saved layer input, flattened to ``[rows, features]``)."""
        assert self.index is not None
        key = (x2.data_ptr(), x2.shape, x2.stride(), x2.dtype, x2.device)
        if self.gathered is not None and self.gathered[0] == key:
            return self.gathered[2]
        rows = x2.index_select(0, self.index)
        self.gathered = (key, x2, rows)
        return rows


class SparseLinearFunction(torch.autograd.Function):
    """``F.linear`` whose weight/bias gradients sum over the rows in ``state.index`` only.

    Under autocast the inputs are cast as autocast casts a linear layer's (so values and input
    gradients equal the plain layer's), and the weight gradient comes back in the weight's dtype.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, state: _RowState
    ) -> torch.Tensor:
        dev = x.device.type
        xc, wc, bc = x, weight, bias
        if torch.is_autocast_enabled(dev):
            dt = torch.get_autocast_dtype(dev)
            xc, wc = x.to(dt), weight.to(dt)
            bc = bias.to(dt) if bias is not None else None
        with torch.autocast(dev, enabled=False):
            out = F.linear(xc, wc, bc)
        ctx.save_for_backward(xc, wc)
        ctx.state = state
        ctx.has_bias = bias is not None
        ctx.dtypes = (x.dtype, weight.dtype, bias.dtype if bias is not None else None)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        xc, wc = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        g = grad_out.to(wc.dtype)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (g @ wc).to(x_dtype)  # dense and exact: every token passes gradient on
        need_w, need_b = ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]
        if need_w or need_b:
            g2 = g.reshape(-1, g.shape[-1])
            x2 = xc.reshape(-1, xc.shape[-1])
            index = ctx.state.index
            if index is not None:
                if g2.shape[0] != ctx.state.n_rows:
                    raise RuntimeError(
                        f"sparse_backward=layers: a linear layer saw {g2.shape[0]} rows but the selection "
                        f"mask has {ctx.state.n_rows} (it must be the micro-batch's [B, T] mask); this "
                        "model's layers do not map one row per token: use sparse_backward=exact"
                    )
                if index.numel() < g2.shape[0]:  # all rows selected: the dense product as it is
                    g2, x2 = g2.index_select(0, index), ctx.state.rows_of(x2)
            if need_w:
                grad_w = (g2.t() @ x2).to(w_dtype)
            if need_b:
                grad_b = g2.sum(0).to(b_dtype)
        return grad_x, grad_w, grad_b, None


class SparseLayers:
    """The wrapped linear layers of one model and the selection mask of the backward in progress."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        self.layers = layers
        self.state = _RowState()

    @classmethod
    def install(cls, model: nn.Module) -> SparseLayers:
        """Wrap every plain ``nn.Linear`` of ``model`` except its output head (once per model).

        The head (``get_output_embeddings``) and the embeddings are left alone: the fused head loss
        already has an exact sparse backward.  Raises ``ValueError`` if the model has no such layer
        or was already installed on.
        """
        inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        get = getattr(inner, "get_output_embeddings", None)
        head = get() if callable(get) else None
        layers = [m for m in inner.modules() if type(m) is nn.Linear and m is not head]
        if any(getattr(m, "_rho_sparse_layers", None) is not None for m in layers):
            raise ValueError("sparse_backward=layers is already installed on this model")
        if not layers:
            raise ValueError(
                "sparse_backward=layers found no nn.Linear layer besides the head in this model; "
                "use sparse_backward=exact"
            )
        self = cls(layers)
        for m in layers:
            m._rho_sparse_layers = self  # type: ignore[assignment]
            m.forward = _sparse_forward(m, self.state)  # type: ignore[method-assign]
        return self

    def uninstall(self) -> None:
        """Restore the layers' own forward."""
        for m in self.layers:
            m.__dict__.pop("forward", None)
            m._rho_sparse_layers = None  # type: ignore[assignment]

    @contextlib.contextmanager
    def rows(self, mask: torch.Tensor) -> Iterator[None]:
        """Within this context, backward passes sum weight gradients over ``mask``'s True rows only.

        ``mask`` is the micro-batch's ``[B, T]`` selection (bool, or weights: nonzero = selected),
        aligned with the positions the layers see.
        """
        flat = mask.reshape(-1)
        flat = flat if flat.dtype == torch.bool else flat != 0
        self.state.index = flat.nonzero().squeeze(1)
        self.state.n_rows = flat.numel()
        try:
            yield
        finally:
            self.state.index = None
            self.state.n_rows = 0
            self.state.gathered = None


def _sparse_forward(layer: nn.Linear, state: _RowState) -> Any:
    def forward(x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return F.linear(x, layer.weight, layer.bias)
        return SparseLinearFunction.apply(x, layer.weight, layer.bias, state)

    return forward
