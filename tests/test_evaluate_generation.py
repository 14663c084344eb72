"""Generation backends: batched HF generation (left padding, stops), fake vLLM, end-to-end CoT eval."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch
from _helpers_eval import make_model, make_tokenizer, memorize, save_tiny_model, write_suite

from rho.evaluate import BackendError, HFGenerator, VLLMGenerator, evaluate_model
from rho.evaluate.generation import _StopOnStrings, load_hf

PROMPTS = [
    "Question: Tom has 3 apples and buys 4 more.\nAnswer:",
    "Question: x?\nAnswer:",
    "Problem: Find x if 2x = 10. Solution:",
    "The answer is",
    "A shop sells pens at $3 each; 12 pens cost 36 dollars, 50% of 1,000 is 500. Question:",
]


@pytest.fixture(scope="module")
def tiny():
    tok = make_tokenizer()
    return make_model(len(tok), hidden=48), tok


def test_batched_equals_one_by_one(tiny) -> None:
    """Left padding + attention mask: a prompt's greedy completion does not depend on its batch."""
    model, tok = tiny
    batched = HFGenerator(model, tok, batch_size=5, progress=False).generate(PROMPTS, max_new_tokens=12)
    single = HFGenerator(model, tok, batch_size=1, progress=False).generate(PROMPTS, max_new_tokens=12)
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.n_tokens == 12 for g in batched)  # random model: no early EOS, no stops given
    again = HFGenerator(model, tok, batch_size=2, progress=False).generate(PROMPTS, max_new_tokens=12)
    assert [g.text for g in again] == [g.text for g in batched]  # deterministic


def test_stop_strings_cut_each_sequence(tiny) -> None:
    model, tok = tiny
    gen = HFGenerator(model, tok, batch_size=5, progress=False)
    free = gen.generate(PROMPTS, max_new_tokens=16)
    # stop at a string that one completion contains: that row is cut there, the others are not
    target = next(g.text for g in free if len(g.text.strip()) > 6)
    stop = target.strip()[2:5]
    stopped = gen.generate(PROMPTS, max_new_tokens=16, stop=[stop])
    for f, s in zip(free, stopped):
        if stop in f.text:
            assert s.text == f.text[: f.text.index(stop)]
            assert s.n_tokens < 16
        else:
            assert s.text == f.text


def test_stop_criterion_is_per_row() -> None:
    tok = make_tokenizer()
    ids = tok(["Question: a\n\nQuestion:", "Question: a b c d"], return_tensors="pt", padding=True)[
        "input_ids"
    ]
    crit = _StopOnStrings(tok, ["\n\nQuestion:"], prompt_len=0)
    assert crit(ids).tolist() == [True, False]
    assert _StopOnStrings(tok, [], prompt_len=0)(ids).tolist() == [False, False]


def test_memorized_model_scores_end_to_end(tmp_path: Path) -> None:
    """A model that has memorized two CoT answers (one right, one wrong) scores exactly 0.5."""
    root = write_suite(tmp_path / "data")
    tok = make_tokenizer()
    model = make_model(len(tok), hidden=64)
    q1, q2 = "Question: What is 1 times 3?\nAnswer:", "Question: What is 2 times 3?\nAnswer:"
    memorize(
        model,
        tok,
        [
            q1 + " 1 * 3 = 3. The answer is 3.\n\nQuestion: junk 99",
            q2 + " 2 * 3 = 5. The answer is 5.\n\nQuestion: junk 99",
        ],
        prompts=[q1, q2],
    )
    df = evaluate_model(
        model,
        "arith",
        tokenizer=tok,
        data_root=root,
        limit=2,
        n_shots=0,
        batch_size=2,
        out_dir=tmp_path / "out",
        progress=False,
    )
    assert df.to_dict("records")[0] | {"stderr": None} == {
        "task": "arith",
        "role": "gsm8k",
        "metric": "exact_match",
        "value": 0.5,
        "stderr": None,
        "n": 2,
    }
    assert df["stderr"].iloc[0] == pytest.approx((0.5 * 0.5 / 1) ** 0.5)
    comp = pd.read_json(tmp_path / "out" / "completions.jsonl", lines=True)
    assert comp["completion"].tolist() == [" 1 * 3 = 3. The answer is 3.", " 2 * 3 = 5. The answer is 5."]
    assert comp["prediction"].astype(str).tolist() == ["3", "5"]
    assert comp["correct"].tolist() == [True, False]
    assert pd.read_csv(tmp_path / "out" / "results.csv")["value"].tolist() == [0.5]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["backend"] == "hf" and config["decoder"] == "lean"  # a Llama: rho's lean decoder


class _FakeOutput:
    def __init__(self, text: str, n: int) -> None:
        self.text, self.token_ids = text, list(range(n))


class _FakeRequestOutput:
    def __init__(self, text: str, n: int) -> None:
        self.outputs = [_FakeOutput(text, n)]


