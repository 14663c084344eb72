"""Tests for rho.head.HeadLoss: the per-token loss from hidden states equals the logits path."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import rho.head as head_mod
from rho.head import HeadLoss, linear_head
from rho.loss import token_loss


def _model(tie: bool = False, seed: int = 0) -> LlamaForCausalLM:
    cfg = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def _batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 97, (3, 12), generator=g)
    labels = torch.cat([ids[:, 1:], torch.full((3, 1), -100)], dim=1)
    return ids, labels


@pytest.mark.parametrize("mode", ["auto", "keep"])
@pytest.mark.parametrize("tie", [False, True])
def test_fused_loss_and_grads_equal_the_logits_path(tie, mode):
    model = _model(tie)
    ids, labels = _batch()
    hl = HeadLoss(model, mode)
    fused = hl(model, ids, labels)
    assert hl.fused and hl.keep_softmax == (mode == "keep")
    w = torch.rand(labels.shape, generator=torch.Generator().manual_seed(2))
    w[:, ::3] = 0  # a selection: zero weight on a third of the tokens (sparse backward)
    (fused * w).sum().backward()
    g_fused = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    dense = token_loss(model(input_ids=ids).logits, labels)
    (dense * w).sum().backward()
    torch.testing.assert_close(fused, dense, rtol=1e-5, atol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(g_fused[n], p.grad, rtol=1e-4, atol=1e-6, msg=n)


def test_the_model_never_computes_full_logits(monkeypatch):
    model = _model()
    ids, labels = _batch()
    hl = HeadLoss(model)
    hl(model, ids, labels)  # probe + first call
    shapes = []
    model.lm_head.register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape)))
    hl(model, ids, labels)
    assert shapes == [(3, 0, 97)]


def test_post_processed_logits_fall_back_and_log_once(caplog):
    class Scaled(LlamaForCausalLM):
        def forward(self, *a, **kw):
            out = super().forward(*a, **kw)
            out.logits = out.logits * 0.5  # e.g. a logit scale or soft-capping
            return out

    torch.manual_seed(0)
    model = Scaled(_model().config)
    ids, labels = _batch()
    hl = HeadLoss(model)
    with caplog.at_level(logging.WARNING, logger=head_mod.__name__):
        a = hl(model, ids, labels)
        hl(model, ids, labels)
    assert not hl.fused and "post-processed" in hl.reason
    assert sum("from the logits" in r.message for r in caplog.records) == 1
    torch.testing.assert_close(a, token_loss(model(input_ids=ids).logits, labels))


def test_a_head_still_sharded_after_the_forward_falls_back_to_logits(monkeypatch, caplog):
    # FSDP2 keeps the root's parameters (the head's) unsharded after the forward; a head wrapped as an
    # FSDP unit of its own would be resharded, and its weight a DTensor the fused loss cannot use
    model = _model()
    ids, labels = _batch()
    monkeypatch.setattr(head_mod, "_is_sharded", lambda w: w is model.lm_head.weight)
    hl = HeadLoss(model)
    with caplog.at_level(logging.INFO, logger="rho.head"):
        got = hl(model, ids, labels)
    assert not hl.fused and "still sharded" in hl.reason and "still sharded" in caplog.text
    torch.testing.assert_close(got, token_loss(model(input_ids=ids).logits, labels))


def test_is_sharded_recognises_a_dtensor():
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    assert not head_mod._is_sharded(torch.nn.Parameter(torch.zeros(4, 2)))
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", rank=0, world_size=1, store=dist.HashStore())
    try:
        mesh = init_device_mesh("cpu", (1,))
        assert head_mod._is_sharded(distribute_tensor(torch.zeros(4, 2), mesh, [Shard(0)]))
    finally:
        dist.destroy_process_group()


def test_heads_that_are_not_plain_linear_or_off_use_logits():
    model = _model()

    class MyHead(torch.nn.Linear):
        pass

    assert linear_head(model) is model.lm_head
    assert HeadLoss(model, "off").reason == "fused_loss=off"
    model.lm_head = MyHead(32, 97, bias=False)
    hl = HeadLoss(model)
    assert not hl.fused and "not a plain nn.Linear" in hl.reason
    with pytest.raises(ValueError, match="fused_loss must be one of"):
        HeadLoss(model, "on")


def test_scoring_from_hidden_states_equals_the_logits_kernel():
    import rho.scoring as scoring

    model = _model()
    ids, _ = _batch()
    hl = HeadLoss(model)
    with torch.no_grad():
        h = hl.hidden(model, ids)
        tgt = torch.cat([ids[:, 1:], ids[:, :1]], 1)
        loss, ent = scoring._loss_and_entropy_from_hidden(h, model.lm_head, tgt, 5, False, None)
        want_l, want_e = scoring.next_token_loss_and_entropy(model(input_ids=ids).logits, tgt)
    torch.testing.assert_close(loss, want_l, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, want_e, rtol=1e-5, atol=1e-5)


def _train_slm(tmp_path, **runs: dict) -> None:
    """Train 3 SLM steps on one small world per ``name=overrides`` into ``tmp_path/name``."""
    from _helpers_train import base_config, make_scores, make_shard, make_tokenizer

    from rho.train import train

    tok = make_tokenizer(tmp_path / "tok")
    shard = make_shard(tmp_path / "shard", tok)
    make_scores(tmp_path / "scores", shard)
    common = dict(objective="slm", scores=str(tmp_path / "scores"), selection={"ratio": 0.6}, max_steps=3)
    for name, overrides in runs.items():
        train(base_config(tmp_path, out_dir=str(tmp_path / name), **common, **overrides))


def test_training_with_the_fused_loss_matches_the_logits_path(tmp_path):
    from _helpers_train import final_state

    # rho's own fused path (fused_backend=auto; a CUDA kernel sums in its own order: the next test)
    _train_slm(tmp_path, a={}, b={"fused_loss": "off"}, c={"fused_loss": "keep"})
    a, b, c = (final_state(tmp_path / d) for d in "abc")
    assert a.keys() == b.keys() == c.keys()
    for k in a:  # equal up to float rounding (the fused path sums in another order)
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
        torch.testing.assert_close(c[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_with_a_cuda_kernel_backend_follows_the_logits_path(tmp_path):
    # Weights are not compared: AdamW turns rounding-level gradient differences on near-zero
    # components into lr-sized updates (seen on an H200 with cut-cross-entropy). The losses are.
    from rho.linear_backends import available
    from rho.train.metrics import read_log

    kernels = [k for k in ("cce", "liger") if available(k)]
    if not kernels:
        pytest.skip("no CUDA kernel backend installed")
    _train_slm(tmp_path, off={"fused_loss": "off"}, **{k: {"fused_backend": k} for k in kernels})
    losses = {
        d: [r["loss"] for r in read_log(tmp_path / d / "log.jsonl") if "loss" in r] for d in ["off", *kernels]
    }
    for k in kernels:
        assert len(losses[k]) == len(losses["off"]) == 3
        torch.testing.assert_close(torch.tensor(losses[k]), torch.tensor(losses["off"]), rtol=1e-3, atol=1e-4)


def test_a_named_kernel_that_cannot_run_is_refused_before_any_step(caplog):
    model = _model()
    with pytest.raises(ValueError, match="needs CUDA"):
        HeadLoss(model, backend="cce")  # the model is on the CPU
    with pytest.raises(ValueError, match="unknown"):
        HeadLoss(model, backend="triton")
    with pytest.raises(ValueError, match="keep_softmax"):  # whatever the device: no kernel keeps it
        HeadLoss(model, "keep", backend="liger")
    HeadLoss(model, "off", backend="cce")  # no fused loss, so no kernel to run: fine
    hl = HeadLoss(model)  # auto: rho's torch path, named in the log
    ids, labels = _batch()
    with caplog.at_level(logging.INFO, logger="rho.head"):
        hl(model, ids, labels)
    assert "backend torch" in caplog.text
