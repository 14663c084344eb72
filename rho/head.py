"""Per-token losses of a causal LM straight from its last hidden states (no logits tensor).

For any ``AutoModelForCausalLM`` whose output head is a plain ``nn.Linear`` (tied embeddings
included), :class:`HeadLoss` runs the model with a forward pre-hook on the head that captures its
input (the last hidden states) and hands the head an empty slice instead, so the model never
materialises its ``[tokens, vocab]`` logits; the loss is then :func:`rho.loss.linear_token_loss`
(training) or the scoring kernels of :mod:`rho.scoring` from the hidden states and the
head's weight.  On first use a probe checks, on one short row, that the model's logits really are
``head(hidden)`` (no soft-capping, scaling or other post-processing); if not, or if the head is not
a plain linear layer, it falls back to the logits path and logs why, once.

FSDP2 (``fully_shard`` on the decoder layers and the root, :func:`rho.train.distributed.wrap_model`)
keeps the root's parameters, the head's among them, unsharded from the forward until the backward,
so the head's weight read after the forward is the full tensor and its gradient is reduce-scattered
with the root's (tested against one process with 2 gloo ranks).  A head whose weight is still a
sharded ``DTensor`` after the forward (an FSDP unit of its own) falls back to the logits path.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from rho.loss import linear_token_loss, token_loss

log = logging.getLogger(__name__)

#: ``auto``: fused when the head allows it; ``keep``: fused, keeping the softmax for a backward
#: without recomputation (faster SLM steps, the logits path's memory); ``off``: always the logits.
MODES = ("auto", "keep", "off")


def linear_head(model: nn.Module) -> nn.Linear | None:
    """The model's output head when it is a plain ``nn.Linear`` (not a subclass), else None."""
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    get = getattr(inner, "get_output_embeddings", None)
    head = get() if callable(get) else None
    return head if type(head) is nn.Linear else None


@contextlib.contextmanager
def _capture(head: nn.Linear, skip_logits: bool) -> Iterator[dict[str, torch.Tensor]]:
    """Capture the head's input as ``box["hidden"]``; with ``skip_logits`` the head sees 0 positions."""
    box: dict[str, torch.Tensor] = {}

    def pre_hook(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        h = args[0]
        box["hidden"] = h
        if skip_logits:
            return (h[..., :0, :], *args[1:])
        return None

    handle = head.register_forward_pre_hook(pre_hook)
    try:
        yield box
    finally:
        handle.remove()


def _is_sharded(weight: torch.Tensor) -> bool:
    """Whether ``weight`` is a distributed ``DTensor`` (an FSDP2 parameter while resharded)."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch built without distributed support has no DTensor
        return False
    return isinstance(weight, DTensor)


class HeadLoss:
    """Per-token float32 loss ``[B, T]`` of a model on aligned labels, fused when the head allows it.

    ``mode="auto"`` uses the fused path when :func:`linear_head` finds a plain linear head and the
    one-time probe agrees (its weight unsharded after the forward, its logits ``head(hidden)``); ``"keep"`` does the same and passes
    ``keep_softmax=True`` (see :func:`~rho.loss.linear_token_loss`); ``"off"`` always uses the logits.
    ``backend`` (``auto``: rho's torch path; ``cce`` / ``liger``: a CUDA kernel, see
    :mod:`rho.linear_backends`) and ``uniform_grad`` (True when every labelled token will get the
    same weight, as in CLM: the fused backward then costs what the dense one does) are passed to
    :func:`~rho.loss.linear_token_loss`.  A named kernel that cannot run on the head's device, is not
    installed, or cannot do what ``mode`` asks (``keep``; cce with a biased head) raises
    ``ValueError`` here, before any step.
    """

    def __init__(
        self,
        model: nn.Module,
        mode: str = "auto",
        chunk_size: int | None = None,
        backend: str = "auto",
        uniform_grad: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"fused_loss must be one of {MODES}, got {mode!r}")
        self.chunk_size = chunk_size
        self.backend = backend
        self.uniform_grad = uniform_grad
        self.keep_softmax = mode == "keep"
        self.head = linear_head(model) if mode != "off" else None
        self._checked = False
        self.reason = "fused_loss=off" if mode == "off" else None
        if mode != "off" and self.head is None:
            self.reason = "the output head is not a plain nn.Linear"
        # the kernel that will run (raises here, before any step, when a named one cannot)
        self.kernel = None
        if self.head is not None:
            from rho.linear_backends import pick  # imported when used, as rho.loss does

            bias = self.head.bias is not None
            self.kernel = pick(backend, self.head.weight.device, bias=bias, keep_softmax=self.keep_softmax)

    @property
    def fused(self) -> bool:
        """Whether losses come from the hidden states (after the probe, if it has run)."""
        return self.head is not None

    def _probe(self, model: nn.Module, input_ids: torch.Tensor) -> None:
        self._checked = True
        if self.head is None:
            log.info("per-token loss from the logits: %s", self.reason)
            return
        head = self.head
        x = input_ids[:1, : min(16, input_ids.shape[-1])]
        devices = [x.device] if x.device.type == "cuda" else []
        with (
            torch.random.fork_rng(devices=devices),
            torch.no_grad(),
            _capture(head, skip_logits=False) as box,
        ):
            logits = model(input_ids=x).logits  # RNG forked: dropout here must not shift the run
        h = box.get("hidden")
        if _is_sharded(head.weight):
            self.head = None
            self.reason = "the head's weight is still sharded after the forward (an FSDP unit of its own)"
            log.warning("per-token loss from the logits: %s", self.reason)
            return
        ok = h is not None and h.shape[:-1] == logits.shape[:-1]
        if ok:
            want = nn.functional.linear(h, head.weight, head.bias).float()
            ok = bool(torch.allclose(logits.float(), want, rtol=1e-3, atol=1e-3))
        if not ok:
            self.head = None
            self.reason = "the model's logits are not head(hidden states) (post-processed logits)"
            log.warning("per-token loss from the logits: %s", self.reason)
        else:
            log.info(
                "per-token loss fused from the last hidden states (no logits tensor; backend %s)", self.kernel
            )

    def hidden(self, model: nn.Module, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor | None:
        """The last hidden states of ``model`` on ``input_ids`` (head skipped), or None to use logits."""
        if not self._checked:
            self._probe(model, input_ids)
        if self.head is None:
            return None
        with _capture(self.head, skip_logits=True) as box:
            model(input_ids=input_ids, **kwargs)
        if _is_sharded(self.head.weight):  # the probe saw it unsharded: the wrapping changed since
            raise RuntimeError(
                "the output head's weight is sharded after the forward, so the fused loss cannot read it; "
                "wrap the head in the root FSDP unit (rho.train.distributed.wrap_model) or set fused_loss=off"
            )
        return box["hidden"]

    def __call__(self, model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-token loss of ``model`` on ``input_ids`` (``labels`` aligned with positions)."""
        h = self.hidden(model, input_ids)
        if h is None:
            logits = model(input_ids=input_ids).logits
            return token_loss(logits, labels, chunk_size=self.chunk_size)
        assert self.head is not None
        return linear_token_loss(
            h,
            self.head.weight,
            labels,
            chunk_size=self.chunk_size,
            bias=self.head.bias,
            backend=self.backend,
            uniform_grad=self.uniform_grad,
            keep_softmax=self.keep_softmax,
        )
