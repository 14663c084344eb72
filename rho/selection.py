"""Token scores and batch-level top-k token selection (Rho-1 eq. 5, Table 4).

A *score* ranks tokens: the higher the score, the more a token deserves training.  The paper's
default score is the excess loss ``L_theta - L_RM`` (eq. 3); Appendix H adds two scores that use
only the reference model (RM): a low RM loss or a low RM entropy ranks high.

Selection is done over the **whole batch** (every valid token of every sequence competes with
every other, as in eq. 5), not per sequence.  The number of tokens kept is fixed by
:func:`keep_count`::

    k = floor(ratio * n_valid + 0.5)      # round half up (NOT Python's banker's round())
    k = max(k, 1) if n_valid > 0          # a non-empty batch always keeps a token

Ties are broken by flat (row-major) position, earlier first, via a stable descending sort, so
selecting over a concatenation of batches is reproducible and a data-parallel global selection
(:func:`select_global`) equals one process selecting on the concatenated batch.

A run's selection knobs live in one frozen :class:`SelectionConfig` whose field names are the
keys of ``params.yaml`` (``ratio``, ``score``, ``score2``, ``ratio2``, ``op``, ``scope``,
``temperature``); it is validated once, here, and read by the study config, the trainer and the
CLI alike.  ``score: random`` is the control of the paper's question "is it the scores, or just
fewer tokens?": it keeps exactly the count top-k would keep, chosen uniformly at random
(:func:`random_scores`), and needs no reference model.

Every function here works on detached tensors: selection never carries gradient.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

ScoreKind = Literal["excess", "ref_loss", "ref_entropy", "random"]
#: Every score kind (the one list: params.yaml's schema, the trainer and :func:`score` read it).
SCORE_KINDS: tuple[str, ...] = ("excess", "ref_loss", "ref_entropy", "random")
CombineOp = Literal["intersection", "union"]
#: How two selections combine (Table 4).
COMBINE_OPS: tuple[str, ...] = ("intersection", "union")
#: Over which tokens one top-k ranks (rho.train.objective, README "Selection scope").
SCOPES: tuple[str, ...] = ("global", "micro", "dp", "carry")
#: Scopes that select as the micro-steps come (one score only).
STREAMING_SCOPES: tuple[str, ...] = ("dp", "carry")
#: Inputs each score kind reads: the training model's loss, reference arrays, or seeded noise.
SCORE_INPUTS: dict[str, tuple[str, ...]] = {
    "excess": ("train_loss", "ref_loss"),
    "ref_loss": ("ref_loss",),
    "ref_entropy": ("ref_entropy",),
    "random": ("noise",),
}
#: The last word of the seed of :func:`random_scores` (data order uses ``[seed, epoch]``: the two
#: streams never coincide, since NumPy pads ``[seed, epoch]`` with zeros).
RANDOM_STREAM = 0x52414E44


class SelectionError(ValueError):
    """Bad input to a score or selection function (wrong ratio, kind, shape or missing input)."""


@dataclass(frozen=True)
class SelectionConfig:
    """Which tokens an SLM run trains on: the selection knobs, named as in ``params.yaml``.

    ``ratio``: fraction kept by the top-k of ``score`` (one of :data:`SCORE_KINDS`).
    ``score2`` / ``ratio2`` / ``op``: a second selection, intersected or united (Table 4).
    ``scope``: over which tokens one top-k ranks (:data:`SCOPES`).
    ``temperature``: of the soft weights of ``objective: reweight``.
    Built validated (:meth:`validate`, the one check of these knobs); frozen.
    """

    ratio: float = 0.6
    score: str = "excess"
    score2: str | None = None
    ratio2: float | None = None
    op: str = "intersection"
    scope: str = "global"
    temperature: float = 1.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every knob (:func:`check_knob`) and how they combine; raise :class:`SelectionError`."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None or f.name not in ("score2", "ratio2"):
                check_knob(f.name, value)
        if self.score2 is not None:
            if self.ratio2 is None:
                raise SelectionError(
                    "score2 is set but ratio2 is not: give the second score's ratio in (0, 1]"
                )
            if self.scope in STREAMING_SCOPES:
                raise SelectionError(f"scope={self.scope} ranks one score; with score2 use global or micro")
        elif self.ratio2 is not None:
            raise SelectionError("ratio2 is set but score2 is not: name the second score (e.g. ref_entropy)")

    def check_objective(self, objective: str) -> None:
        """Check the knobs fit a run's ``objective`` (``clm`` ignores them all)."""
        if objective == "clm":
            return
        if self.score2 is not None and objective != "slm":
            raise SelectionError("score2 (combined selection, Table 4) only applies to objective=slm")
        if "random" in self.scores and objective != "slm":
            raise SelectionError("score random (a random top-k) only applies to objective=slm")

    @property
    def scores(self) -> tuple[str, ...]:
        """The score kinds ranked by: ``(score,)`` or ``(score, score2)``."""
        return (self.score,) if self.score2 is None else (self.score, self.score2)

    def inputs(self, objective: str = "slm") -> frozenset[str]:
        """What ranking reads under ``objective``: ``train_loss``, ``ref_loss``, ``ref_entropy``, ``noise``."""
        if objective == "clm":
            return frozenset()
        return frozenset(x for kind in self.scores for x in SCORE_INPUTS[kind])

    def needs_reference(self, objective: str = "slm") -> bool:
        """Whether the run needs reference scores (a ``scorer``); ``random`` alone does not."""
        return bool(self.inputs(objective) & {"ref_loss", "ref_entropy"})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the knobs."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any] | SelectionConfig | None = None, **changes: Any
    ) -> SelectionConfig:
        """Build from a mapping of knobs (+ ``changes``); unknown keys raise :class:`SelectionError`."""
        if isinstance(d, SelectionConfig):
            d = d.to_dict()
        if d is not None and not isinstance(d, Mapping):
            raise SelectionError(f"a selection must be a mapping of knob -> value, got {type(d).__name__}")
        merged = {**(d or {}), **changes}
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(merged) - set(names))
        if unknown:
            raise SelectionError(f"unknown selection knob(s) {', '.join(unknown)}; valid: {', '.join(names)}")
        return cls(**merged)


