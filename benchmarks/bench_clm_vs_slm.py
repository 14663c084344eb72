"""A short CLM vs SLM training comparison on data with known noise (the method end to end).

Documents follow a learnable pattern (each token is the previous + 1) with ``--noise`` of the
tokens replaced by uniform random ids (provenance label ``noise``).  A reference model is trained
with CLM on clean documents, scores the noisy training shard, and then CLM and SLM (``--ratio``)
train the same initial model for the same steps on it.  Reported per run: the final loss on
held-out clean documents, the median step time (first step left out), and for SLM the share of
noise tokens among those it selected (the paper's premise: noise is the tokens it drops).

    python benchmarks/bench_clm_vs_slm.py --device cuda --model llama-mini-l --vocab 32000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rho.data.shards import TokenShard, tokenizer_fingerprint, write_shard
from rho.loss import token_loss
from rho.models import build_model
from rho.scoring import score_corpus
from rho.train import train
from rho.train.metrics import read_log


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--model", default="llama-smoke")
    p.add_argument("--vocab", type=int, default=320)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--ratio", type=float, default=0.6)
    p.add_argument("--noise", type=float, default=0.3)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=2)
    return p


def _tokenizer(path: Path, vocab: int) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<eos>": 0, **{f"w{i}": i for i in range(1, vocab)}}
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<eos>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")
    fast.save_pretrained(path)
    return fast


def _shard(path: Path, tok: Any, vocab: int, n_tokens: int, noise: float, seed: int) -> TokenShard:
    rng = np.random.default_rng(seed)
    docs, labs, total = [], [], 0
    while total < n_tokens:
        n = int(rng.integers(40, 200))
        content = (int(rng.integers(1, vocab)) + np.arange(n)) % (vocab - 1) + 1
        is_noise = rng.random(n) < noise
        docs.append(np.where(is_noise, rng.integers(1, vocab, size=n), content))
        labs.append(is_noise.astype(np.uint8))
        total += n + 1
    return write_shard(
        path,
        docs,
        vocab_size=vocab,
        eos_id=0,
        tokenizer_hash=tokenizer_fingerprint(tok),
        labels=labs,
        label_names=["content", "noise"],
    )


def _eval_loss(model_dir: Path, shard: TokenShard, block: int, device: str) -> float:
    model = build_model(str(model_dir)).to(device).eval()
    x = torch.from_numpy(shard.blocks(np.arange(shard.n_blocks(block)), block).astype(np.int64)).to(device)
    labels = torch.cat([x[:, 1:], torch.full_like(x[:, :1], -100)], 1)
    with torch.no_grad():
        tl = token_loss(model(input_ids=x).logits, labels)
    return float(tl[labels != -100].mean())


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Train reference, CLM and SLM; print and return one row per run."""
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    tokens_per_step = args.block_size * args.micro_batch
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        tok = _tokenizer(tmp / "tok", args.vocab)
        n = tokens_per_step * args.steps + 4 * tokens_per_step
        train_shard = _shard(tmp / "train", tok, args.vocab, n, args.noise, seed=0)
        _shard(tmp / "clean", tok, args.vocab, n, 0.0, seed=1)
        val = _shard(tmp / "val", tok, args.vocab, 16 * args.block_size, 0.0, seed=2)
        common = dict(
            model=args.model,
            tokenizer=str(tmp / "tok"),
            block_size=args.block_size,
            micro_batch_size=args.micro_batch,
            max_steps=args.steps,
            warmup_steps=2,
            lr=args.lr,
            min_lr=args.lr / 10,
            device=args.device,
            num_threads=args.threads,
            progress=False,
            seed=0,
        )
        train({**common, "train_shard": str(tmp / "clean"), "out_dir": str(tmp / "ref")})
        ref = build_model(str(tmp / "ref" / "final")).to(args.device)
        score_corpus(
            ref, train_shard, tmp / "scores", block_size=args.block_size, progress=False, hash_weights=False
        )
        rows = []
        for name, extra in (
            ("clm", {"objective": "clm"}),
            ("slm", {"objective": "slm", "selection": {"ratio": args.ratio}, "scores": str(tmp / "scores")}),
        ):
            out = tmp / name
            train({**common, **extra, "train_shard": str(tmp / "train"), "out_dir": str(out)})
            log = read_log(out / "log.jsonl")
            counts = [r.get("label_counts") for r in log if r.get("label_counts")]
            noise_sel = sum(c["noise"][1] for c in counts if "noise" in c)
            all_sel = sum(sum(v[1] for v in c.values()) for c in counts)
            rows.append(
                {
                    "run": name,
                    "val_loss_clean": _eval_loss(out / "final", val, args.block_size, args.device),
                    "median_step_s": statistics.median(r["step_time_s"] for r in log[1:]),
                    "selected_frac": statistics.mean(r["selected_frac"] for r in log),
                    "noise_share_of_selected": noise_sel / all_sel if all_sel else float("nan"),
                }
            )
    df = pd.DataFrame(rows).set_index("run")
    df.loc["slm / clm"] = df.loc["slm"] / df.loc["clm"]
    print(
        f"CLM vs SLM, {args.steps} steps of {tokens_per_step} tokens: device={args.device} model={args.model} "
        f"vocab={args.vocab} noise={args.noise} ratio={args.ratio} (noise share of all tokens: {args.noise:.2f}).\n"
    )
    print(df.to_markdown(floatfmt=".4f"))
    return df


if __name__ == "__main__":
    main()
