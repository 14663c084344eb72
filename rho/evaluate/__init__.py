"""Evaluation: few-shot CoT math, answer checking, multiple choice, downstream loss, lm-eval.

Public API::

    grade(completion, gold, task, mode="default" | "harness") -> bool   # one verdict
    extract_answer(completion, task) -> str | None      # answer from a CoT completion
    is_equiv(prediction, gold) -> bool                  # numbers, fractions, LaTeX (math-verify)
    evaluate_model(model_or_path, tasks, ...) -> DataFrame   # task, role, metric, value, stderr, n
    downstream_loss(model, records_or_path, ...) -> float    # mean loss on reference solutions
    score_choices(model, tokenizer, spec, shots, records)    # log-likelihood multiple choice
    run_lm_eval(model_path, tasks, include_path=None, ...) -> DataFrame

Command line: ``python -m rho.evaluate --model PATH --tasks gsm8k,math --data-root data/mini``.
"""

from rho.evaluate.answer import is_equiv
from rho.evaluate.choice import ChoiceResult, score_choices
from rho.evaluate.downstream import downstream_loss
from rho.evaluate.generation import BackendError, Generation, HFGenerator, VLLMGenerator
from rho.evaluate.grade import GRADE_MODES, extract_answer, grade
from rho.evaluate.harness import PAPER_GENERAL_TASKS, HarnessError, run_lm_eval
from rho.evaluate.records import EvalRecord, RecordError, read_records
from rho.evaluate.results import binomial_stderr
from rho.evaluate.runner import evaluate_model
from rho.evaluate.tasks import TaskError, TaskSpec, builtin_task_names, load_task_spec, resolve_tasks

__all__ = [
    "BackendError",
    "ChoiceResult",
    "EvalRecord",
    "GRADE_MODES",
    "Generation",
    "HFGenerator",
    "HarnessError",
    "PAPER_GENERAL_TASKS",
    "RecordError",
    "TaskError",
    "TaskSpec",
    "VLLMGenerator",
    "binomial_stderr",
    "builtin_task_names",
    "downstream_loss",
    "evaluate_model",
    "extract_answer",
    "grade",
    "is_equiv",
    "load_task_spec",
    "read_records",
    "resolve_tasks",
    "run_lm_eval",
    "score_choices",
]
