"""Few-shot prompt construction, with a cap on prompt length.

A prompt is ``shot_1 + sep + ... + shot_k + sep + question``, where a shot is the task template
filled with the exemplar's question followed by its target (the worked solution) and the
question is the template alone, so the model continues with its own solution.

Length cap: if a tokenizer and ``max_prompt_tokens`` are given and the prompt is too long,
exemplars are dropped from the front (the first shots go first, the ones nearest the question
are kept) until it fits; if even the zero-shot prompt is too long, its tokens are cut from the
left. :class:`Prompt` records how many shots were used and whether text was cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rho.evaluate.records import LETTERS, EvalRecord
from rho.evaluate.tasks import TaskSpec

__all__ = ["Prompt", "build_prompt", "format_choices", "format_question", "format_shot"]


@dataclass(frozen=True)
class Prompt:
    """A built prompt and how it was shortened (``n_shots`` used, ``truncated`` from the left)."""

    text: str
    n_shots: int
    truncated: bool = False


def format_choices(choices: Sequence[str] | None) -> str:
    """``["3", "4"]`` -> ``"(A) 3 (B) 4"`` (empty for non-choice records)."""
    if not choices:
        return ""
    return " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))


def format_question(spec: TaskSpec, rec: EvalRecord) -> str:
    """The task template filled with one record's question (and lettered choices)."""
    return spec.template.format(question=rec.question, choices=format_choices(rec.choices))


def format_shot(spec: TaskSpec, rec: EvalRecord) -> str:
    """One complete exemplar: the question followed by the target (its worked solution).

    For likelihood-scored multiple choice the target is the right option's text.
    """
    if spec.kind == "multiple_choice" and rec.choices is not None and rec.label is not None:
        solution = rec.choices[rec.label]
    else:
        solution = rec.solution or f"The answer is {rec.answer}."
    return format_question(spec, rec) + spec.target.format(solution=solution)


def build_prompt(
    spec: TaskSpec,
    shots: Sequence[EvalRecord],
    rec: EvalRecord,
    tokenizer: Any | None = None,
    max_prompt_tokens: int | None = None,
) -> Prompt:
    """Build the few-shot prompt for ``rec`` using the first ``spec.n_shots`` exemplars.

    Exemplars with the same question as ``rec`` are skipped (no answer leakage). With a
    ``tokenizer`` and ``max_prompt_tokens`` the prompt is shortened as described in the module
    docstring.
    """
    chosen = [s for s in shots if s.question != rec.question][: spec.n_shots]
    blocks = [format_shot(spec, s) for s in chosen]
    question = format_question(spec, rec)
    if tokenizer is None or max_prompt_tokens is None:
        return Prompt(spec.separator.join([*blocks, question]), len(blocks))
    if max_prompt_tokens < 1:
        raise ValueError(f"max_prompt_tokens must be >= 1, got {max_prompt_tokens}")
    for k in range(len(blocks), -1, -1):
        text = spec.separator.join([*blocks[len(blocks) - k :], question])
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= max_prompt_tokens:
            return Prompt(text, k)
    ids = tokenizer(question, add_special_tokens=False)["input_ids"][-max_prompt_tokens:]
    return Prompt(tokenizer.decode(ids), 0, truncated=True)
