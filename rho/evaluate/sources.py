"""Built-in task loaders: the paper harness's sets shipped with rho, or hub datasets, mapped onto
EvalRecords.

The mapping is data in the task spec (``fields``, ``choices``, ``label``, named transforms and a
named ``question_builder``); this module only holds the small vocabulary those specs may name.
The question builders format questions exactly as the paper's harness does (options, tables,
the "(Yes or No)" hint), so that prompts match the paper's.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rho.evaluate.answer import last_boxed
from rho.evaluate.records import LETTERS, EvalRecord, read_records
from rho.evaluate.tasks import TaskError, TaskSpec, benchmarks_dir

__all__ = [
    "CHOICE_PARSERS",
    "QUESTION_BUILDERS",
    "TRANSFORMS",
    "harness_view",
    "load_hub_records",
    "load_test_records",
    "row_to_record",
]


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


def _lettered_options(s: Any) -> list[str]:
    """SAT "A) $f(-6)=0$ B) $f(6)=-6$ C) ... D) ..." (or "A. ... B. ...") -> ["$f(-6)=0$", ...]."""
    parts = re.split(r"(?:^|\s)\(?[A-E][).]\s", " " + str(s).strip())
    return [p.strip() for p in parts if p.strip()]


CHOICE_PARSERS: dict[str, Callable[[Any], list[str]]] = {
    "list": lambda v: [str(x) for x in v],
    "mathqa_options": _mathqa_options,
    "lettered_options": _lettered_options,
}

#: The harness's instruction line between a multiple-choice question and its options.
CHOICE_INSTRUCTION = "What of the following is the right choice? Explain your answer."


def _col(row: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` present in ``row`` (the harness's copies lower-case some columns)."""
    for n in names:
        if n in row and row[n] is not None:
            return row[n]
    raise TaskError(f"row has none of the columns {list(names)}; its columns are {sorted(row)}")


def _svamp_question(row: dict[str, Any]) -> str:
    body = str(_col(row, "Body", "body")).strip()
    return f"{body if body.endswith('.') else body + '.'} {str(_col(row, 'Question', 'question')).strip()}"


def _asdiv_question(row: dict[str, Any]) -> str:
    return f"{str(_col(row, 'body', 'Body')).strip()} {str(_col(row, 'question', 'Question')).strip()}"


def _mmlu_question(row: dict[str, Any]) -> str:
    options = ", ".join(f"({LETTERS[i]}) {str(c).strip()}" for i, c in enumerate(row["choices"]))
    return f"{str(row['question']).strip()}\n{CHOICE_INSTRUCTION}\n{options}"


def _sat_question(row: dict[str, Any]) -> str:
    options = str(_col(row, "options", "Possible Answers")).strip()
    if not options.startswith("A"):
        raise TaskError(f"SAT options must start with 'A)', got {options[:30]!r}")
    options = "(" + options
    for letter in "BCD":
        options = options.replace(f" {letter}) ", f" ({letter}) ")
    return f"{str(_col(row, 'question', 'Question')).strip()}\n{CHOICE_INSTRUCTION}\n{options.strip()}"


def _mathqa_question(row: dict[str, Any]) -> str:
    problem = str(_col(row, "problem", "Problem"))
    problem = problem[:1].upper() + problem[1:]
    options = str(row["options"]).strip()
    if options.startswith("["):
        options = ", ".join(ast.literal_eval(options))
    for ch in "abcde":
        options = options.replace(f"{ch} ) {ch} ) ", f"{ch} ) ").replace(f"{ch} ) ", f"({ch.upper()}) ")
    options = options.replace(" , ", ", ")
    return f"{problem.strip()}\n{CHOICE_INSTRUCTION}\n{options.strip()}"


def _tabmwp_question(row: dict[str, Any]) -> str:
    title = row.get("table_title")
    regarding = f'regarding "{title}" ' if title else ""
    question = f"Read the following table {regarding}and answer a question:\n"
    question += f"{row['table']}\n{row['question']}"
    if row.get("choices"):
        question += f" Please select from the following options: {row['choices']}"
    answer = str(row.get("answer", "")).strip().lower()
    if answer in ("yes", "no"):
        question += " (Yes or No)"
    elif answer in ("true", "false"):
        question += " (True or False)"
    return question.strip()


QUESTION_BUILDERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "svamp": _svamp_question,
    "asdiv": _asdiv_question,
    "mmlu_stem": _mmlu_question,
    "sat": _sat_question,
    "mathqa": _mathqa_question,
    "tabmwp": _tabmwp_question,
}


def _tabmwp_answer(s: str) -> str:
    """TabMWP numbers as the harness reads them: "1,000" -> "1000", "3/4" -> "0.75", "5%" -> "0.05"."""
    s = s.strip()
    try:
        if re.fullmatch(r"-?\d+/\d+", s):
            a, b = s.split("/")
            return _number(str(int(a) / int(b)))
        if "%" in s:
            return _number(str(float(s.split("%")[0]) / 100))
        return _number(s) if re.fullmatch(r"-?[\d,]*\.?\d+", s) else s
    except (ValueError, ZeroDivisionError):
        return s


