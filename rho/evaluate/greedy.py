"""A lean greedy decoder for Llama-architecture models (the miniature study's evaluation).

For a model of about a million parameters, transformers' ``generate`` spends most of each decoding
step outside the arithmetic: the dynamic cache grows by ``torch.cat`` (a copy of every layer's
keys and values per token), the attention mask and rotary tables are rebuilt, and the generation
loop's bookkeeping runs for every row, including rows that have finished. Few-shot prompts also
repeat the same exemplars in every row of the prefill. :class:`LlamaGreedy` keeps the model's own
modules (embedding, norms, projections, rotary embedding, MLP, head) and drops the rest:

1. the prompts' common token prefix (the exemplars) runs once, for one row, and its keys and
   values are copied to every row of a cache preallocated for the prompt and ``max_new_tokens``;
2. the rest of each prompt runs as one left-padded block after it, so the cache holds
   ``[prefix | padding | rest of prompt | new tokens]`` (positions are explicit and padding is
   masked, so attention sees what it sees in a left-padded batch);
3. each new token's key and value are written in place and attention reads the filled part;
4. rows that have finished (end of sequence or a stop string) leave the batch.

The arithmetic is regrouped (the prefix alone, other batch sizes), so logits can move by float
rounding; the greedy tokens were identical to ``generate``'s on the mini study's models (3,500
completions each of ``base`` and ``math_slm``, 1,400 of ``math_clm``) and are identical in float64
in the tests. The evaluation records the decoder in its ``config.json``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["LlamaGreedy", "common_prefix", "supports"]


def supports(model: nn.Module) -> bool:
    """Whether :class:`LlamaGreedy` can decode ``model`` (a Llama causal LM with default RoPE, sdpa)."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "llama":
        return False
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(model, "lm_head"):
        return False
    rope = getattr(cfg, "rope_parameters", None) or {}
    return rope.get("rope_type", "default") == "default" and cfg._attn_implementation in ("sdpa", "eager")


