"""Fused linear + cross-entropy (``rho.loss.linear_token_loss``) vs the dense ``lm_head`` path.

Each variant runs forward + backward of the per-token loss from the last hidden states in a fresh
subprocess (so peaks do not mix) and reports the peak memory of the first call above the inputs (hidden states,
head weight, labels; CPU: ``VmHWM`` after ``clear_refs``, CUDA: ``max_memory_allocated``) and
the wall and CPU (``process_time``) time (medians of ``--reps`` further calls).  Variants:

* ``dense``: ``logits = hidden @ weight.T`` then ``token_loss`` (unchunked: the fp32 upcast);
* ``fused``: ``linear_token_loss`` (chunked, never holds ``[tokens, vocab]``), with the CLM hint
  ``uniform_grad=True`` that training passes for CLM (gradients computed in the forward);
* ``dense sel`` / ``fused sel``: the same with an SLM selection of ``--ratio`` of the tokens
  (``masked_mean``); the fused backward then visits only the selected rows (sparse backward).

Ratio rows are fused / dense.  Targets (issue 13): peak <= 0.1x, time <= 1.0x.

    python benchmarks/bench_linear_loss.py --device cpu --reps 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from rho.linear_backends import BACKENDS

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("dense", "fused", "dense sel", "fused sel")


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (this benchmark's CPU mode needs Linux)")


def _worker(args: argparse.Namespace) -> dict:
    import torch

    from rho.loss import linear_token_loss, masked_mean, token_loss

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    g = torch.Generator(device=dev).manual_seed(0)
    hidden = torch.randn(args.tokens, args.hidden, generator=g, device=dev).to(dtype).requires_grad_()
    weight = (torch.randn(args.vocab, args.hidden, generator=g, device=dev) * 0.05).to(dtype).requires_grad_()
    labels = torch.randint(0, args.vocab, (args.tokens,), generator=g, device=dev)
    labels[::7] = -100
    variant = args.worker
    select = variant.endswith("sel")
    mask = labels != -100
    if select:
        keep = torch.rand(args.tokens, generator=g, device=dev) < args.ratio
        mask = mask & keep

    def step() -> float:
        hidden.grad = weight.grad = None
        if variant.startswith("dense"):
            tl = token_loss(hidden @ weight.t(), labels)
        else:
            tl = linear_token_loss(
                hidden,
                weight,
                labels,
                chunk_size=args.chunk_size,
                uniform_grad=not select,
                backend=args.backend,
            )
        loss = masked_mean(tl, mask)
        loss.backward()
        return float(loss)

    # peak memory of the first (cold) call: later calls reuse memory the allocator kept
    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")
        base = _rss_kib("VmRSS") * 1024
    step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else _rss_kib("VmHWM") * 1024
    times, cpu = [], []
    for _ in range(args.reps):  # time of warm calls
        t0, c0 = time.perf_counter(), time.process_time()
        value = step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {
        "variant": variant,
        "peak_above_inputs_mib": (peak - base) / 2**20,
        "time_s": statistics.median(times),
        "cpu_s": statistics.median(cpu),
        "loss": value,
        "grad_w_abs_sum": float(weight.grad.float().abs().sum()),
    }


def _run(variant: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant]
    for k in ("device", "vocab", "tokens", "hidden", "dtype", "ratio", "reps", "threads", "backend"):
        cmd += [f"--{k}", str(getattr(args, k))]
    if args.chunk_size:
        cmd += ["--chunk-size", str(args.chunk_size)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--ratio", type=float, default=0.6, help="selected fraction in the 'sel' variants")
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="rows per chunk (default: 32 MiB of fp32 logits on CPU, 512 MiB on CUDA)",
    )
    p.add_argument(
        "--backend",
        default="torch",
        choices=BACKENDS,
        help="linear_token_loss backend of the fused variants (cce/liger: CUDA kernels, when installed)",
    )
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run every variant in a subprocess; print and return the table with the fused/dense ratios."""
    args = _parser().parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args)))
        return pd.DataFrame()
    df = pd.DataFrame([_run(v, args) for v in VARIANTS]).set_index("variant")
    cols = ["peak_above_inputs_mib", "time_s", "cpu_s"]
    for a, b in (("fused", "dense"), ("fused sel", "dense sel"), ("fused sel", "dense")):
        df.loc[f"ratio {a} / {b}", cols] = df.loc[a, cols].values / df.loc[b, cols].values
    print(
        f"linear_token_loss vs dense lm_head + token_loss, fwd+bwd: device={args.device} dtype={args.dtype} "
        f"vocab={args.vocab} tokens={args.tokens} hidden={args.hidden} ratio={args.ratio} "
        f"threads={args.threads} backend={args.backend} chunk_size={args.chunk_size or 'default'}; peak of the first call, time median of {args.reps} further calls. Targets: peak <= 0.1x, time <= 1.0x.\n"
    )
    print(df.to_markdown(floatfmt=".4g"))
    return df


if __name__ == "__main__":
    main()
