"""Tests for rho.scoring on a tiny random Llama and a tiny shard."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from rho import scoring
from rho.data.shards import write_shard
from rho.scoring import (
    ScoringError,
    _fused_rows,
    load_scores,
    model_identity,
    next_token_loss_and_entropy,
    prompt_logprobs_to_arrays,
    score_corpus,
)

VOCAB = 100
L = 8


def tiny_model(seed: int = 0, vocab: int = VOCAB) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=vocab,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg).eval()


def make_shard(path, seed: int = 0, n_docs: int = 6, tokenizer_hash: str = "tok-A", doc_len: int = 9):
    rng = np.random.default_rng(seed)
    docs = [rng.integers(1, VOCAB, size=doc_len) for _ in range(n_docs)]
    return write_shard(path, docs, vocab_size=VOCAB, eos_id=0, tokenizer_hash=tokenizer_hash)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture()
def shard(tmp_path):
    return make_shard(tmp_path / "shard")  # 6 docs x 10 tokens = 60 tokens: 7 blocks of 8, tail of 4


def reference_arrays(model, shard, block_size):
    """Independent per-block computation with F.cross_entropy and Categorical entropy."""
    n = shard.n_tokens
    loss = np.full(n, np.nan, np.float32)
    ent = np.full(n, np.nan, np.float32)
    with torch.no_grad():
        for i in range(n // block_size):
            x = torch.from_numpy(shard.block(i, block_size))[None]
            logits = model(input_ids=x).logits[0].float()
            lo = F.cross_entropy(logits[:-1], x[0, 1:], reduction="none")
            en = torch.distributions.Categorical(logits=logits[:-1]).entropy()
            loss[i * block_size + 1 : (i + 1) * block_size] = lo.numpy()
            ent[i * block_size + 1 : (i + 1) * block_size] = en.numpy()
    return loss, ent


def test_scores_match_independent_computation(model, shard, tmp_path):
    assert shard.n_tokens == 60
    sc = score_corpus(model, shard, tmp_path / "scores", block_size=L, batch_size=3, progress=False)
    want_loss, want_ent = reference_arrays(model, shard, L)
    assert sc.loss.dtype == np.float32 and sc.loss.shape == (60,)
    np.testing.assert_allclose(sc.loss, want_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sc.entropy, want_ent, rtol=1e-5, atol=1e-5)
    nan = np.isnan(sc.loss)
    expected_nan = np.zeros(60, bool)
    expected_nan[0:56:L] = True  # block starts
    expected_nan[56:] = True  # dropped tail
    assert np.array_equal(nan, expected_nan)
    assert np.array_equal(np.isnan(sc.entropy), expected_nan)
    # a random model over 100 tokens: losses near log(100), entropies at most log(100)
    assert np.nanmax(sc.entropy) <= np.log(VOCAB) + 1e-5
    assert abs(np.nanmean(sc.loss) - np.log(VOCAB)) < 0.5


def test_meta_and_batch_size_independence(model, shard, tmp_path):
    a = score_corpus(model, shard, tmp_path / "a", block_size=L, batch_size=1, progress=False)
    b = score_corpus(model, shard, tmp_path / "b", block_size=L, batch_size=7, progress=False)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5, atol=1e-6, equal_nan=True)
    m = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert m["n_tokens"] == 60 and m["block_size"] == L and m["n_blocks"] == 7
    assert m["shard_hash"] == shard.shard_hash and m["tokenizer_hash"] == "tok-A"
    assert m["vocab_size"] == VOCAB and m["backend"] == "torch" and m["entropy"] == "full"
    assert m["dtype"] == "float32"
    assert m["model"]["n_params"] == sum(p.numel() for p in model.parameters())
    assert m["model"]["weights_sha256"] == model_identity(model)["weights_sha256"]
    assert m["model"]["config_sha256"] == model_identity(tiny_model(seed=5))["config_sha256"]
    assert m["model"]["weights_sha256"] != model_identity(tiny_model(seed=5))["weights_sha256"]
    assert model_identity(model, hash_weights=False)["weights_sha256"] is None


def test_label_aligned_follows_design_alignment(model, shard, tmp_path):
    sc = score_corpus(model, shard, tmp_path / "s", block_size=L, progress=False)
    ref_loss, ref_ent = sc.label_aligned(np.array([2, 0]))
    assert ref_loss.shape == (2, L)
    np.testing.assert_array_equal(ref_loss[0, :-1], sc.loss[2 * L + 1 : 3 * L])
    np.testing.assert_array_equal(ref_ent[1, :-1], sc.entropy[1:L])
    assert np.isnan(ref_loss[:, -1]).all() and np.isfinite(ref_loss[:, :-1]).all()


def test_bf16_autocast_close_to_fp32(model, shard, tmp_path):
    sc = score_corpus(model, shard, tmp_path / "bf", block_size=L, dtype="bfloat16", progress=False)
    want, _ = reference_arrays(model, shard, L)
    assert json.loads((tmp_path / "bf" / "meta.json").read_text())["dtype"] == "bfloat16"
    np.testing.assert_allclose(sc.loss, want, atol=0.1, equal_nan=True)


def test_loss_and_entropy_chunking_and_masked_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g)
    logits[0, 0, :4] = -float("inf")  # masked vocabulary entries
    tgt = torch.randint(4, 11, (3, 5), generator=g)
    lo, en = next_token_loss_and_entropy(logits, tgt)
    lo2, en2 = next_token_loss_and_entropy(logits.bfloat16(), tgt, chunk_rows=2)
    assert torch.isfinite(en).all() and torch.isfinite(lo).all()
    want_en = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(en, want_en, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        lo, F.cross_entropy(logits.reshape(-1, 11), tgt.reshape(-1), reduction="none").view(3, 5)
    )
    torch.testing.assert_close(lo2, lo, atol=0.1, rtol=0.05)
    torch.testing.assert_close(next_token_loss_and_entropy(logits, tgt, chunk_rows=1)[1], en)


def test_fused_kernel_matches_eager_including_masked_logits():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 6, 37, generator=g) * 4
    logits[1, 2, :5] = -float("inf")
    tgt = torch.randint(5, 37, (4, 6), generator=g)
    lo, en = next_token_loss_and_entropy(logits, tgt)
    lo_f, en_f = next_token_loss_and_entropy(logits, tgt, chunk_rows=7, fused=True)  # ragged last chunk
    torch.testing.assert_close(lo_f, lo, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(en_f, en, rtol=1e-5, atol=1e-5)
    want = torch.distributions.Categorical(logits=logits.double()).entropy()
    torch.testing.assert_close(en_f.double(), want, rtol=1e-5, atol=1e-5)
    lo_direct, en_direct = _fused_rows(logits.reshape(-1, 37), tgt.reshape(-1))  # uncompiled, same math
    torch.testing.assert_close(en_direct.view(4, 6), en_f, rtol=1e-6, atol=1e-6)


def test_fused_scoring_matches_reference_and_is_recorded(model, shard, tmp_path):
    sc = score_corpus(model, shard, tmp_path / "f", block_size=L, fused=True, progress=False)
    want_loss, want_ent = reference_arrays(model, shard, L)
    np.testing.assert_allclose(sc.loss, want_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sc.entropy, want_ent, rtol=1e-5, atol=1e-5)
    assert sc.meta["fused_kernel"] is True
    # small corpora default to the eager kernel (no compile cost)
    assert (
        score_corpus(model, shard, tmp_path / "e", block_size=L, progress=False).meta["fused_kernel"] is False
    )


def test_fused_kernel_falls_back_to_eager_when_compile_fails(monkeypatch):
    def broken(*_):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setitem(scoring._COMPILED, "rows", broken)
    monkeypatch.delitem(scoring._COMPILED, "failed", raising=False)
    logits = torch.randn(5, 9)
    tgt = torch.randint(0, 9, (5,))
    with pytest.warns(UserWarning, match="using eager"):
        lo, en = next_token_loss_and_entropy(logits, tgt, fused=True)
    torch.testing.assert_close(lo, F.cross_entropy(logits, tgt, reduction="none"))
    assert scoring._COMPILED["failed"] is True
    monkeypatch.delitem(scoring._COMPILED, "failed")


# ---------------------------------------------------------------------------- refusals on load
@pytest.fixture()
def scored(model, shard, tmp_path):
    score_corpus(model, shard, tmp_path / "scores", block_size=L, progress=False)
    return tmp_path / "scores"


def test_load_refuses_other_tokenizer(scored, tmp_path):
    other = make_shard(tmp_path / "s2", tokenizer_hash="tok-B")  # same tokens, other tokenizer
    with pytest.raises(ScoringError, match=r"different tokenizer.*re-run scoring"):
        load_scores(scored, other)


def test_load_refuses_other_length(scored, tmp_path):
    other = make_shard(tmp_path / "s2", n_docs=7)
    with pytest.raises(
        ScoringError, match=r"different number of tokens: scores have 60, the shard/run needs 70"
    ):
        load_scores(scored, other)


def test_load_refuses_other_content(scored, tmp_path):
    other = make_shard(tmp_path / "s2", seed=1)  # same length and tokenizer, other tokens
    with pytest.raises(ScoringError, match=r"different shard content"):
        load_scores(scored, other)


def test_load_refuses_other_block_size(scored, shard):
    assert load_scores(scored, shard, block_size=L).block_size == L
    with pytest.raises(ScoringError, match=r"different block size: scores have 8, the shard/run needs 16"):
        load_scores(scored, shard, block_size=16)


def test_load_refuses_other_vocabulary(scored, shard):
    load_scores(scored, shard, model=tiny_model())
    with pytest.raises(ScoringError, match=r"vocabulary 100, but the model has vocabulary 128"):
        load_scores(scored, shard, model=tiny_model(vocab=128))
    with pytest.raises(ScoringError, match="vocabulary"):
        load_scores(scored, shard, model=50)


def test_load_refuses_missing_or_damaged(scored, shard, tmp_path):
    with pytest.raises(ScoringError, match="missing meta.json"):
        load_scores(tmp_path / "nowhere", shard)
    with open(scored / "entropy.bin", "r+b") as f:
        f.truncate(16)
    with pytest.raises(ScoringError, match="damaged"):
        load_scores(scored, shard)


# ---------------------------------------------------------------------------- refusals before work
def test_bad_arguments_refused_before_writing(model, shard, tmp_path):
    out = tmp_path / "out"
    cases = [
        (dict(block_size=1), "block_size"),
        (dict(block_size=L, batch_size=0), "batch_size"),
        (dict(block_size=L, backend="jax"), "unknown backend"),
        (dict(block_size=61), "fewer than one block"),
        (dict(block_size=L, dtype="fp8"), "unknown dtype"),
        (dict(block_size=L, entropy_topk=-1), "entropy_topk"),
        (dict(block_size=L, device="meta"), "differs from the model's device"),
        (dict(block_size=L, tokenizer=SimpleNamespace(get_vocab=lambda: {"a": 0})), "tokenizer fingerprint"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ScoringError, match=match):
            score_corpus(model, shard, out, progress=False, **kwargs)
    with pytest.raises(ScoringError, match="smaller than the shard"):
        score_corpus(tiny_model(vocab=50), shard, out, block_size=L, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ScoringError, match="non-empty directory"):
        score_corpus(model, shard, foreign, block_size=L, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert not out.exists()


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("exc", [_Boom, KeyboardInterrupt])
def test_failed_rewrite_keeps_previous_scores(model, shard, scored, exc):
    before = {n: (scored / n).read_bytes() for n in ("loss.bin", "entropy.bin", "meta.json")}
    calls = {"n": 0}
    other = tiny_model(seed=3)
    orig = other.forward

    def failing_forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise exc("interrupted")
        return orig(*args, **kwargs)

    other.forward = failing_forward
    with pytest.raises(exc):
        score_corpus(other, shard, scored, block_size=L, batch_size=2, progress=False)
    assert calls["n"] == 2
    assert {n: (scored / n).read_bytes() for n in before} == before
    assert sorted(p.name for p in scored.parent.iterdir() if p.name.startswith(".")) == []
    load_scores(scored, shard, block_size=L)


# ---------------------------------------------------------------------------- vLLM code path (faked)
class _Logprob:
    """Shaped like vllm.sequence.Logprob."""

    def __init__(self, logprob: float, rank: int):
        self.logprob = logprob
        self.rank = rank
        self.decoded_token = None


class FakeLLM:
    """Quacks like vllm.LLM: llm_engine.model_config and generate() with prompt_logprobs."""

    def __init__(self, model: LlamaForCausalLM):
        self.model = model
        self.llm_engine = SimpleNamespace(
            model_config=SimpleNamespace(
                model="fake/rm", hf_config=model.config, get_vocab_size=lambda: model.config.vocab_size
            )
        )
        self.calls = 0

    def generate(self, prompts, params, use_tqdm=True):
        self.calls += 1
        outs = []
        for p in prompts:
            ids = torch.tensor(p["prompt_token_ids"])[None]
            with torch.no_grad():
                logp = torch.log_softmax(self.model(input_ids=ids).logits[0].float(), -1)
            plp = [None]
            for j in range(1, ids.shape[1]):
                row = logp[j - 1]
                order = torch.argsort(row, descending=True)
                entry = {
                    int(t): _Logprob(float(row[t]), r + 1)
                    for r, t in enumerate(order[: params.prompt_logprobs])
                }
                tok = int(ids[0, j])
                entry.setdefault(tok, _Logprob(float(row[tok]), int((row > row[tok]).sum()) + 1))
                plp.append(entry)
            outs.append(SimpleNamespace(prompt_token_ids=p["prompt_token_ids"], prompt_logprobs=plp))
        return outs


@pytest.fixture()
def fake_vllm(monkeypatch):
    monkeypatch.setattr(
        "rho.scoring._vllm_sampling_params", lambda k: SimpleNamespace(max_tokens=1, prompt_logprobs=k)
    )


def test_vllm_backend_loss_matches_torch(model, shard, tmp_path, fake_vllm):
    llm = FakeLLM(model)
    sc = score_corpus(llm, shard, tmp_path / "v", block_size=L, backend="vllm", progress=False)
    want, full_ent = reference_arrays(model, shard, L)
    np.testing.assert_allclose(sc.loss, want, rtol=1e-5, atol=1e-5)
    assert np.isnan(sc.entropy).all()
    assert sc.meta["entropy"] == "none" and sc.meta["backend"] == "vllm" and not sc.has_entropy
    assert sc.meta["model"]["name_or_path"] == "fake/rm" and sc.meta["vocab_size"] == VOCAB
    with pytest.raises(ScoringError, match="backend='torch'"):
        load_scores(tmp_path / "v", shard, need_entropy=True)

    topk = score_corpus(
        llm, shard, tmp_path / "v3", block_size=L, backend="vllm", entropy_topk=3, progress=False
    )
    assert topk.meta["entropy"] == "topk_lower_bound" and topk.meta["entropy_topk"] == 3
    ok = ~np.isnan(full_ent)
    assert np.all(topk.entropy[ok] <= full_ent[ok] + 1e-5) and np.all(topk.entropy[ok] > 0)
    every = score_corpus(
        llm, shard, tmp_path / "vall", block_size=L, backend="vllm", entropy_topk=VOCAB, progress=False
    )
    np.testing.assert_allclose(every.entropy, full_ent, rtol=1e-4, atol=1e-4)


def test_vllm_missing_is_a_clear_error(model, shard, tmp_path):
    """vllm is not installed here: the real import must fail with an error that names the fix."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ScoringError, match=r"pip install 'rho\[gpu\]'"):
            score_corpus(FakeLLM(model), shard, tmp_path / "v", block_size=L, backend="vllm", progress=False)
        assert not (tmp_path / "v").exists()
    else:
        pytest.skip("vllm is installed")


def test_vllm_backend_needs_an_llm(model, shard, tmp_path, fake_vllm):
    with pytest.raises(ScoringError, match="expects a vllm.LLM"):
        score_corpus(model, shard, tmp_path / "v", block_size=L, backend="vllm", progress=False)


def test_prompt_logprobs_to_arrays_plain_floats_and_errors():
    plp = [None, {5: -1.0, 7: -2.0}, {3: -0.5}]
    loss, ent = prompt_logprobs_to_arrays(plp, [9, 7, 3], topk=2)
    assert np.isnan(loss[0]) and loss[1:].tolist() == [2.0, 0.5]
    p = np.exp([-1.0, -2.0])
    assert ent[1] == pytest.approx(float(-(p * np.array([-1.0, -2.0])).sum()), rel=1e-6)
    with pytest.raises(ScoringError, match="lack the prompt token 4"):
        prompt_logprobs_to_arrays(plp, [9, 4, 3])
    with pytest.raises(ScoringError, match="2 prompt logprobs for 3"):
        prompt_logprobs_to_arrays(plp[:2], [9, 7, 3])
