"""Log-likelihood of continuations given contexts, batched (the lm-evaluation-harness recipe).

For a pair ``(context, continuation)`` the continuation's tokens are those of
``tokenize(context + continuation)`` beyond ``tokenize(context)`` (so merges across the
boundary are handled as lm-eval does; whitespace ending the context moves to the continuation).
Texts are encoded with the tokenizer's own special-token default (a Llama tokenizer adds BOS),
and an empty context is replaced by one conditioning token (BOS, else EOS), exactly as lm-eval's
HFLM does, so both give the same numbers. The model sees ``context + continuation[:-1]`` and we
sum the log-probabilities of the continuation tokens. Inputs longer than the model's window are
cut from the left, never inside the continuation.
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


def _encode_pair(
    tokenizer: Any, context: str, continuation: str, prefix_id: int
) -> tuple[list[int], list[int]]:
    if not context:
        cont = tokenizer(continuation)["input_ids"]
        return ([prefix_id], cont) if cont[:1] != [prefix_id] else (cont[:1], cont[1:])
    n_space = len(context) - len(context.rstrip())
    if n_space:
        context, continuation = context[:-n_space], context[-n_space:] + continuation
    ctx = tokenizer(context)["input_ids"]
    whole = tokenizer(context + continuation)["input_ids"]
    return ctx, whole[len(ctx) :]


def _max_len(model: Any) -> int:
    cfg = getattr(model, "config", None)
    return int(getattr(cfg, "max_position_embeddings", 0) or 2048)


@torch.inference_mode()
def continuation_logliks(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "loglikelihood",
) -> list[LogLik]:
    """Log-likelihood of each ``continuation`` given its ``context``, in input order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prefix_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if prefix_id is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to condition on; set one")
    max_len = _max_len(model)
    device = next(model.parameters()).device
    encoded: list[tuple[list[int], list[int]]] = []  # (model input, continuation targets)
    for ctx, cont in pairs:
        c_ids, t_ids = _encode_pair(tokenizer, ctx, cont, prefix_id)
        if not t_ids:
            raise ValueError(f"empty continuation for context ending {ctx[-40:]!r}; every option needs text")
        if len(t_ids) > max_len:
            raise ValueError(f"continuation of {len(t_ids)} tokens exceeds the model window ({max_len})")
        full = (c_ids + t_ids)[-(max_len + 1) :]
        encoded.append((full[:-1], t_ids))
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    out: list[LogLik | None] = [None] * len(encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else prefix_id
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for idx in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
        width = max(len(encoded[i][0]) for i in idx)
        inp = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids = encoded[i][0]
            inp[r, : len(ids)] = torch.tensor(ids)
            mask[r, : len(ids)] = 1
        logits = model(input_ids=inp.to(device), attention_mask=mask.to(device)).logits
        for r, i in enumerate(idx):
            ids, targets = encoded[i]
            n = len(targets)
            lp = F.log_softmax(logits[r, len(ids) - n : len(ids)].float(), dim=-1)
            tgt = torch.tensor(targets, device=lp.device)
            token_lp = lp.gather(-1, tgt[:, None])[:, 0]
            out[i] = LogLik(float(token_lp.sum()), n, bool((lp.argmax(-1) == tgt).all()))
    return [o for o in out if o is not None]