def check_knob(name: str, value: Any) -> Any:
    """The one check of a selection knob's value (``params.yaml``, ``TrainConfig`` and the CLI use it).

    ``ratio``/``ratio2`` in (0, 1]; ``score``/``score2`` in :data:`SCORE_KINDS`; ``op`` in
    :data:`COMBINE_OPS`; ``scope`` in :data:`SCOPES`; ``temperature`` positive.  Returns ``value``;
    raises :class:`SelectionError` naming the knob and what it accepts.
    """
    if name in ("ratio", "ratio2"):
        check_ratio(value, name)
    elif name in ("score", "score2"):
        _choice(name, value, SCORE_KINDS)
    elif name == "op":
        _choice(name, value, COMBINE_OPS)
    elif name == "scope":
        _choice(name, value, SCOPES)
    elif name == "temperature":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise SelectionError(f"temperature must be a positive finite number, got {value!r}")
    else:
        names = [f.name for f in dataclasses.fields(SelectionConfig)]
        raise SelectionError(f"unknown selection knob {name!r}; valid: {', '.join(names)}")
    return value


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SelectionError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def random_scores(seed: int, step: int, n: int) -> torch.Tensor:
    """Seeded random scores of the ``n`` tokens of optimizer step ``step`` (float32, CPU).

    A random permutation of ``0..n-1`` drawn from ``numpy.random.default_rng([seed, step,
    RANDOM_STREAM])``: the top-k of any subset of it is a uniformly random k-subset, the same on
    every machine, and a function of the token's position in the optimizer batch only (so every
    scope and data-parallel layout sees the values one process would).  Exact as float32 up to
    ``n = 2**24`` tokens per step (beyond, ties are broken by position).
    """
    if seed < 0 or step < 0 or n < 0:
        raise SelectionError(f"random_scores needs seed, step and n >= 0, got {seed}, {step}, {n}")
    perm = np.random.default_rng([int(seed), int(step), RANDOM_STREAM]).permutation(int(n))
    return torch.from_numpy(perm.astype(np.float32))


def check_ratio(ratio: float, name: str = "ratio") -> float:
    """Return ``ratio`` as a float after checking it is a number in (0, 1] (not a bool or a string)."""
    try:
        r = math.nan if isinstance(ratio, bool | str | bytes) else float(ratio)
    except (TypeError, ValueError):
        r = math.nan
    if not (0.0 < r <= 1.0) or math.isnan(r):
        raise SelectionError(
            f"{name} must be in (0, 1] (a fraction of tokens to keep, e.g. 0.6 for 60%), got {ratio!r}"
        )
    return r


def keep_count(n_valid: int, ratio: float) -> int:
    """Number of tokens kept out of ``n_valid``: ``floor(ratio * n_valid + 0.5)``, at least 1.

    Rounds half up (``0.5 * 5 = 2.5 -> 3``), unlike Python's ``round`` (banker's rounding, which
    would give 2).  Returns 0 only when ``n_valid == 0``; never more than ``n_valid``.
    """
    r = check_ratio(ratio)
    if n_valid < 0:
        raise SelectionError(f"n_valid must be >= 0, got {n_valid}")
    if n_valid == 0:
        return 0
    k = math.floor(r * n_valid + 0.5)
    return min(n_valid, max(1, k))


