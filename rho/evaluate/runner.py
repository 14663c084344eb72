"""``evaluate_model``: few-shot CoT generation tasks and likelihood multiple choice, one table.

Everything that can be checked is checked before the model is loaded: task names, suite files,
exemplar counts, backend, batch size and limit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rho.evaluate.answer import cut_at_stop
from rho.evaluate.choice import score_choices
from rho.evaluate.generation import BackendError, load_hf, make_generator
from rho.evaluate.grade import GRADE_MODES, grade, predict
from rho.evaluate.prompts import build_prompt
from rho.evaluate.records import LETTERS, EvalRecord
from rho.evaluate.results import COLUMNS, metric_row, write_results
from rho.evaluate.sources import load_test_records
from rho.evaluate.tasks import (
    TaskError,
    TaskSpec,
    load_fewshot,
    resolve_tasks,
    with_overrides,
)

__all__ = ["evaluate_model"]

BACKENDS = ("hf", "vllm")


def _prepare(
    specs: list[TaskSpec], limit: int | None, data_files: dict[str, Any] | None
) -> list[tuple[TaskSpec, list[EvalRecord], list[EvalRecord]]]:
    prepared = []
    for spec in specs:
        shots = load_fewshot(spec)
        recs = load_test_records(spec, limit=limit, data_files=(data_files or {}).get(spec.name))
        if not recs:
            raise TaskError(f"task {spec.name!r} has no test records")
        prepared.append((spec, shots, recs))
    return prepared


#: Tokens kept free after a multiple-choice prompt for the longest choice continuation.
CHOICE_RESERVE = 32


def _prompt_cap(
    model: Any, reserve: int, max_prompt_tokens: int | None, context_length: int | None
) -> int | None:
    """Prompt-length cap: explicit ``max_prompt_tokens``, else the context minus ``reserve``.

    The context is ``context_length`` (the length the model was trained on) when given, else the
    model's ``max_position_embeddings``; ``None`` when neither is known.
    """
    if max_prompt_tokens is not None:
        return max_prompt_tokens
    window = context_length or getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return max(1, int(window) - reserve) if window else None


def evaluate_model(
    model_or_path: Any,
    tasks: str | Sequence[str],
    data_root: str | os.PathLike | None = None,
    backend: str = "hf",
    limit: int | None = None,
    batch_size: int = 8,
    out_dir: str | os.PathLike | None = None,
    tokenizer: Any | None = None,
    device: str = "cpu",
    n_shots: int | None = None,
    max_new_tokens: int | None = None,
    max_prompt_tokens: int | None = None,
    context_length: int | None = None,
    data_files: dict[str, Any] | None = None,
    generator: Any | None = None,
    progress: bool = True,
    grading: str | None = None,
) -> pd.DataFrame:
    """Evaluate a model on tasks and return a tidy table (task, role, metric, value, stderr, n).

    Args:
        model_or_path: a Hugging Face model folder or hub name, or a loaded model (+ ``tokenizer``).
        tasks: names (list or comma-separated): local suite tasks under ``data_root`` and/or
            built-in hub tasks (``gsm8k``, ``math``, ``svamp``, ...).
        data_root: root of the miniature data (``<data_root>/eval/tasks.json``).
        backend: ``"hf"`` (transformers) or ``"vllm"`` for generation tasks; multiple-choice
            tasks are always scored with transformers.
        limit: evaluate only the first ``limit`` problems of each task.
        batch_size: prompts per generation batch / sequences per likelihood batch.
        out_dir: if given, write ``results.csv``, ``completions.jsonl`` and ``config.json`` there
            atomically.
        n_shots, max_new_tokens: override every task's spec.
        max_prompt_tokens: cap on prompt length (default with the hf backend: model window minus
            max_new_tokens); longer prompts drop exemplars from the front (see
            :mod:`rho.evaluate.prompts`). With vLLM no cap is applied unless given (vLLM itself
            refuses prompts longer than its ``max_model_len``).
        context_length: the context the model was trained on (e.g. the training block size). The
            prompt and the tokens generated (or the longest choice) must fit in it: positions
            beyond it were never trained. Default: the model config's ``max_position_embeddings``.
        data_files: ``{task: local files}`` to read hub tasks offline in their own format.
        generator: a ready generation backend (anything with ``generate(prompts, max_new_tokens, stop)``).
        grading: ``"default"`` or ``"harness"`` (see :func:`rho.evaluate.grade`) for every
            generation task; default: each task's own ``grading`` (the paper's nine built-in
            tasks: ``harness``, comparable with the paper; local suites: ``default``).

    Generation tasks report ``exact_match``; multiple-choice tasks ``acc`` and ``acc_norm``.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; use one of {BACKENDS}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if grading is not None and grading not in GRADE_MODES:
        raise TaskError(f"grading must be one of {GRADE_MODES}, got {grading!r}")
    specs = [
        with_overrides(s, n_shots=n_shots, max_new_tokens=max_new_tokens)
        for s in resolve_tasks(tasks, data_root)
    ]
    prepared = _prepare(specs, limit, data_files)
    if backend == "vllm" and generator is None:
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise BackendError(
                "backend 'vllm' needs the vllm package: pip install vllm, or use --backend hf"
            ) from exc

    needs_gen = any(s.kind == "generate" for s in specs)
    needs_hf = any(s.kind == "multiple_choice" for s in specs) or (
        needs_gen and backend == "hf" and generator is None
    )
    model = None
    if needs_hf:
        model, tokenizer = load_hf(model_or_path, tokenizer, device=device)
    if needs_gen and generator is None:
        generator = make_generator(
            backend,
            model if backend == "hf" else model_or_path,
            tokenizer,
            batch_size=batch_size,
            device=device,
            progress=progress,
        )

    rows: list[dict[str, Any]] = []
    completions: list[dict[str, Any]] = []
    for spec, shots, recs in prepared:
        if spec.kind == "generate":
            cap = (
                _prompt_cap(model, spec.max_new_tokens, max_prompt_tokens, context_length)
                if model is not None or (context_length and tokenizer is not None)
                else max_prompt_tokens
            )
            tok = tokenizer if cap is not None else None
            prompts = [build_prompt(spec, shots, r, tok, cap) for r in recs]
            gens = generator.generate([p.text for p in prompts], spec.max_new_tokens, spec.stop)
            outcomes = []
            mode = grading or spec.grading
            for r, p, g in zip(recs, prompts, gens):
                gold = r.gold_letter if spec.answer_type == "choice" else r.answer
                text = cut_at_stop(g.text, spec.stop)  # backends cut already; injected ones may not
                pred = predict(text, spec, mode)
                ok = grade(text, gold, spec, mode=mode)
                outcomes.append(ok)
                completions.append(
                    {
                        "task": spec.name,
                        "id": r.id,
                        "question": r.question,
                        "prompt": p.text,
                        "n_shots": p.n_shots,
                        "truncated": p.truncated,
                        "completion": text,
                        "n_tokens": g.n_tokens,
                        "prediction": pred,
                        "gold": gold,
                        "correct": ok,
                        "grading": mode,
                    }
                )
            rows.append(metric_row(spec.name, spec.role, "exact_match", outcomes))
        else:
            cap = _prompt_cap(model, CHOICE_RESERVE, max_prompt_tokens, context_length)
            res = score_choices(
                model,
                tokenizer,
                spec,
                shots,
                recs,
                batch_size=batch_size,
                max_prompt_tokens=cap,
                progress=progress,
                context_length=context_length,
            )
            rows.append(metric_row(spec.name, spec.role, "acc", [c.correct for c in res]))
            rows.append(metric_row(spec.name, spec.role, "acc_norm", [c.correct_norm for c in res]))
            for c in res:
                completions.append(
                    {
                        "task": spec.name,
                        "id": c.record.id,
                        "question": c.record.question,
                        "prompt": c.prompt,
                        "choices": list(c.record.choices or ()),
                        "logprobs": list(c.logprobs),
                        "prediction": LETTERS[c.pred],
                        "prediction_norm": LETTERS[c.pred_norm],
                        "gold": c.record.gold_letter,
                        "correct": c.correct,
                        "correct_norm": c.correct_norm,
                    }
                )
    table = pd.DataFrame(rows, columns=COLUMNS)
    if out_dir is not None:
        config = {
            "model": str(model_or_path)
            if isinstance(model_or_path, str | os.PathLike)
            else type(model_or_path).__name__,
            "tasks": [s.name for s in specs],
            "data_root": str(data_root) if data_root else None,
            "backend": backend,
            # hf: rho's lean greedy decoder for Llama models (rho.evaluate.greedy), else generate
            "decoder": None
            if generator is None
            else getattr(generator, "decoder", getattr(generator, "name", type(generator).__name__)),
            "limit": limit,
            "batch_size": batch_size,
            "n_shots": {s.name: s.n_shots for s in specs},
            "grading": {s.name: grading or s.grading for s in specs if s.kind == "generate"},
            "context_length": context_length,
            "max_prompt_tokens": max_prompt_tokens,
        }
        write_results(Path(out_dir), table, completions, config)
    return table
