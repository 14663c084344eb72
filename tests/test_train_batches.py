"""rho.train.batches: block order, design.md alignment, data-parallel slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _helpers_train import make_shard, make_tokenizer

from rho.scoring import ReferenceScores
from rho.train.batches import NO_LABEL, BatchLoader, BlockOrder, DataError


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batches")
    return make_shard(tmp / "shard", make_tokenizer(tmp / "tok"), n_docs=30)


def _fake_scores(n: int, L: int) -> ReferenceScores:
    """Scores that encode their own stream offset (NaN at block starts, as score files have)."""
    loss = np.arange(n, dtype=np.float32)
    loss[::L] = np.nan
    return ReferenceScores(path=Path("fake"), loss=loss, entropy=loss + 0.5, meta={"block_size": L})


def test_block_order_is_a_seeded_permutation_per_epoch() -> None:
    o = BlockOrder(10, seed=3)
    e0, e1 = o.epoch(0), o.epoch(1)
    assert sorted(e0) == list(range(10)) and sorted(e1) == list(range(10))
    assert not np.array_equal(e0, e1)
    assert np.array_equal(BlockOrder(10, seed=3).epoch(1), e1)
    assert not np.array_equal(BlockOrder(10, seed=4).epoch(0), e0)
    assert np.array_equal(o.take(7, 6), np.concatenate([e0[7:], e1[:3]]))  # across the epoch boundary


def test_batch_alignment_follows_design(shard) -> None:
    L = 16
    scores = _fake_scores(shard.n_tokens, L)
    loader = BatchLoader(shard, L, micro_batch_size=3, grad_accum=1, seed=0, scores=scores)
    idx = np.array([5, 0, 2])
    b = loader.make_batch(idx)
    x = np.stack([np.asarray(shard.tokens[i * L : (i + 1) * L], dtype=np.int64) for i in idx])
    assert np.array_equal(b.input_ids.numpy(), x)
    assert np.array_equal(b.labels[:, :-1].numpy(), x[:, 1:]) and (b.labels[:, -1] == -100).all()
    # ref_loss[:, t] = scores[block_start + t + 1]; last column NaN; no NaN inside the block
    want = idx[:, None] * L + np.arange(1, L)[None, :]
    assert np.array_equal(b.ref_loss[:, :-1].numpy(), want.astype(np.float32))
    assert np.isnan(b.ref_loss[:, -1].numpy()).all()
    assert np.array_equal(b.ref_entropy[:, :-1].numpy(), want + 0.5)
    assert np.array_equal(b.provenance[:, :-1].numpy(), np.asarray(shard.labels)[want])
    assert (b.provenance[:, -1] == NO_LABEL).all()


def test_ranks_split_the_global_batch_in_order(shard) -> None:
    L, mb, acc, world = 8, 2, 3, 2
    single = BatchLoader(shard, L, mb, acc * world, seed=1)
    ranks = [BatchLoader(shard, L, mb, acc, seed=1, rank=r, world_size=world) for r in range(world)]
    for step in (0, 1, 7):
        g = single.global_blocks(step)
        assert len(g) == mb * acc * world
        per_rank = [np.concatenate([b.block_idx.numpy() for b in r.micro_batches(step)]) for r in ranks]
        assert np.array_equal(np.concatenate(per_rank), g)
        singles = np.concatenate([b.block_idx.numpy() for b in single.micro_batches(step)])
        assert np.array_equal(singles, g)
    consumed = np.concatenate([single.global_blocks(s) for s in range(20)])
    n = shard.n_tokens // L
    assert sorted(consumed[:n]) == list(range(n))  # every block once per epoch


def test_empty_corpus_and_misaligned_scores_are_refused(shard) -> None:
    with pytest.raises(DataError, match="fewer than one block"):
        BatchLoader(shard, shard.n_tokens + 1, 1, 1, seed=0)
    with pytest.raises(DataError, match="in blocks of 16, but the run reads .* in blocks of 8; re-run"):
        BatchLoader(shard, 8, 1, 1, seed=0, scores=_fake_scores(shard.n_tokens, 16))
    with pytest.raises(DataError, match="rank 2"):
        BatchLoader(shard, 8, 1, 1, seed=0, rank=2, world_size=2)
