"""What each token contributes to a training step: CLM, SLM (hard top-k) or soft reweighting.

Every objective is a weighted token sum over the *optimizer batch*
(all micro-batches of all data-parallel ranks)::

    loss = sum_i w_i * l_i / N          N = sum_i w_i

- ``clm``: ``w_i = 1`` on every token with a label (eq. 2).
- ``slm``: ``w_i = 1`` on the selected tokens, 0 elsewhere (eq. 4); ``N`` is the number selected.
  Tokens are ranked by ``rho.selection.score(score_kind, ...)``; with ``score_kind2`` two
  selections are made (each at its own ratio) and intersected or united (Table 4).
- ``reweight``: ``w_i = n_valid * softmax(score_i / T)`` over valid tokens (soft SLM).

A token is *valid* (may be selected) when it has a label and finite values for every reference
score the objective reads (NaN marks block starts in score files).

Selection scope
---------------
``global`` (the paper's: its top-k runs over the 1M-token batch, i.e. the optimizer batch):
the scores of every micro-batch on every rank are all-gathered (rank order, micro order, which
is the single-process batch order), one top-k is taken over the concatenation, and each rank
keeps its slice.  ``N`` is the global count.  When the score needs the training loss
(``excess``) and ``grad_accum > 1``, the scores of later micro-batches are not known when the
first backward runs, so the loop makes a **no-grad scoring pass** over the step's micro-batches
first: one extra forward per micro-batch, i.e. about +1/3 of the step's compute (forward ~1/3
of forward+backward).  With ``grad_accum == 1`` (or RM-only scores) there is no extra cost.

``micro``: each micro-batch of each rank selects and normalises on its own
(``N_m`` = its own count), and the step's loss is the mean over micro-batches and ranks — the
usual gradient-accumulation average.  It equals ``global`` only when the batch is a single
micro-batch on a single rank.

Data-parallel normalisation: DDP/FSDP *average* gradients over the ``W`` ranks, so each rank's
micro-batch loss is ``sum_{i in rank, micro} w_i l_i / (N / W)`` (global scope) or
``sum w_i l_i / (N_m * grad_accum)`` (micro scope); after averaging, the gradient is exactly that
of the formula above.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rho.selection import score, select_combined, softmax_weights, topk_mask, valid_mask
from rho.train.batches import Batch
from rho.train.config import TrainConfig
from rho.train.distributed import DistContext, all_gather_cat, all_reduce_sum

#: Reference arrays (Batch field names) each score kind reads.
_REFS = {"excess": ("ref_loss",), "ref_loss": ("ref_loss",), "ref_entropy": ("ref_entropy",)}


@dataclass(frozen=True)
class Objective:
    """The token-weighting rule of a run (see the module docstring)."""

    kind: str = "clm"
    ratio: float = 1.0
    score_kind: str = "excess"
    score_kind2: str | None = None
    ratio2: float | None = None
    combine_op: str = "intersection"
    scope: str = "global"
    temperature: float = 1.0

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> Objective:
        """The objective a :class:`~rho.train.config.TrainConfig` describes."""
        return cls(
            kind=cfg.objective,
            ratio=cfg.ratio,
            score_kind=cfg.score_kind,
            score_kind2=cfg.score_kind2,
            ratio2=cfg.ratio2,
            combine_op=cfg.combine_op,
            scope=cfg.selection_scope,
            temperature=cfg.reweight_temperature,
        )

    @property
    def score_kinds(self) -> tuple[str, ...]:
        """Score kinds this objective ranks by (none for CLM)."""
        if self.kind == "clm":
            return ()
        return (self.score_kind,) if self.score_kind2 is None else (self.score_kind, self.score_kind2)

    @property
    def needs_train_loss(self) -> bool:
        """Whether the ranking reads the current model's loss (the excess score)."""
        return "excess" in self.score_kinds

    def needs_scoring_pass(self, grad_accum: int) -> bool:
        """Whether a no-grad forward over the step's micro-batches must precede the backward passes."""
        return self.kind != "clm" and self.scope == "global" and self.needs_train_loss and grad_accum > 1

    def valid(self, batch: Batch) -> torch.Tensor:
        """Tokens that may carry weight: labelled, with finite values of every reference used."""
        refs = []
        for kind in self.score_kinds:
            for name in _REFS[kind]:
                t = getattr(batch, name)
                if t is None:
                    raise ValueError(
                        f"score kind {kind!r} needs {name} in the batch: give the run reference scores"
                    )
                refs.append(t)
        return valid_mask(batch.labels, *refs)

    def scores(self, batch: Batch, train_loss: torch.Tensor | None) -> list[torch.Tensor]:
        """One float32 score tensor per score kind, NaN on invalid tokens (never selected)."""
        valid = self.valid(batch)
        out = []
        for kind in self.score_kinds:
            s = score(kind, train_loss=train_loss, ref_loss=batch.ref_loss, ref_entropy=batch.ref_entropy)
            out.append(torch.where(valid, s, torch.full_like(s, float("nan"))))
        return out

    def weights(self, scores: list[torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
        """Token weights for one selection unit (any shape) from its scores (NaN = invalid)."""
        if self.kind == "clm":
            return valid.float()
        if self.kind == "reweight":
            return softmax_weights(scores[0], torch.isfinite(scores[0]), self.temperature)
        if self.score_kind2 is None:
            return topk_mask(scores[0], self.ratio, torch.isfinite(scores[0])).float()
        assert self.ratio2 is not None
        mask, _ = select_combined(scores[0], self.ratio, scores[1], self.ratio2, self.combine_op)
        return mask.float()


class StepSelector:
    """Token weights and loss denominators for the micro-batches of one optimizer step on one rank.

    ``weights(m, train_loss)`` returns ``(w, denom)`` for micro-batch ``m``; the loop's loss for it
    is ``sum(w * token_loss) / denom``.  For a global scope that needs the training loss with
    ``grad_accum > 1``, call :meth:`prepare` first with the no-grad losses of all micro-batches.
    """

    def __init__(self, objective: Objective, batches: list[Batch], ctx: DistContext) -> None:
        self.objective = objective
        self.batches = batches
        self.ctx = ctx
        self.valid = [objective.valid(b) for b in batches]
        self._global: list[torch.Tensor] | None = None
        self._denom: float | None = None

    @property
    def is_global(self) -> bool:
        """Whether weights are decided over the whole optimizer batch."""
        return self.objective.kind == "clm" or self.objective.scope == "global"

    @property
    def needs_scoring_pass(self) -> bool:
        """Whether :meth:`prepare` must be fed no-grad train losses before the first backward."""
        return self.objective.needs_scoring_pass(len(self.batches))

    def prepare(self, train_losses: list[torch.Tensor] | None = None) -> None:
        """Decide the global weights of every micro-batch (gathering scores from every rank)."""
        obj, n_micro = self.objective, len(self.batches)
        if (
            obj.needs_train_loss
            and obj.kind != "clm"
            and (train_losses is None or len(train_losses) != n_micro)
        ):
            raise ValueError(
                "the excess score needs the train loss of every micro-batch before selecting globally"
            )
        if obj.kind == "clm":
            local = [v.float() for v in self.valid]
            total = float(all_reduce_sum(torch.stack([w.sum() for w in local]).sum(), self.ctx))
        else:
            losses = train_losses if train_losses is not None else [None] * n_micro
            per_kind = [obj.scores(b, tl) for b, tl in zip(self.batches, losses, strict=True)]
            flat = [torch.cat([s[k].reshape(-1) for s in per_kind]) for k in range(len(obj.score_kinds))]
            gathered = [all_gather_cat(f, self.ctx) for f in flat]  # rank order == single-process order
            w_all = obj.weights(gathered, torch.isfinite(gathered[0]))
            total = float(w_all.sum())
            n_local = flat[0].numel()
            mine = w_all[self.ctx.rank * n_local : (self.ctx.rank + 1) * n_local]
            local = list(torch.split(mine, [b.labels.numel() for b in self.batches]))
            local = [w.view(b.labels.shape) for w, b in zip(local, self.batches, strict=True)]
        self._global = local
        self._denom = total / self.ctx.world_size if total > 0 else 1.0

    def weights(self, m: int, train_loss: torch.Tensor) -> tuple[torch.Tensor, float]:
        """``(w, denom)`` of micro-batch ``m`` (``train_loss``: its detached per-token loss)."""
        if self.is_global:
            if self._global is None:
                needs_loss = self.objective.needs_train_loss and self.objective.kind != "clm"
                self.prepare([train_loss] if needs_loss else None)
            assert self._global is not None and self._denom is not None
            return self._global[m].to(train_loss.device), self._denom
        scores = self.objective.scores(self.batches[m], train_loss)
        w = self.objective.weights(scores, self.valid[m].to(train_loss.device))
        n = float(w.sum())
        return w, (n if n > 0 else 1.0) * len(self.batches)
