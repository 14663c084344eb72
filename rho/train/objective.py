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

``dp`` (no extra forward): each micro-step ranks the scores of that micro-batch on *every*
data-parallel rank (all-gathered; no second pass), and the loss is normalised by the optimizer
batch's selected count, known up front: the valid-token counts do not depend on the model, and
micro-step ``m`` keeps ``keep_count(n_valid_m, ratio)`` tokens.  It equals ``global`` when
``grad_accum == 1`` and differs only in how the step's tokens are split into ranking units
(``world_size`` micro-batches each) otherwise.

``carry`` (no extra forward): micro-step ``m`` keeps its tokens (all ranks) whose score reaches
the top-``ratio`` threshold of every score seen so far in the step (micro-steps ``0..m``), so later
micro-steps are ranked against a growing share of the optimizer batch.  The loss is normalised by
the same up-front count as ``dp`` (the expected number selected; the realised count differs by a
few tokens).  Neither ``dp`` nor ``carry`` supports two-score selections (``score_kind2``).

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

from rho.selection import keep_count, score, select_combined, softmax_weights, topk_mask, valid_mask
from rho.train.batches import Batch
from rho.train.config import TrainConfig
from rho.train.distributed import DistContext, all_gather_cat, all_reduce_sum

#: Scopes that select as the micro-steps come, without a no-grad scoring pass.
STREAMING_SCOPES = ("dp", "carry")

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
        self._seen: list[torch.Tensor] = []  # carry scope: the valid scores of earlier micro-steps

    @property
    def is_global(self) -> bool:
        """Whether weights are decided over the whole optimizer batch."""
        return self.objective.kind == "clm" or self.objective.scope == "global"

    @property
    def is_streaming(self) -> bool:
        """Whether each micro-step selects over all ranks as it comes (``dp`` / ``carry`` scopes)."""
        return self.objective.kind != "clm" and self.objective.scope in STREAMING_SCOPES

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
        if self.is_streaming:
            return self._streaming_weights(m, train_loss)
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

    def _streaming_denom(self, device: torch.device) -> float:
        """The optimizer batch's selected count over ``world_size``, from the valid counts alone."""
        counts = torch.tensor([float(v.sum()) for v in self.valid], dtype=torch.float64, device=device)
        counts = all_reduce_sum(counts, self.ctx)  # per micro-step, all ranks
        if self.objective.kind == "reweight":
            total = float(counts.sum())  # soft weights of a unit sum to its valid count
        else:
            total = float(sum(keep_count(int(c), self.objective.ratio) for c in counts.tolist()))
        return total / self.ctx.world_size if total > 0 else 1.0

    def _streaming_weights(self, m: int, train_loss: torch.Tensor) -> tuple[torch.Tensor, float]:
        obj = self.objective
        if obj.score_kind2 is not None:
            raise ValueError(
                f"selection_scope={obj.scope!r} does not support score_kind2; use global or micro"
            )
        if self._denom is None:
            self._denom = self._streaming_denom(train_loss.device)
        batch = self.batches[m]
        flat = obj.scores(batch, train_loss)[0].reshape(-1)
        gathered = all_gather_cat(flat, self.ctx)  # this micro-step of every rank, rank order
        ok = torch.isfinite(gathered)
        if obj.scope == "dp" or obj.kind == "reweight":
            w_all = obj.weights([gathered], ok)
        else:
            self._seen.append(gathered[ok])
            seen = torch.cat(self._seen)
            k = keep_count(seen.numel(), obj.ratio) if seen.numel() else 0
            if k == 0:
                w_all = torch.zeros_like(gathered)
            else:
                threshold = torch.topk(seen, k).values[-1]
                w_all = (ok & (gathered >= threshold)).float()
        n = flat.numel()
        mine = w_all[self.ctx.rank * n : (self.ctx.rank + 1) * n]
        return mine.view(batch.labels.shape), self._denom


def scope_agreement(
    scores: torch.Tensor, ratio: float, scopes: tuple[str, ...] = ("global", "dp", "carry")
) -> dict:
    """Jaccard agreement of each scope's selection with the exact global top-``ratio`` mask.

    ``scores`` is ``[n_micro, n_tokens]``: the excess scores of one optimizer step, one row per
    micro-step (all data-parallel ranks of that micro-step together; NaN = invalid).  Each scope
    runs through :class:`StepSelector` on one process, which is what it does over ranks.  Returns
    ``{scope: |S & G| / |S | G|}`` over the optimizer batch.
    """
    n_micro, n = scores.shape
    zeros = torch.zeros(1, n, dtype=torch.long)
    batches = [Batch(zeros, zeros, ref_loss=torch.zeros(1, n)) for _ in range(n_micro)]
    losses = [scores[m].view(1, n).float() for m in range(n_micro)]
    masks = {}
    for scope in scopes:
        sel = StepSelector(Objective("slm", ratio=ratio, scope=scope), batches, DistContext())
        if sel.needs_scoring_pass:
            sel.prepare(losses)
        masks[scope] = torch.cat([sel.weights(m, losses[m])[0].reshape(-1) > 0 for m in range(n_micro)])
    flat = scores.reshape(-1)
    exact = topk_mask(flat, ratio, torch.isfinite(flat))
    out = {}
    for scope, mask in masks.items():
        union = int((mask | exact).sum())
        out[scope] = int((mask & exact).sum()) / union if union else 1.0
    return out
