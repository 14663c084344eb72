"""How well the no-extra-forward selection scopes agree with the exact global top-k.

``selection.scope=global`` ranks the whole optimizer batch; with ``grad_accum > 1`` and the
``excess`` score it needs a no-grad scoring pass (one extra forward per micro-batch).  The
``dp`` scope ranks each micro-step over all data-parallel ranks and ``carry`` ranks each
micro-step against every score seen so far in the step; neither needs the extra forward.  This
benchmark measures their Jaccard agreement with the exact global mask over each optimizer batch
(``rho.train.objective.scope_agreement``), on real excess scores when a trained model is there:

* train loss: a trained study model (default: the smoke study's ``runs/smoke/base/final``) on a
  real shard (``data/smoke/shards/ppile``), block by block, blocks in a seeded random order as
  the training loader takes them;
* reference loss: a unigram model of the clean ``ref`` shard (add-one smoothing), a weak but
  real reference LM; excess = train loss - reference loss.

Without those files it falls back to synthetic scores with per-document effects (and says so).
Geometries: the ``paper`` profile's (8 ranks x 8 micro-steps) scaled to the shard's block size,
and a single process with the same accumulation (the worst case for ``dp``).

    python benchmarks/bench_selection_scope.py --root /path/to/study/checkout
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rho.train.objective import scope_agreement

ROOT = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--root", default=str(ROOT), help="checkout holding runs/<profile>/ and data/<profile>/")
    p.add_argument("--profile", default="smoke")
    p.add_argument("--corpus", default="ppile")
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--ratio", type=float, default=0.6)
    p.add_argument("--accum", type=int, default=8)
    p.add_argument("--ranks", type=int, default=8)
    p.add_argument("--blocks-per-rank", type=int, default=2, help="micro-batch size in blocks")
    return p


def _real_scores(args: argparse.Namespace) -> tuple[np.ndarray, str] | None:
    from rho.data.shards import TokenShard
    from rho.loss import token_loss
    from rho.models import build_model

    root = Path(args.root)
    model_dir = root / "runs" / args.profile / "base" / "final"
    shard_dir = root / "data" / args.profile / "shards" / args.corpus
    ref_dir = root / "data" / args.profile / "shards" / "ref"
    if not (model_dir.is_dir() and shard_dir.is_dir() and ref_dir.is_dir()):
        return None
    shard, ref = TokenShard.open(shard_dir), TokenShard.open(ref_dir)
    counts = np.bincount(np.asarray(ref.tokens, dtype=np.int64), minlength=shard.vocab_size) + 1.0
    ref_nll = torch.from_numpy(-np.log(counts / counts.sum())).float()
    model = build_model(str(model_dir)).to(args.device).eval()
    n_blocks = shard.n_blocks(args.block_size)
    order = np.random.default_rng(0).permutation(n_blocks)
    out = []
    with torch.no_grad():
        for s in range(0, n_blocks, 64):
            x = torch.from_numpy(shard.blocks(order[s : s + 64], args.block_size).astype(np.int64)).to(
                args.device
            )
            labels = torch.cat([x[:, 1:], torch.full_like(x[:, :1], -100)], 1)
            tl = token_loss(model(input_ids=x).logits, labels).cpu()
            exc = tl - ref_nll[labels.clamp_min(0).cpu()]
            exc[:, -1] = float("nan")  # the last position predicts nothing
            out.append(exc.numpy())
    return (
        np.concatenate(out),
        f"real: {model_dir.relative_to(root)} on {shard_dir.relative_to(root)} ({n_blocks} blocks), unigram reference of {ref_dir.name}",
    )


def _synthetic(args: argparse.Namespace, n_blocks: int = 2048) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng(0)
    doc = rng.normal(0, 0.5, size=(n_blocks, 1))  # per-document (block) effect
    tok = rng.gamma(2.0, 0.6, size=(n_blocks, args.block_size)) - 1.2
    s = doc + tok
    s[:, -1] = np.nan
    return s.astype(np.float32), "synthetic (no trained model found): per-block effects + gamma token noise"


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Print and return the mean / min Jaccard of each scope vs the exact global mask."""
    args = _parser().parse_args(argv)
    real = _real_scores(args)
    blocks, source = real if real is not None else _synthetic(args)
    rows = []
    for ranks in (args.ranks, 1):
        per_micro = ranks * args.blocks_per_rank
        per_step = per_micro * args.accum
        n_steps = blocks.shape[0] // per_step
        res: dict[str, list[float]] = {"dp": [], "carry": [], "global": []}
        for st in range(n_steps):
            step = torch.from_numpy(blocks[st * per_step : (st + 1) * per_step]).reshape(args.accum, -1)
            for k, v in scope_agreement(step, args.ratio).items():
                res[k].append(v)
        for scope in ("dp", "carry"):
            rows.append(
                {
                    "ranks": ranks,
                    "grad_accum": args.accum,
                    "tokens_per_micro_step": per_micro * args.block_size,
                    "tokens_per_step": per_step * args.block_size,
                    "scope": scope,
                    "jaccard_mean": statistics.mean(res[scope]),
                    "jaccard_min": min(res[scope]),
                    "steps": n_steps,
                }
            )
    df = pd.DataFrame(rows)
    print(f"Selection-scope agreement with the exact global top-{args.ratio} mask; scores: {source}.\n")
    print(df.to_markdown(index=False, floatfmt=".4f"))
    return df


if __name__ == "__main__":
    main()
