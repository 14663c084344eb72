"""Downstream loss: mean per-token loss on reference solutions of a held-out set (Figure 6(b)).

Each record contributes the tokens of its worked solution, conditioned zero-shot on its
question formatted with the task template; only solution tokens count. The result is the
token-weighted mean negative log-likelihood (nats per token) over the whole set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rho.evaluate.likelihood import continuation_logliks
from rho.evaluate.prompts import format_question
from rho.evaluate.records import EvalRecord, RecordError, read_records
from rho.evaluate.tasks import TaskSpec

__all__ = ["downstream_loss"]

_DEFAULT_SPEC = TaskSpec(name="downstream", role="downstream")


def _as_records(records_or_path: Sequence[EvalRecord | dict] | str | os.PathLike) -> list[EvalRecord]:
    if isinstance(records_or_path, str | os.PathLike):
        path = Path(records_or_path)
        return read_records(path / "test.jsonl" if path.is_dir() else path)
    return [
        r if isinstance(r, EvalRecord) else EvalRecord.from_dict(r, where="records") for r in records_or_path
    ]


def downstream_loss(
    model: Any,
    records_or_path: Sequence[EvalRecord | dict] | str | os.PathLike,
    tokenizer: Any | None = None,
    spec: TaskSpec | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    progress: bool = True,
    context_length: int | None = None,
) -> float:
    """Mean per-token loss (nats) of the reference solutions given their questions.

    Args:
        model: a loaded causal LM, or a model folder / hub name (then loaded with its tokenizer).
        records_or_path: records, dicts in the record layout, a JSONL file, or a suite task
            directory (its ``test.jsonl`` is used).
        tokenizer: needed when ``model`` is an object.
        spec: task spec whose ``template``/``target`` format question and solution
            (default ``"Question: {question}\\nAnswer:"`` + ``" {solution}"``).
        limit: use only the first ``limit`` records.
        context_length: the context the model was trained on (longer inputs lose the start of the
            question; default: the model config's window).
    """
    from rho.evaluate.generation import load_hf

    records = _as_records(records_or_path)[:limit]
    if not records:
        raise RecordError("downstream_loss needs at least one record")
    empty = [r.id for r in records if not r.solution.strip()]
    if empty:
        raise RecordError(f"records {empty[:5]} have no reference solution; downstream loss needs solutions")
    model, tokenizer = load_hf(model, tokenizer, device=device)
    spec = spec or _DEFAULT_SPEC
    pairs = [(format_question(spec, r), spec.target.format(solution=r.solution)) for r in records]
    lls = continuation_logliks(
        model,
        tokenizer,
        pairs,
        batch_size=batch_size,
        progress=progress,
        desc="downstream loss",
        max_length=context_length,
    )
    n = sum(ll.n_tokens for ll in lls)
    return -sum(ll.logprob for ll in lls) / n
