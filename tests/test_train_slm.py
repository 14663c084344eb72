"""SLM training runs: selection in the loop, scopes, Table 4 combinations, reweighting, score errors."""

from __future__ import annotations

import pytest
import torch
from _helpers_train import base_config, final_state, make_scores, make_shard, make_slm_world, make_tokenizer

from rho.data.shards import TokenShard
from rho.models import build_model
from rho.scoring import ScoringError, load_scores, score_corpus
from rho.selection import keep_count, topk_mask
from rho.train import train
from rho.train.batches import BatchLoader
from rho.train.metrics import read_log


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_slm_world(tmp_path_factory.mktemp("slm"))


def _slm(data, out, **kw):
    return base_config(
        data, **{"out_dir": str(out), "objective": "slm", "scores": str(data / "scores"), **kw}
    )


def test_slm_with_ratio_one_is_bit_identical_to_clm(data, tmp_path) -> None:
    train(base_config(data, out_dir=str(tmp_path / "clm"), max_steps=4))
    train(_slm(data, tmp_path / "slm", ratio=1.0, max_steps=4))
    a, b = final_state(tmp_path / "clm"), final_state(tmp_path / "slm")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in read_log(tmp_path / "clm" / "log.jsonl")] == [
        r["loss"] for r in read_log(tmp_path / "slm" / "log.jsonl")
    ]


def test_slm_selects_the_top_excess_tokens_of_the_batch(data, tmp_path) -> None:
    cfg = _slm(data, tmp_path / "run", ratio=0.6, max_steps=3)
    train(cfg)
    log = read_log(tmp_path / "run" / "log.jsonl")
    for r in log:
        assert r["n_valid"] == 60 and r["n_selected"] == keep_count(60, 0.6) == 36
        assert r["selected_frac"] == pytest.approx(0.6)
        assert sum(s for _, s in r["label_counts"].values()) == 36
        assert r["loss"] == pytest.approx(r["loss_selected"]) and r["loss_unselected"] > 0
    # step 1 from first principles: the seeded initial model, the step-0 blocks, top-60% excess loss
    shard = TokenShard.open(data / "shard")
    scores = load_scores(data / "scores", shard, block_size=16)
    batch = BatchLoader(shard, 16, 4, 1, seed=0, scores=scores).micro_batches(0)[0]
    model = build_model("llama-smoke", vocab_size=320, seed=0)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids).logits
    tl = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch.labels, reduction="none")
    mask = topk_mask(tl - batch.ref_loss, 0.6, batch.labels != -100)
    assert log[0]["loss_selected"] == pytest.approx(float(tl[mask].mean()), rel=1e-6)
    assert log[0]["loss_unselected"] == pytest.approx(
        float(tl[~mask & (batch.labels != -100)].mean()), rel=1e-6
    )


def test_global_selection_with_accumulation_equals_one_big_micro_batch(data, tmp_path) -> None:
    train(_slm(data, tmp_path / "acc", ratio=0.5, micro_batch_size=2, grad_accum=2, max_steps=3))
    train(_slm(data, tmp_path / "big", ratio=0.5, micro_batch_size=4, grad_accum=1, max_steps=3))
    la, lb = read_log(tmp_path / "acc" / "log.jsonl"), read_log(tmp_path / "big" / "log.jsonl")
    assert [r["label_counts"] for r in la] == [r["label_counts"] for r in lb]
    assert [r["loss_selected"] for r in la] == pytest.approx([r["loss_selected"] for r in lb], rel=1e-6)
    # Same masks; the weights differ only by summation-order rounding (Adam amplifies it on near-zero
    # gradients), far below the lr-sized (3e-3) moves a single different selected token would cause.
    a, b = final_state(tmp_path / "acc"), final_state(tmp_path / "big")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5)


def test_micro_scope_keeps_the_ratio_in_every_micro_batch(data, tmp_path) -> None:
    train(
        _slm(
            data,
            tmp_path / "micro",
            ratio=0.5,
            micro_batch_size=1,
            grad_accum=4,
            max_steps=2,
            selection_scope="micro",
        )
    )
    for r in read_log(tmp_path / "micro" / "log.jsonl"):
        assert r["n_selected"] == 4 * keep_count(15, 0.5) == 32  # 8 of 15 in each of 4 micro-batches


def test_table4_intersection_and_reweighting_run(data, tmp_path) -> None:
    train(_slm(data, tmp_path / "both", ratio=0.7, score_kind2="ref_entropy", ratio2=0.7, max_steps=2))
    for r in read_log(tmp_path / "both" / "log.jsonl"):
        assert 0.4 <= r["selected_frac"] <= 0.7  # 70% n 70%: the paper's 60% effective ratio, roughly
    train(
        base_config(
            data,
            out_dir=str(tmp_path / "rw"),
            objective="reweight",
            scores=str(data / "scores"),
            reweight_temperature=0.5,
            max_steps=2,
        )
    )
    rw = read_log(tmp_path / "rw" / "log.jsonl")
    assert all(r["selected_frac"] == 1.0 and r["loss"] > 0 for r in rw)
    assert rw[0]["loss"] != pytest.approx(rw[0]["loss_selected"], rel=1e-4)  # weighted, not the plain mean


def test_missing_or_mismatched_scores_fail_before_work(data, tmp_path) -> None:
    out = tmp_path / "never"
    with pytest.raises(ScoringError, match="no reference scores"):
        train(_slm(data, out, scores=str(tmp_path / "nowhere")))
    with pytest.raises(ScoringError, match="different block size: scores have 16, the shard/run needs 8"):
        train(_slm(data, out, block_size=8))
    other = make_shard(tmp_path / "other", make_tokenizer(tmp_path / "tok"), seed=5)
    make_scores(tmp_path / "other_scores", other)
    with pytest.raises(ScoringError, match="different (number of tokens|shard content)"):
        train(_slm(data, out, scores=str(tmp_path / "other_scores")))
    big_ref = build_model("llama-smoke", vocab_size=400, seed=0)
    score_corpus(
        big_ref, TokenShard.open(data / "shard"), tmp_path / "big_scores", block_size=16, progress=False
    )
    with pytest.raises(ScoringError, match="vocabulary 400, but the model has vocabulary 320"):
        train(_slm(data, out, scores=str(tmp_path / "big_scores")))
    assert not out.exists()
