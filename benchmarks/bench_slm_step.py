"""SLM optimizer-step time / CLM optimizer-step time, through the real training loop.

The paper claims token selection adds no training cost: the model still runs forward and
backward on every token, SLM only ranks the per-token losses and masks the sum.  This benchmark
runs ``rho.train.train`` on one synthetic shard (same model, same seed, hence the same batches)
with ``objective=clm`` and ``objective=slm``, alternating short runs (the order flips every
round), drops each run's first ``--skip`` steps, and compares the median ``step_time_s`` of the
logged steps.  Target: SLM/CLM <= 1.03 with ``grad_accum=1``.

With ``--accum 2`` it also times the global selection over accumulated micro-batches, which
needs a no-grad scoring pass (one extra forward per micro-batch, expected about +1/3), and the
``micro`` and ``carry`` scopes, which need none.  Every mode takes its per-token losses from the
hidden states (``fused_loss=auto``: no logits tensor; SLM's head backward visits only the selected
tokens); ``--logits-baseline`` adds CLM through the model's logits (``fused_loss=off``), and
``--sparse-layers`` adds ``slm layers``: SLM with ``sparse_backward=layers`` (the Collider
approximation: the layers' weight gradients over the selected tokens only), and ``--keep-softmax``
adds ``slm keep``: SLM with ``fused_loss=keep`` (the forward keeps the softmax, so the exact sparse
backward needs no recomputation: ``1 + 2r`` head matmuls per token instead of ``1 + 3r``).

    python benchmarks/bench_slm_step.py                      # CPU, llama-mini
    python benchmarks/bench_slm_step.py --device cuda --model llama-100m --block-size 1024 --vocab 32000
    # a head-heavy model (issue 13's 0.85x target): 22.8M parameters, the head ~70% of the FLOPs
    python benchmarks/bench_slm_step.py --model llama-mini-l --vocab 32000 --keep-softmax \
        --set hidden_size=512 intermediate_size=1376 num_hidden_layers=2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from rho.data.shards import TokenShard, tokenizer_fingerprint, write_shard
from rho.models import build_model
from rho.scoring import load_scores, score_corpus
from rho.selection import SelectionConfig
from rho.train import train
from rho.train.batches import BatchLoader
from rho.train.distributed import DistContext
from rho.train.metrics import read_log
from rho.train.objective import Objective, StepSelector


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--model", default="llama-mini", help="a rho.models preset")
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--accum", type=int, nargs="+", default=[1, 2], help="grad_accum values to time")
    p.add_argument("--ratio", type=float, default=0.6)
    p.add_argument("--steps", type=int, default=5, help="optimizer steps per run")
    p.add_argument("--skip", type=int, default=1, help="first steps of each run left out (warm-up)")
    p.add_argument("--rounds", type=int, default=8, help="runs per mode, interleaved")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared CPU)")
    p.add_argument(
        "--clock",
        default="step_time_s",
        choices=["step_time_s", "step_cpu_s"],
        help="wall time, or the process's CPU time per step (steadier on a shared machine with --threads 1)",
    )
    p.add_argument(
        "--logits-baseline",
        action="store_true",
        help="also time CLM through the logits path (fused_loss=off)",
    )
    p.add_argument(
        "--sparse-layers",
        action="store_true",
        help="also time SLM with sparse_backward=layers (global scope)",
    )
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="FIELD=INT",
        help="override fields of the preset's LlamaConfig, e.g. num_hidden_layers=2 hidden_size=512",
    )
    p.add_argument(
        "--keep-softmax",
        action="store_true",
        help="also time SLM with fused_loss=keep (exact sparse backward without recomputation)",
    )
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


def _overrides(pairs: list[str]) -> dict[str, int]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not value.isdigit():
            raise SystemExit(f"--set takes FIELD=INT pairs (e.g. num_hidden_layers=2), got {pair!r}")
        out[key] = int(value)
    return out


def _model_spec(tmp: Path, args: argparse.Namespace) -> str:
    """The preset's name, or (with ``--set``) a folder holding the preset with those fields changed."""
    if not args.set:
        return args.model
    from transformers import AutoModelForCausalLM

    from rho.models import preset_config

    cfg = preset_config(args.model, args.vocab, **_overrides(args.set))
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp / "model")
    return str(tmp / "model")


