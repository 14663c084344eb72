"""Command line: ``python -m rho.evaluate --model PATH --tasks gsm8k,math [--data-root DIR] ...``.

Prints the results table (accuracies in percent); with ``--out`` also writes ``results.csv``,
``completions.jsonl`` and ``config.json``. ``--lm-eval-tasks`` runs lm-evaluation-harness too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import pandas as pd


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m rho.evaluate``."""
    p = argparse.ArgumentParser(prog="python -m rho.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model folder (save_pretrained + tokenizer) or hub name")
    p.add_argument(
        "--tasks", default="", help="comma-separated rho tasks (local suite and/or gsm8k, math, ...)"
    )
    p.add_argument("--data-root", default=None, help="data root holding eval/tasks.json (miniature suites)")
    p.add_argument("--out", default=None, help="output folder for results.csv and completions.jsonl")
    p.add_argument("--limit", type=int, default=None, help="first N problems of each task")
    p.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--n-shots", type=int, default=None, help="override every task's number of exemplars")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument(
        "--context-length",
        type=int,
        default=None,
        help="context the model was trained on (prompts are shortened to fit it with the answer); "
        "default: the model's max_position_embeddings",
    )
    p.add_argument(
        "--grading",
        choices=["default", "harness"],
        default=None,
        help="grader of generation tasks: rho's (default) or the paper harness's verdicts; "
        "default: each task's own (the paper's nine tasks: harness)",
    )
    p.add_argument("--lm-eval-tasks", default="", help="comma-separated lm-eval tasks to run as well")
    p.add_argument("--lm-eval-include", default=None, help="folder of extra lm-eval task YAMLs")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """Run the evaluation described by ``argv``, print the table and return it."""
    args = build_parser().parse_args(argv)
    if not args.tasks and not args.lm_eval_tasks:
        build_parser().error("give --tasks and/or --lm-eval-tasks")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from rho.evaluate.harness import run_lm_eval
    from rho.evaluate.results import format_table
    from rho.evaluate.runner import evaluate_model

    tables = []
    if args.tasks:
        tables.append(
            evaluate_model(
                args.model,
                args.tasks,
                data_root=args.data_root,
                backend=args.backend,
                limit=args.limit,
                batch_size=args.batch_size,
                out_dir=args.out,
                device=args.device,
                n_shots=args.n_shots,
                max_new_tokens=args.max_new_tokens,
                context_length=args.context_length,
                grading=args.grading,
            )
        )
    if args.lm_eval_tasks:
        tables.append(
            run_lm_eval(
                args.model,
                args.lm_eval_tasks,
                include_path=args.lm_eval_include,
                limit=args.limit,
                batch_size=args.batch_size,
                device=args.device,
                out_dir=args.out,
            )
        )
    table = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    print(format_table(table))
    return table


if __name__ == "__main__":
    try:
        main()
    except ValueError as exc:  # our input errors: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
