"""Task specs, few-shot exemplars, local suites, hub loaders (on local files) and prompts."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers_eval import make_tokenizer, write_suite

from rho.evaluate import (
    EvalRecord,
    TaskError,
    builtin_task_names,
    extract_answer,
    grade,
    load_task_spec,
    resolve_tasks,
)
from rho.evaluate.prompts import build_prompt, format_choices
from rho.evaluate.records import RecordError, read_records
from rho.evaluate.sources import load_test_records
from rho.evaluate.tasks import TaskSpec, load_fewshot, with_overrides

PAPER_TASKS = {"gsm8k", "math", "svamp", "asdiv", "mawps", "tabmwp", "mathqa", "mmlu_stem", "sat"}


def test_builtin_tasks_are_the_papers_nine() -> None:
    assert set(builtin_task_names()) == PAPER_TASKS


def test_standard_exemplars() -> None:
    """The paper harness's prompt files: GSM8K 8-shot (Wei et al.), MATH 4-shot (Minerva)."""
    gsm8k, math = load_task_spec("gsm8k"), load_task_spec("math")
    shots = load_fewshot(gsm8k)
    assert gsm8k.n_shots == 8 and len(shots) == 8
    assert shots[0].question.startswith("There are 15 trees in the grove")
    assert [s.answer for s in shots] == ["6", "5", "39", "8", "9", "29", "33", "8"]
    mshots = load_fewshot(math)
    assert math.n_shots == 4 and len(mshots) == 4
    # the file's doubled backslashes are kept, as the paper's models saw them
    assert [s.answer for s in mshots] == ["[2,5)", "24", "16", "-\\\\frac{2}{3}"]


@pytest.mark.parametrize("name", sorted(PAPER_TASKS))
def test_every_exemplar_answer_is_extractable(name: str) -> None:
    """Each exemplar's solution, read by both graders of the task, gives its answer."""
    spec = load_task_spec(name)
    for shot in load_fewshot(spec):
        assert shot.answer, (name, shot.id)
        assert grade(shot.solution, shot.answer, spec, mode="harness"), (name, shot.id)
        if spec.answer_type == "choice" or name != "math":  # MATH shots carry doubled backslashes
            assert grade(shot.solution, shot.answer, spec), (
                name,
                shot.id,
                extract_answer(shot.solution, spec),
            )


def test_unknown_task_and_bad_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="unknown task"):
        resolve_tasks("gsm8k,nope")
    with pytest.raises(TaskError, match="no tasks"):
        resolve_tasks(" , ")
    with pytest.raises(TaskError, match="unknown task spec key"):
        TaskSpec.from_dict({"name": "x", "role": "x", "temlpate": "{question}"})
    with pytest.raises(TaskError, match="kind"):
        TaskSpec(name="x", role="x", kind="essay")
    with pytest.raises(TaskError, match="tasks.json"):
        resolve_tasks("arith", data_root=tmp_path)


def test_local_suite(tmp_path: Path) -> None:
    root = write_suite(tmp_path)
    arith, pick, gsm8k = resolve_tasks(["arith", "pick", "gsm8k"], data_root=root)
    assert (arith.kind, arith.role, arith.n_shots, arith.metric) == ("generate", "gsm8k", 2, "exact_match")
    assert (pick.kind, pick.metric) == ("multiple_choice", "acc")
    assert gsm8k.source is not None  # built-in still reachable beside a suite
    recs = load_test_records(arith, limit=3)
    assert [r.answer for r in recs] == ["3", "6", "9"]
    assert load_test_records(pick)[0].choices == ("3", "4", "5")
    with pytest.raises(TaskError, match="limit"):
        load_test_records(arith, limit=0)
    with pytest.raises(TaskError, match="asks for 5 shots"):
        load_fewshot(with_overrides(arith, n_shots=5))


def test_bad_records_are_named(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text('{"id": "a", "question": "q", "answer": "1"}\n{"id": "b", "question": "q"}\n')
    with pytest.raises(RecordError, match=r"t.jsonl:2.*missing"):
        read_records(p)
    p.write_text("{not json\n")
    with pytest.raises(RecordError, match="not valid JSON"):
        read_records(p)
    with pytest.raises(RecordError, match="label"):
        EvalRecord(id="x", question="q", solution="", answer="1", choices=("1", "2"), label=2)
    with pytest.raises(RecordError, match="does not exist"):
        read_records(tmp_path / "missing.jsonl")


# --- loaders: tests/test_evaluate_benchmarks.py (real rows of the harness's copies) ---------


def test_loader_refuses_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="do not exist"):
        load_test_records(load_task_spec("gsm8k"), data_files=str(tmp_path / "none.jsonl"))


# --- prompts ------------------------------------------------------------------------------


def test_gsm8k_prompt_layout() -> None:
    spec = load_task_spec("gsm8k")
    shots = load_fewshot(spec)
    rec = EvalRecord(id="t", question="What is 2 + 2?", solution="", answer="4")
    p = build_prompt(spec, shots, rec)
    assert p.n_shots == 8 and not p.truncated
    assert p.text.startswith("Question: There are 15 trees")
    assert p.text.count("\n\n\nQuestion: ") == 8  # the harness separates items by two blank lines
    assert p.text.endswith("The answer is 8.\n\n\nQuestion: What is 2 + 2?\nAnswer:")
    assert "Answer: There are 15 trees originally." in p.text


def test_math_prompt_and_choices_format() -> None:
    spec = load_task_spec("math")
    rec = EvalRecord(id="t", question="Compute $1+1$.", solution="", answer="2")
    p = build_prompt(spec, load_fewshot(spec), rec)
    assert p.text.startswith("Problem:\nFind the domain")
    assert p.text.endswith("\n\n\nProblem:\nCompute $1+1$.\nSolution:")  # no blank line before Solution
    assert format_choices(["3", "4"]) == "(A) 3 (B) 4"
    sat = load_task_spec("sat")
    mc = EvalRecord(id="m", question="Pick", solution="", answer="B", choices=("1", "2"), label=1)
    assert build_prompt(sat, [], mc).text == "Problem:\nPick\nSolution:"  # options are in the question


def test_prompt_cap_drops_leading_shots_then_truncates() -> None:
    tok = make_tokenizer()
    spec = load_task_spec("gsm8k")
    shots = load_fewshot(spec)
    rec = EvalRecord(id="t", question="What is 2 + 2?", solution="", answer="4")
    full = build_prompt(spec, shots, rec)
    n_full = len(tok(full.text)["input_ids"])
    p = build_prompt(spec, shots, rec, tok, max_prompt_tokens=n_full // 2)
    assert 0 < p.n_shots < 8 and not p.truncated
    assert len(tok(p.text)["input_ids"]) <= n_full // 2
    assert p.text.endswith(full.text[-300:])  # the shots nearest the question are kept
    tiny = build_prompt(spec, shots, rec, tok, max_prompt_tokens=4)
    assert tiny.truncated and tiny.n_shots == 0 and tiny.text.endswith("Answer:")
    assert len(tok(tiny.text)["input_ids"]) <= 5  # decode/encode round trip may merge differently


def test_exemplar_equal_to_test_question_is_skipped() -> None:
    spec = with_overrides(load_task_spec("gsm8k"), n_shots=2)
    shots = load_fewshot(spec)
    p = build_prompt(spec, shots, shots[0])
    assert p.n_shots == 2 and p.text.count(shots[0].question) == 1
