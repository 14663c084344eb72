"""The streaming selection scopes (dp, carry): no scoring pass, exact up-front normalisation."""

from __future__ import annotations

import pytest
import torch
from test_train_objective import CTX, _batches, _losses

from rho.selection import SelectionConfig, keep_count, topk_mask
from rho.train.config import ConfigError, TrainConfig
from rho.train.objective import Objective, StepSelector, scope_agreement


@pytest.mark.parametrize("scope", ["dp", "carry"])
def test_one_micro_step_equals_global(scope) -> None:
    batches = _batches(1, b=4)
    losses = _losses(batches)
    glob = StepSelector(Objective("slm", SelectionConfig(ratio=0.4, scope="global")), batches, CTX)
    glob.prepare(losses)
    sel = StepSelector(Objective("slm", SelectionConfig(ratio=0.4, scope=scope)), batches, CTX)
    assert not sel.needs_scoring_pass
    w, denom = sel.weights(0, losses[0])
    wg, dg = glob.weights(0, losses[0])
    assert torch.equal(w, wg) and denom == dg == keep_count(4 * 7, 0.4)


def test_dp_ranks_each_micro_step_and_normalises_by_the_step_count() -> None:
    batches = _batches(3)
    losses = _losses(batches)
    sel = StepSelector(Objective("slm", SelectionConfig(ratio=0.3, scope="dp")), batches, CTX)
    assert not sel.needs_scoring_pass
    total = 0
    for m in range(3):
        w, denom = sel.weights(m, losses[m])
        want = topk_mask(losses[m] - batches[m].ref_loss, 0.3, batches[m].labels != -100)
        assert torch.equal(w.bool(), want)
        assert denom == 3 * keep_count(14, 0.3) == 12  # the optimizer batch's count, known up front
        total += int(w.sum())
    assert total == denom


def test_carry_ranks_against_every_score_seen_so_far() -> None:
    batches = _batches(2)
    losses = _losses(batches)
    sel = StepSelector(Objective("slm", SelectionConfig(ratio=0.5, scope="carry")), batches, CTX)
    s0 = (losses[0] - batches[0].ref_loss)[:, :-1].reshape(-1)
    s1 = (losses[1] - batches[1].ref_loss)[:, :-1].reshape(-1)
    w0, _ = sel.weights(0, losses[0])
    assert torch.equal(w0.bool(), topk_mask(losses[0] - batches[0].ref_loss, 0.5, batches[0].labels != -100))
    w1, denom = sel.weights(1, losses[1])
    threshold = torch.topk(torch.cat([s0, s1]), keep_count(28, 0.5)).values[-1]
    assert torch.equal(w1[:, :-1].reshape(-1).bool(), s1 >= threshold)
    assert not w1[:, -1].any() and denom == 2 * keep_count(14, 0.5)


def test_reweight_dp_weights_sum_to_the_valid_count() -> None:
    batches = _batches(2)
    losses = _losses(batches)
    sel = StepSelector(Objective("reweight", SelectionConfig(scope="dp", temperature=2.0)), batches, CTX)
    w, denom = sel.weights(0, losses[0])
    assert denom == 28
    torch.testing.assert_close(w.sum(), torch.tensor(14.0))


def test_scope_agreement_is_one_for_identical_scopes_and_falls_with_heterogeneity() -> None:
    g = torch.Generator().manual_seed(0)
    flat = torch.randn(8, 512, generator=g)  # 8 micro-steps of 512 tokens, same distribution
    same = scope_agreement(flat, ratio=0.6)
    assert same["global"] == 1.0 and 0.9 < same["dp"] < 1.0 and 0.9 < same["carry"] < 1.0
    shifted = flat + torch.arange(8, dtype=torch.float32)[:, None]  # later micro-steps score higher
    het = scope_agreement(shifted, ratio=0.6)
    assert het["dp"] < same["dp"] and het["carry"] > het["dp"]


def test_config_refuses_two_scores_with_a_streaming_scope(tmp_path) -> None:
    with pytest.raises(ConfigError, match="ranks one score"):
        TrainConfig(
            model="m",
            train_shard="s",
            out_dir=str(tmp_path),
            objective="slm",
            selection=dict(scope="dp", score2="ref_entropy", ratio2=0.5),
        )


def test_dp_scope_trains_with_one_forward_per_micro_batch(tmp_path, monkeypatch) -> None:
    from _helpers_train import base_config, make_scores, make_shard, make_tokenizer

    import rho.train.loop as loop
    from rho.train import train

    tok = make_tokenizer(tmp_path / "tok")
    make_scores(tmp_path / "scores", make_shard(tmp_path / "shard", tok))
    calls = {"n": 0}
    real = loop.HeadLoss.__call__

    def counting(self, *a):
        calls["n"] += 1
        return real(self, *a)

    monkeypatch.setattr(loop.HeadLoss, "__call__", counting)
    common = dict(objective="slm", scores=str(tmp_path / "scores"), max_steps=2, grad_accum=2)
    train(
        base_config(
            tmp_path, out_dir=str(tmp_path / "g"), selection=dict(ratio=0.5, scope="global"), **common
        )
    )
    assert calls["n"] == 2 * 2 * 2  # global: a no-grad scoring forward + the training forward
    calls["n"] = 0
    res = train(
        base_config(tmp_path, out_dir=str(tmp_path / "d"), selection=dict(ratio=0.5, scope="dp"), **common)
    )
    assert calls["n"] == 2 * 2
    assert res.last_record["selected_frac"] == pytest.approx(0.5, abs=0.02)
