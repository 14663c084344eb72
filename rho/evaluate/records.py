"""The evaluation record: one problem of a task, the same type for local suites and hub tasks.

Layout on disk (docs/design.md): one JSON object per line in ``fewshot.jsonl`` / ``test.jsonl``::

    {"id": str, "question": str, "solution": str, "answer": str,
     "choices": list[str] | null, "label": int | null, "template": str | null}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["EvalRecord", "RecordError", "read_records", "LETTERS"]

LETTERS = "ABCDEFGHIJ"


class RecordError(ValueError):
    """An evaluation record or record file is malformed."""


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation problem.

    ``solution`` is a worked chain of thought ending "The answer is X." (may be empty for
    hub tasks that have none); ``answer`` is the gold answer string; multiple-choice problems
    also carry ``choices`` and ``label`` (index of the right choice); ``template`` is optional
    provenance from the suite generator and is not used for prompting.
    """

    id: str
    question: str
    solution: str
    answer: str
    choices: tuple[str, ...] | None = None
    label: int | None = None
    template: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise RecordError(f"record {self.id!r}: 'question' must be a non-empty string")
        if self.choices is not None:
            if len(self.choices) < 2:
                raise RecordError(f"record {self.id!r}: 'choices' needs at least 2 options")
            if self.label is None or not 0 <= self.label < len(self.choices):
                raise RecordError(
                    f"record {self.id!r}: 'label' must index 'choices' (0..{len(self.choices) - 1}), "
                    f"got {self.label!r}"
                )

    @property
    def gold_letter(self) -> str | None:
        """The letter (A, B, ...) of the right choice, for multiple-choice records."""
        return None if self.label is None else LETTERS[self.label]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the on-disk layout."""
        d = asdict(self)
        d["choices"] = list(self.choices) if self.choices is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "") -> EvalRecord:
        """Build a record from a dict in the on-disk layout, with a clear error on bad fields."""
        missing = [k for k in ("id", "question", "answer") if k not in d]
        if missing:
            raise RecordError(
                f"{where}: record is missing field(s) {missing}; expected the layout of docs/design.md"
            )
        choices = d.get("choices")
        return cls(
            id=str(d["id"]),
            question=str(d["question"]),
            solution=str(d.get("solution") or ""),
            answer=str(d["answer"]),
            choices=tuple(str(c) for c in choices) if choices is not None else None,
            label=int(d["label"]) if d.get("label") is not None else None,
            template=d.get("template"),
        )


def read_records(path: str | os.PathLike) -> list[EvalRecord]:
    """Read a JSONL file of records; raises :class:`RecordError` naming the bad line."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(
            f"record file {path} does not exist; build the suite first (rho.data) or fix --data-root"
        )
    out = []
    with path.open() as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(f"{path}:{i}: not valid JSON ({exc}); rewrite the file") from exc
            out.append(EvalRecord.from_dict(d, where=f"{path}:{i}"))
    return out
