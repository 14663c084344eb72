"""The paper's benchmark sets shipped with rho, their prompts, and the hub loaders, all on real rows
(the harness's copies; hub-format files are those rows under the hub datasets' real column names)."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from rho.evaluate.prompts import build_prompt
from rho.evaluate.sources import load_test_records
from rho.evaluate.tasks import TaskError, benchmarks_dir, load_fewshot, load_task_spec

SIZES = {
    "gsm8k": 1319,
    "math": 500,
    "svamp": 1000,
    "asdiv": 2215,
    "mawps": 2065,
    "mathqa": 1000,
    "mmlu_stem": 3018,
    "sat": 32,
}
PROMPT_FILES = {
    "gsm8k": "gsm8k.md",
    "svamp": "gsm8k.md",
    "asdiv": "gsm8k.md",
    "mawps": "gsm8k.md",
    "tabmwp": "gsm8k.md",
    "math": "minerva_math.md",
    "mathqa": "mathqa.md",
    "mmlu_stem": "mmlu_stem.md",
    "sat": "mmlu_stem.md",
}


def _rows(task: str) -> list[dict]:
    with gzip.open(benchmarks_dir() / task / "test.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _readme_hashes() -> dict[str, str]:
    text = (benchmarks_dir() / "README.md").read_text()
    return dict(re.findall(r"`([\w/.]+\.(?:jsonl\.gz|md))` \|.*?\| `([0-9a-f]{64})` \|", text))


@pytest.mark.parametrize("task", sorted(SIZES))
def test_harness_sets_are_the_papers(task: str) -> None:
    spec = load_task_spec(task)
    assert spec.set == "harness" and spec.grading == "harness"
    path = benchmarks_dir() / task / "test.jsonl.gz"
    digest = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
    assert _readme_hashes()[f"{task}/test.jsonl.gz"] == digest  # provenance table matches the file
    recs = load_test_records(spec)
    assert len(recs) == SIZES[task]
    assert all(r.question.strip() and r.answer.strip() for r in recs)
    if spec.answer_type == "choice":
        assert all(r.answer == r.gold_letter for r in recs)


def test_prompt_files_match_provenance() -> None:
    hashes = _readme_hashes()
    for name in set(PROMPT_FILES.values()):
        data = (benchmarks_dir() / "prompts" / name).read_bytes()
        assert hashes[f"prompts/{name}"] == hashlib.sha256(data).hexdigest()
    assert (benchmarks_dir() / "LICENSE").read_text().lstrip().startswith("MIT License")


def test_set_contents() -> None:
    mmlu = _rows("mmlu_stem")
    subjects = {r["type"] for r in mmlu}
    assert len(subjects) == 18 and "anatomy" not in subjects
    assert set(load_task_spec("mmlu_stem").source["names"]) == subjects  # hub path: the same 18
    assert not any(";" in r["answer"] for r in _rows("asdiv"))
    ids = {r["ID"].split("-")[0] for r in _rows("svamp")}
    assert ids == {"chal"}  # SVAMP's ids; train + test = all 1000
    assert {r["type"] for r in _rows("mawps")} == {"addsub", "multiarith", "singleeq", "singleop"}


@pytest.mark.parametrize("task", sorted(PROMPT_FILES))
def test_prompts_are_the_harness_files_verbatim(task: str) -> None:
    """prompt = the harness's prompt file (stripped) + two blank lines + the question block."""
    spec = load_task_spec(task)
    demo = (benchmarks_dir() / "prompts" / PROMPT_FILES[task]).read_text(encoding="utf-8").strip()
    assert spec.separator == "\n\n\n" and spec.max_new_tokens == 1024
    assert spec.stop == ("</s>", "\n\nQuestion:", "\n\nProblem:")
    shots = load_fewshot(spec)
    assert len(shots) == spec.n_shots
    rec = load_test_records(spec, limit=1)[0] if spec.set == "harness" else None
    if rec is None:
        return
    context = (
        f"Problem:\n{rec.question}\nSolution:"
        if spec.template.startswith("Problem")
        else f"Question: {rec.question}\nAnswer:"
    )
    assert build_prompt(spec, shots, rec).text == demo + "\n\n\n" + context


