"""``grade``: one verdict per completion, in rho's own way or exactly as the paper's harness.

* ``mode="default"``: :func:`rho.evaluate.answer.extract_answer` + :func:`~rho.evaluate.answer.is_equiv`
  (cut at the next few-shot item, fixed extraction bugs, math-verify for LaTeX).
* ``mode="harness"``: :func:`rho.evaluate.harness_grader.harness_grade`, the verdicts of the
  paper's math-evaluation-harness (comparable with the paper's tables).

docs/evaluation.md lists every difference between the two with an example. This module also
resolves task *names* for :func:`extract_answer`, so that :mod:`rho.evaluate.answer` needs no
import of the task registry.
"""

from __future__ import annotations

from rho.evaluate import answer as _answer
from rho.evaluate.harness_grader import HARNESS_STOPS, harness_choice, harness_extract, harness_grade
from rho.evaluate.tasks import TaskError, builtin_task_names, load_task_spec

__all__ = ["GRADE_MODES", "extract_answer", "grade", "predict", "resolve_answer_task"]

GRADE_MODES = ("default", "harness")


def resolve_answer_task(task: object) -> object:
    """A built-in task name becomes its :class:`~rho.evaluate.tasks.TaskSpec`; other values
    (specs, answer types, unknown names) are returned unchanged."""
    if isinstance(task, str) and task not in _answer.ANSWER_TYPES and task in builtin_task_names():
        return load_task_spec(task)
    return task


def extract_answer(completion: str | None, task: object = "auto") -> str | None:
    """:func:`rho.evaluate.answer.extract_answer`, also accepting built-in task names (``"gsm8k"``)."""
    return _answer.extract_answer(completion, resolve_answer_task(task))


def _answer_type(task: object) -> str:
    task = resolve_answer_task(task)
    if hasattr(task, "answer_type"):
        return str(task.answer_type)
    if isinstance(task, str):
        return task if task in _answer.ANSWER_TYPES else "auto"
    raise TypeError(f"task must be a task name, an answer type or a TaskSpec, got {type(task).__name__}")


def grade(completion: str | None, gold: str | None, task: object = "auto", mode: str = "default") -> bool:
    """Whether ``completion`` answers ``gold`` correctly.

    Args:
        completion: the generated text after the prompt.
        gold: the gold answer; for multiple-choice tasks the letter of the right option.
        task: a task name, a :class:`~rho.evaluate.tasks.TaskSpec` or an answer type
            (``number``, ``math``, ``choice``, ``auto``).
        mode: ``"default"`` (rho's grader) or ``"harness"`` (the paper harness's verdicts).
    """
    if mode not in GRADE_MODES:
        raise TaskError(f"grading mode must be one of {GRADE_MODES}, got {mode!r}")
    if completion is None or gold is None:
        return False
    choice = _answer_type(task) == "choice"
    if mode == "harness":
        return harness_grade(completion, gold, choice=choice)
    pred = extract_answer(completion, task)
    if pred is None:
        return False
    if choice:
        return pred.upper() == str(gold).strip().strip("()").upper()
    return _answer.is_equiv(pred, gold)


def predict(completion: str | None, task: object = "auto", mode: str = "default") -> str | None:
    """The answer that ``grade`` compares in ``mode`` (for logs): rho's extraction, or the
    harness's (its normalised prediction; ``None`` when it finds none)."""
    if mode not in GRADE_MODES:
        raise TaskError(f"grading mode must be one of {GRADE_MODES}, got {mode!r}")
    if completion is None:
        return None
    if mode == "default":
        return extract_answer(completion, task)
    text = completion
    for stop in HARNESS_STOPS:
        text = text.split(stop, 1)[0]
    text = text.strip()
    if _answer_type(task) == "choice":
        return harness_choice(text)
    return harness_extract(text) or None
