"""Tokenization throughput of rho.data: labels on/off, 1 vs 2 processes (ratios from one run).

    .venv/bin/python benchmarks/bench_data_tokenize.py [--world data/mini] [--docs 4000]

Without ``--world`` a smoke world is built in a temporary directory first.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main() -> None:
    """Print a table of tokens/second and ratios to the single-process labelled baseline."""
    from rho.data.miniature.world import build_world
    from rho.data.provenance import LABEL_NAMES
    from rho.data.tokenize import tokenize_documents
    from rho.data.tokenizer import load_tokenizer

    ap = argparse.ArgumentParser()
    ap.add_argument("--world", default=None)
    ap.add_argument("--docs", type=int, default=4000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    world = Path(args.world) if args.world else tmp / "world"
    if not args.world:
        build_world(world, "smoke", progress=False)
    tok = load_tokenizer(world / "tokenizer")
    lines = (world / "raw" / "owm.jsonl").read_text().splitlines()
    docs = [json.loads(x) for x in lines[: args.docs]]
    rows = []
    for name, labels, nproc in (
        ("labels, 1 proc", True, 1),
        ("no labels, 1 proc", False, 1),
        ("labels, 2 procs", True, 2),
    ):
        t = time.perf_counter()
        shard = tokenize_documents(
            docs,
            tok,
            tmp / name.replace(" ", "_").replace(",", ""),
            label_names=LABEL_NAMES if labels else None,
            num_proc=nproc,
            overwrite=True,
        )
        rows.append((name, shard.n_tokens, time.perf_counter() - t))
    base = rows[0][1] / rows[0][2]
    print(f"{'setting':<20} {'tokens':>10} {'seconds':>8} {'tok/s':>10} {'ratio':>6}")
    for name, n, s in rows:
        print(f"{name:<20} {n:>10} {s:>8.2f} {n / s:>10.0f} {n / s / base:>6.2f}")


if __name__ == "__main__":
    main()
