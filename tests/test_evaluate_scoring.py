"""Log-likelihood scoring, multiple choice, downstream loss, result tables and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from _helpers_eval import make_model, make_tokenizer, memorize, rec, save_tiny_model, write_suite

from rho.evaluate import EvalRecord, Generation, TaskError, binomial_stderr, downstream_loss, evaluate_model
from rho.evaluate.choice import score_choices
from rho.evaluate.likelihood import continuation_logliks
from rho.evaluate.records import RecordError
from rho.evaluate.results import format_table, metric_row, write_results
from rho.evaluate.shared_context import shared_context_logliks
from rho.evaluate.tasks import TaskSpec


@pytest.fixture(scope="module")
def tiny():
    tok = make_tokenizer()
    return make_model(len(tok), hidden=32), tok


def _manual_loglik(model, tok, context: str, continuation: str) -> float:
    """Direct forward pass; the tokenizer has no BOS, so only an empty context gets EOS to condition on."""
    ctx = tok(context)["input_ids"] or [tok.eos_token_id]
    cont = tok(continuation)["input_ids"]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = F.log_softmax(model(ids).logits[0, :-1].float(), -1)
    targets = ids[0, 1:]
    return float(logp[torch.arange(len(targets)), targets][-len(cont) :].sum())


def test_continuation_logliks_match_a_manual_forward(tiny) -> None:
    model, tok = tiny
    pairs = [
        ("Question: x?\nAnswer:", " 7"),
        ("The answer is", " 12 apples."),
        ("", "Tom"),
        ("A shop sells", " pens"),
    ]
    got = continuation_logliks(model, tok, pairs, batch_size=3, progress=False)
    for (c, t), ll in zip(pairs, got):
        assert ll.logprob == pytest.approx(_manual_loglik(model, tok, c, t), abs=1e-4)
        assert ll.n_tokens == len(tok(t, add_special_tokens=False)["input_ids"])
    # trailing whitespace of the context moves to the continuation (lm-eval convention)
    (a,) = continuation_logliks(model, tok, [("The answer is ", "7")], progress=False)
    assert a.logprob == pytest.approx(_manual_loglik(model, tok, "The answer is", " 7"), abs=1e-4)
    with pytest.raises(ValueError, match="empty continuation"):
        continuation_logliks(model, tok, [("ctx", "")], progress=False)


def test_long_context_is_cut_from_the_left() -> None:
    tok = make_tokenizer()
    model = make_model(len(tok), window=16)
    (ll,) = continuation_logliks(model, tok, [("Tom has 3 apples. " * 20, " 7")], progress=False)
    assert math.isfinite(ll.logprob) and ll.n_tokens >= 1


def test_shared_context_logliks_equal_the_pairwise_ones(tiny) -> None:
    model, tok = tiny
    groups = [
        ("Question: x?\nAnswer:", [" 7", " 12 apples.", " 3 + 4 = 7. The answer is 7."]),
        ("The answer is ", ["7", "12"]),  # trailing space moves into each option
        ("", ["Tom", "A shop"]),  # empty context: one conditioning token
        ("A shop sells", [" pens"]),
    ]
    got = shared_context_logliks(model, tok, groups, batch_size=2, progress=False)
    assert [len(g) for g in got] == [3, 2, 2, 1]
    for (ctx, conts), lls in zip(groups, got):
        want = continuation_logliks(model, tok, [(ctx, c) for c in conts], progress=False)
        for a, b in zip(lls, want):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
            assert (a.n_tokens, a.greedy) == (b.n_tokens, b.greedy)
    with pytest.raises(ValueError, match="empty continuation"):
        shared_context_logliks(model, tok, [("ctx", ["a", ""])], progress=False)
    with pytest.raises(ValueError, match="no continuations"):
        shared_context_logliks(model, tok, [("ctx", [])], progress=False)


def test_a_shared_few_shot_prefix_runs_once_per_batch(tiny, monkeypatch) -> None:
    import rho.evaluate.shared_context as sc

    model, tok = tiny
    shots = "Question: Tom has 3 apples and buys 4.\nAnswer: 3 + 4 = 7. The answer is 7.\n\n" * 2
    groups = [
        (shots + f"Question: {q}\nAnswer:", [" 7", " 12 apples.", f" {q[:6]}"])
        for q in ("x?", "A shop sells 5 pens?", "y plus 2?", "How many?", "Tom eats 1.")
    ]
    calls: list[tuple[int, ...]] = []
    real = sc._CachedForward.__call__

    def spy(self, cache=None, **kw):
        calls.append((tuple(kw["input_ids"].shape), cache is not None))
        return real(self, cache, **kw)

    monkeypatch.setattr(sc._CachedForward, "__call__", spy)
    got = shared_context_logliks(model, tok, groups, batch_size=3, progress=False)
    prefix = len(tok(shots)["input_ids"]) - 2  # a token or two at the seam may merge with what follows
    firsts = [shape for shape, cached in calls if shape[0] == 1 and not cached]
    assert len(firsts) == 2 and all(w >= prefix for _, w in firsts)  # the prefix: once per batch of 3 and 2
    assert all(shape[1] < 20 for shape, cached in calls if cached and shape[0] > 1)  # the rest is short
    for (ctx, conts), lls in zip(groups, got, strict=True):
        want = continuation_logliks(model, tok, [(ctx, c) for c in conts], progress=False)
        for a, b in zip(lls, want, strict=True):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
            assert (a.n_tokens, a.greedy) == (b.n_tokens, b.greedy)


def test_shared_context_cuts_the_context_by_the_longest_option() -> None:
    tok = make_tokenizer()
    model = make_model(len(tok), window=16)
    ctx, short, long_ = "Tom has 3 apples. " * 20, " 7", " 3 + 4 = 7 apples"
    (lls,) = shared_context_logliks(model, tok, [(ctx, [short, long_])], progress=False, max_length=16)
    # both options see the context cut to fit the longest one: pairwise scoring of the long option
    # (cut by its own length) is identical, the short one sees the same shorter context
    (want_long,) = continuation_logliks(model, tok, [(ctx, long_)], progress=False, max_length=16)
    assert lls[1].logprob == pytest.approx(want_long.logprob, abs=1e-4)
    n_long = lls[1].n_tokens
    cut = tok(ctx.rstrip())["input_ids"][-(16 + 1 - n_long) :]
    ids = torch.tensor([cut + tok(ctx + short)["input_ids"][len(tok(ctx.rstrip())["input_ids"]) :]])
    with torch.no_grad():
        logp = F.log_softmax(model(ids[:, :-1]).logits[0].float(), -1)
    n = lls[0].n_tokens
    manual = float(logp[-n:].gather(-1, ids[0, -n:, None])[:, 0].sum())
    assert lls[0].logprob == pytest.approx(manual, abs=1e-4)
    # an option longer than the window falls back to rolling windows (every token scored once)
    very_long = " apples" * 30
    (lls2,) = shared_context_logliks(model, tok, [(ctx, [short, very_long])], progress=False, max_length=16)
    (want,) = continuation_logliks(model, tok, [(ctx, very_long)], progress=False, max_length=16)
    assert lls2[1].logprob == pytest.approx(want.logprob, abs=1e-4) and lls2[1].n_tokens == want.n_tokens


def test_multiple_choice_with_a_model_that_knows_the_answers() -> None:
    tok = make_tokenizer()
    model = make_model(len(tok), hidden=64)
    spec = TaskSpec(name="pick", role="x", kind="multiple_choice", metric="acc")
    recs = [
        EvalRecord.from_dict(rec(i, q, a, choices=ch, label=lab))
        for i, (q, a, ch, lab) in enumerate(
            [
                ("Which fruit is red?", "apple", ["banana", "apple"], 1),
                ("Which animal barks?", "dog", ["dog", "cat", "cow"], 0),
            ]
        )
    ]
    memorize(
        model,
        tok,
        ["Question: Which fruit is red?\nAnswer: apple", "Question: Which animal barks?\nAnswer: dog"],
        prompts=["Question: Which fruit is red?\nAnswer:", "Question: Which animal barks?\nAnswer:"],
    )
    res = score_choices(model, tok, spec, [], recs, batch_size=2, progress=False)
    assert [r.pred for r in res] == [1, 0] and all(r.correct for r in res)
    assert [len(r.logprobs) for r in res] == [2, 3]
    for r in res:
        norm = [lp / len(c) for lp, c in zip(r.logprobs, r.record.choices)]
        assert r.pred_norm == max(range(len(norm)), key=norm.__getitem__)
    with pytest.raises(TaskError, match="no choices"):
        score_choices(model, tok, spec, [], [EvalRecord(id="q", question="q", solution="", answer="1")])


def test_downstream_loss_is_token_weighted_mean_over_solutions(tiny, tmp_path: Path) -> None:
    model, tok = tiny
    recs = [
        rec(0, "What is 1 plus 1?", "2", "1 + 1 = 2. The answer is 2."),
        rec(1, "What is 10 plus 5?", "15", "10 + 5 = 15. The answer is 15."),
    ]
    total, count = 0.0, 0
    for r in recs:
        lp = _manual_loglik(model, tok, f"Question: {r['question']}\nAnswer:", " " + r["solution"])
        total += -lp
        count += len(tok(" " + r["solution"], add_special_tokens=False)["input_ids"])
    got = downstream_loss(model, recs, tokenizer=tok, progress=False)
    assert got == pytest.approx(total / count, rel=1e-5)
    f = tmp_path / "held_out.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert downstream_loss(model, f, tokenizer=tok, progress=False) == pytest.approx(got, rel=1e-6)
    assert downstream_loss(model, f, tokenizer=tok, limit=1, progress=False) != pytest.approx(got, rel=1e-6)
    with pytest.raises(RecordError, match="no reference solution"):
        downstream_loss(model, [rec(0, "q", "1") | {"solution": ""}], tokenizer=tok)


def test_downstream_loss_drops_after_training_on_solutions() -> None:
    tok = make_tokenizer()
    model = make_model(len(tok), hidden=48)
    recs = [rec(0, "What is 1 plus 1?", "2", "1 + 1 = 2. The answer is 2.")]
    before = downstream_loss(model, recs, tokenizer=tok, progress=False)
    memorize(model, tok, ["Question: What is 1 plus 1?\nAnswer: 1 + 1 = 2. The answer is 2."])
    after = downstream_loss(model, recs, tokenizer=tok, progress=False)
    assert before > math.log(len(tok)) * 0.7 and after < before / 3


def test_stderr_and_metric_rows() -> None:
    assert binomial_stderr(0.5, 5) == pytest.approx(math.sqrt(0.25 / 4))
    assert binomial_stderr(1.0, 10) == 0.0
    assert math.isnan(binomial_stderr(1.0, 1))
    row = metric_row("t", "gsm8k", "exact_match", [True, False, False, True])
    assert row == {
        "task": "t",
        "role": "gsm8k",
        "metric": "exact_match",
        "value": 0.5,
        "stderr": pytest.approx(math.sqrt(0.25 / 3)),
        "n": 4,
    }


class ScriptedGenerator:
    """A generation backend that returns given completions in order (records the prompts)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts, self.prompts = texts, []

    def generate(self, prompts, max_new_tokens, stop=()):
        self.prompts.extend(prompts)
        return [Generation(t, 5) for t in self.texts[: len(prompts)]]


