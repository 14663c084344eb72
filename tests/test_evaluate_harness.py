"""lm-evaluation-harness on a local model folder and a local multiple-choice task YAML (offline)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from _helpers_eval import rec, save_tiny_model

from rho.evaluate import EvalRecord, HarnessError, run_lm_eval
from rho.evaluate.choice import score_choices
from rho.evaluate.generation import load_hf
from rho.evaluate.harness import tidy_lm_eval
from rho.evaluate.tasks import TaskSpec

YAML = """task: toy_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""

ROWS = [
    rec(0, "Which number is even?", "4", choices=["3", "4", "5"], label=1),
    rec(1, "Which word is a fruit?", "apple", choices=["apple", "chair"], label=0),
    rec(2, "What is 50% of 1,000?", "500", choices=["50", "500", "5", "5000"], label=1),
    rec(3, "Tom has 3 apples and buys 4 more. How many?", "7", choices=["12", "1.2", "7"], label=2),
]


@pytest.mark.slow
def test_run_lm_eval_matches_our_likelihood_scoring(tmp_path: Path) -> None:
    model_dir = save_tiny_model(tmp_path / "model")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    data = tasks / "toy_mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tasks / "toy_mc.yaml").write_text(YAML.format(data=data))

    table = run_lm_eval(model_dir, "toy_mc", include_path=tasks, batch_size=4, out_dir=tmp_path / "out")
    assert table[["task", "role", "metric", "n"]].values.tolist() == [
        ["toy_mc", "general", "acc", 4],
        ["toy_mc", "general", "acc_norm", 4],
    ]
    assert table["value"].between(0, 1).all()
    for v, s in zip(table["value"], table["stderr"]):
        assert s == pytest.approx(math.sqrt(v * (1 - v) / 3))

    # lm-eval's per-option log-likelihoods equal rho's own multiple-choice scorer on the same prompts
    samples = [
        json.loads(line) for line in (tmp_path / "out" / "lm_eval_samples.jsonl").read_text().splitlines()
    ]
    samples.sort(key=lambda s: s["doc_id"])
    model, tok = load_hf(model_dir)
    spec = TaskSpec(name="toy_mc", role="general", kind="multiple_choice", metric="acc")
    ours = score_choices(model, tok, spec, [], [EvalRecord.from_dict(r) for r in ROWS], progress=False)
    for s, o in zip(samples, ours):
        theirs = [
            float(resp[0]) if isinstance(resp, list) else float(str(resp).strip("()[]").split(",")[0])
            for resp in s["filtered_resps"]
        ]
        assert theirs == pytest.approx(list(o.logprobs), abs=1e-3)
    acc = sum(o.correct for o in ours) / len(ours)
    assert table.loc[table.metric == "acc", "value"].iloc[0] == pytest.approx(acc)
    # each document's own score is kept (the paired SLM - CLM comparison reads it)
    assert [s["acc"] for s in samples] == [float(o.correct) for o in ours]
    saved = pd.read_csv(tmp_path / "out" / "lm_eval_results.csv")
    assert saved["metric"].tolist() == ["acc", "acc_norm"]


def test_run_lm_eval_input_errors(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no lm-eval tasks"):
        run_lm_eval(tmp_path, " ")
    with pytest.raises(HarnessError, match="not a directory"):
        run_lm_eval(tmp_path, "toy_mc", include_path=tmp_path / "missing")


def test_tidy_lm_eval_parses_metric_keys() -> None:
    raw = {
        "results": {
            "arc_easy": {
                "alias": "arc_easy",
                "acc,none": 0.25,
                "acc_stderr,none": 0.1,
                "acc_norm,none": 0.5,
                "acc_norm_stderr,none": "N/A",
            },
            "gsm8k": {"exact_match,strict-match": 0.1, "exact_match_stderr,strict-match": 0.03},
            "wiki": {
                "word_perplexity,none": 41.5,
                "word_perplexity_stderr,none": "N/A",
                "bits_per_byte,none": 1.25,
            },
        },
        "n-samples": {"arc_easy": {"original": 100, "effective": 4}, "gsm8k": {"effective": 10}},
    }
    t = tidy_lm_eval(raw)
    assert t.values.tolist()[0] == ["arc_easy", "general", "acc", 0.25, 0.1, 4]
    assert t.iloc[1]["metric"] == "acc_norm" and t.iloc[1]["stderr"] == pytest.approx(math.sqrt(0.25 / 3))
    assert t.iloc[2][["task", "metric", "value", "stderr", "n"]].tolist() == [
        "gsm8k",
        "exact_match,strict-match",
        0.1,
        0.03,
        10,
    ]


@pytest.mark.slow
def test_run_lm_eval_relative_data_and_overlong_continuations_skipped(tmp_path: Path) -> None:
    """A YAML names its data file relative to itself; a document whose choice cannot fit the window
    is dropped before lm-eval sees it (lm-eval would assert) and counted in ``skipped``."""
    model_dir = save_tiny_model(tmp_path / "model")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    long_row = rec(4, "Which is long?", "x", choices=["x", " ".join(["banana split"] * 20)], label=0)
    (tasks / "toy_mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*ROWS, long_row]))
    (tasks / "toy_mc.yaml").write_text(YAML.format(data="toy_mc.jsonl"))

    table = run_lm_eval(model_dir, "toy_mc", include_path=tasks, batch_size=4, max_length=24)
    assert table[["metric", "n", "skipped"]].values.tolist() == [["acc", 4, 1], ["acc_norm", 4, 1]]


def test_run_lm_eval_refuses_task_yaml_that_imports_code(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    yaml_text = YAML.format(data="toy_mc.jsonl") + "process_docs: !function utils.process_docs\n"
    (tasks / "toy_mc.yaml").write_text(yaml_text)
    (tasks / "utils.py").write_text("raise SystemExit('imported')\n")
    with pytest.raises(HarnessError, match="!function.*plain data"):
        run_lm_eval(tmp_path, "toy_mc", include_path=tasks)