def test_question_formats_on_real_rows() -> None:
    gsm = load_test_records(load_task_spec("gsm8k"), limit=1)[0]
    assert gsm.answer == "18" and gsm.question.startswith("Janet\u2019s ducks lay 16 eggs")
    svamp = load_test_records(load_task_spec("svamp"), limit=1)[0]
    assert svamp.question == (
        "There are 87 oranges and 290 bananas in Philip's collection. If the bananas are organized into 2 "
        "groups and oranges are organized into 93 groups. How big is each group of bananas?"
    )  # the harness adds the period the body lacks
    assert (svamp.id, svamp.answer) == ("chal-777", "145")
    asdiv = load_test_records(load_task_spec("asdiv"), limit=1)[0]
    assert asdiv.answer == "9"
    mathqa = load_test_records(load_task_spec("mathqa"), limit=1)[0]
    assert mathqa.question == (
        "If log 8 x + log 8 1 / 6 = 1 / 3 , then the value of x is :\n"
        "What of the following is the right choice? Explain your answer.\n"
        "(A) 12, (B) 16, (C) 18, (D) 24, (E) 26"
    )
    assert mathqa.choices == ("12", "16", "18", "24", "26") and mathqa.answer == "A"
    sat = load_test_records(load_task_spec("sat"), limit=1)[0]
    assert sat.question.endswith(
        "Which of the following must be true?\nWhat of the following is the right choice? Explain your answer.\n"
        "(A) $f(-6)=0$ (B) $f(6)=-6$ (C) $f(-6)=6$ (D) $f(0)=-6$"
    )
    assert sat.choices == ("$f(-6)=0$", "$f(6)=-6$", "$f(-6)=6$", "$f(0)=-6$") and sat.answer == "A"
    mmlu = load_test_records(load_task_spec("mmlu_stem"), limit=1)[0]
    assert mmlu.question.endswith(
        "\n(A) maintain the population at a point corresponding to the midpoint of its "
        "logistic curve, (B) opt for zero population control once the K value of the "
        "curve has been reached, (C) reduce the carrying capacity cif the environment "
        "to lower the K value, (D) increase the mortality rate"
    )
    assert mmlu.answer == "C"


# --- hub paths, on real rows written in the hub datasets' own columns ---------------------------


def test_sat_hub_columns(tmp_path: Path) -> None:
    """mcaleste/sat_multiple_choice_math_may_23: Question, "Possible Answers" ("A) ... B) ..."), Answer."""
    rows = _rows("sat")[:5]
    f = tmp_path / "sat.parquet"
    pd.DataFrame(
        [{"Question": r["question"], "Possible Answers": r["options"], "Answer": r["Answer"]} for r in rows]
    ).to_parquet(f)
    spec = load_task_spec("sat")
    hub = load_test_records(spec, data_files=str(f))
    harness = load_test_records(spec, limit=5)
    assert [(r.question, r.choices, r.label) for r in hub] == [
        (r.question, r.choices, r.label) for r in harness
    ]


def test_mathqa_hub_parquet(tmp_path: Path) -> None:
    """regisss/math_qa (the parquet copy of allenai/math_qa): Problem, Rationale, options, correct, ..."""
    rows = _rows("mathqa")[:4]
    hub_rows = [
        {
            "Problem": r["problem"],
            "Rationale": r["rationale"],
            "options": r["options"],
            "correct": r["correct"],
            "annotated_formula": r["annotated_formula"],
            "linear_formula": r["linear_formula"],
            "category": r["type"],
        }
        for r in rows
    ]
    f = tmp_path / "math_qa.parquet"
    pd.DataFrame(hub_rows).to_parquet(f)
    spec = load_task_spec("mathqa")
    assert spec.source["path"] == "regisss/math_qa"
    hub = load_test_records(spec, data_files=str(f))
    harness = load_test_records(spec, limit=4)
    assert [(r.question, r.choices, r.answer) for r in hub] == [
        (r.question, r.choices, r.answer) for r in harness
    ]
    assert hub[0].solution.startswith('"log 8 x')


