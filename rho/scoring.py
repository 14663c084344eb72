"""Reference-model scoring: per-token loss and next-token entropy over a token shard.

A score directory (docs/design.md "Reference scores")::

    loss.bin      float32[n_tokens]  RM cross-entropy of token j given the tokens before it in its block
    entropy.bin   float32[n_tokens]  entropy of the RM's predictive distribution at that position (eq. 8)
    meta.json     model identity, tokenizer/shard hashes, n_tokens, block_size, dtype, vocab, backend

Both arrays are aligned with the token file: index ``j`` is about *predicting token j*; the first
token of every block and the dropped tail (``n_tokens % block_size`` tokens) hold NaN.

Two backends:

* ``"torch"`` (default, CPU or CUDA): one no-grad forward per batch of blocks; loss and entropy
  are computed from the logits in float32 a chunk of rows at a time (bf16 autocast on CUDA).
* ``"vllm"``: ``model`` is a ``vllm.LLM``; each block is a prompt scored with
  ``SamplingParams(max_tokens=1, prompt_logprobs=k)``.  vLLM returns the log-probability of each
  prompt token (the loss) and of the top-``k`` candidates only, so the full-distribution entropy is
  not available: with ``entropy_topk=0`` (default) ``entropy.bin`` is all NaN and
  ``meta["entropy"] == "none"``; with ``entropy_topk=k > 0`` it holds ``-sum p log p`` over the
  top-``k`` tokens, a lower bound of the entropy, and ``meta["entropy"] == "topk_lower_bound"``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from rho import __version__
from rho.data.shards import TokenShard
from rho.head import HeadLoss
from rho.io import atomic_dir, read_json, sha256_file

FORMAT = "rho-scores-v1"
BACKENDS = ("torch", "vllm")
_FILES = ("loss.bin", "entropy.bin")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: Largest per-token loss (nats) a score file may hold: far above any model's (a uniform guess over
#: 2**20 ids costs 14 nats), far below the garbage a flipped exponent bit makes.
MAX_LOSS = 1e4
_TOL = 1e-3


class ScoringError(ValueError):
    """Bad scoring input, or scores that do not belong to the shard/model they are used with."""


# ----------------------------------------------------------------------------- loss and entropy
def next_token_loss_and_entropy(
    logits: torch.Tensor, targets: torch.Tensor, chunk_rows: int | None = None, fused: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``targets`` and entropy of ``softmax(logits)`` per row, in float32.

    ``logits`` is ``[..., V]`` (any float dtype), ``targets`` the matching ``[...]`` ids (aligned:
    row ``i`` of the logits predicts ``targets[i]``).  Rows are upcast ``chunk_rows`` at a time,
    so at most ``chunk_rows x V`` float32 values exist at once (default: about 2**24 of them).

    ``fused=True`` runs :func:`_fused_rows` through ``torch.compile`` (one fused kernel per chunk
    instead of ~5 passes over the logits; about 4x faster on CPU, compiled once, ~10 s); if
    compilation fails it warns and falls back to the eager path.
    """
    v = logits.shape[-1]
    if targets.shape != logits.shape[:-1]:
        raise ScoringError(f"targets {tuple(targets.shape)} do not match logits {tuple(logits.shape)}")
    flat = logits.reshape(-1, v)
    tgt = targets.reshape(-1).long()
    n = flat.shape[0]
    rows = chunk_rows or max(1, (1 << (26 if logits.is_cuda else 24)) // v)
    loss = torch.empty(n, dtype=torch.float32, device=logits.device)
    ent = torch.empty(n, dtype=torch.float32, device=logits.device)
    kernel = _compiled_rows() if fused else None
    for s in range(0, n, rows):
        e = min(n, s + rows)
        if kernel is not None:
            try:
                loss[s:e], ent[s:e] = kernel(flat[s:e], tgt[s:e])
                continue
            except Exception as err:  # inductor unavailable (no compiler, unsupported device)
                warnings.warn(
                    f"torch.compile of the scoring kernel failed ({err!r:.200}); using eager", stacklevel=2
                )
                kernel = _COMPILED["rows"] = None
                _COMPILED["failed"] = True
        loss[s:e], ent[s:e] = _eager_rows(flat[s:e], tgt[s:e])
    return loss.view(targets.shape), ent.view(targets.shape)


def _eager_rows(x: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and entropy of a chunk of rows via log_softmax (eager PyTorch)."""
    logp = torch.log_softmax(x.float(), dim=-1)
    loss = -logp.gather(1, tgt[:, None]).squeeze(1)
    h = -torch.linalg.vecdot(logp.exp(), logp)
    bad = torch.isnan(h)
    if bool(bad.any()):
        # -inf logits (masked vocabulary) give 0 * -inf = NaN above; there p log p is 0
        lp = logp[bad]
        h[bad] = -torch.special.xlogy(lp.exp(), lp.exp()).sum(-1)
    return loss, h


def _fused_rows(x: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and entropy with only non-negative terms (no cancellation), written to fuse well.

    With ``m = max x``, ``d = m - x >= 0``, ``e = exp(-d)``, ``s = sum e``:
    ``loss = log s + d[target]`` and ``H = log s + sum(e * d) / s``.
    """
    x = x.float()
    m = x.amax(-1, keepdim=True)
    d = m - x
    e = torch.exp(-d)
    s = e.sum(-1)
    log_s = torch.log(s)
    ed = torch.where(e > 0, e * d, torch.zeros_like(d))
    return log_s + d.gather(1, tgt[:, None]).squeeze(1), log_s + ed.sum(-1) / s


_COMPILED: dict[str, Any] = {}


def _compiled_rows() -> Any | None:
    if _COMPILED.get("failed"):
        return None
    if "rows" not in _COMPILED:
        _COMPILED["rows"] = torch.compile(_fused_rows, dynamic=True)
    return _COMPILED["rows"]


# ----------------------------------------------------------------------------- model identity
def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _config_dict(config: Any) -> dict[str, Any]:
    d = dict(config.to_dict()) if hasattr(config, "to_dict") else dict(vars(config))
    for k in ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "architectures"):
        d.pop(k, None)
    return d


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over the model's state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_identity(model: torch.nn.Module, hash_weights: bool = True) -> dict[str, Any]:
    """Name/path, config hash, parameter count and (optionally) weight hash of a HF model."""
    config = getattr(model, "config", None)
    if config is None:
        raise ScoringError(f"{type(model).__name__} has no .config; pass a Hugging Face causal LM")
    return {
        "name_or_path": str(getattr(config, "_name_or_path", "") or getattr(model, "name_or_path", "") or ""),
        "class": type(model).__name__,
        "config_sha256": _sha256_json(_config_dict(config)),
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "weights_sha256": weights_sha256(model) if hash_weights else None,
    }


def _vocab_of(model: Any) -> int | None:
    """Vocabulary size of a HF model, a config, a vLLM LLM or an int (None if unknown)."""
    if isinstance(model, int | np.integer):
        return int(model)
    cfg = getattr(model, "config", model)
    v = getattr(cfg, "vocab_size", None)
    if v is None:
        mc = _vllm_model_config(model)
        if mc is not None:
            get = getattr(mc, "get_vocab_size", None)
            v = get() if callable(get) else getattr(getattr(mc, "hf_config", None), "vocab_size", None)
    return int(v) if v is not None else None


# ----------------------------------------------------------------------------- vLLM helpers
def _vllm_model_config(llm: Any) -> Any | None:
    engine = getattr(llm, "llm_engine", None)
    return getattr(engine, "model_config", None) if engine is not None else None


def _vllm_sampling_params(topk: int) -> Any:
    """``vllm.SamplingParams`` asking for prompt log-probabilities (raises if vLLM is missing)."""
    try:
        from vllm import SamplingParams
    except ImportError:
        raise ScoringError(
            "backend='vllm' needs vLLM, which is not installed; install it (pip install 'rho[gpu]') "
            "or use backend='torch'"
        ) from None
    return SamplingParams(max_tokens=1, prompt_logprobs=topk, temperature=0.0)


def _vllm_identity(llm: Any) -> dict[str, Any]:
    mc = _vllm_model_config(llm)
    if mc is None:
        raise ScoringError(
            f"backend='vllm' expects a vllm.LLM as model, got {type(llm).__name__}; "
            "build one with vllm.LLM(path) or use backend='torch'"
        )
    hf = getattr(mc, "hf_config", None)
    return {
        "name_or_path": str(getattr(mc, "model", "")),
        "class": f"vllm:{type(llm).__name__}",
        "config_sha256": _sha256_json(_config_dict(hf)) if hf is not None else None,
        "n_params": None,
        "weights_sha256": None,
    }


def prompt_logprobs_to_arrays(
    prompt_logprobs: Sequence[Any], token_ids: Sequence[int], topk: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Loss and (top-k) entropy per prompt position from vLLM's ``RequestOutput.prompt_logprobs``.

    ``prompt_logprobs[j]`` is None for ``j = 0`` and otherwise maps token id -> an object with
    ``.logprob`` (and ``.rank``) or a float.  ``loss[j] = -logprob(token_ids[j])``.  With
    ``topk > 0``, ``entropy[j] = -sum p log p`` over candidates of rank <= ``topk`` (a lower bound
    of the full entropy); with ``topk == 0`` entropy is NaN.
    """
    n = len(token_ids)
    if len(prompt_logprobs) != n:
        raise ScoringError(f"vLLM returned {len(prompt_logprobs)} prompt logprobs for {n} prompt tokens")
    loss = np.full(n, np.nan, np.float32)
    ent = np.full(n, np.nan, np.float32)
    for j in range(1, n):
        entry = prompt_logprobs[j]
        if entry is None:
            continue
        tok = int(token_ids[j])
        if tok not in entry:
            raise ScoringError(f"vLLM prompt logprobs at position {j} lack the prompt token {tok}")
        loss[j] = -_lp(entry[tok])
        if topk > 0:
            lps = [
                _lp(c)
                for c in entry.values()
                if getattr(c, "rank", 1) is None or getattr(c, "rank", 1) <= topk
            ]
            p = np.exp(np.asarray(lps, np.float64))
            ent[j] = float(-(p * np.asarray(lps, np.float64)).sum())
    return loss, ent


def _lp(c: Any) -> float:
    return float(getattr(c, "logprob", c))


# ----------------------------------------------------------------------------- scoring
def _resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ScoringError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
        return _DTYPES[dtype]
    if dtype not in _DTYPES.values():
        raise ScoringError(f"unsupported dtype {dtype}; use torch.float32, torch.bfloat16 or torch.float16")
    return dtype


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ScoringError(f"{out_dir} exists and is not a directory; choose another out_dir")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "meta.json").is_file():
        raise ScoringError(
            f"{out_dir} is a non-empty directory that holds no scores; refusing to replace it "
            "(choose an empty or new out_dir)"
        )


def score_corpus(
    model: Any,
    shard: TokenShard,
    out_dir: str | os.PathLike,
    *,
    block_size: int,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    backend: str = "torch",
    dtype: torch.dtype | str | None = None,
    progress: bool = True,
    chunk_rows: int | None = None,
    hash_weights: bool = True,
    entropy_topk: int = 0,
    tokenizer: Any | None = None,
    fused: bool | None = None,
) -> ReferenceScores:
    """Score every token of ``shard`` with the reference model and write a score directory.

    Blocks are ``shard.blocks(i, block_size)``; within a block the model sees only the tokens of
    that block (as at train time).  ``dtype``: the autocast dtype for the torch backend (default
    bf16 on CUDA, float32 on CPU); loss and entropy are always computed in float32 from the
    logits.  ``device`` defaults to the model's device.  The directory is written atomically:
    if anything fails, a previous ``out_dir`` is left as it was.  ``tokenizer``, if given, must
    have the shard's tokenizer fingerprint.  ``fused`` computes loss and entropy with a
    ``torch.compile``-d kernel (see :func:`next_token_loss_and_entropy`); ``None`` (default) turns
    it on for corpora of at least 2**20 scored tokens, where its one-off ~10 s compile pays off.
    Returns the loaded scores.
    """
    out_dir = Path(out_dir)
    if backend not in BACKENDS:
        raise ScoringError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if not isinstance(block_size, int) or block_size < 2:
        raise ScoringError(f"block_size must be an int >= 2, got {block_size!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ScoringError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(entropy_topk, int) or entropy_topk < 0:
        raise ScoringError(f"entropy_topk must be an int >= 0, got {entropy_topk!r}")
    n_blocks = shard.n_tokens // block_size
    if n_blocks < 1:
        raise ScoringError(
            f"shard {shard.path} has {shard.n_tokens} tokens, fewer than one block of {block_size}; "
            "use a smaller block_size or a larger shard"
        )
    if tokenizer is not None:
        from rho.data.shards import tokenizer_fingerprint

        fp = tokenizer_fingerprint(tokenizer)
        if fp != shard.tokenizer_hash:
            raise ScoringError(
                f"tokenizer fingerprint {fp[:12]} differs from the shard's {shard.tokenizer_hash[:12]}; "
                "score with the model whose tokenizer made the shard, or re-tokenize the corpus"
            )
    _check_out_dir(out_dir)
    vocab = _vocab_of(model)
    if vocab is not None and vocab < shard.vocab_size:
        raise ScoringError(
            f"the model's vocabulary ({vocab}) is smaller than the shard's ({shard.vocab_size}); "
            "the reference model must use the tokenizer that made the shard"
        )
    max_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(max_pos, int) and block_size > max_pos:
        raise ScoringError(
            f"block_size {block_size} exceeds the model's max_position_embeddings ({max_pos}); "
            f"use block_size <= {max_pos}"
        )
    shard.verify(vocab)  # content hash and id range, before the first forward

    if backend == "torch":
        if not isinstance(model, torch.nn.Module):
            raise ScoringError(f"backend='torch' needs a torch.nn.Module, got {type(model).__name__}")
        model_dev = next(model.parameters()).device
        dev = torch.device(device) if device is not None else model_dev
        if dev.type != model_dev.type or (dev.index is not None and dev != model_dev):
            raise ScoringError(
                f"device {dev} differs from the model's device {model_dev}; move the model first "
                f"(model.to({str(dev)!r})) or leave device=None"
            )
        cdtype = _resolve_dtype(dtype, dev)
        identity = model_identity(model, hash_weights=hash_weights)
        entropy_kind = "full"
        params = None
        use_fused = fused if fused is not None else n_blocks * block_size >= 1 << 20
    else:
        dev, cdtype = None, None
        identity = _vllm_identity(model)
        params = _vllm_sampling_params(entropy_topk)
        entropy_kind = "topk_lower_bound" if entropy_topk > 0 else "none"
        use_fused = False

    meta = {
        "format": FORMAT,
        "rho_version": __version__,
        "model": identity,
        "tokenizer_hash": shard.tokenizer_hash,
        "shard_hash": shard.shard_hash,
        "shard_path": str(shard.path),
        "n_tokens": shard.n_tokens,
        "n_blocks": n_blocks,
        "block_size": block_size,
        "dtype": str(cdtype).replace("torch.", "") if cdtype is not None else "vllm-default",
        "vocab_size": vocab,
        "shard_vocab_size": shard.vocab_size,
        "backend": backend,
        "fused_kernel": use_fused,
        "entropy": entropy_kind,
        "entropy_topk": entropy_topk if backend == "vllm" else None,
        "alignment": "index j = predicting token j from the preceding tokens of its block; NaN at block starts",
    }

    bar = tqdm(total=n_blocks * block_size, unit="tok", desc="scoring", disable=not progress)
    try:
        with atomic_dir(out_dir) as tmp:
            loss_mm = np.memmap(tmp / "loss.bin", dtype=np.float32, mode="w+", shape=(shard.n_tokens,))
            ent_mm = np.memmap(tmp / "entropy.bin", dtype=np.float32, mode="w+", shape=(shard.n_tokens,))
            loss_mm[:] = np.nan
            ent_mm[:] = np.nan
            loss_blk = loss_mm[: n_blocks * block_size].reshape(n_blocks, block_size)
            ent_blk = ent_mm[: n_blocks * block_size].reshape(n_blocks, block_size)
            if backend == "torch":
                _score_torch(
                    model,
                    shard,
                    block_size,
                    batch_size,
                    dev,
                    cdtype,
                    chunk_rows,
                    use_fused,
                    loss_blk,
                    ent_blk,
                    bar,
                )
            else:
                _score_vllm(
                    model, shard, block_size, batch_size, params, entropy_topk, loss_blk, ent_blk, bar
                )
            loss_mm.flush()
            ent_mm.flush()
            meta["fused_kernel"] = bool(use_fused and not _COMPILED.get("failed", False))
            del loss_blk, ent_blk, loss_mm, ent_mm
            meta["sha256"] = {name: sha256_file(tmp / name) for name in _FILES}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    finally:
        bar.close()
    return load_scores(out_dir, shard, block_size=block_size)


def _score_torch(
    model: torch.nn.Module,
    shard: TokenShard,
    block_size: int,
    batch_size: int,
    dev: torch.device,
    cdtype: torch.dtype,
    chunk_rows: int | None,
    fused: bool,
    loss_blk: np.ndarray,
    ent_blk: np.ndarray,
    bar: Any,
) -> None:
    n_blocks = loss_blk.shape[0]
    was_training = model.training
    model.eval()
    use_autocast = cdtype != torch.float32
    head_loss = HeadLoss(model)  # logits a chunk of rows at a time from the hidden states, if it can
    try:
        with torch.inference_mode():
            for s in range(0, n_blocks, batch_size):
                e = min(n_blocks, s + batch_size)
                x = torch.from_numpy(shard.blocks(np.arange(s, e), block_size)).to(dev, non_blocking=True)
                # position t predicts x[:, t+1]; the last column predicts nothing and is dropped
                tgt = torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)
                with torch.autocast(dev.type, dtype=cdtype, enabled=use_autocast):
                    hidden = head_loss.hidden(model, x, use_cache=False)
                    if hidden is None:
                        logits = model(input_ids=x, use_cache=False).logits
                if hidden is None:
                    loss, ent = next_token_loss_and_entropy(logits, tgt, chunk_rows, fused=fused)
                else:
                    assert head_loss.head is not None
                    loss, ent = _loss_and_entropy_from_hidden(
                        hidden, head_loss.head, tgt, chunk_rows, fused, cdtype if use_autocast else None
                    )
                loss_blk[s:e, 1:] = loss[:, :-1].cpu().numpy()
                ent_blk[s:e, 1:] = ent[:, :-1].cpu().numpy()
                bar.update((e - s) * block_size)
    finally:
        model.train(was_training)


def _loss_and_entropy_from_hidden(
    hidden: torch.Tensor,
    head: torch.nn.Linear,
    targets: torch.Tensor,
    chunk_rows: int | None,
    fused: bool,
    autocast_dtype: torch.dtype | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`next_token_loss_and_entropy` of ``head(hidden)``, computing the logits a chunk at a time."""
    v = head.weight.shape[0]
    rows = chunk_rows or max(1, (1 << (26 if hidden.is_cuda else 24)) // v)
    flat = hidden.reshape(-1, hidden.shape[-1])
    tgt = targets.reshape(-1)
    loss = torch.empty(tgt.shape[0], dtype=torch.float32, device=hidden.device)
    ent = torch.empty_like(loss)
    for s in range(0, flat.shape[0], rows):
        e = min(flat.shape[0], s + rows)
        with torch.autocast(
            hidden.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            x = head(flat[s:e])
        loss[s:e], ent[s:e] = next_token_loss_and_entropy(x, tgt[s:e], rows, fused=fused)
    return loss.view(targets.shape), ent.view(targets.shape)


def _score_vllm(
    llm: Any,
    shard: TokenShard,
    block_size: int,
    batch_size: int,
    params: Any,
    topk: int,
    loss_blk: np.ndarray,
    ent_blk: np.ndarray,
    bar: Any,
) -> None:
    n_blocks = loss_blk.shape[0]
    # vLLM batches internally; we hand it many prompts at once
    step = max(batch_size, 256)
    for s in range(0, n_blocks, step):
        e = min(n_blocks, s + step)
        blocks = shard.blocks(np.arange(s, e), block_size)
        outs = llm.generate([{"prompt_token_ids": b.tolist()} for b in blocks], params, use_tqdm=False)
        if len(outs) != e - s:
            raise ScoringError(f"vLLM returned {len(outs)} outputs for {e - s} prompts")
        for i, out in enumerate(outs):
            loss, ent = prompt_logprobs_to_arrays(out.prompt_logprobs, blocks[i], topk)
            loss_blk[s + i] = loss
            ent_blk[s + i] = ent
        bar.update((e - s) * block_size)


# ----------------------------------------------------------------------------- loading
@dataclass
class ReferenceScores:
    """Memory-mapped reference scores of one shard (arrays aligned with the token file)."""

    path: Path
    loss: np.ndarray
    entropy: np.ndarray
    meta: dict[str, Any]

    @property
    def block_size(self) -> int:
        """Block size the scores were computed with."""
        return int(self.meta["block_size"])

    @property
    def has_entropy(self) -> bool:
        """True when ``entropy`` holds the full-distribution entropy (torch backend)."""
        return self.meta.get("entropy") == "full"

    def label_aligned(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ref_loss, ref_entropy)`` ``[len(idx), L]`` aligned with train-time labels.

        Column ``t`` is about predicting ``x[:, t+1]`` (design.md "Alignment"), the last column NaN.
        """
        L = self.block_size
        idx = np.asarray(idx, dtype=np.int64)
        pos = idx[:, None] * L + np.arange(1, L)[None, :]
        pad = np.full((len(idx), 1), np.nan, np.float32)
        return (
            np.concatenate([np.asarray(self.loss[pos], np.float32), pad], axis=1),
            np.concatenate([np.asarray(self.entropy[pos], np.float32), pad], axis=1),
        )


def load_scores(
    path: str | os.PathLike,
    shard: TokenShard,
    block_size: int | None = None,
    model: Any | None = None,
    *,
    need_entropy: bool = False,
    verify: bool = True,
) -> ReferenceScores:
    """Open a score directory and check it belongs to ``shard`` (and ``block_size``/``model``).

    Refuses, with an error naming what differs, scores made for another shard (content hash),
    tokenizer, length, block size, or for a vocabulary that is not ``model``'s (``model`` may be a
    HF model, a config, or an int vocabulary size).  ``need_entropy`` also refuses scores without
    full entropies (vLLM backend).  ``verify`` (default) also checks each array against the SHA-256
    stored in ``meta.json`` and its values (see :func:`check_score_values`): one read of the arrays.
    """
    path = Path(path)
    fix = f"re-run scoring: rho.scoring.score_corpus(model, shard, {str(path)!r}, block_size=...)"
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise ScoringError(f"no reference scores at {path} (missing meta.json); {fix}")
    meta = read_json(meta_path)
    if not isinstance(meta, dict):
        raise ScoringError(f"{meta_path} is not a JSON object; the scores are damaged; {fix}")
    if meta.get("format") != FORMAT:
        raise ScoringError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}; {fix}")
    checks = [
        ("tokenizer", meta.get("tokenizer_hash"), shard.tokenizer_hash),
        ("number of tokens", meta.get("n_tokens"), shard.n_tokens),
        ("shard content (tokens_sha256)", meta.get("shard_hash"), shard.shard_hash),
    ]
    if block_size is not None:
        checks.append(("block size", meta.get("block_size"), block_size))
    for what, have, want in checks:
        if have != want:
            raise ScoringError(
                f"scores at {path} were made for a different {what}: scores have {_short(have)}, "
                f"the shard/run needs {_short(want)}; {fix}"
            )
    if model is not None:
        v = _vocab_of(model)
        if v is not None and meta.get("vocab_size") is not None and v != meta["vocab_size"]:
            raise ScoringError(
                f"scores at {path} come from a reference model with vocabulary {meta['vocab_size']}, but the "
                f"model has vocabulary {v}; reference and trained model must share the tokenizer ({fix} "
                "with a matching reference model)"
            )
    if need_entropy and meta.get("entropy") != "full":
        raise ScoringError(
            f"scores at {path} have entropy {meta.get('entropy')!r} (backend {meta.get('backend')!r}), "
            "not the full entropy the ref_entropy score needs; re-run scoring with backend='torch'"
        )
    n = int(meta["n_tokens"])
    arrays = []
    for name in _FILES:
        f = path / name
        size = f.stat().st_size if f.exists() else -1
        if size != 4 * n:
            raise ScoringError(
                f"{f} holds {size} bytes, expected {4 * n} (float32 x {n}); the scores are damaged; {fix}"
            )
        arrays.append(np.memmap(f, dtype=np.float32, mode="r", shape=(n,)))
    scores = ReferenceScores(path=path, loss=arrays[0], entropy=arrays[1], meta=meta)
    if verify:
        _check_checksums(path, meta, fix)
        check_score_values(scores)
    return scores


def _check_checksums(path: Path, meta: dict[str, Any], fix: str) -> None:
    stored = meta.get("sha256")
    if not isinstance(stored, dict):
        warnings.warn(
            f"scores at {path} have no checksums (written before rho stored them); only their values are "
            f"checked. {fix} to add them",
            stacklevel=3,
        )
        return
    for name in _FILES:
        got = sha256_file(path / name)
        if got != stored.get(name):
            raise ScoringError(
                f"{path / name} does not match the SHA-256 stored in {path / 'meta.json'} "
                f"({got[:12]} != {str(stored.get(name))[:12]}): the scores are corrupted; {fix}"
            )


def check_score_values(scores: ReferenceScores, chunk: int = 1 << 22) -> None:
    """Refuse score arrays whose values cannot come from a reference model.

    Every position that has a prediction (all but each block's first token, in whole blocks) must
    hold a finite loss in ``[0, MAX_LOSS]``; full entropies must be finite and in ``[0, log V]``
    (top-k lower bounds, where present, too).  All-NaN or empty scores are refused as such.
    """
    meta = scores.meta
    L = scores.block_size
    n_blocks = len(scores.loss) // L
    where = f"scores at {scores.path}"
    fix = f"re-run scoring for this shard (rho.scoring.score_corpus(..., {str(scores.path)!r}))"
    if n_blocks < 1:
        raise ScoringError(f"{where} are empty: {len(scores.loss)} tokens, not one block of {L}; {fix}")
    vocab = meta.get("vocab_size") or meta.get("shard_vocab_size")
    max_h = math.log(vocab) * (1 + _TOL) + _TOL if vocab else math.inf
    kinds = [("loss.bin", scores.loss, "loss", MAX_LOSS, True)]
    if meta.get("entropy") in ("full", "topk_lower_bound"):
        kinds.append(("entropy.bin", scores.entropy, "entropy", max_h, meta.get("entropy") == "full"))
    rows = max(1, chunk // L)
    for name, arr, what, hi, all_finite in kinds:
        n_finite = 0
        for s in range(0, n_blocks, rows):
            e = min(n_blocks, s + rows)
            v = np.asarray(arr[s * L : e * L], dtype=np.float32).reshape(e - s, L)[:, 1:]
            finite = np.isfinite(v)
            n_finite += int(finite.sum())
            if all_finite and not finite.all():
                if n_finite == 0 and s == 0 and not np.isfinite(np.asarray(arr, np.float32)).any():
                    raise ScoringError(
                        f"{where}: {name} holds no finite value (all NaN/inf); scoring failed; {fix}"
                    )
                i, j = np.argwhere(~finite)[0]
                raise ScoringError(
                    f"{where}: {name} holds {v[i, j]} at token {(s + i) * L + j + 1}, where a finite {what} is "
                    f"expected; the scores are damaged; {fix}"
                )
            vals = v[finite]
            if vals.size and (float(vals.min()) < -_TOL or float(vals.max()) > hi):
                bad = vals[(vals < -_TOL) | (vals > hi)][0]
                raise ScoringError(
                    f"{where}: {name} holds a {what} of {bad}, outside [0, {hi:.4g}]; no reference model gives "
                    f"that: the scores are damaged; {fix}"
                )
        if n_finite == 0:
            raise ScoringError(f"{where}: {name} holds no finite value (all NaN/inf); scoring failed; {fix}")


def _short(x: Any) -> str:
    s = str(x)
    return s[:12] + "..." if isinstance(x, str) and len(s) > 16 else s


__all__ = [
    "BACKENDS",
    "FORMAT",
    "ReferenceScores",
    "ScoringError",
    "check_score_values",
    "load_scores",
    "model_identity",
    "next_token_loss_and_entropy",
    "prompt_logprobs_to_arrays",
    "score_corpus",
    "weights_sha256",
]
