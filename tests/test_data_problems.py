"""Problem families, contamination check, noise generators and world specs."""

import random
import re
from pathlib import Path

import pytest

from rho.data.contamination import build_index, normalise
from rho.data.miniature.math_docs import noisy_page
from rho.data.miniature.noise import NOISE_KINDS
from rho.data.miniature.problems import (
    FAMILIES,
    HELDOUT_TEMPLATES,
    TRAIN_MIX,
    TWO_STEP_TRAIN,
    multiple_choice,
    with_answer,
)
from rho.data.miniature.suites import TASKS, generate_task
from rho.data.miniature.world import build_world
from rho.data.provenance import LABEL_NAMES, check_spans
from rho.data.worlds import WORLDS, WorldError, WorldSpec, get_world

BOXED = {"linear_equation", "percent", "expression"}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_states_its_answer_and_its_equations_hold(family):
    for i in range(60):
        p = FAMILIES[family](random.Random(f"t{i}"))
        closing = f"The answer is \\boxed{{{p.answer}}}." if family in BOXED else f"The answer is {p.answer}."
        assert p.solution.endswith(closing) and p.question and p.family == family
        # every "a op b [op c ...] = d" step is arithmetically right, and there is at least one
        steps = re.findall(r"((?:-?\d+ [-+*/] )+\d+) = (-?\d+)", p.solution)
        assert steps, p.solution
        for expr, value in steps:
            assert eval(expr) == int(value), p.solution  # expr holds only digits and + - * /
        # the last computation's result is the answer (the answer follows from the question's numbers)
        assert steps[-1][1] == p.answer, p.solution
        if family == "linear_equation":
            a, v, op, b, c = re.fullmatch(
                r"Solve for \w: (\d+)(\w) ([-+]) (\d+) = (-?\d+)\.", p.question
            ).groups()
            assert eval(f"{a} * {p.answer} {op} {b}") == int(c)
        assert int(p.answer) >= 0
        # numbers stay small: at most two digits in every answer and operand of the question
        assert all(len(n) <= 3 for n in re.findall(r"\d+", p.question)), p.question


def test_heldout_templates_never_in_the_training_mix():
    assert HELDOUT_TEMPLATES.isdisjoint(TWO_STEP_TRAIN) and "word_two_step_heldout" not in TRAIN_MIX
    seen = {FAMILIES["word_two_step"](random.Random(i)).template for i in range(200)}
    assert seen == set(TWO_STEP_TRAIN)
    held = {FAMILIES["word_two_step_heldout"](random.Random(i)).template for i in range(100)}
    assert held == set(HELDOUT_TEMPLATES)


@pytest.mark.parametrize("family", ["word_two_step", "percent", "arithmetic"])
def test_multiple_choice_options_are_worked_solutions_with_one_right(family):
    for i in range(50):
        p = FAMILIES[family](random.Random(i))
        choices, label = multiple_choice(p, random.Random(i), 5)
        assert len(set(choices)) == 5 and choices[label] == p.solution and choices.count(p.solution) == 1
        for k, c in enumerate(choices):
            if k == label:
                continue
            # a wrong option differs only in its last result and closing sentence
            wrong = re.findall(r"(\d+)\}?\.$", c)[0]
            assert wrong != p.answer and c == with_answer(p, wrong)
            last = re.findall(r"((?:-?\d+ [-+*/] )+\d+) = (-?\d+)", c)[-1]
            assert last[1] == wrong and eval(last[0]) != int(wrong)


def test_eval_problems_unique_across_tasks():
    seen = set()
    questions = []
    for task in TASKS:
        for recs in generate_task(task, 0, 4, 60, seen).values():
            questions += [r["question"] for r in recs]
    assert len(questions) == len(set(questions)) == len(TASKS) * 64


def test_mini_sized_tasks_draw_500_unique_problems_each():
    seen: set = set()
    for task in TASKS:
        recs = generate_task(task, 0, 4, 500, seen)
        assert len(recs["test"]) == 500


def test_ngram_index_finds_problems_not_templates():
    long_q = (
        "Ava has 12 apples. Ava gets 7 more apples from the shop today. How many apples does Ava have now?"
    )
    index = build_index([("a", "What is 7 + 5?"), ("b", long_q)])
    assert index.find("Question: What is 7 + 5?\nAnswer: 12") == [("a", "what is 7 + 5")]
    assert index.find("what is 7 + 58") == [] and index.find("What is 7 - 5?") == []
    assert index.find(long_q.upper())[0][0] == "b"  # normalised: case and punctuation do not hide a leak
    assert (
        index.find(long_q.replace("12", "13").replace("7 more", "8 more")) == []
    )  # same template, other numbers
    assert normalise("Solve: 3x + 4 = 19.") == ["solve", "3", "x", "+", "4", "=", "19"]


def test_noise_kinds_and_page_spans():
    assert set(NOISE_KINDS) == set(LABEL_NAMES[1:])
    for i in range(30):
        text, spans, meta = noisy_page(random.Random(i))
        check_spans(text, spans, LABEL_NAMES)
        assert spans[0][0] == 0 and spans[-1][1] == len(text)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous cover
        assert all(text[e - 1] == "\n" for _, e, _ in spans)  # boundaries on newlines
    clean, spans, _ = noisy_page(random.Random(0), noise=0.0)
    assert {s[2] for s in spans} == {"content"}


def test_worlds_are_valid_and_bad_input_is_refused(tmp_path):
    assert set(WORLDS) == {"smoke", "mini", "gpu", "paper", "paper_7b"}
    smoke, mini, gpu = WORLDS["smoke"], WORLDS["mini"], WORLDS["gpu"]
    assert smoke.owm_docs < mini.owm_docs < gpu.owm_docs and 2048 <= mini.vocab_size <= 4096
    assert gpu.general_tokens >= 10 * mini.general_tokens and gpu.n_test >= 500 and mini.n_test >= 500
    assert mini.ppile_extra_docs >= mini.owm_docs  # ppile is about twice owm
    paper = WORLDS["paper"]
    assert not paper.is_miniature and paper.tokenizer.startswith("TinyLlama/") and paper.block_size == 2048
    assert paper.hub_corpora["starcoderdata"].text_column == "content"
    assert get_world("smoke", n_test=3).n_test == 3
    with pytest.raises(WorldError, match="unknown world 'tiny'"):
        get_world("tiny")
    with pytest.raises(WorldError, match=r"unknown world field\(s\) \['owm_doc'\]"):
        get_world("smoke", owm_doc=3)
    with pytest.raises(WorldError, match=">= 0"):
        get_world("smoke", n_test=-1)
    with pytest.raises(WorldError, match="python -m rho.data tokenize"):
        build_world(tmp_path / "w", "paper")
    with pytest.raises(WorldError, match="must be >= 1"):
        build_world(tmp_path / "w", "smoke", owm_docs=0)
    assert not (tmp_path / "w").exists()


def test_world_block_size_is_the_block_size_its_study_profile_trains_with():
    import yaml

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    for name, prof in params["profiles"].items():
        assert WORLDS[prof["world"]].block_size == prof["block_size"], name


def test_old_profile_names_still_import_as_deprecated_aliases():
    import importlib
    import sys

    sys.modules.pop("rho.data.profiles", None)
    with pytest.warns(DeprecationWarning, match="rho.data.worlds"):
        old = importlib.import_module("rho.data.profiles")
    assert old.DataProfile is WorldSpec and old.PROFILES is WORLDS and old.get_profile is get_world
    assert old.ProfileError is WorldError
