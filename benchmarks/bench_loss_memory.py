"""Peak memory of per-token cross-entropy, forward + backward, from bf16 logits.

Compares ``rho.loss.token_loss(..., chunk_size=c)`` with the naive full-logits path
(``F.cross_entropy`` on the float32 upcast of all logits).  Each variant runs in a fresh
subprocess so peaks do not mix.  Memory is the peak *above* what the inputs already hold
(the bf16 logits and labels):

* CPU: the process's peak resident set (``VmHWM``), reset with ``/proc/self/clear_refs`` once the
  inputs exist, minus the resident set at that moment;
* CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation after the inputs.

Both variants end holding the bf16 gradient of the logits (same size as the logits), which is
counted.  The ratio row is chunked / naive; the target is <= 0.3.

    python benchmarks/bench_loss_memory.py --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (this benchmark's CPU mode needs Linux)")


def _worker(variant: str, device: str, vocab: int, tokens: int, chunk_size: int, threads: int) -> dict:
    """Run one variant in this process and return its measurements."""
    import torch
    import torch.nn.functional as F

    from rho.loss import token_loss

    torch.set_num_threads(threads)
    dev = torch.device(device)
    g = torch.Generator(device=dev).manual_seed(0)
    # build bf16 logits chunk by chunk so no fp32 temporary of the full size ever exists
    logits = torch.empty(tokens, vocab, dtype=torch.bfloat16, device=dev)
    for s in range(0, tokens, 512):
        logits[s : s + 512] = torch.randn(min(512, tokens - s), vocab, generator=g, device=dev).mul_(2)
    labels = torch.randint(0, vocab, (tokens,), generator=g, device=dev)
    labels[::7] = -100
    logits.requires_grad_(True)

    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")
        base = _rss_kib("VmRSS") * 1024

    t0, c0 = time.perf_counter(), time.process_time()
    if variant == "naive":
        loss = F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="none")
    else:
        loss = token_loss(logits, labels, chunk_size=chunk_size)
    total = loss.sum()
    total.backward()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_kib("VmHWM") * 1024
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    grad = logits.grad.float()
    return {
        "variant": variant,
        "peak_above_inputs_mib": (peak - base) / 2**20,
        "inputs_mib": (logits.numel() * 2 + labels.numel() * 8) / 2**20,
        "time_s": elapsed,
        "cpu_s": cpu,
        "loss_sum": float(total),
        "grad_abs_sum": float(grad.abs().sum()),
    }


def _run_variant(variant: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        variant,
        "--device",
        args.device,
        "--vocab",
        str(args.vocab),
        "--tokens",
        str(args.tokens),
        "--chunk-size",
        str(args.chunk_size),
        "--threads",
        str(args.threads),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", choices=["naive", "chunked"], help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run both variants in subprocesses; print and return a table with the chunked/naive ratio."""
    args = _parser().parse_args(argv)
    if args.worker:
        print(
            json.dumps(
                _worker(args.worker, args.device, args.vocab, args.tokens, args.chunk_size, args.threads)
            )
        )
        return pd.DataFrame()
    rows = [_run_variant(v, args) for v in ("naive", "chunked")]
    df = pd.DataFrame(rows).set_index("variant")
    naive, chunked = df.loc["naive"], df.loc["chunked"]
    same_loss = abs(naive.loss_sum - chunked.loss_sum) <= 1e-4 * abs(naive.loss_sum)
    same_grad = abs(naive.grad_abs_sum - chunked.grad_abs_sum) <= 1e-3 * abs(naive.grad_abs_sum)
    ratio = pd.DataFrame(
        [
            {
                "variant": "ratio chunked/naive",
                "peak_above_inputs_mib": chunked.peak_above_inputs_mib / naive.peak_above_inputs_mib,
                "inputs_mib": float("nan"),
                "time_s": chunked.time_s / naive.time_s,
                "cpu_s": chunked.cpu_s / naive.cpu_s,
                "loss_sum": float(same_loss),
                "grad_abs_sum": float(same_grad),
            }
        ]
    ).set_index("variant")
    df = pd.concat([df, ratio])
    print(
        f"token_loss fwd+bwd from bf16 logits: device={args.device} vocab={args.vocab} tokens={args.tokens} "
        f"chunk_size={args.chunk_size} (ratio row: loss_sum/grad_abs_sum = 1.0 when both paths agree)\n"
    )
    print(df.to_markdown(floatfmt=".3f"))
    return df


if __name__ == "__main__":
    main()
