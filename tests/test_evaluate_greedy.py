"""The lean greedy decoder (rho.evaluate.greedy) against transformers' generate."""

from __future__ import annotations

import pytest
import torch
from _helpers_eval import make_model, make_tokenizer
from test_evaluate_generation import PROMPTS

from rho.evaluate import HFGenerator
from rho.evaluate.greedy import LlamaGreedy, common_prefix, supports


def _reference(
    model, prompts: list[list[int]], max_new: int, stop_token: int | None = None
) -> list[list[int]]:
    """transformers' greedy generate, one prompt at a time (no padding), cut like LlamaGreedy."""
    outs = []
    for p in prompts:
        ids = torch.tensor([p])
        gen = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )[0, len(p) :].tolist()
        if stop_token is not None and stop_token in gen:
            gen = gen[: gen.index(stop_token) + 1]
        outs.append(gen)
    return outs


def _prompts(vocab: int, seed: int = 0, prefix: int = 9) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    shared = torch.randint(2, vocab, (prefix,), generator=g).tolist()
    return [shared + torch.randint(2, vocab, (n,), generator=g).tolist() for n in (1, 6, 3, 11, 2)]


@pytest.mark.parametrize("kv_heads", [4, 2])  # plain and grouped-query attention
def test_equals_generate_token_for_token(kv_heads: int) -> None:
    model = make_model(97, hidden=32, heads=4, kv_heads=kv_heads).double()  # float64: no rounding-level tie
    assert model.config.num_key_value_heads == kv_heads
    prompts = _prompts(97)
    got = LlamaGreedy(model).generate(prompts, max_new_tokens=10, eos_token_id=None)
    assert got == _reference(model, prompts, 10)
    assert all(len(g) == 10 for g in got)


def test_finished_rows_leave_the_batch_without_changing_the_others() -> None:
    model = make_model(61, hidden=32).double()
    prompts = _prompts(61, seed=3)
    free = LlamaGreedy(model).generate(prompts, max_new_tokens=12, eos_token_id=None)
    # stop each row at the first token divisible by 4: rows end at different steps
    got = LlamaGreedy(model).generate(prompts, 12, eos_token_id=None, done=lambda toks: toks[-1] % 4 == 0)
    want = [f[: next((i + 1 for i, t in enumerate(f) if t % 4 == 0), len(f))] for f in free]
    assert got == want
    assert len({len(g) for g in got}) > 1  # the test exercised rows ending at different steps
    # the end-of-sequence token ends a row too, and is kept as its last token
    eos = free[0][2]
    ended = LlamaGreedy(model).generate(prompts, 12, eos_token_id=eos)
    for f, e in zip(free, ended, strict=True):
        assert e == (f[: f.index(eos) + 1] if eos in f else f)


def test_prompts_without_a_common_prefix_and_a_single_prompt() -> None:
    model = make_model(61, hidden=32).double()
    prompts = [[5, 7, 9], [8, 2, 4, 6, 3], [11]]
    assert common_prefix(prompts) == 0
    assert LlamaGreedy(model).generate(prompts, 6, None) == _reference(model, prompts, 6)
    one = [[3, 4, 5, 6]]
    assert LlamaGreedy(model).generate(one, 6, None) == _reference(model, one, 6)
    assert LlamaGreedy(model).generate(one, 0, None) == [[]]
    with pytest.raises(ValueError, match="at least one token"):
        LlamaGreedy(model).generate([[]], 3, None)


def test_common_prefix() -> None:
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix([[1, 2, 3]]) == 3
    assert common_prefix([[1], [2]]) == 0
    # leave=1: every row keeps a token after the prefix (what the decoders pass)
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]], leave=1) == 1
    assert common_prefix([[1, 2, 3], [1, 2, 3, 4]], leave=1) == 2
    assert common_prefix([[1, 2, 3, 9], [1, 2, 3, 4]], leave=1) == 3
    assert common_prefix([[1], [1]], leave=1) == 0
    assert common_prefix([[], [1]], leave=1) == 0
    assert common_prefix([], leave=1) == 0


def test_hf_generator_uses_it_for_llama_and_matches_generate() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = make_tokenizer()
    model = make_model(len(tok), hidden=48)
    lean = HFGenerator(model, tok, batch_size=5, progress=False)
    plain = HFGenerator(model, tok, batch_size=5, progress=False, lean=False)
    assert lean.lean is not None and plain.lean is None
    assert (lean.decoder, plain.decoder) == ("lean", "hf")  # what config.json records
    for stop in ([], ["e"]):
        a = lean.generate(PROMPTS, max_new_tokens=12, stop=stop)
        b = plain.generate(PROMPTS, max_new_tokens=12, stop=stop)
        assert a == b
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2))
    assert not supports(gpt2)
    assert HFGenerator(gpt2, tok, progress=False).lean is None
    with pytest.raises(ValueError, match="Llama"):
        LlamaGreedy(gpt2)
