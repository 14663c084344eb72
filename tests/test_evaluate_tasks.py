"""Task specs, few-shot exemplars, local suites, hub loaders (on local files) and prompts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from _helpers_eval import make_tokenizer, write_suite

from rho.evaluate import (
    EvalRecord,
    TaskError,
    builtin_task_names,
    extract_answer,
    is_equiv,
    load_task_spec,
    resolve_tasks,
)
from rho.evaluate.prompts import build_prompt, format_choices
from rho.evaluate.records import RecordError, read_records
from rho.evaluate.tasks import TaskSpec, load_fewshot, load_test_records, with_overrides

PAPER_TASKS = {"gsm8k", "math", "svamp", "asdiv", "mawps", "tabmwp", "mathqa", "mmlu_stem", "sat"}


def test_builtin_tasks_are_the_papers_nine() -> None:
    assert set(builtin_task_names()) == PAPER_TASKS


def test_standard_exemplars() -> None:
    gsm8k, math = load_task_spec("gsm8k"), load_task_spec("math")
    shots = load_fewshot(gsm8k)
    assert gsm8k.n_shots == 8 and len(shots) == 8
    assert shots[0].question.startswith("There are 15 trees in the grove")
    assert [s.answer for s in shots] == ["6", "5", "39", "8", "9", "29", "33", "8"]
    mshots = load_fewshot(math)
    assert math.n_shots == 4 and len(mshots) == 4
    assert [s.answer for s in mshots] == ["[2,5)", "24", "16", "-\\frac{2}{3}"]


@pytest.mark.parametrize("name", sorted(PAPER_TASKS))
def test_every_exemplar_answer_is_extractable(name: str) -> None:
    """Each shipped exemplar's solution, read by the task's own extractor, gives its answer."""
    spec = load_task_spec(name)
    for shot in load_fewshot(spec):
        gold = shot.gold_letter if spec.answer_type == "choice" else shot.answer
        pred = extract_answer(shot.solution, spec)
        assert pred == gold if spec.answer_type == "choice" else is_equiv(pred, gold), (name, shot.id, pred)


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


# --- hub loaders, each on a small local file in that dataset's column format -------------------


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gsm8k_loader(tmp_path: Path) -> None:
    f = _jsonl(
        tmp_path / "gsm8k.jsonl",
        [
            {
                "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                "How many clips did Natalia sell altogether in April and May?",
                "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
                "altogether in April and May.\n#### 72",
            },
            {
                "question": "How much is 1,200 + 34?",
                "answer": "1,200 + 34 = <<1200+34=1234>>1,234\n#### 1,234",
            },
        ],
    )
    r0, r1 = load_test_records(load_task_spec("gsm8k"), data_files=str(f))
    assert r0.answer == "72" and r1.answer == "1234"
    assert "<<" not in r0.solution and r0.solution.endswith("The answer is 72.")
    assert extract_answer(r0.solution, "gsm8k") == "72"
    assert r0.id == "gsm8k-0" and r0.choices is None


def test_math500_loader(tmp_path: Path) -> None:
    f = _jsonl(
        tmp_path / "math.jsonl",
        [
            {
                "problem": "Convert the point $(0,3)$ to polar coordinates.",
                "solution": "We have $r = 3$ ... $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$",
                "answer": "\\left( 3, \\frac{\\pi}{2} \\right)",
                "subject": "Precalculus",
                "level": 2,
                "unique_id": "test/precalculus/807.json",
            }
        ],
    )
    (r,) = load_test_records(load_task_spec("math"), data_files=str(f))
    assert r.id == "test/precalculus/807.json"
    assert r.question.startswith("Convert the point")
    assert is_equiv(extract_answer(r.solution, "math"), r.answer)


def test_svamp_asdiv_mawps_loaders(tmp_path: Path) -> None:
    svamp = _jsonl(
        tmp_path / "svamp.jsonl",
        [
            {
                "ID": "chal-1",
                "Body": "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack",
                "Question": "How much do you have to pay to buy each pack?",
                "Equation": "( 76.0 - 25.0 )",
                "Answer": 51.0,
                "Type": "Subtraction",
            }
        ],
    )
    (r,) = load_test_records(load_task_spec("svamp"), data_files=str(svamp))
    assert (r.id, r.answer) == ("chal-1", "51")
    assert r.question == (
        "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack "
        "How much do you have to pay to buy each pack?"
    )
    asdiv = _jsonl(
        tmp_path / "asdiv.jsonl",
        [
            {
                "body": "Seven red apples and two green apples are in the basket.",
                "question": "How many apples are in the basket?",
                "solution_type": "Addition",
                "answer": "9 (apples)",
                "formula": "7+2=9",
            }
        ],
    )
    (r,) = load_test_records(load_task_spec("asdiv"), data_files=str(asdiv))
    assert r.answer == "9" and r.question.endswith("How many apples are in the basket?")
    mawps = _jsonl(
        tmp_path / "mawps.jsonl",
        [
            {
                "id": "mawps_1",
                "question": "Sara has 3.5 pies and eats 1.25. How many are left?",
                "chain": "",
                "result": "2.25",
                "result_float": 2.25,
                "equation": "3.5-1.25",
                "expression": "x=3.5-1.25",
            }
        ],
    )
    (r,) = load_test_records(load_task_spec("mawps"), data_files=str(mawps))
    assert (r.id, r.answer) == ("mawps_1", "2.25")


def test_tabmwp_loader(tmp_path: Path) -> None:
    f = _jsonl(
        tmp_path / "tabmwp.jsonl",
        [
            {
                "question": "How many more votes did pizza get than tacos?",
                "choices": None,
                "answer": "3",
                "unit": None,
                "table_title": "Lunch votes",
                "table": "Food | Votes\npizza | 12\ntacos | 9",
                "table_for_pd": {},
                "row_num": 3,
                "column_num": 2,
                "solution": "12 - 9 = 3. The answer is 3.",
                "ques_type": "free_text",
                "ans_type": "integer_number",
                "grade": 3,
                "split": "test",
            }
        ],
    )
    (r,) = load_test_records(load_task_spec("tabmwp"), data_files=str(f))
    assert "Table: Lunch votes\nFood | Votes\npizza | 12" in r.question
    assert r.question.endswith("Question: How many more votes did pizza get than tacos?")
    assert r.answer == "3" and r.solution.endswith("The answer is 3.")


def test_mathqa_loader(tmp_path: Path) -> None:
    f = _jsonl(
        tmp_path / "mathqa.jsonl",
        [
            {
                "Problem": "the banker ' s gain of a certain sum due 3 years hence at 10 % per annum is rs . 36 . "
                "what is the present worth ?",
                "Rationale": '"explanation : t = 3 years r = 10 % ... answer : option c"',
                "options": "a ) rs . 400 , b ) rs . 300 , c ) rs . 1200 , d ) rs . 250 , e ) none of these",
                "correct": "c",
                "annotated_formula": "",
                "linear_formula": "",
                "category": "gain",
            }
        ],
    )
    (r,) = load_test_records(load_task_spec("mathqa"), data_files=str(f))
    assert r.choices == ("rs . 400", "rs . 300", "rs . 1200", "rs . 250", "none of these")
    assert (r.label, r.answer, r.gold_letter) == (2, "C", "C")


def test_mmlu_stem_loader(tmp_path: Path) -> None:
    f = _jsonl(
        tmp_path / "mmlu.jsonl",
        [
            {
                "question": "Find the degree for the given field extension Q(sqrt(2)) over Q.",
                "subject": "abstract_algebra",
                "choices": ["0", "2", "1", "3"],
                "answer": 1,
            }
        ],
    )
    (r,) = load_test_records(load_task_spec("mmlu_stem"), data_files=str(f))
    assert r.choices == ("0", "2", "1", "3") and r.label == 1 and r.answer == "B"
    assert len(load_task_spec("mmlu_stem").source["names"]) == 19


def test_sat_loader_csv(tmp_path: Path) -> None:
    f = tmp_path / "sat.csv"
    with f.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Question", "A", "B", "C", "D", "Answer"])
        w.writerow(["If 3x = 12, what is x?", "3", "4", "9", "36", "B"])
    (r,) = load_test_records(load_task_spec("sat"), data_files=str(f))
    assert r.choices == ("3", "4", "9", "36") and r.label == 1 and r.answer == "B"


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
    assert p.text.count("\n\nQuestion: ") == 8
    assert p.text.endswith("\n\nQuestion: What is 2 + 2?\nAnswer:")
    assert "Answer: There are 15 trees originally." in p.text


def test_math_prompt_and_choices_format() -> None:
    spec = load_task_spec("math")
    rec = EvalRecord(id="t", question="Compute $1+1$.", solution="", answer="2")
    p = build_prompt(spec, load_fewshot(spec), rec)
    assert p.text.startswith("Problem:\nFind the domain")
    assert p.text.endswith("Problem:\nCompute $1+1$.\n\nSolution:")
    assert format_choices(["3", "4"]) == "(A) 3 (B) 4"
    sat = load_task_spec("sat")
    mc = EvalRecord(id="m", question="Pick", solution="", answer="B", choices=("1", "2"), label=1)
    assert build_prompt(sat, [], mc).text == "Question: Pick\nAnswer Choices: (A) 1 (B) 2\nAnswer:"


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
