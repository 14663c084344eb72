"""Fixtures for the model / training tests: a word-level tokenizer, a tiny labelled shard, scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rho.data.shards import TokenShard, tokenizer_fingerprint, write_shard

VOCAB = 320
EOS = 0


def make_tokenizer(path: Path, vocab: int = VOCAB) -> Any:
    """A word-level tokenizer with ids ``0..vocab-1`` (id 0 is EOS), saved as an HF folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<eos>": 0, **{f"w{i}": i for i in range(1, vocab)}}
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<eos>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")
    fast.save_pretrained(path)
    return fast


def make_shard(
    path: Path,
    tokenizer: Any,
    *,
    n_docs: int = 24,
    doc_len: tuple[int, int] = (20, 60),
    seed: int = 0,
    labels: bool = True,
    vocab: int = VOCAB,
) -> TokenShard:
    """A shard of random documents; with ``labels``, token-level provenance 0 (content) / 1 (noise).

    Content tokens follow a learnable pattern (each id is the previous + 1), noise tokens are
    uniform random ids, so a model learns content and cannot learn noise.
    """
    rng = np.random.default_rng(seed)
    docs, labs = [], []
    for _ in range(n_docs):
        n = int(rng.integers(*doc_len))
        start = int(rng.integers(1, vocab))
        content = (start + np.arange(n)) % (vocab - 1) + 1
        noise = rng.random(n) < 0.3
        doc = np.where(noise, rng.integers(1, vocab, size=n), content)
        docs.append(doc)
        labs.append(noise.astype(np.uint8))
    return write_shard(
        path,
        docs,
        vocab_size=vocab,
        eos_id=EOS,
        tokenizer_hash=tokenizer_fingerprint(tokenizer),
        labels=labs if labels else None,
        label_names=["content", "noise"] if labels else None,
    )


def base_config(tmp: Path, **overrides: Any) -> dict[str, Any]:
    """A small, fast config dict for the ``llama-smoke`` preset."""
    cfg = dict(
        model="llama-smoke",
        tokenizer=str(tmp / "tok"),
        train_shard=str(tmp / "shard"),
        out_dir=str(tmp / "run"),
        block_size=16,
        micro_batch_size=4,
        grad_accum=1,
        lr=3e-3,
        min_lr=3e-4,
        warmup_steps=1,
        max_steps=3,
        seed=0,
        progress=False,
        num_threads=1,
    )
    cfg.update(overrides)
    return cfg


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ddp_worker(rank: int, world: int, port: int, cfg: dict[str, Any], out: str) -> None:
    """One data-parallel rank (spawned by torch.multiprocessing): check selection, then train.

    Saves ``out/rank<r>.pt`` with this rank's global-scope token weights for step 0.
    """
    import logging
    import os

    import torch
    import torch.distributed as dist

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    # rho.head's one line on which loss path it took, to stderr (tests read it with capfd)
    logging.getLogger("rho.head").setLevel(logging.INFO)
    logging.getLogger("rho.head").addHandler(logging.StreamHandler())
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from rho.train import TrainConfig, train
        from rho.train.distributed import init_distributed
        from rho.train.objective import Objective, StepSelector

        config = TrainConfig.from_dict(cfg)
        if config.objective != "clm":
            masks = _rank_weights(config, init_distributed("cpu", "gloo"), Objective, StepSelector)
            torch.save(masks, Path(out) / f"rank{rank}.pt")
        train(config)
    finally:
        dist.destroy_process_group()


def _rank_weights(config: Any, ctx: Any, objective_cls: Any, selector_cls: Any) -> list[Any]:
    """This rank's step-0 weights under ``config``'s objective, from the step-0 model's losses."""
    import torch

    from rho.data.shards import TokenShard
    from rho.loss import token_loss
    from rho.train.batches import BatchLoader
    from rho.train.loop import load_model, load_reference_scores

    shard = TokenShard.open(config.train_shard)
    model = load_model(config, shard)
    loader = BatchLoader(
        shard,
        config.block_size,
        config.micro_batch_size,
        config.grad_accum,
        seed=config.seed,
        scores=load_reference_scores(config, shard, model),
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    batches = loader.micro_batches(0)
    with torch.no_grad():
        losses = [token_loss(model(input_ids=b.input_ids).logits, b.labels) for b in batches]
    sel = selector_cls(objective_cls.from_config(config), batches, ctx, step=0, seed=config.seed)
    sel.prepare(losses)
    return [sel.weights(m, losses[m])[0] for m in range(len(batches))]


def final_state(run_dir: Path) -> dict[str, Any]:
    """The final weights of a run (its checkpoint's model state dict)."""
    import torch

    return torch.load(Path(run_dir) / "ckpt" / "model.pt", map_location="cpu", weights_only=True)


def make_slm_world(root: Path) -> Path:
    """``root`` with ``tok/`` (tokenizer), ``shard/`` (a token shard) and ``scores/`` (its reference scores)."""
    make_scores(root / "scores", make_shard(root / "shard", make_tokenizer(root / "tok")))
    return root


def make_scores(path: Path, shard: TokenShard, block_size: int = 16, seed: int = 99) -> Any:
    """Reference scores of ``shard`` from a randomly initialised ``llama-smoke`` (rho.scoring)."""
    from rho.models import build_model
    from rho.scoring import score_corpus

    ref = build_model("llama-smoke", vocab_size=shard.vocab_size, seed=seed)
    return score_corpus(ref, shard, path, block_size=block_size, progress=False, hash_weights=False)
