"""Per-token probes of saved models on a fixed validation shard (token dynamics, Figures 6 and 8)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from rho.data.shards import TokenShard
from rho.scoring import next_token_loss_and_entropy


@torch.no_grad()
def token_losses(
    model_path: str | os.PathLike,
    shard: TokenShard,
    block_size: int,
    max_blocks: int | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """Loss of every predicted token of the first ``max_blocks`` blocks: ``[n_blocks, block_size - 1]``.

    Column ``t`` is the loss of token ``t + 1`` of the block (design.md alignment without the
    undefined first column).  float32, computed on the CPU or the model's device.
    """
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_path)).eval()
    n = shard.n_blocks(block_size)
    if max_blocks is not None:
        n = min(n, max_blocks)
    out = np.empty((n, block_size - 1), dtype=np.float32)
    for s in range(0, n, batch_size):
        idx = np.arange(s, min(n, s + batch_size))
        x = torch.from_numpy(shard.blocks(idx, block_size))
        logits = model(input_ids=x).logits[:, :-1]
        loss, _ = next_token_loss_and_entropy(logits, x[:, 1:])
        out[idx] = loss.numpy()
    return out


def loss_matrix(
    checkpoints: list[tuple[int, Path]], shard: TokenShard, block_size: int, max_blocks: int | None
) -> np.ndarray:
    """``[n_checkpoints, n_tokens]`` per-token losses of several checkpoints on the same tokens."""
    rows = [
        token_losses(p, shard, block_size, max_blocks).reshape(-1)
        for _, p in tqdm(checkpoints, desc="per-token loss at checkpoints")
    ]
    return np.stack(rows)


def block_labels(shard: TokenShard, block_size: int, max_blocks: int | None) -> np.ndarray | None:
    """Provenance label of every predicted token, aligned with :func:`token_losses` (flattened)."""
    n = shard.n_blocks(block_size)
    if max_blocks is not None:
        n = min(n, max_blocks)
    labels = shard.block_labels(np.arange(n), block_size)
    return None if labels is None else labels[:, 1:].reshape(-1)