def test_evaluate_model_accuracy_on_hub_format_files(tiny, tmp_path: Path) -> None:
    """SAT read offline in the hub's columns (real rows); harness grading; accuracy = right / n."""
    import gzip

    from rho.evaluate.tasks import benchmarks_dir

    model, tok = tiny
    with gzip.open(benchmarks_dir() / "sat" / "test.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f][:4]  # golds A, A, C, A
    sat = tmp_path / "sat.parquet"
    pd.DataFrame(
        [{"Question": r["question"], "Possible Answers": r["options"], "Answer": r["Answer"]} for r in rows]
    ).to_parquet(sat)
    gen = ScriptedGenerator(
        [
            "So f(-6) = 0. The answer is (A).\n\nProblem:\nIf 2x = 4, what is x? The answer is (C).",
            "The answer is (C).",
            "x = 10.\nFinal Answer: The final answer is (C).",
            "I am not sure.",
        ]
    )
    df = evaluate_model(
        model,
        "sat",
        tokenizer=tok,
        data_files={"sat": str(sat)},
        generator=gen,
        out_dir=tmp_path / "out",
        progress=False,
    )
    assert df[["task", "role", "metric", "n"]].values.tolist() == [["sat", "sat", "exact_match", 4]]
    assert df["value"].iloc[0] == 0.5
    assert df["stderr"].iloc[0] == pytest.approx(math.sqrt(0.25 / 3))
    assert gen.prompts[0].count("What of the following is the right choice?") == 5  # 4 exemplars + question
    comp = [json.loads(line) for line in (tmp_path / "out" / "completions.jsonl").read_text().splitlines()]
    assert [c["prediction"] for c in comp] == ["A", "C", "C", None]
    assert [c["correct"] for c in comp] == [True, False, True, False]
    assert {c["grading"] for c in comp} == {"harness"}
    assert comp[0]["completion"] == "So f(-6) = 0. The answer is (A)."  # cut at the next problem
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["tasks"] == ["sat"] and config["grading"] == {"sat": "harness"}
    default = evaluate_model(
        model,
        "sat",
        tokenizer=tok,
        data_files={"sat": str(sat)},
        generator=gen,
        progress=False,
        grading="default",
    )
    assert default["value"].iloc[0] == 0.5
    with pytest.raises(TaskError, match="grading must be"):
        evaluate_model(model, "sat", tokenizer=tok, generator=gen, grading="lenient")


def test_evaluate_model_checks_inputs_before_work(tmp_path: Path) -> None:
    root = write_suite(tmp_path / "data")
    missing_model = tmp_path / "no" / "model"
    with pytest.raises(TaskError, match="unknown task"):
        evaluate_model(missing_model, "arith,bogus", data_root=root)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_model(missing_model, "arith", data_root=root, batch_size=0)
    with pytest.raises(TaskError, match="limit"):
        evaluate_model(missing_model, "arith", data_root=root, limit=0)


def test_failed_write_keeps_previous_results(tmp_path: Path) -> None:
    out = tmp_path / "out"
    good = pd.DataFrame([metric_row("t", "r", "acc", [True, False])])
    write_results(out, good, [{"id": "1"}])
    before = (out / "results.csv").read_text()

    def broken():
        yield {"id": "2"}
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_results(out, good.assign(value=0.0), broken())
    assert (out / "results.csv").read_text() == before
    assert (out / "completions.jsonl").read_text() == '{"id": "1"}\n'
    assert sorted(p.name for p in out.iterdir()) == ["completions.jsonl", "results.csv"]


def test_cli_on_local_suite(tmp_path: Path, capsys) -> None:
    from rho.evaluate.__main__ import main

    model = save_tiny_model(tmp_path / "m")
    root = write_suite(tmp_path / "data")
    table = main(
        [
            "--model",
            str(model),
            "--tasks",
            "arith,pick",
            "--data-root",
            str(root),
            "--out",
            str(tmp_path / "res"),
            "--limit",
            "3",
            "--batch-size",
            "2",
            "--max-new-tokens",
            "8",
        ]
    )
    out = capsys.readouterr().out
    assert "| task | role | metric | value | stderr | n |" in out and "| pick | mmlu_stem | acc_norm |" in out
    assert table[["task", "metric", "n"]].values.tolist() == [
        ["arith", "exact_match", 3],
        ["pick", "acc", 3],
        ["pick", "acc_norm", 3],
    ]
    saved = pd.read_csv(tmp_path / "res" / "results.csv")
    assert saved["value"].tolist() == pytest.approx(table["value"].tolist())
    comp = pd.read_json(tmp_path / "res" / "completions.jsonl", lines=True)
    assert len(comp) == 6 and (comp.loc[comp.task == "arith", "n_tokens"] <= 8).all()
    assert "90.00" in format_table(pd.DataFrame([metric_row("t", "r", "acc", [True] * 9 + [False])]))


def test_cli_refuses_bad_input_before_loading(tmp_path: Path) -> None:
    from rho.evaluate.__main__ import main

    with pytest.raises(TaskError, match="unknown task"):
        main(["--model", str(tmp_path / "none"), "--tasks", "gsm8k,bogus"])
    with pytest.raises(SystemExit):
        main(["--model", str(tmp_path / "none")])  # neither --tasks nor --lm-eval-tasks


def test_max_length_cuts_like_a_model_with_that_window() -> None:
    """``max_length`` (the trained context) cuts inputs exactly as a model whose window it is."""
    tok = make_tokenizer()
    pairs = [("Tom has 3 apples. " * 20, " 7"), ("Find x.", " 5")]
    wide = continuation_logliks(make_model(len(tok), window=512), tok, pairs, progress=False, max_length=16)
    narrow = continuation_logliks(make_model(len(tok), window=16), tok, pairs, progress=False)
    assert [round(a.logprob, 5) for a in wide] == [round(b.logprob, 5) for b in narrow]
    full = continuation_logliks(make_model(len(tok), window=512), tok, pairs, progress=False)
    assert full[0].logprob != wide[0].logprob and full[1].logprob == wide[1].logprob


def test_continuation_longer_than_the_window_is_scored_in_rolling_windows() -> None:
    """Every continuation token is scored once, conditioned on what fits before it (brute force check)."""
    from rho.evaluate.likelihood import _encode_pair

    tok = make_tokenizer()
    model = make_model(len(tok), window=512)
    ctx, cont = "Question: Tom has 3 apples.", " Tom has 3 + 4 = 7 apples. The answer is 7." * 4
    window = 12
    (ll,) = continuation_logliks(model, tok, [(ctx, cont)], progress=False, max_length=window, batch_size=3)
    c_ids, t_ids = _encode_pair(tok, ctx, cont, tok.eos_token_id)
    full = c_ids + t_ids
    assert ll.n_tokens == len(t_ids) > window
    step, expected = window // 2, 0.0
    for a in range(len(c_ids), len(full), step):
        for p in range(a, min(a + step, len(full))):
            b = min(a + step, len(full))
            x = torch.tensor([full[max(0, b - 1 - window) : p]])
            with torch.no_grad():
                expected += float(torch.log_softmax(model(input_ids=x).logits[0, -1], -1)[full[p]])
    assert ll.logprob == pytest.approx(expected, abs=1e-3)
