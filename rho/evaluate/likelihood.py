"""Log-likelihood of continuations given contexts, batched (the lm-evaluation-harness recipe).

For a pair ``(context, continuation)`` the continuation's tokens are those of
``tokenize(context + continuation)`` beyond ``tokenize(context)`` (so merges across the
boundary are handled as lm-eval does; whitespace ending the context moves to the continuation).
Texts are encoded with the tokenizer's own special-token default (a Llama tokenizer adds BOS),
and an empty context is replaced by one conditioning token (BOS, else EOS), exactly as lm-eval's
HFLM does, so both give the same numbers. The model sees ``context + continuation[:-1]`` and we
sum the log-probabilities of the continuation tokens. Inputs longer than the model's window are
cut from the left, never inside the continuation; a continuation longer than the window itself is
scored in rolling windows (each window scores up to half the window's tokens and conditions them
on everything before that fits), so every continuation token is scored exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

__all__ = ["LogLik", "continuation_logliks"]


@dataclass(frozen=True)
class LogLik:
    """Summed log-probability of a continuation, its token count and whether it is the greedy one."""

    logprob: float
    n_tokens: int
    greedy: bool


def _encode_group(
    tokenizer: Any, context: str, continuations: Sequence[str], prefix_id: int
) -> list[tuple[list[int], list[int]]]:
    """(context ids, continuation ids) of each continuation of one context, the context encoded once.

    An empty context becomes the conditioning token ``prefix_id``; whitespace ending the context
    moves to the continuations; a continuation's ids are those of ``context + continuation`` beyond
    the context's (lm-eval's recipe).
    """
    if not context:
        conts = tokenizer(list(continuations))["input_ids"] if continuations else []
        return [([prefix_id], c) if c[:1] != [prefix_id] else (c[:1], c[1:]) for c in conts]
    n_space = len(context) - len(context.rstrip())
    if n_space:
        context, continuations = context[:-n_space], [context[-n_space:] + c for c in continuations]
    ctx = tokenizer(context)["input_ids"]
    wholes = tokenizer([context + c for c in continuations])["input_ids"] if continuations else []
    return [(ctx, w[len(ctx) :]) for w in wholes]


def _encode_pair(
    tokenizer: Any, context: str, continuation: str, prefix_id: int
) -> tuple[list[int], list[int]]:
    """:func:`_encode_group` of one continuation."""
    return _encode_group(tokenizer, context, [continuation], prefix_id)[0]


def _max_len(model: Any) -> int:
    cfg = getattr(model, "config", None)
    return int(getattr(cfg, "max_position_embeddings", 0) or 2048)


@dataclass(frozen=True)
class _Setup:
    """What every scorer needs: the conditioning and pad tokens, the window and the device."""

    prefix_id: int
    pad_id: int
    max_len: int
    device: torch.device


def _setup(model: Any, tokenizer: Any, batch_size: int, max_length: int | None) -> _Setup:
    """Check a scorer's arguments and resolve its tokens, window and device."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prefix_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if prefix_id is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to condition on; set one")
    max_len = int(max_length) if max_length else _max_len(model)
    if max_len < 2:
        raise ValueError(f"the model window must be at least 2 tokens, got {max_len}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else prefix_id
    return _Setup(prefix_id, pad, max_len, next(model.parameters()).device)


@torch.inference_mode()
def continuation_logliks(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "loglikelihood",
    max_length: int | None = None,
) -> list[LogLik]:
    """Log-likelihood of each ``continuation`` given its ``context``, in input order.

    Inputs longer than the window (``max_length``, the context the model was trained on, else the
    model config's) are cut from the left of the context.
    """
    setup = _setup(model, tokenizer, batch_size, max_length)
    prefix_id, pad, max_len, device = setup.prefix_id, setup.pad_id, setup.max_len, setup.device
    encoded: list[tuple[int, list[int], list[int]]] = []  # (pair, model input, its scored targets)
    for k, (ctx, cont) in enumerate(pairs):
        c_ids, t_ids = _encode_pair(tokenizer, ctx, cont, prefix_id)
        if not t_ids:
            raise ValueError(f"empty continuation for context ending {ctx[-40:]!r}; every option needs text")
        encoded += _windows(k, c_ids + t_ids, len(t_ids), max_len)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][1]))
    sums = [0.0] * len(pairs)
    counts = [0] * len(pairs)
    greedy = [True] * len(pairs)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for idx in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
        width = max(len(encoded[i][1]) for i in idx)
        inp = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids = encoded[i][1]
            inp[r, : len(ids)] = torch.tensor(ids)
            mask[r, : len(ids)] = 1
        logits = model(input_ids=inp.to(device), attention_mask=mask.to(device)).logits
        for r, i in enumerate(idx):
            k, ids, targets = encoded[i]
            n = len(targets)
            lp = F.log_softmax(logits[r, len(ids) - n : len(ids)].float(), dim=-1)
            tgt = torch.tensor(targets, device=lp.device)
            sums[k] += float(lp.gather(-1, tgt[:, None])[:, 0].sum())
            counts[k] += n
            greedy[k] = greedy[k] and bool((lp.argmax(-1) == tgt).all())
    return [LogLik(v, n, g) for v, n, g in zip(sums, counts, greedy)]


def _windows(k: int, full: list[int], n_targets: int, max_len: int) -> list[tuple[int, list[int], list[int]]]:
    """Model inputs of at most ``max_len`` tokens that together score the last ``n_targets`` of ``full``.

    One window when the continuation fits (the context is cut from the left); otherwise rolling
    windows that each score ``max_len // 2`` tokens after up to ``max_len - max_len // 2`` of context.
    """
    if n_targets <= max_len:
        window = full[-(max_len + 1) :]
        return [(k, window[:-1], full[-n_targets:])]
    step = max_len // 2
    out = []
    for a in range(len(full) - n_targets, len(full), step):  # targets full[a:b], predicted from full[:b-1]
        b = min(a + step, len(full))
        start = max(0, b - 1 - max_len)
        out.append((k, full[start : b - 1], full[a:b]))
    return out
