"""Data-parallel training on CPU (gloo, 2 spawned ranks) equals one process on the concatenated batch."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from _helpers_train import (
    base_config,
    ddp_worker,
    final_state,
    free_port,
    make_slm_world,
)

from rho.data.shards import TokenShard
from rho.loss import token_loss
from rho.models import build_model
from rho.scoring import load_scores
from rho.selection import topk_mask
from rho.train import train
from rho.train.batches import BatchLoader
from rho.train.metrics import read_log

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_slm_world(tmp_path_factory.mktemp("ddp"))


def _run_two_ranks(cfg: dict, out) -> None:
    mp.spawn(ddp_worker, args=(2, free_port(), cfg, str(out)), nprocs=2, join=True)


@pytest.mark.parametrize(
    ("parallel", "micro", "accum"),
    [
        ("ddp", 1, 2),
        ("fsdp", 2, 1),
        ("fsdp", 1, 2),
    ],  # ddp: with accumulation, so the no-grad scoring pass runs under DDP
)
def test_two_ranks_global_selection_equal_one_process(data, tmp_path, capfd, parallel, micro, accum) -> None:
    common = dict(
        objective="slm",
        scores=str(data / "scores"),
        ratio=0.6,
        selection_scope="global",
        max_steps=3,
        device="cpu",
        lr=1e-2,
        min_lr=1e-3,
    )
    dist_cfg = base_config(
        data,
        **common,
        micro_batch_size=micro,
        grad_accum=accum,
        out_dir=str(tmp_path / "dist"),
        parallel=parallel,
    )
    _run_two_ranks(dist_cfg, tmp_path)
    # both ranks took the fused loss (FSDP2 leaves the root's head unsharded after the forward)
    assert capfd.readouterr().err.count("per-token loss fused from the last hidden states") == 2
    one = base_config(data, **common, micro_batch_size=4, out_dir=str(tmp_path / "one"))
    train(one)

    # the same mask: ranks' step-0 selections, concatenated in rank order, vs one top-k on the whole batch
    masks = torch.cat([torch.cat(torch.load(tmp_path / f"rank{r}.pt")) for r in range(2)]).bool()
    shard = TokenShard.open(data / "shard")
    batch = BatchLoader(
        shard, 16, 4, 1, seed=0, scores=load_scores(data / "scores", shard, 16)
    ).micro_batches(0)[0]
    model = build_model("llama-smoke", vocab_size=320, seed=0)
    with torch.no_grad():
        tl = token_loss(model(input_ids=batch.input_ids).logits, batch.labels)
    assert torch.equal(masks, topk_mask(tl - batch.ref_loss, 0.6, batch.labels != -100))
    assert int(masks.sum()) == 36

    # the same steps and the same update (gradients averaged by DDP/FSDP, compensated by world size)
    ld, lo = read_log(tmp_path / "dist" / "log.jsonl"), read_log(tmp_path / "one" / "log.jsonl")
    assert [r["label_counts"] for r in ld] == [r["label_counts"] for r in lo]
    assert [r["tokens"] for r in ld] == [r["tokens"] for r in lo] == [64, 128, 192]
    assert [r["grad_norm"] for r in ld] == pytest.approx([r["grad_norm"] for r in lo], rel=1e-5)
    a, b = final_state(tmp_path / "dist"), final_state(tmp_path / "one")
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5)
    moved = max(
        float((b[k] - build_model("llama-smoke", vocab_size=320, seed=0).state_dict()[k]).abs().max())
        for k in b
    )
    assert moved > 1e-3  # the comparison is not vacuous: training moved the weights by lr-sized steps


@pytest.mark.parametrize("scope", ["dp", "carry"])
def test_two_ranks_streaming_scopes_equal_global_on_one_micro_step(data, tmp_path, scope) -> None:
    # grad_accum 1: one micro-step per optimizer step, so dp and carry rank the same tokens as global
    common = dict(
        objective="slm",
        scores=str(data / "scores"),
        ratio=0.6,
        max_steps=3,
        device="cpu",
        lr=1e-2,
        min_lr=1e-3,
    )
    dist_cfg = base_config(
        data, **common, selection_scope=scope, micro_batch_size=2, out_dir=str(tmp_path / "dist")
    )
    _run_two_ranks(dist_cfg, tmp_path)
    train(
        base_config(
            data, **common, selection_scope="global", micro_batch_size=4, out_dir=str(tmp_path / "one")
        )
    )
    ld, lo = read_log(tmp_path / "dist" / "log.jsonl"), read_log(tmp_path / "one" / "log.jsonl")
    assert [r["label_counts"] for r in ld] == [r["label_counts"] for r in lo]
    a, b = final_state(tmp_path / "dist"), final_state(tmp_path / "one")
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5)
