"""Throughput of rho.evaluate generation: tokens/s and problems/s, batched vs one at a time.

Runs the same few-shot GSM8K-format prompts through the transformers backend at batch size 1
and at larger batch sizes, with transformers ``generate`` and with rho's lean greedy decoder
(:mod:`rho.evaluate.greedy`; ``hf lean`` rows), and through vLLM when it is importable, all in one process, and
prints a markdown table whose ``speedup`` column is the ratio to the batch-size-1 row of the
same run. Without ``--model`` a random Llama (``--hidden``, ``--layers``) with a small BPE
tokenizer is built in a temporary folder, so the numbers measure the decoding machinery, not
answer quality. Generation ignores stop strings and EOS is rare for a random model, so each
problem generates close to ``--max-new-tokens`` tokens.

    python benchmarks/bench_generation.py --batch-sizes 1,8,16 --n-problems 32   # rho installed (make install)
    PYTHONPATH=. python benchmarks/bench_generation.py                           # from a bare checkout
    python benchmarks/bench_generation.py --model runs/x/final --device cuda --batch-sizes 1,32
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from rho.report.markdown import to_markdown


def _tiny_model_dir(root: Path, hidden: int, layers: int, seed: int = 0) -> Path:
    """Save a random Llama + byte-level BPE tokenizer (vocab 512) to ``root`` and return it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from rho.evaluate.tasks import load_fewshot, load_task_spec

    corpus = [f"{s.question} {s.solution}" for s in load_fewshot(load_task_spec("gsm8k"))]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        corpus * 10,
        trainers.BpeTrainer(
            vocab_size=512,
            special_tokens=["<pad>", "<eos>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        max_position_embeddings=2048,
        pad_token_id=0,
        eos_token_id=1,
    )
    LlamaForCausalLM(cfg).save_pretrained(root)
    hf_tok.save_pretrained(root)
    return root


def _prompts(n: int, n_shots: int) -> list[str]:
    from rho.evaluate.prompts import build_prompt
    from rho.evaluate.records import EvalRecord
    from rho.evaluate.tasks import load_fewshot, load_task_spec, with_overrides

    spec = with_overrides(load_task_spec("gsm8k"), n_shots=n_shots)
    shots = load_fewshot(spec)
    recs = [
        EvalRecord(
            id=str(i),
            question=f"A farmer has {12 + i} cows and buys {i % 7 + 2} more each week for "
            f"{i % 5 + 1} weeks. How many cows does the farmer have now?" + " Explain." * (i % 4),
            solution="",
            answer="0",
        )
        for i in range(n)
    ]
    return [build_prompt(spec, shots, r).text for r in recs]


def _time(gen, prompts: Sequence[str], max_new_tokens: int) -> tuple[float, int]:
    gen.generate(prompts[: min(2, len(prompts))], max_new_tokens=4)  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    outs = gen.generate(prompts, max_new_tokens=max_new_tokens, stop=())
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, sum(o.n_tokens for o in outs)


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """Run the benchmark, print a markdown table and return it as a DataFrame."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: a random Llama built here)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-sizes", default="1,8", help="comma-separated; the first is the reference row")
    p.add_argument(
        "--decoders",
        default="generate,lean",
        help="transformers generate and/or rho's lean greedy decoder (Llama models), in this order",
    )
    p.add_argument("--n-problems", type=int, default=16)
    p.add_argument("--n-shots", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    from rho.evaluate.generation import HFGenerator, VLLMGenerator, load_hf

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = (
            Path(args.model) if args.model else _tiny_model_dir(Path(tmp) / "model", args.hidden, args.layers)
        )
        model, tok = load_hf(model_dir, device=args.device)
        prompts = _prompts(args.n_problems, args.n_shots)
        mean_prompt = sum(len(tok(x)["input_ids"]) for x in prompts) / len(prompts)
        rows = []
        for decoder in args.decoders.split(","):
            if decoder not in ("generate", "lean"):
                raise SystemExit(f"--decoders takes generate and/or lean, got {decoder!r}")
            for bs in batch_sizes:
                gen = HFGenerator(model, tok, batch_size=bs, progress=False, lean=decoder == "lean")
                secs, n_tok = _time(gen, prompts, args.max_new_tokens)
                rows.append(
                    {
                        "backend": "hf lean" if gen.decoder == "lean" else "hf",
                        "batch_size": bs,
                        "problems": len(prompts),
                        "new_tokens": n_tok,
                        "seconds": secs,
                    }
                )
        try:
            import vllm  # noqa: F401

            has_vllm = True
        except ImportError:
            has_vllm = False
        if has_vllm:
            del model
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            secs, n_tok = _time(VLLMGenerator(model_dir), prompts, args.max_new_tokens)
            rows.append(
                {
                    "backend": "vllm",
                    "batch_size": len(prompts),
                    "problems": len(prompts),
                    "new_tokens": n_tok,
                    "seconds": secs,
                }
            )
    df = pd.DataFrame(rows)
    df["tokens_per_s"] = df["new_tokens"] / df["seconds"]
    df["problems_per_s"] = df["problems"] / df["seconds"]
    df["speedup"] = df["tokens_per_s"] / df["tokens_per_s"].iloc[0]
    name = args.model or f"random Llama h{args.hidden} x{args.layers}"
    print(
        f"device={args.device} model={name}"
        f" prompt_tokens~{mean_prompt:.0f} max_new_tokens={args.max_new_tokens} threads={args.threads}"
        f" vllm={'yes' if has_vllm else 'not installed'}"
    )
    print(to_markdown(df, floatfmt=".3g"), end="")
    return df


if __name__ == "__main__":
    main()