TRANSFORMS["tabmwp_answer"] = _tabmwp_answer


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
    if spec.question_builder is not None and spec.question_builder not in QUESTION_BUILDERS:
        raise TaskError(
            f"task {spec.name!r}: unknown question_builder {spec.question_builder!r}; "
            f"known: {sorted(QUESTION_BUILDERS)}"
        )
    if "question" not in spec.fields and spec.question_builder is None:
        raise TaskError(f"task {spec.name!r}: spec 'fields' must map 'question' (or name a question_builder)")


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
    if spec.question_builder is not None:
        question = QUESTION_BUILDERS[spec.question_builder](row)
    else:
        question = _fmt(f["question"], row)
    if not question or question == "None":
        raise TaskError(f"task {spec.name!r}: row {index} has no question text")
    return EvalRecord(
        id=rid,
        question=question,
        solution=solution,
        answer=answer,
        choices=tuple(choices) if choices is not None else None,
        label=label,
    )


def _local_builder(files: list[str]) -> str:
    suffix = Path(files[0]).suffix.lower()
    return {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(suffix, "json")


def harness_view(spec: TaskSpec) -> TaskSpec:
    """The spec with its ``harness`` mapping (the harness copy's columns) in place of the hub one."""
    over = {k: v for k, v in (spec.harness or {}).items() if k != "file"}
    for key in ("answer_transforms", "solution_transforms"):
        if key in over:
            over[key] = tuple(over[key] or ())
    try:
        return replace(spec, **over)
    except TypeError as exc:
        raise TaskError(f"task {spec.name!r}: bad key in its 'harness' mapping: {exc}") from exc


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _json_records(text: str, where: str) -> list[dict[str, Any]]:
    """Rows of a JSON file that maps ids to records (TabMWP's ``problems_test1k.json``), in order."""
    data = json.loads(text)
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise TaskError(f"{where}: expected a JSON object of records keyed by id")
    return [{"id": str(k), **v} for k, v in data.items()]


def load_hub_records(
    spec: TaskSpec, limit: int | None = None, data_files: str | list[str] | None = None
) -> list[EvalRecord]:
    """Load a built-in task's problems as records.

    * ``data_files``: rows from local json/jsonl/csv/parquet files in the hub dataset's own column
      format (TabMWP: its ``problems_test1k.json``); nothing is downloaded.
    * ``set: harness``: the paper harness's copy shipped in ``rho/evaluate/benchmarks``.
    * otherwise (``set: hub``) ``source``: ``path`` with ``split`` or ``splits`` (concatenated) and
      ``name`` (one config) or ``names`` (several, concatenated, e.g. the MMLU-STEM subjects);
      ``drop_if_contains: {column: text}`` drops rows (ASDiv's multi-answer problems); or ``url``
      with ``format: json_records`` (a JSON object of records keyed by id).
    """
    if spec.source is None and spec.set != "harness":
        raise TaskError(f"task {spec.name!r} has no hub source; it is a local suite task")
    rows: list[dict[str, Any]] = []
    src = spec.source or {}
    if data_files is not None:
        _check_spec(spec)
        files = [str(data_files)] if isinstance(data_files, str | Path) else [str(p) for p in data_files]
        missing = [p for p in files if not Path(p).is_file()]
        if missing:
            raise TaskError(f"data file(s) {missing} do not exist")
        if src.get("format") == "json_records":
            for p in files:
                rows.extend(_json_records(Path(p).read_text(encoding="utf-8"), p))
        else:
            import datasets

            ds = datasets.load_dataset(_local_builder(files), data_files=files, split="train")
            rows.extend(ds)
    elif spec.set == "harness":
        spec = harness_view(spec)
        _check_spec(spec)
        path = benchmarks_dir() / str((spec.harness or {})["file"])
        if not path.is_file():
            raise TaskError(f"task {spec.name!r}: harness set {path} is missing from this rho install")
        rows = _read_jsonl(path)
    elif "url" in src:
        _check_spec(spec)
        import fsspec

        with fsspec.open(src["url"], "rt", encoding="utf-8") as f:
            rows = _json_records(f.read(), src["url"])
    else:
        _check_spec(spec)
        import datasets

        names = src.get("names") or [src.get("name")]
        splits = src.get("splits") or [src.get("split", "test")]
        for name in names:
            for split in splits:
                rows.extend(datasets.load_dataset(src["path"], name, split=split))
            if limit is not None and len(rows) >= limit and not src.get("drop_if_contains"):
                break
    for column, text in (src.get("drop_if_contains") or {}).items():
        if spec.set != "harness" or data_files is not None:
            rows = [r for r in rows if text not in str(r.get(column, ""))]
    rows = rows[:limit] if limit is not None else rows
    return [row_to_record(spec, row, i) for i, row in enumerate(rows)]


def load_test_records(
    spec: TaskSpec, limit: int | None = None, data_files: str | list[str] | None = None
) -> list[EvalRecord]:
    """Test problems of a task (first ``limit``): the local suite's ``test.jsonl``, the paper
    harness's set shipped with rho (``set: harness``) or the hub dataset (``set: hub``).

    ``data_files`` reads a hub task from local files in the dataset's own column format instead
    of downloading it (offline use and tests).
    """
    if limit is not None and limit < 1:
        raise TaskError(f"limit must be >= 1, got {limit}")
    if spec.local_dir is not None:
        recs = read_records(Path(spec.local_dir) / "test.jsonl")
        return recs[:limit] if limit is not None else recs
    return load_hub_records(spec, limit=limit, data_files=data_files)