class FakeLLM:
    """Shaped like vllm.LLM: ``generate(prompts, sampling_params)`` -> RequestOutputs in order."""

    instances: list[FakeLLM] = []

    def __init__(self, model: str, **kwargs) -> None:
        self.model, self.kwargs, self.calls = model, kwargs, []
        FakeLLM.instances.append(self)

    def generate(self, prompts, params):
        self.calls.append((list(prompts), params))
        # vLLM cuts at the stop string itself; the fake returns the answer and a stop-free tail
        return [
            _FakeRequestOutput(" 3 * 1 = 3. The answer is 3." if "1 times" in p else " The answer is 7.", 9)
            for p in prompts
        ]


class FakeSamplingParams:
    def __init__(self, temperature: float, max_tokens: int, stop: list[str]) -> None:
        self.temperature, self.max_tokens, self.stop = temperature, max_tokens, stop


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    FakeLLM.instances.clear()
    return mod


def test_vllm_backend_with_fake_module(fake_vllm, tmp_path: Path) -> None:
    root = write_suite(tmp_path / "data")
    df = evaluate_model("some/model", "arith", data_root=root, backend="vllm", limit=3, progress=False)
    (llm,) = FakeLLM.instances
    assert llm.model == "some/model"
    prompts, params = llm.calls[0]
    assert len(prompts) == 3 and prompts[0].endswith("Question: What is 1 times 3?\nAnswer:")
    assert (params.temperature, params.max_tokens) == (0.0, 96)
    assert "\n\nQuestion:" in params.stop
    assert df["value"].iloc[0] == pytest.approx(1 / 3)  # only "1 times 3" is answered right


def test_vllm_generator_cuts_and_counts(fake_vllm) -> None:
    gen = VLLMGenerator("m")
    (g,) = gen.generate(["Question: 1 times?"], max_new_tokens=5, stop=["="])
    assert g.text == " 3 * 1 " and g.n_tokens == 9


def test_backend_errors(tmp_path: Path, monkeypatch) -> None:
    root = write_suite(tmp_path / "data")
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(BackendError, match="pip install vllm"):
        evaluate_model("m", "arith", data_root=root, backend="vllm")
    with pytest.raises(BackendError, match="unknown backend"):
        evaluate_model("m", "arith", data_root=root, backend="tgi")
    with pytest.raises(BackendError, match="does not exist"):
        load_hf(str(tmp_path / "no" / "model"))
    with pytest.raises(BackendError, match="batch_size"):
        HFGenerator(None, None, batch_size=0)


def test_saved_folder_roundtrip(tmp_path: Path) -> None:
    """A save_pretrained folder loads with its tokenizer (pad set) and generates."""
    path = save_tiny_model(tmp_path / "m")
    model, tok = load_hf(path)
    assert tok.pad_token == "<pad>" and not model.training
    (g,) = HFGenerator(model, tok, progress=False).generate(["Question:"], max_new_tokens=3)
    assert g.n_tokens == 3 and isinstance(g.text, str)
    assert torch.get_num_threads() <= 2


def test_benchmark_script_runs_and_reports_ratios() -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_generation.py"
    spec = importlib.util.spec_from_file_location("bench_generation", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        args = "--hidden 32 --layers 1 --n-problems 3 --max-new-tokens 2 --batch-sizes 1,3 --n-shots 0 --threads 1"
        df = bench.main(args.split())
    finally:
        torch.set_num_threads(threads)  # the script sets the thread count for its process
    assert df["batch_size"].tolist() == [1, 3, 1, 3] and df["speedup"].iloc[0] == 1.0
    assert df["backend"].tolist() == ["hf", "hf", "hf lean", "hf lean"]
    assert (df["new_tokens"] <= 6).all() and (df["tokens_per_s"] > 0).all()
    assert {"problems_per_s", "seconds"} <= set(df.columns)


def test_context_length_keeps_prompt_and_answer_inside_the_trained_window(tmp_path: Path) -> None:
    """A model trained on short blocks is never asked about positions beyond them."""
    import json

    root = write_suite(tmp_path)
    path = save_tiny_model(tmp_path / "m", window=512)
    tok = make_tokenizer()
    kw = dict(data_root=root, max_new_tokens=4, progress=False)
    evaluate_model(str(path), "arith", out_dir=tmp_path / "full", **kw)
    full = [json.loads(x) for x in (tmp_path / "full" / "completions.jsonl").read_text().splitlines()]
    longest = max(len(tok(r["prompt"], add_special_tokens=False)["input_ids"]) for r in full)
    assert {r["n_shots"] for r in full} == {2}
    context = longest + 4 - 1  # one token short of the longest 2-shot prompt plus its answer
    evaluate_model(str(path), "arith,pick", out_dir=tmp_path / "cut", context_length=context, **kw)
    cut = [json.loads(x) for x in (tmp_path / "cut" / "completions.jsonl").read_text().splitlines()]
    gen = [r for r in cut if r["task"] == "arith"]
    assert all(len(tok(r["prompt"], add_special_tokens=False)["input_ids"]) + 4 <= context for r in gen)
    assert min(r["n_shots"] for r in gen) < 2
    from rho.evaluate.runner import CHOICE_RESERVE

    mc = [r for r in cut if r["task"] == "pick"]
    assert mc and all(
        len(tok(r["prompt"], add_special_tokens=False)["input_ids"]) <= context - CHOICE_RESERVE for r in mc
    )
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["context_length"] == context
