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

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Print a table of tokens/second and ratios to the single-process labelled baseline."""
    from rho.data.miniature.world import build_world
    from rho.data.provenance import LABEL_NAMES
    from rho.data.tokenize import tokenize_documents
    from rho.data.tokenizer import load_tokenizer

    ap = argparse.ArgumentParser()
    ap.add_argument("--world", default=None)
    ap.add_argument("--docs", type=int, default=4000)
    ap.add_argument("--device", default="cpu", help="tokenization runs on the CPU; accepted for run_all.py")
    args = ap.parse_args(argv)
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
    table = pd.DataFrame(rows, columns=["setting", "tokens", "seconds"])
    table["tokens_per_s"] = table["tokens"] / table["seconds"]
    table["ratio"] = table["tokens_per_s"] / table["tokens_per_s"].iloc[0]
    print(
        f"tokenization of {len(docs)} owm documents from {'--world ' + str(world) if args.world else 'a smoke world'}"
    )
    print(table.to_markdown(index=False, floatfmt=".2f"))
    return table


if __name__ == "__main__":
    main()
