"""Hub task loaders: read a dataset with ``datasets`` and map its rows onto EvalRecords.

The mapping is data in the task spec (``fields``, ``choices``, ``label`` and named transforms);
this module only holds the small vocabulary of transforms those specs may name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rho.evaluate.answer import last_boxed
from rho.evaluate.records import LETTERS, EvalRecord
from rho.evaluate.tasks import TaskError, TaskSpec

__all__ = ["TRANSFORMS", "CHOICE_PARSERS", "load_hub_records", "row_to_record"]


def _after_hash(s: str) -> str:
    return s.split("####")[-1].strip()


def _gsm8k_solution(s: str) -> str:
    """GSM8K's "...<<4*2=8>>8 ... #### 8" -> plain CoT ending "The answer is 8."."""
    body, _, ans = s.partition("####")
    body = re.sub(r"<<[^>]*>>", "", body).strip()
    return f"{body}\nThe answer is {ans.strip()}." if ans else body


def _strip_parenthetical(s: str) -> str:
    """ASDiv style "9 (apples)" -> "9"; "3 (cm); 4 (cm)" keeps both numbers."""
    return re.sub(r"\s*\([^)]*\)", "", s).strip()


def _number(s: str) -> str:
    """ "5.0" -> "5", "2.50" -> "2.5", other text unchanged."""
    try:
        f = float(s.replace(",", ""))
    except ValueError:
        return s.strip()
    return str(int(f)) if f == int(f) else repr(f)


def _boxed_or_self(s: str) -> str:
    return last_boxed(s) or s.strip()


def _letter_upper(s: str) -> str:
    return s.strip().strip("()").upper()


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "after_hash": _after_hash,
    "gsm8k_solution": _gsm8k_solution,
    "strip_parenthetical": _strip_parenthetical,
    "number": _number,
    "boxed_or_self": _boxed_or_self,
    "letter_upper": _letter_upper,
    "strip": str.strip,
}


def _mathqa_options(s: Any) -> list[str]:
    """MathQA "a ) 38 , b ) 27.675 , c ) 30" (or a list of "a ) 38") -> ["38", "27.675", "30"]."""
    if isinstance(s, list | tuple):
        s = " , ".join(map(str, s))
    s = str(s).strip().strip("[]")
    parts = re.split(r"(?:^|,)\s*'?\s*[a-e]\s*\)\s*", s)
    return [p.strip().strip("'\" ,") for p in parts if p.strip().strip("'\" ,")]


CHOICE_PARSERS: dict[str, Callable[[Any], list[str]]] = {
    "list": lambda v: [str(x) for x in v],
    "mathqa_options": _mathqa_options,
}


class _Row(dict):
    """Row view for str.format_map: missing or None columns format as ''."""

    def __missing__(self, key: str) -> str:
        return ""


def _fmt(template: str, row: dict[str, Any]) -> str:
    clean = _Row({k: ("" if v is None else v) for k, v in row.items()})
    return template.format_map(clean).strip()


def _apply(names: Iterable[str], value: str) -> str:
    for n in names:
        value = TRANSFORMS[n](value)
    return value


def _check_spec(spec: TaskSpec) -> None:
    bad = [n for n in (*spec.answer_transforms, *spec.solution_transforms) if n not in TRANSFORMS]
    if bad:
        raise TaskError(f"task {spec.name!r}: unknown transform(s) {bad}; known: {sorted(TRANSFORMS)}")
    if spec.choices is not None and spec.choices.get("parse", "list") not in CHOICE_PARSERS:
        raise TaskError(f"task {spec.name!r}: unknown choices parser; known: {sorted(CHOICE_PARSERS)}")
    if "question" not in spec.fields:
        raise TaskError(f"task {spec.name!r}: spec 'fields' must map 'question'")


def row_to_record(spec: TaskSpec, row: dict[str, Any], index: int) -> EvalRecord:
    """Map one dataset row onto an :class:`EvalRecord` following the spec's field mapping."""
    f = spec.fields
    choices = label = None
    if spec.choices is not None:
        c = spec.choices
        if "columns" in c:
            choices = [str(row[k]) for k in c["columns"]]
        else:
            choices = CHOICE_PARSERS[c.get("parse", "list")](row[c["column"]])
    if spec.label is not None:
        raw = row[spec.label["column"]]
        label = (
            int(raw) if spec.label.get("type", "index") == "index" else LETTERS.index(_letter_upper(str(raw)))
        )
    answer = _apply(spec.answer_transforms, _fmt(f["answer"], row)) if "answer" in f else ""
    if label is not None and spec.answer_type == "choice":
        answer = LETTERS[label]
    elif label is not None and not answer and choices is not None:
        answer = choices[label]
    solution = _apply(spec.solution_transforms, _fmt(f["solution"], row)) if "solution" in f else ""
    rid = _fmt(f["id"], row) if "id" in f else f"{spec.name}-{index}"
    return EvalRecord(
        id=rid,
        question=_fmt(f["question"], row),
        solution=solution,
        answer=answer,
        choices=tuple(choices) if choices is not None else None,
        label=label,
    )


def _local_builder(files: list[str]) -> str:
    suffix = Path(files[0]).suffix.lower()
    return {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(suffix, "json")


def load_hub_records(
    spec: TaskSpec, limit: int | None = None, data_files: str | list[str] | None = None
) -> list[EvalRecord]:
    """Load a hub task's test split (``spec.source``) as records.

    ``source`` has ``path``, ``split`` and ``name`` (one config) or ``names`` (several configs,
    concatenated in order, e.g. the MMLU-STEM subjects). With ``data_files`` the rows come from
    local json/jsonl/csv/parquet files in the dataset's column format and nothing is downloaded.
    """
    if spec.source is None:
        raise TaskError(f"task {spec.name!r} has no hub source; it is a local suite task")
    _check_spec(spec)
    import datasets

    rows: list[dict[str, Any]] = []
    if data_files is not None:
        files = [str(data_files)] if isinstance(data_files, str | Path) else [str(p) for p in data_files]
        missing = [p for p in files if not Path(p).is_file()]
        if missing:
            raise TaskError(f"data file(s) {missing} do not exist")
        ds = datasets.load_dataset(_local_builder(files), data_files=files, split="train")
        rows.extend(ds)
    else:
        src = spec.source
        names = src.get("names") or [src.get("name")]
        for name in names:
            ds = datasets.load_dataset(src["path"], name, split=src.get("split", "test"))
            rows.extend(ds)
            if limit is not None and len(rows) >= limit:
                break
    rows = rows[:limit] if limit is not None else rows
    return [row_to_record(spec, row, i) for i, row in enumerate(rows)]
