"""What each token contributes to a training step: CLM, SLM (hard top-k) or soft reweighting.

Every objective is a weighted token sum over the *optimizer batch*
(all micro-batches of all data-parallel ranks)::

    loss = sum_i w_i * l_i / N          N = sum_i w_i

- ``clm``: ``w_i = 1`` on every token with a label (eq. 2).
- ``slm``: ``w_i = 1`` on the selected tokens, 0 elsewhere (eq. 4); ``N`` is the number selected.
  Tokens are ranked by ``rho.selection.score(selection.score, ...)``; with ``selection.score2``
  two selections are made (each at its own ratio) and intersected or united (``selection.op``,
  Table 4).  ``score: random`` ranks by seeded noise (:func:`rho.selection.random_scores` of the
  run's ``seed`` and the optimizer step, over the whole optimizer batch): the same count as top-k,
  chosen uniformly at random, with no reference scores.
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
few tokens).  Neither ``dp`` nor ``carry`` supports two-score selections (``score2``).

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

from rho.selection import (
    SCORE_INPUTS,
    STREAMING_SCOPES,
    SelectionConfig,
    keep_count,
    random_scores,
    score,
    select_combined,
    softmax_weights,
    topk_mask,
    valid_mask,
)
from rho.train.batches import Batch
from rho.train.config import TrainConfig
from rho.train.distributed import DistContext, all_gather_cat, all_reduce_sum

__all__ = ["STREAMING_SCOPES", "Objective", "StepSelector", "scope_agreement"]

#: Reference arrays (Batch field names) a score kind reads.
_REFS = ("ref_loss", "ref_entropy")


@dataclass(frozen=True)
class Objective:
    """The token-weighting rule of a run: ``objective`` (clm | slm | reweight) and its ``selection``."""

    objective: str = "clm"
    selection: SelectionConfig = SelectionConfig()

    def __post_init__(self) -> None:
        self.selection.check_objective(self.objective)

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> Objective:
        """The objective a :class:`~rho.train.config.TrainConfig` describes."""
        return cls(objective=cfg.objective, selection=cfg.selection)

    @property
    def score_kinds(self) -> tuple[str, ...]:
        """Score kinds this objective ranks by (none for CLM)."""
        return () if self.objective == "clm" else self.selection.scores

    @property
    def needs_train_loss(self) -> bool:
        """Whether the ranking reads the current model's loss (the excess score)."""
        return "train_loss" in self.selection.inputs(self.objective)

    @property
    def needs_noise(self) -> bool:
        """Whether the ranking reads seeded noise (the ``random`` score)."""
        return "noise" in self.selection.inputs(self.objective)

    def needs_scoring_pass(self, grad_accum: int) -> bool:
        """Whether a no-grad forward over the step's micro-batches must precede the backward passes."""
        return self.selection.scope == "global" and self.needs_train_loss and grad_accum > 1

    def valid(self, batch: Batch) -> torch.Tensor:
        """Tokens that may carry weight: labelled, with finite values of every reference used."""
        refs = []
        needed = self.selection.inputs(self.objective)
        for name in _REFS:
            if name in needed:
                t = getattr(batch, name)
                if t is None:
                    kind = next(k for k in self.score_kinds if name in SCORE_INPUTS[k])
                    raise ValueError(
                        f"score kind {kind!r} needs {name} in the batch: give the run reference scores"
                    )
                refs.append(t)
        return valid_mask(batch.labels, *refs)

    def scores(
        self, batch: Batch, train_loss: torch.Tensor | None, noise: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """One float32 score tensor per score kind, NaN on invalid tokens (never selected).

        ``noise``: the micro-batch's seeded values (:func:`rho.selection.random_scores`), read by
        the ``random`` score only.
        """
        valid = self.valid(batch)
        out = []
        for kind in self.score_kinds:
            s = score(
                kind,
                train_loss=train_loss,
                ref_loss=batch.ref_loss,
                ref_entropy=batch.ref_entropy,
                noise=None if noise is None else noise.to(valid.device).view(valid.shape),
            )
            out.append(torch.where(valid, s, torch.full_like(s, float("nan"))))
        return out

    def weights(self, scores: list[torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
        """Token weights for one selection unit (any shape) from its scores (NaN = invalid)."""
        sel = self.selection
        if self.objective == "clm":
            return valid.float()
        if self.objective == "reweight":
            return softmax_weights(scores[0], torch.isfinite(scores[0]), sel.temperature)
        if sel.score2 is None:
            return topk_mask(scores[0], sel.ratio, torch.isfinite(scores[0])).float()
        assert sel.ratio2 is not None
        mask, _ = select_combined(scores[0], sel.ratio, scores[1], sel.ratio2, sel.op)
        return mask.float()


class StepSelector:
    """Token weights and loss denominators for the micro-batches of one optimizer step on one rank.

    ``weights(m, train_loss)`` returns ``(w, denom)`` for micro-batch ``m``; the loop's loss for it
    is ``sum(w * token_loss) / denom``.  For a global scope that needs the training loss with
    ``grad_accum > 1``, call :meth:`prepare` first with the no-grad losses of all micro-batches.
    """

    def __init__(
        self, objective: Objective, batches: list[Batch], ctx: DistContext, *, step: int = 0, seed: int = 0
    ) -> None:
        self.objective = objective
        self.batches = batches
        self.ctx = ctx
        self.valid = [objective.valid(b) for b in batches]
        self.noise = self._noise(step, seed) if objective.needs_noise else [None] * len(batches)
        self._global: list[torch.Tensor] | None = None
        self._denom: float | None = None
        self._seen: list[torch.Tensor] = []  # carry scope: the valid scores of earlier micro-steps

    def _noise(self, step: int, seed: int) -> list[torch.Tensor | None]:
        """Each micro-batch's slice of the optimizer batch's seeded noise (``random`` score).

        The optimizer batch is ``world_size`` ranks x these micro-batches, in rank then micro order
        (rho.train.batches), so the values depend on a token's place in it, not on the layout.
        """
        sizes = [b.labels.numel() for b in self.batches]
        per_rank = sum(sizes)
        noise = random_scores(seed, step, per_rank * self.ctx.world_size)
        mine = noise[self.ctx.rank * per_rank : (self.ctx.rank + 1) * per_rank]
        return [n.view(b.labels.shape) for n, b in zip(torch.split(mine, sizes), self.batches, strict=True)]

    @property
    def is_global(self) -> bool:
        """Whether weights are decided over the whole optimizer batch."""
        return self.objective.objective == "clm" or self.objective.selection.scope == "global"

    @property
    def is_streaming(self) -> bool:
        """Whether each micro-step selects over all ranks as it comes (``dp`` / ``carry`` scopes)."""
        return self.objective.objective != "clm" and self.objective.selection.scope in STREAMING_SCOPES

    @property
    def needs_scoring_pass(self) -> bool:
        """Whether :meth:`prepare` must be fed no-grad train losses before the first backward."""
        return self.objective.needs_scoring_pass(len(self.batches))

    def prepare(self, train_losses: list[torch.Tensor] | None = None) -> None:
        """Decide the global weights of every micro-batch (gathering scores from every rank)."""
        obj, n_micro = self.objective, len(self.batches)
        if obj.needs_train_loss and (train_losses is None or len(train_losses) != n_micro):
            raise ValueError(
                "the excess score needs the train loss of every micro-batch before selecting globally"
            )
        if obj.objective == "clm":
            local = [v.float() for v in self.valid]
            total = float(all_reduce_sum(torch.stack([w.sum() for w in local]).sum(), self.ctx))
        else:
            losses = train_losses if train_losses is not None else [None] * n_micro
            per_kind = [
                obj.scores(b, tl, nz) for b, tl, nz in zip(self.batches, losses, self.noise, strict=True)
            ]
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
                self.prepare([train_loss] if self.objective.needs_train_loss else None)
            assert self._global is not None and self._denom is not None
            return self._global[m].to(train_loss.device), self._denom
        scores = self.objective.scores(self.batches[m], train_loss, self.noise[m])
        w = self.objective.weights(scores, self.valid[m].to(train_loss.device))
        n = float(w.sum())
        return w, (n if n > 0 else 1.0) * len(self.batches)

    def _streaming_denom(self, device: torch.device) -> float:
        """The optimizer batch's selected count over ``world_size``, from the valid counts alone."""
        counts = torch.tensor([float(v.sum()) for v in self.valid], dtype=torch.float64, device=device)
        counts = all_reduce_sum(counts, self.ctx)  # per micro-step, all ranks
        if self.objective.objective == "reweight":
            total = float(counts.sum())  # soft weights of a unit sum to its valid count
        else:
            ratio = self.objective.selection.ratio
            total = float(sum(keep_count(int(c), ratio) for c in counts.tolist()))
        return total / self.ctx.world_size if total > 0 else 1.0

    def _streaming_weights(self, m: int, train_loss: torch.Tensor) -> tuple[torch.Tensor, float]:
        obj, sel = self.objective, self.objective.selection
        if sel.score2 is not None:
            raise ValueError(f"scope={sel.scope!r} does not support score2; use global or micro")
        if self._denom is None:
            self._denom = self._streaming_denom(train_loss.device)
        batch = self.batches[m]
        flat = obj.scores(batch, train_loss, self.noise[m])[0].reshape(-1)
        gathered = all_gather_cat(flat, self.ctx)  # this micro-step of every rank, rank order
        ok = torch.isfinite(gathered)
        if sel.scope == "dp" or obj.objective == "reweight":
            w_all = obj.weights([gathered], ok)
        else:
            self._seen.append(gathered[ok])
            seen = torch.cat(self._seen)
            k = keep_count(seen.numel(), sel.ratio) if seen.numel() else 0
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
        objective = Objective("slm", SelectionConfig(ratio=ratio, scope=scope))
        selector = StepSelector(objective, batches, DistContext())
        if selector.needs_scoring_pass:
            selector.prepare(losses)
        masks[scope] = torch.cat([selector.weights(m, losses[m])[0].reshape(-1) > 0 for m in range(n_micro)])
    flat = scores.reshape(-1)
    exact = topk_mask(flat, ratio, torch.isfinite(flat))
    out = {}
    for scope, mask in masks.items():
        union = int((mask | exact).sum())
        out[scope] = int((mask & exact).sum()) / union if union else 1.0
    return out
