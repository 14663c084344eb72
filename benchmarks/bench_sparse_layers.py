"""Backward time of one linear layer: dense vs ``sparse_backward=layers`` (rho.train.sparse_layers).

The input gradient stays dense; only the weight gradient shrinks to the selected rows, so at ratio
``r`` the ideal backward ratio is ``(1 + r) / 2`` (0.8 at 0.6), less the cost of gathering the
rows.  Shapes are the q/k/v/o (``h x h``), gate/up (``h -> i``) and down (``i -> h``) layers of a
``rho.models`` preset; CPU time of the backward alone, median over ``--reps``.

    python benchmarks/bench_sparse_layers.py --presets llama-mini llama-mini-l llama-100m
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd
import torch
from torch import nn

from rho.models import PRESETS
from rho.train.sparse_layers import SparseLayers


def _backward_s(layer: nn.Linear, x: torch.Tensor, dy: torch.Tensor, mask, sparse, reps: int) -> float:
    times = []
    for _ in range(reps):
        layer.weight.grad = None
        y = layer(x)
        t0 = time.process_time()
        if sparse is None:
            y.backward(dy)
        else:
            with sparse.rows(mask):
                y.backward(dy)
        times.append(time.process_time() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Time each preset's layer shapes dense and sparse; print and return the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["llama-mini", "llama-mini-l", "llama-100m"])
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--ratio", type=float, default=0.6)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    rows = []
    for preset in args.presets:
        h, i = PRESETS[preset]["hidden_size"], PRESETS[preset]["intermediate_size"]
        for name, (n_in, n_out) in {"qkvo": (h, h), "gate/up": (h, i), "down": (i, h)}.items():
            dense, wrapped = nn.Linear(n_in, n_out, bias=False), nn.Linear(n_in, n_out, bias=False)
            sparse = SparseLayers.install(nn.Sequential(wrapped))
            x = torch.randn(4, args.tokens // 4, n_in, generator=g, requires_grad=True)
            dy = torch.randn(4, args.tokens // 4, n_out, generator=g)
            mask = torch.rand(4, args.tokens // 4, generator=g) < args.ratio
            t_dense = _backward_s(dense, x, dy, mask, None, args.reps)
            t_sparse = _backward_s(wrapped, x, dy, mask, sparse, args.reps)
            rows.append(
                {
                    "preset": preset,
                    "layer": f"{name} {n_in}x{n_out}",
                    "dense_ms": 1e3 * t_dense,
                    "sparse_ms": 1e3 * t_sparse,
                    "sparse/dense": t_sparse / t_dense,
                }
            )
    df = pd.DataFrame(rows)
    print(
        f"Linear-layer backward, {args.tokens} tokens, ratio {args.ratio} (ideal {(1 + args.ratio) / 2:.2f}), "
        f"{args.threads} thread(s), CPU time, median of {args.reps}.\n"
    )
    print(df.to_markdown(index=False, floatfmt=".3f"))
    return df


if __name__ == "__main__":
    main()