def _setup(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Tokenizer, a random-token shard with enough blocks for every run, and reference scores."""
    tok = _tokenizer(tmp / "tok", args.vocab)
    n_blocks = args.micro_batch * max(args.accum) * args.steps
    rng = np.random.default_rng(0)
    docs = [rng.integers(1, args.vocab, size=int(rng.integers(50, 400))) for _ in range(4 * n_blocks)]
    shard = write_shard(
        tmp / "shard", docs, vocab_size=args.vocab, eos_id=0, tokenizer_hash=tokenizer_fingerprint(tok)
    )
    model = _model_spec(tmp, args)
    ref = build_model(model, vocab_size=args.vocab, seed=1).to(args.device)
    score_corpus(ref, shard, tmp / "scores", block_size=args.block_size, progress=False, hash_weights=False)
    return dict(
        model=model,
        tokenizer=str(tmp / "tok"),
        train_shard=str(tmp / "shard"),
        scores=str(tmp / "scores"),
        block_size=args.block_size,
        micro_batch_size=args.micro_batch,
        max_steps=args.steps,
        warmup_steps=1,
        device=args.device,
        num_threads=args.threads,
        progress=False,
        seed=0,
        selection={"ratio": args.ratio},
    )


def _modes(
    accums: list[int], logits_baseline: bool = False, sparse_layers: bool = False, keep_softmax: bool = False
) -> list[tuple[str, int, dict[str, Any]]]:
    out = []
    for a in accums:
        out.append(("clm", a, {"objective": "clm"}))
        if logits_baseline:
            out.append(("clm logits", a, {"objective": "clm", "fused_loss": "off"}))
        out.append(("slm global", a, {"objective": "slm", "selection": {"scope": "global"}}))
        if sparse_layers:
            out.append(
                (
                    "slm layers",
                    a,
                    {"objective": "slm", "sparse_backward": "layers", "selection": {"scope": "global"}},
                )
            )
        if keep_softmax:
            out.append(
                ("slm keep", a, {"objective": "slm", "fused_loss": "keep", "selection": {"scope": "global"}})
            )
        if a > 1:
            out.append(("slm micro", a, {"objective": "slm", "selection": {"scope": "micro"}}))
            out.append(("slm carry", a, {"objective": "slm", "selection": {"scope": "carry"}}))
    return out


def _selection_seconds(base: dict[str, Any], args: argparse.Namespace, reps: int = 50) -> float:
    """Median time of the work only SLM does per step (grad_accum=1): read the reference scores of
    the batch, score, select the top-k, and build the weights.  Noise-free upper bound on the
    SLM/CLM difference."""
    shard = TokenShard.open(base["train_shard"])
    scores = load_scores(base["scores"], shard, block_size=args.block_size)
    loader = BatchLoader(shard, args.block_size, args.micro_batch, 1, seed=0)
    objective = Objective("slm", SelectionConfig(ratio=args.ratio))
    batch = loader.micro_batches(0)[0].to(args.device)
    train_loss = torch.rand(batch.labels.shape, generator=torch.Generator().manual_seed(0)).to(args.device)
    idx = batch.block_idx.cpu().numpy()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        ref_loss, ref_entropy = scores.label_aligned(idx)
        batch.ref_loss = torch.from_numpy(ref_loss).to(args.device)
        batch.ref_entropy = torch.from_numpy(ref_entropy).to(args.device)
        weight, _ = StepSelector(objective, [batch], DistContext()).weights(0, train_loss)
        float(weight.sum())  # wait for the device
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Time CLM and SLM steps alternately; print and return the table of medians and ratios."""
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    modes = _modes(args.accum, args.logits_baseline, args.sparse_layers, args.keep_softmax)
    times: dict[tuple[str, int], list[float]] = {(m, a): [] for m, a, _ in modes}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        base = _setup(tmp, args)
        # interleave: every round runs each mode once, in alternating order
        runs = [mode for r in range(args.rounds) for mode in (modes if r % 2 == 0 else modes[::-1])]
        for i, (name, accum, extra) in enumerate(tqdm(runs, desc="runs", unit="run")):
            out = tmp / f"run{i}"
            selection = {**base["selection"], **extra.get("selection", {})}
            train({**base, **extra, "selection": selection, "grad_accum": accum, "out_dir": str(out)})
            steps = read_log(out / "log.jsonl")[args.skip :]
            times[(name, accum)].extend(s[args.clock] for s in steps)
        selection_s = _selection_seconds(base, args)
        n_params = sum(p.numel() for p in build_model(base["model"], vocab_size=args.vocab).parameters())
    rows = []
    for name, accum, _ in modes:
        med = statistics.median(times[(name, accum)])
        clm = statistics.median(times[("clm", accum)])
        rows.append(
            {
                "mode": name,
                "grad_accum": accum,
                "median_step_s": med,
                "ratio_vs_clm": med / clm,
                "n_steps": len(times[(name, accum)]),
            }
        )
    df = pd.DataFrame(rows)
    model = args.model + "".join(f" {kv}" for kv in args.set)
    print(
        f"SLM vs CLM optimizer step: device={args.device} model={model} ({n_params / 1e6:.2f}M params) "
        f"vocab={args.vocab} block={args.block_size} micro_batch={args.micro_batch} ratio={args.ratio} "
        f"threads={args.threads} clock={args.clock}; {args.rounds} interleaved runs x {args.steps - args.skip} timed steps per mode "
        "(medians). Target: slm global / clm <= 1.03 at grad_accum=1.\n"
    )
    clm1 = statistics.median(times[("clm", min(args.accum))])
    print(
        f"SLM-only work per step (read reference scores, score, top-k, weights; median of 50): "
        f"{selection_s * 1e3:.2f} ms = {100 * selection_s / clm1:.2f}% of the CLM step at grad_accum="
        f"{min(args.accum)}, i.e. an implied SLM/CLM ratio of {1 + selection_s / clm1:.4f}.\n"
    )
    df.attrs["selection_only_s"] = selection_s
    print(df.to_markdown(index=False, floatfmt=".4f"))
    return df


if __name__ == "__main__":
    main()