class LlamaGreedy:
    """Greedy decoding of a batch of tokenized prompts (see the module docstring).

    ``done(row_tokens) -> bool`` is asked after every new token of a row (its generated tokens so
    far) and ends that row, as a per-row stopping criterion does in ``generate``.
    """

    def __init__(self, model: nn.Module) -> None:
        if not supports(model):
            raise ValueError("LlamaGreedy decodes Llama causal LMs with default RoPE; use generate()")
        self.model = model
        self.inner = model.model
        cfg = model.config
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads

    def _layers(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        start: int,
        attn_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Run ``x [n, q, H]`` (at cache columns ``start:start+q``) through the layers; the last hidden states."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        inner = self.inner
        n, q_len = x.shape[:2]
        end = start + q_len
        groups = self.n_heads // self.n_kv
        cos, sin = inner.rotary_emb(x, positions)
        for i, layer in enumerate(inner.layers):
            att = layer.self_attn
            h = layer.input_layernorm(x)
            q = att.q_proj(h).view(n, q_len, -1, self.head_dim).transpose(1, 2)
            k = att.k_proj(h).view(n, q_len, -1, self.head_dim).transpose(1, 2)
            v = att.v_proj(h).view(n, q_len, -1, self.head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            keys[i][:, :, start:end] = k
            values[i][:, :, start:end] = v
            kk, vv = keys[i][:, :, :end], values[i][:, :, :end]
            if groups > 1:
                kk = kk.repeat_interleave(groups, dim=1)
                vv = vv.repeat_interleave(groups, dim=1)
            o = nn.functional.scaled_dot_product_attention(q, kk, vv, attn_mask=attn_mask, scale=att.scaling)
            x = x + att.o_proj(o.transpose(1, 2).reshape(n, q_len, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return x

    def _next(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(self.inner.norm(x)[:, -1, :]).float().argmax(-1)

    def _prefill(
        self,
        prompts: list[list[int]],
        c: int,
        s: int,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        visible: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill the cache with the prompts (prefix of ``c`` tokens once, then the rest left-padded
        to ``s``) and mark the padding in ``visible``; returns the positions of the prompts' last
        ``s`` tokens and the first new token of every row."""
        b, dev = len(prompts), visible.device
        dtype, shape = keys[0].dtype, keys[0].shape
        if c:  # the shared prefix: one row, positions 0..c-1, copied to every row
            pre_k = [torch.zeros(1, shape[1], c, shape[3], dtype=dtype, device=dev) for _ in keys]
            pre_v = [torch.zeros_like(k) for k in pre_k]
            ids = torch.tensor([prompts[0][:c]], device=dev)
            x = self.inner.embed_tokens(ids)
            causal = torch.ones(c, c, dtype=torch.bool, device=dev).tril()[None, None]
            self._layers(x, torch.arange(c, device=dev)[None], pre_k, pre_v, 0, causal)
            for i in range(len(keys)):
                keys[i][:, :, :c] = pre_k[i]
                values[i][:, :, :c] = pre_v[i]
        # the suffixes, left-padded to s: cache columns c..c+s-1
        ids = torch.zeros(b, s, dtype=torch.long, device=dev)
        pos = torch.ones(b, s, dtype=torch.long, device=dev)
        for r, p in enumerate(prompts):
            n = len(p) - c
            ids[r, s - n :] = torch.tensor(p[c:], device=dev)
            pos[r, s - n :] = torch.arange(c, c + n, device=dev)
            visible[r, c : c + s - n] = False
        q_idx = torch.arange(s, device=dev)
        # every query sees the prefix (columns :c are visible), so a padded query's softmax row is
        # never empty
        mask = visible[:, None, None, : c + s].repeat(1, 1, s, 1)
        mask[:, :, :, c:] &= (q_idx[None, :] <= q_idx[:, None])[None, None]  # causal among the suffix
        if c == 0:
            mask |= (q_idx[None, :] == q_idx[:, None])[None, None]  # ... or themselves
        x = self._layers(self.inner.embed_tokens(ids), pos, keys, values, c, mask)
        return pos, self._next(x)

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        eos_token_id: int | None,
        done: Callable[[list[int]], bool] | None = None,
    ) -> list[list[int]]:
        """Greedy new tokens of every prompt (a row ends after its eos token or when ``done`` says so).

        The prompts' common token prefix (a few-shot block, say) is computed once. The cache holds
        ``[prefix | padding | suffix_i | new tokens]``: attention is blind to where a key sits
        (positions are explicit, padding is masked), so this equals a left-padded batch.
        """
        b = len(prompts)
        outs: list[list[int]] = [[] for _ in range(b)]
        if max_new_tokens < 1 or b == 0:
            return outs
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        c = common_prefix(prompts, leave=1)  # every row keeps a suffix token to predict from
        s = max(len(p) for p in prompts) - c
        total = c + s + max_new_tokens
        dev = next(self.model.parameters()).device
        dtype = self.inner.embed_tokens.weight.dtype
        shape = (b, self.n_kv, total, self.head_dim)
        keys = [torch.zeros(shape, dtype=dtype, device=dev) for _ in self.inner.layers]
        values = [torch.zeros(shape, dtype=dtype, device=dev) for _ in self.inner.layers]
        visible = torch.ones(b, total, dtype=torch.bool, device=dev)  # keys a row attends to
        pos, nxt = self._prefill(prompts, c, s, keys, values, visible)
        rows = torch.arange(b, device=dev)  # batch row -> output row
        last = pos[:, -1]
        for t in range(c + s, total):
            tokens = nxt.tolist()
            alive = []
            for j, r in enumerate(rows.tolist()):
                outs[r].append(tokens[j])
                ended = tokens[j] == eos_token_id or (done is not None and done(outs[r]))
                alive.append(not ended)
            if t == total - 1 or not any(alive):
                break
            if not all(alive):  # finished rows leave the batch
                keep = torch.tensor(alive, device=dev).nonzero().squeeze(1)
                rows, nxt, last, visible = rows[keep], nxt[keep], last[keep], visible[keep]
                keys = [k[keep] for k in keys]
                values = [v[keep] for v in values]
            last = last + 1
            step_mask = None if bool(visible[:, : t + 1].all()) else visible[:, None, None, : t + 1]
            x = self._layers(self.inner.embed_tokens(nxt[:, None]), last[:, None], keys, values, t, step_mask)
            nxt = self._next(x)
        return outs


def common_prefix(rows: list[list[int]], leave: int = 0) -> int:
    """Length of the longest token prefix that every row shares (0 for no rows).

    ``leave``: cap it so that every row keeps at least that many tokens after the prefix (the
    decoders pass 1: each row needs a token of its own to predict from).
    """
    if not rows:
        return 0
    first = rows[0]
    n = min(len(r) for r in rows)
    cap = max(0, n - leave)
    for r in rows[1:]:
        k = 0
        while k < n and r[k] == first[k]:
            k += 1
        n = k
    return min(n, cap)
