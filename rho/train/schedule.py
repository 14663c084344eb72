"""Learning-rate schedule: linear warmup, then cosine decay to ``min_lr`` at the last step."""

from __future__ import annotations

import math


def lr_at(step: int, *, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based) in a run of ``total`` steps.

    Warmup: ``lr * (step + 1) / warmup`` for ``step < warmup`` (so step ``warmup - 1`` reaches
    ``lr``).  Then cosine from ``lr`` (first step after warmup) to ``min_lr`` (step ``total - 1``).
    """
    if step < 0 or total < 1:
        raise ValueError(f"need step >= 0 and total >= 1, got step={step}, total={total}")
    if step < warmup:
        return lr * (step + 1) / warmup
    decay_steps = total - warmup - 1
    if decay_steps <= 0:
        return lr
    progress = min(1.0, (step - warmup) / decay_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
