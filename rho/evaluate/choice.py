"""Multiple choice by log-likelihood of each option (as lm-evaluation-harness does).

The context is the few-shot prompt ending with the question; each option is scored as the
continuation ``target.format(solution=option)`` (by default ``" " + option``). ``acc`` takes
the option with the highest summed log-probability; ``acc_norm`` divides it by the option's
length in characters first (lm-eval's length normalisation). The prompt runs through the model
once per question and its key/value cache is shared by the options
(:func:`rho.evaluate.shared_context.shared_context_logliks`): the same numbers as scoring each pair
alone, up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rho.evaluate.prompts import build_prompt
from rho.evaluate.records import EvalRecord
from rho.evaluate.shared_context import shared_context_logliks
from rho.evaluate.tasks import TaskError, TaskSpec

__all__ = ["ChoiceResult", "score_choices"]


@dataclass(frozen=True)
class ChoiceResult:
    """Scores of one problem: per-option log-likelihoods and the two predictions."""

    record: EvalRecord
    prompt: str
    logprobs: tuple[float, ...]
    pred: int
    pred_norm: int

    @property
    def correct(self) -> bool:
        return self.pred == self.record.label

    @property
    def correct_norm(self) -> bool:
        return self.pred_norm == self.record.label


def _argmax(xs: Sequence[float]) -> int:
    return max(range(len(xs)), key=lambda i: (xs[i], -i))  # first index wins ties


def score_choices(
    model: Any,
    tokenizer: Any,
    spec: TaskSpec,
    shots: Sequence[EvalRecord],
    records: Sequence[EvalRecord],
    batch_size: int = 8,
    max_prompt_tokens: int | None = None,
    progress: bool = True,
    context_length: int | None = None,
) -> list[ChoiceResult]:
    """Score every option of every record; returns one :class:`ChoiceResult` per record.

    ``context_length``: the context the model was trained on (inputs are cut from the left to it).
    """
    bad = [r.id for r in records if r.choices is None or r.label is None]
    if bad:
        raise TaskError(
            f"task {spec.name!r}: records {bad[:5]} have no choices/label; multiple-choice tasks need both"
        )
    prompts = [build_prompt(spec, shots, r, tokenizer, max_prompt_tokens).text for r in records]
    groups = [
        (p, [spec.target.format(solution=c) for c in r.choices or ()]) for r, p in zip(records, prompts)
    ]
    per_record = shared_context_logliks(  # the prompt runs once per question, shared by its options
        model,
        tokenizer,
        groups,
        batch_size=batch_size,
        progress=progress,
        desc=f"{spec.name} choices",
        max_length=context_length,
    )
    results = []
    for r, p, lls in zip(records, prompts, per_record):
        lp = [ll.logprob for ll in lls]
        norm = [v / max(1, len(c)) for v, c in zip(lp, r.choices or ())]
        results.append(ChoiceResult(r, p, tuple(lp), _argmax(lp), _argmax(norm)))
    return results
