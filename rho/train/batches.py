"""Training batches: blocks of a token shard with their labels, reference scores and provenance.

Block order.  The shard's ``n`` blocks are visited in epochs; epoch ``e`` is the permutation
``numpy.random.default_rng([seed, e]).permutation(n)``, so the whole (infinite) stream of block
indices is fixed by the seed and position ``p`` of the stream is block ``perm_{p // n}[p % n]``.
The data position saved in a checkpoint is simply the number of blocks consumed.

Optimizer step ``s`` takes the global batch ``G = stream[s*N : (s+1)*N]`` with
``N = micro_batch_size * grad_accum * world_size``.  Rank ``r`` takes the contiguous slice
``G[r*N/W : (r+1)*N/W]`` and cuts it into ``grad_accum`` micro-batches in order, so the
concatenation over ranks (rank order) of their micro-batches (micro order) is ``G`` itself:
what one process would see with the same ``N``.

Alignment (docs/design.md): for a block ``x`` starting at stream offset ``b``,
``input_ids = x``, ``labels[t] = x[t+1]`` (last column -100), ``ref_loss[t] = scores[b+t+1]``
(last column NaN), and ``provenance[t] = shard_labels[b+t+1]`` (last column ``NO_LABEL``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rho.data.shards import TokenShard
from rho.scoring import ReferenceScores

IGNORE_INDEX = -100
#: Provenance value of positions that predict nothing (the last column).
NO_LABEL = 255


class DataError(ValueError):
    """The corpus cannot feed the requested run (too small, misaligned scores, ...)."""


@dataclass
class Batch:
    """One micro-batch, every tensor ``[B, L]`` and aligned with ``labels``."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    ref_loss: torch.Tensor | None = None
    ref_entropy: torch.Tensor | None = None
    provenance: torch.Tensor | None = None
    block_idx: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with every tensor on ``device``."""

        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(*(mv(getattr(self, f)) for f in self.__dataclass_fields__))

    @property
    def n_tokens(self) -> int:
        """Input tokens in the batch."""
        return int(self.input_ids.numel())


def check_inputs(shard: TokenShard, model: torch.nn.Module, block_size: int) -> None:
    """Refuse, before the first step, a shard or block size the model cannot read.

    The shard's content must match its stored SHA-256 and every id must be below the model's
    vocabulary (:meth:`TokenShard.verify`, one read of ``tokens.bin``); ``block_size`` must not
    exceed the model's ``max_position_embeddings``.
    """
    config = getattr(model, "config", None)
    max_pos = getattr(config, "max_position_embeddings", None)
    if isinstance(max_pos, int) and block_size > max_pos:
        raise DataError(
            f"block_size {block_size} exceeds the model's max_position_embeddings ({max_pos}); "
            f"use block_size <= {max_pos} (or a model with longer positions)"
        )
    vocab = getattr(config, "vocab_size", None)
    shard.verify(vocab if isinstance(vocab, int) else None)


class BlockOrder:
    """The seeded, epoch-reshuffled stream of block indices (see the module docstring)."""

    def __init__(self, n_blocks: int, seed: int) -> None:
        if n_blocks < 1:
            raise DataError("the corpus has no whole block: nothing to train on")
        self.n_blocks = n_blocks
        self.seed = seed
        self._cache: dict[int, np.ndarray] = {}

    def epoch(self, e: int) -> np.ndarray:
        """Permutation of the blocks for epoch ``e``."""
        if e not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            self._cache[e] = np.random.default_rng([self.seed, e]).permutation(self.n_blocks)
        return self._cache[e]

    def take(self, start: int, count: int) -> np.ndarray:
        """Stream positions ``start .. start+count-1`` as block indices (int64)."""
        pos = np.arange(start, start + count, dtype=np.int64)
        out = np.empty(count, dtype=np.int64)
        for e in np.unique(pos // self.n_blocks):
            sel = pos // self.n_blocks == e
            out[sel] = self.epoch(int(e))[pos[sel] % self.n_blocks]
        return out


class BatchLoader:
    """Builds the micro-batches of each optimizer step for one data-parallel rank."""

    def __init__(
        self,
        shard: TokenShard,
        block_size: int,
        micro_batch_size: int,
        grad_accum: int,
        *,
        seed: int,
        scores: ReferenceScores | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        n_blocks = shard.n_tokens // block_size
        if n_blocks < 1:
            raise DataError(
                f"the corpus {shard.path} has {shard.n_tokens} tokens, fewer than one block of {block_size}; "
                "build a larger shard or lower block_size"
            )
        if scores is not None and (scores.block_size != block_size or len(scores.loss) != shard.n_tokens):
            raise DataError(
                f"reference scores {scores.path} cover {len(scores.loss)} tokens in blocks of {scores.block_size}, "
                f"but the run reads {shard.n_tokens} tokens in blocks of {block_size}; re-run "
                "rho.scoring.score_corpus on this shard with this block_size"
            )
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is outside [0, {world_size})")
        self.shard = shard
        self.scores = scores
        self.block_size = block_size
        self.micro_batch_size = micro_batch_size
        self.grad_accum = grad_accum
        self.rank = rank
        self.world_size = world_size
        self.order = BlockOrder(n_blocks, seed)

    @property
    def blocks_per_step(self) -> int:
        """Blocks in one optimizer batch over all ranks."""
        return self.micro_batch_size * self.grad_accum * self.world_size

    def global_blocks(self, step: int) -> np.ndarray:
        """Block indices of optimizer step ``step``'s global batch, in order."""
        n = self.blocks_per_step
        return self.order.take(step * n, n)

    def rank_blocks(self, step: int) -> np.ndarray:
        """This rank's contiguous slice of the global batch of ``step``."""
        per_rank = self.micro_batch_size * self.grad_accum
        return self.global_blocks(step)[self.rank * per_rank : (self.rank + 1) * per_rank]

    def micro_batches(self, step: int) -> list[Batch]:
        """This rank's ``grad_accum`` micro-batches of step ``step`` (CPU tensors)."""
        blocks = self.rank_blocks(step)
        b = self.micro_batch_size
        return [self.make_batch(blocks[i * b : (i + 1) * b]) for i in range(self.grad_accum)]

    def make_batch(self, block_idx: np.ndarray) -> Batch:
        """The aligned batch of the given blocks."""
        L = self.block_size
        x = self.shard.blocks(block_idx, L)
        labels = np.full_like(x, IGNORE_INDEX)
        labels[:, :-1] = x[:, 1:]
        ref_loss = ref_entropy = prov = None
        if self.scores is not None:
            ref_loss, ref_entropy = self.scores.label_aligned(block_idx)
        if self.shard.labels is not None:
            nxt = block_idx[:, None] * L + np.arange(1, L)[None, :]  # stream offset of each predicted token
            prov = np.full(x.shape, NO_LABEL, dtype=np.uint8)
            prov[:, :-1] = self.shard.labels[nxt]
        return Batch(
            input_ids=torch.from_numpy(x),
            labels=torch.from_numpy(labels),
            ref_loss=None if ref_loss is None else torch.from_numpy(ref_loss),
            ref_entropy=None if ref_entropy is None else torch.from_numpy(ref_entropy),
            provenance=None if prov is None else torch.from_numpy(prov.astype(np.int64)),
            block_idx=torch.from_numpy(np.asarray(block_idx, dtype=np.int64)),
        )
