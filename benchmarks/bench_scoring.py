"""Reference scoring throughput vs a bare no-grad forward of the same model.

``rho.scoring.score_corpus`` (forward + chunked float32 loss and entropy + writing the memmaps)
is timed against a loop that only runs ``model(input_ids=x, use_cache=False)`` over the same
blocks under ``torch.inference_mode`` (bf16 autocast on CUDA for both).  Runs alternate and the
best of ``--repeats`` is kept for each; both loss/entropy kernels are timed (eager PyTorch and
the ``torch.compile``-d fused one, whose one-off compile is done in the warm-up and not timed).
``ratio_vs_bare_*`` is throughput relative to the bare forward (>= 0.9 is the target), from
wall-clock time and from process CPU time; on a shared CPU the CPU-time ratio is the steadier.

    python benchmarks/bench_scoring.py --device cpu
    python benchmarks/bench_scoring.py --device cuda --hidden 1024 --layers 12 --block 1024 --batch 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from rho.data.shards import write_shard
from rho.scoring import score_corpus


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--block", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--blocks", type=int, default=16, help="blocks in the benchmark shard")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    return p


def _bare_forward(
    model: torch.nn.Module, tokens: np.ndarray, block: int, batch: int, dev: torch.device
) -> tuple[float, float]:
    n_blocks = len(tokens) // block
    blocks = tokens[: n_blocks * block].reshape(n_blocks, block).astype(np.int64)
    use_autocast = dev.type == "cuda"
    _sync(dev)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for s in range(0, n_blocks, batch):
            x = torch.from_numpy(blocks[s : s + batch]).to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_autocast):
                logits = model(input_ids=x, use_cache=False).logits
            del logits
    _sync(dev)
    return time.perf_counter() - t0, time.process_time() - c0


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Time bare forward and scoring alternately; print and return the table with the ratio."""
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    heads = max(1, args.hidden // 64)
    cfg = LlamaConfig(
        hidden_size=args.hidden,
        intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        vocab_size=args.vocab,
        max_position_embeddings=max(2048, args.block),
    )
    model = LlamaForCausalLM(cfg).to(dev).eval()
    rng = np.random.default_rng(0)
    n_tok = args.blocks * args.block
    with tempfile.TemporaryDirectory() as tmp:
        shard = write_shard(
            Path(tmp) / "shard",
            [rng.integers(1, args.vocab, n_tok - 1)],
            vocab_size=args.vocab,
            eos_id=0,
            tokenizer_hash="bench",
        )
        tokens = np.asarray(shard.tokens)
        # warm-up every path (allocator, kernels, the fused kernel's one-off compile)
        _bare_forward(model, tokens[: 2 * args.block], args.block, args.batch, dev)
        for fused in (False, True):
            score_corpus(
                model,
                shard,
                Path(tmp) / "warm",
                block_size=args.block,
                batch_size=args.batch,
                progress=False,
                hash_weights=False,
                fused=fused,
            )
        times: dict[str, list[tuple[float, float]]] = {"bare": [], "eager": [], "fused": []}
        for r in range(args.repeats):
            times["bare"].append(_bare_forward(model, tokens, args.block, args.batch, dev))
            for fused in (False, True):
                _sync(dev)
                t0, c0 = time.perf_counter(), time.process_time()
                score_corpus(
                    model,
                    shard,
                    Path(tmp) / f"s{r}{fused}",
                    block_size=args.block,
                    batch_size=args.batch,
                    progress=False,
                    hash_weights=False,
                    fused=fused,
                )
                _sync(dev)
                times["fused" if fused else "eager"].append(
                    (time.perf_counter() - t0, time.process_time() - c0)
                )
    n_scored = args.blocks * args.block
    wall = {k: min(w for w, _ in v) for k, v in times.items()}
    cpu = {k: min(c for _, c in v) for k, v in times.items()}
    names = {
        "bare": "bare no-grad forward",
        "eager": "score_corpus (eager loss/entropy)",
        "fused": "score_corpus (fused, torch.compile)",
    }
    df = pd.DataFrame(
        [
            {
                "path": names[k],
                "best_wall_s": wall[k],
                "tokens_per_s": n_scored / wall[k],
                "ratio_vs_bare_wall": wall["bare"] / wall[k],
                "best_cpu_s": cpu[k],
                "ratio_vs_bare_cpu": cpu["bare"] / cpu[k],
            }
            for k in ("bare", "eager", "fused")
        ]
    ).set_index("path")
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"scoring throughput: device={args.device} params={n_params / 1e6:.1f}M vocab={args.vocab} "
        f"block={args.block} batch={args.batch} tokens={n_scored} repeats={args.repeats} (best of)\n"
    )
    print(df.to_markdown(floatfmt=".3f"))
    return df


if __name__ == "__main__":
    main()