def test_mathqa_list_options() -> None:
    """Some MathQA rows store options as a Python list literal: read safely (no eval)."""
    recs = load_test_records(load_task_spec("mathqa"))
    listed = [r for r, row in zip(recs, _rows("mathqa")) if row["options"].startswith("[")]
    assert listed and all(r.question.count("(A) ") == 1 and len(r.choices) == 5 for r in listed)


def test_svamp_asdiv_hub_files(tmp_path: Path) -> None:
    svamp = tmp_path / "svamp.jsonl"
    svamp.write_text("".join(json.dumps(r) + "\n" for r in _rows("svamp")[:3]))
    spec = load_task_spec("svamp")
    assert spec.source["splits"] == ["train", "test"]
    assert load_test_records(spec, data_files=str(svamp)) == load_test_records(spec, limit=3)
    rows = _rows("asdiv")[:3]
    multi = {**rows[0], "answer": "3 (cm); 4 (cm)"}  # a multi-answer row of EleutherAI/asdiv
    asdiv = tmp_path / "asdiv.jsonl"
    asdiv.write_text("".join(json.dumps(r) + "\n" for r in [multi, *rows]))
    assert load_test_records(load_task_spec("asdiv"), data_files=str(asdiv)) == load_test_records(
        load_task_spec("asdiv"), limit=3
    )


def test_tabmwp_problems_test1k_format(tmp_path: Path) -> None:
    """problems_test1k.json of the PromptPG release: an object of problems keyed by id."""
    spec = load_task_spec("tabmwp")
    assert spec.set == "hub" and spec.source["url"].endswith("/data/tabmwp/problems_test1k.json")
    problems = {
        "8": {
            "question": "Is the number of kites even or odd?",
            "choices": ["even", "odd"],
            "answer": "odd",
            "unit": None,
            "table_title": "Toys sold",
            "table": "Toy | Number\nkite | 7",
            "table_for_pd": {"Toy": ["kite"], "Number": ["7"]},
            "row_num": 2,
            "column_num": 2,
            "solution": "7 is odd.",
            "ques_type": "multi_choice",
            "ans_type": "extractive_text",
            "grade": 2,
            "split": "test",
        },
        "21": {
            "question": "Did more people vote for pizza than tacos?",
            "choices": ["yes", "no"],
            "answer": "yes",
            "unit": None,
            "table_title": None,
            "table": "Food | Votes\npizza | 12\ntacos | 9",
            "table_for_pd": {},
            "row_num": 3,
            "column_num": 2,
            "solution": "12 > 9.",
            "ques_type": "multi_choice",
            "ans_type": "boolean_text",
            "grade": 3,
            "split": "test",
        },
        "40": {
            "question": "What fraction of the votes were for pizza?",
            "choices": None,
            "answer": "3/4",
            "unit": None,
            "table_title": "Votes",
            "table": "Food | Votes\npizza | 12\ntacos | 4",
            "table_for_pd": {},
            "row_num": 3,
            "column_num": 2,
            "solution": "12/16 = 3/4.",
            "ques_type": "free_text",
            "ans_type": "fraction_number",
            "grade": 5,
            "split": "test",
        },
    }
    f = tmp_path / "problems_test1k.json"
    f.write_text(json.dumps(problems))
    kite, vote, frac = load_test_records(spec, data_files=str(f))
    assert kite.id == "8" and kite.question == (
        'Read the following table regarding "Toys sold" and answer a question:\nToy | Number\nkite | 7\n'
        "Is the number of kites even or odd? Please select from the following options: ['even', 'odd']"
    )
    assert vote.question.startswith("Read the following table and answer a question:\n")
    assert vote.question.endswith("['yes', 'no'] (Yes or No)") and vote.answer == "yes"
    assert frac.answer == "0.75"


def test_bad_set_is_refused() -> None:
    spec = load_task_spec("gsm8k")
    with pytest.raises(TaskError, match="set must be one of"):
        type(spec).from_dict({"name": "x", "role": "x", "set": "paper"})
    with pytest.raises(TaskError, match="harness.file"):
        type(spec).from_dict({"name": "x", "role": "x", "set": "harness"})
    with pytest.raises(TaskError, match="grading must be"):
        type(spec).from_dict({"name": "x", "role": "x", "grading": "lenient"})