def valid_mask(
    labels: torch.Tensor | None = None,
    *scores: torch.Tensor | None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Tokens that may be selected: ``labels != ignore_index`` and every given score finite.

    At least one of ``labels`` / ``scores`` must be given; all must have the same shape.
    """
    tensors = [t for t in (labels, *scores) if t is not None]
    if not tensors:
        raise SelectionError("valid_mask needs labels or at least one score tensor")
    shape = tensors[0].shape
    for t in tensors:
        if t.shape != shape:
            raise SelectionError(f"shape mismatch in valid_mask: {tuple(t.shape)} vs {tuple(shape)}")
    valid = torch.ones(shape, dtype=torch.bool, device=tensors[0].device)
    if labels is not None:
        valid &= labels != ignore_index
    for s in scores:
        if s is not None:
            valid &= torch.isfinite(s.detach())
    return valid


def score(
    kind: str = "excess",
    train_loss: torch.Tensor | None = None,
    ref_loss: torch.Tensor | None = None,
    ref_entropy: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token selection score (float32, detached); higher means more worth training.

    ``excess``: ``train_loss - ref_loss`` (eq. 3, the paper's default).
    ``ref_loss``: ``-ref_loss`` (a token the RM predicts well ranks high, Appendix H).
    ``ref_entropy``: ``-ref_entropy`` (a token the RM is certain about ranks high, Appendix H eq. 8).
    ``random``: ``noise`` itself (seeded values from :func:`random_scores`; the random control).
    NaN inputs give NaN scores, which :func:`topk_mask` treats as invalid.
    """
    if kind not in SCORE_KINDS:
        raise SelectionError(f"unknown score kind {kind!r}; choose one of {', '.join(SCORE_KINDS)}")
    needs = SCORE_INPUTS[kind]
    given = {"train_loss": train_loss, "ref_loss": ref_loss, "ref_entropy": ref_entropy, "noise": noise}
    missing = [n for n in needs if given[n] is None]
    if missing:
        hint = (
            "(rho.selection.random_scores gives seeded noise)"
            if kind == "random"
            else "(run rho.scoring.score_corpus to get reference losses/entropies)"
        )
        raise SelectionError(
            f"score kind {kind!r} needs {' and '.join(needs)}; missing {', '.join(missing)} {hint}"
        )
    if kind == "random":
        assert noise is not None
        return noise.detach().float()
    if kind == "excess":
        assert train_loss is not None and ref_loss is not None
        if train_loss.shape != ref_loss.shape:
            raise SelectionError(
                f"train_loss {tuple(train_loss.shape)} and ref_loss {tuple(ref_loss.shape)} differ in shape"
            )
        return train_loss.detach().float() - ref_loss.detach().to(train_loss.device).float()
    if kind == "ref_loss":
        assert ref_loss is not None
        return -ref_loss.detach().float()
    assert ref_entropy is not None
    return -ref_entropy.detach().float()


def topk_mask(scores: torch.Tensor, ratio: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Keep the ``keep_count(n_valid, ratio)`` highest-scoring valid tokens of the whole tensor.

    A token is valid when ``valid`` is True there (default: everywhere) and its score is finite;
    invalid tokens are never kept.  Ties are broken by flat position (earlier wins).  Returns a
    bool tensor shaped like ``scores``.
    """
    r = check_ratio(ratio)
    s = scores.detach()
    if valid is None:
        valid = torch.ones_like(s, dtype=torch.bool)
    elif valid.shape != s.shape:
        raise SelectionError(f"valid mask {tuple(valid.shape)} does not match scores {tuple(s.shape)}")
    flat = s.reshape(-1).float()
    ok = valid.reshape(-1).to(device=flat.device, dtype=torch.bool) & torch.isfinite(flat)
    n_valid = int(ok.sum().item())
    k = keep_count(n_valid, r)
    mask = torch.zeros_like(ok)
    if k == 0:
        return mask.view(s.shape)
    if k == n_valid:
        return ok.view(s.shape)
    ranked = torch.where(ok, flat, torch.full_like(flat, -math.inf))
    order = torch.sort(ranked, descending=True, stable=True).indices
    mask[order[:k]] = True
    return mask.view(s.shape)


def select_global(
    parts: Sequence[torch.Tensor], ratio: float, valids: Sequence[torch.Tensor | None] | None = None
) -> list[torch.Tensor]:
    """Select over several score tensors as one batch (their flattened concatenation, in order).

    This is what data-parallel ranks or gradient-accumulation micro-batches do to make one global
    selection: gather every part's scores, select once, and keep each part's slice.  The result
    equals :func:`topk_mask` on the concatenation, position for position.
    """
    if not parts:
        raise SelectionError("select_global needs at least one part")
    if valids is not None and len(valids) != len(parts):
        raise SelectionError(f"{len(valids)} valid masks for {len(parts)} score parts")
    flats, oks = [], []
    for i, p in enumerate(parts):
        v = None if valids is None else valids[i]
        if v is not None and v.shape != p.shape:
            raise SelectionError(
                f"part {i}: valid mask {tuple(v.shape)} does not match scores {tuple(p.shape)}"
            )
        flats.append(p.detach().reshape(-1))
        oks.append(torch.ones(p.numel(), dtype=torch.bool, device=p.device) if v is None else v.reshape(-1))
    mask = topk_mask(torch.cat(flats), ratio, torch.cat(oks))
    out, start = [], 0
    for p in parts:
        out.append(mask[start : start + p.numel()].view(p.shape))
        start += p.numel()
    return out


def effective_ratio(mask: torch.Tensor, valid: torch.Tensor | None = None) -> float:
    """Fraction of valid tokens that ``mask`` keeps (0.0 when there is no valid token)."""
    if valid is None:
        valid = torch.ones_like(mask, dtype=torch.bool)
    n_valid = int(valid.sum().item())
    return float((mask & valid).sum().item()) / n_valid if n_valid else 0.0


def combine_masks(
    mask_a: torch.Tensor, mask_b: torch.Tensor, op: str = "intersection", valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, float]:
    """Intersection or union of two selections (Table 4); returns ``(mask, effective_ratio)``.

    ``effective_ratio`` is the fraction of valid tokens the combined mask keeps (e.g. 70% n 70%
    keeps 60% in the paper).
    """
    if mask_a.shape != mask_b.shape:
        raise SelectionError(
            f"cannot combine masks of shapes {tuple(mask_a.shape)} and {tuple(mask_b.shape)}"
        )
    if op == "intersection":
        mask = mask_a & mask_b
    elif op == "union":
        mask = mask_a | mask_b
    else:
        raise SelectionError(f"unknown combination {op!r}; use 'intersection' or 'union'")
    if valid is not None:
        if valid.shape != mask.shape:
            raise SelectionError(f"valid mask {tuple(valid.shape)} does not match masks {tuple(mask.shape)}")
        mask = mask & valid
    return mask, effective_ratio(mask, valid)


def select_combined(
    scores_a: torch.Tensor,
    ratio_a: float,
    scores_b: torch.Tensor,
    ratio_b: float,
    op: str = "intersection",
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """Select with two score functions, each at its own ratio, and combine (Table 4).

    A token must be valid for both scores (finite in both) to be kept.  Returns
    ``(mask, effective_ratio)`` with the ratio taken over tokens valid for both.
    """
    if op not in ("intersection", "union"):
        raise SelectionError(f"unknown combination {op!r}; use 'intersection' or 'union'")
    if scores_a.shape != scores_b.shape:
        raise SelectionError(f"score shapes differ: {tuple(scores_a.shape)} vs {tuple(scores_b.shape)}")
    both = valid_mask(None, scores_a, scores_b)
    if valid is not None:
        if valid.shape != both.shape:
            raise SelectionError(f"valid mask {tuple(valid.shape)} does not match scores {tuple(both.shape)}")
        both &= valid
    mask_a = topk_mask(scores_a, ratio_a, both)
    mask_b = topk_mask(scores_b, ratio_b, both)
    return combine_masks(mask_a, mask_b, op, both)


def softmax_weights(scores: torch.Tensor, valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft token weights ``n_valid * softmax(scores / T)`` over valid tokens (0 elsewhere), detached.

    The weights of valid tokens sum to ``n_valid``, so ``sum(w * l) / n_valid`` is a weighted mean
    that equals the plain mean when ``T -> inf``.  Used by :func:`rho.loss.reweighted_loss`.
    """
    if not (isinstance(temperature, int | float) and temperature > 0 and math.isfinite(temperature)):
        raise SelectionError(f"temperature must be a positive finite number, got {temperature!r}")
    if valid.shape != scores.shape:
        raise SelectionError(f"valid mask {tuple(valid.shape)} does not match scores {tuple(scores.shape)}")
    s = scores.detach().float()
    ok = valid & torch.isfinite(s)
    n_valid = int(ok.sum().item())
    if n_valid == 0:
        return torch.zeros_like(s)
    logits = torch.where(ok, s / float(temperature), torch.full_like(s, -math.inf))
    w = torch.softmax(logits.reshape(-1), dim=0).view(s.shape) * n_valid
    return torch.where(ok, w, torch.zeros_like(w))
