"""Log-likelihoods of several continuations of one context, with the context run once.

A multiple-choice question scores every option after the same prompt. Scoring each
``(prompt, option)`` pair as its own sequence (:func:`rho.evaluate.likelihood.continuation_logliks`)
runs the prompt through the model once per option; here it runs once per question and its key/value
cache is shared by the options. For the mini world's tasks (prompts of ~175 tokens, 4-5 options of
~20-40) that is about a third of the token-forwards, with the same numbers up to float rounding.
Within a batch, the contexts' common token prefix (the few-shot exemplars) also runs only once.

Tokenization is the pairwise scorer's (lm-eval's recipe, :func:`_encode_pair`), so each option's
scored tokens are exactly those the pairwise scorer scores. The one difference is the window: a
context too long for ``max_length`` is cut from the left once, by the longest option of its group,
so all options of a question see the same context (pairwise, each option is cut by its own length).
A group whose longest option does not fit the window at all falls back to the pairwise scorer (its
rolling windows).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from rho.evaluate.greedy import common_prefix
from rho.evaluate.likelihood import LogLik, _encode_group, _setup, continuation_logliks

__all__ = ["shared_context_logliks"]

#: A batch's contexts sharing at least this many leading tokens run them once (see the batch loop).
MIN_SHARED_PREFIX = 16


class _CachedForward:
    """A model's forward with a key/value cache, its keyword names read once from its signature:
    ``cache`` (transformers 5) or ``past_key_values``, and whether it takes ``logits_to_keep``."""

    def __init__(self, model: Any) -> None:
        params = inspect.signature(model.forward).parameters
        self.model = model
        self.cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self.keeps_logits = "logits_to_keep" in params

    def __call__(self, cache: Any = None, **kw: Any) -> tuple[torch.Tensor, Any]:
        """Logits and the key/value cache of one cached forward."""
        if cache is not None:
            kw[self.cache_kwarg] = cache
        if not self.keeps_logits:
            kw.pop("logits_to_keep", None)  # older models: all positions' logits, the last one is used
        out = self.model(use_cache=True, **kw)
        new = getattr(out, "cache", None)
        return out.logits, (new if new is not None else getattr(out, "past_key_values", None))


@torch.inference_mode()
def shared_context_logliks(
    model: Any,
    tokenizer: Any,
    groups: Sequence[tuple[str, Sequence[str]]],
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "loglikelihood",
    max_length: int | None = None,
) -> list[list[LogLik]]:
    """Log-likelihood of each continuation of each ``(context, continuations)`` group, in order.

    ``batch_size`` is the number of contexts run together (their continuations follow in one
    batch). Returns one list of :class:`LogLik` per group, in the order of its continuations.
    """
    setup = _setup(model, tokenizer, batch_size, max_length)
    prefix_id, pad, max_len, device = setup.prefix_id, setup.pad_id, setup.max_len, setup.device
    forward = _CachedForward(model)

    out: list[list[LogLik] | None] = [None] * len(groups)
    shared: list[tuple[int, list[int], list[list[int]]]] = []  # (group, context ids, targets)
    for g, (ctx, conts) in enumerate(groups):
        if not conts:
            raise ValueError(f"group {g} has no continuations to score")
        encoded = _encode_group(tokenizer, ctx, conts, prefix_id)
        for (_, t_ids), c in zip(encoded, conts):
            if not t_ids:
                raise ValueError(
                    f"empty continuation {c!r} for context ending {ctx[-40:]!r}; every option needs text"
                )
        longest = max(len(t) for _, t in encoded)
        if longest > max_len or len({tuple(c) for c, _ in encoded}) > 1:
            out[g] = continuation_logliks(
                model,
                tokenizer,
                [(ctx, c) for c in conts],
                batch_size=batch_size,
                progress=False,
                max_length=max_len,
            )
            continue
        c_ids = encoded[0][0][-(max_len + 1 - longest) :]  # context + longest[:-1] fills the window
        shared.append((g, c_ids, [t for _, t in encoded]))

    order = sorted(range(len(shared)), key=lambda i: -len(shared[i][1]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for idx in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
        items = [shared[i] for i in idx]
        # the contexts' common prefix (a few-shot block) runs once, its cache copied to every row;
        # the cache then holds [prefix | padding | rest of context]: positions are explicit and
        # padding is masked, so this equals a left-padded batch of the whole contexts
        common = common_prefix([c for _, c, _ in items], leave=1)
        common = common if common >= MIN_SHARED_PREFIX and len(items) > 1 else 0
        cache = None
        if common:
            _, cache = forward(
                input_ids=torch.tensor([items[0][1][:common]], device=device),
                attention_mask=torch.ones((1, common), dtype=torch.long, device=device),
                position_ids=torch.arange(common, device=device)[None],
                logits_to_keep=1,
            )
            cache.batch_select_indices(torch.zeros(len(items), dtype=torch.long, device=device))
        width = max(len(c) for _, c, _ in items) - common
        ctx = torch.full((len(items), width), pad, dtype=torch.long)
        ctx_mask = torch.zeros((len(items), common + width), dtype=torch.long)
        ctx_mask[:, :common] = 1
        for r, (_, c, _) in enumerate(items):  # left-padded: every context ends at the last column
            ctx[r, width - (len(c) - common) :] = torch.tensor(c[common:])
            ctx_mask[r, common + width - (len(c) - common) :] = 1
        ctx_pos = (ctx_mask.cumsum(-1) - 1).clamp(min=0)[:, common:]
        last_logits, cache = forward(
            cache=cache,
            input_ids=ctx.to(device),
            attention_mask=ctx_mask.to(device),
            position_ids=ctx_pos.to(device),
            logits_to_keep=1,  # only the last position's: it predicts each option's first token
        )
        first = F.log_softmax(last_logits[:, -1].float(), dim=-1)  # predicts each option's first token

        rows = [(r, t) for r, (_, _, targets) in enumerate(items) for t in targets]
        owner = torch.tensor([r for r, _ in rows])
        cache.batch_select_indices(owner.to(device))
        span = max(len(t) for _, t in rows) - 1  # the model sees each option but its last token
        lls: list[LogLik] = []
        if span > 0:
            inp = torch.full((len(rows), span), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), span), dtype=torch.long)
            for k, (_, t) in enumerate(rows):
                inp[k, : len(t) - 1] = torch.tensor(t[:-1])
                mask[k, : len(t) - 1] = 1
            lengths = ctx_mask.sum(-1)[owner]
            pos = lengths[:, None] + torch.arange(span)[None, :]
            logits, _ = forward(
                cache=cache,
                input_ids=inp.to(device),
                attention_mask=torch.cat([ctx_mask[owner], mask], dim=1).to(device),
                position_ids=pos.to(device),
            )
        for k, (r, t) in enumerate(rows):
            lp0 = first[r]
            tgt = torch.tensor(t, device=lp0.device)
            if len(t) > 1:
                rest = F.log_softmax(logits[k, : len(t) - 1].float(), dim=-1)
                lp = torch.cat([lp0[None], rest], dim=0)
            else:
                lp = lp0[None]
            picked = lp.gather(-1, tgt[:, None])[:, 0]
            lls.append(LogLik(float(picked.sum()), len(t), bool((lp.argmax(-1) == tgt).all())))
        pos_in = 0
        for g, _, targets in items:
            out[g] = lls[pos_in : pos_in + len(targets)]
            pos_in += len(targets)
    return [o if o is not None else [] for o in out]
