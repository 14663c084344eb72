"""Run every ``benchmarks/bench_*.py`` and write one markdown report.

Each benchmark module has ``main(argv)`` that prints a markdown table and returns a pandas
DataFrame (or a dict).  This script imports each module, calls ``main`` (with
``["--device", DEVICE]`` when ``--device`` is given and the module's parser accepts it), shows
its output as it runs, and writes the command line, device, torch version, date and every
benchmark's output (or its traceback) to ``--out``, atomically.

    python benchmarks/run_all.py --out benchmarks/results/cpu.md
    python benchmarks/run_all.py --device cuda --out benchmarks/results/h100.md --only slm_step scoring
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import inspect
import io
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy."""

    def __init__(self, terminal: TextIO) -> None:
        self.terminal = terminal
        self.copy = io.StringIO()

    def write(self, s: str) -> int:
        self.terminal.write(s)
        self.copy.write(s)
        return len(s)

    def flush(self) -> None:
        self.terminal.flush()


def discover(directory: Path = HERE, only: list[str] | None = None) -> list[Path]:
    """The ``bench_*.py`` files of ``directory`` (sorted), filtered by substrings of their names."""
    files = sorted(directory.glob("bench_*.py"))
    if only:
        files = [f for f in files if any(o in f.stem for o in only)]
    return files


def load_module(path: Path) -> Any:
    """Import a benchmark file as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_benchmark(path: Path, device: str | None) -> dict[str, Any]:
    """Run one benchmark's ``main``; return its printed output, result, wall time and error (if any)."""
    tee = _Tee(sys.stdout)
    t0 = time.perf_counter()
    result: Any = None
    error = None
    note = ""
    try:
        with contextlib.redirect_stdout(tee):
            module = load_module(path)
            main = module.main
            takes_argv = len(inspect.signature(main).parameters) > 0
            if not takes_argv:
                note = "main() takes no arguments: run with its defaults" + (
                    " (no --device)" if device else ""
                )
                result = main()
            elif device is None:
                result = main([])
            else:
                try:
                    result = main(["--device", device])
                except SystemExit as e:  # its parser has no --device: argparse exits before any work
                    if e.code != 2:
                        raise
                    note = f"--device {device} not accepted by this benchmark: run with its defaults"
                    result = main([])
    except BaseException as e:  # noqa: BLE001 - one failing benchmark must not lose the others' results
        if isinstance(e, KeyboardInterrupt):
            raise
        error = traceback.format_exc()
    return {
        "name": path.stem,
        "output": tee.copy.getvalue(),
        "result": result,
        "seconds": time.perf_counter() - t0,
        "error": error,
        "note": note,
    }


def environment(device: str | None, argv: list[str]) -> dict[str, str]:
    """Command line, device, library versions and date for the report header."""
    import torch

    dev = device or "default"
    if device == "cuda" and torch.cuda.is_available():
        dev = f"cuda ({torch.cuda.get_device_name(0)})"
    elif device in (None, "cpu"):
        dev = f"{dev}; cpu: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}"
    return {
        "command": " ".join(["python", "benchmarks/run_all.py", *argv]),
        "device": dev,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def render(env: dict[str, str], runs: list[dict[str, Any]]) -> str:
    """The combined markdown report."""
    lines = ["# Benchmarks", ""]
    lines += [f"- **{k}**: `{v}`" if k == "command" else f"- **{k}**: {v}" for k, v in env.items()]
    lines.append("")
    for r in runs:
        status = "FAILED" if r["error"] else f"{r['seconds']:.1f} s"
        lines += [f"## {r['name']} ({status})", ""]
        if r["note"]:
            lines += [f"_{r['note']}_", ""]
        out = r["output"].strip()
        if out:
            lines += [out, ""]
        elif r["result"] is not None:
            lines += [_as_markdown(r["result"]), ""]
        if r["error"]:
            lines += ["```", r["error"].rstrip(), "```", ""]
    return "\n".join(lines)


def _as_markdown(result: Any) -> str:
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        return result.to_markdown()
    if isinstance(result, dict):
        return pd.DataFrame([result]).to_markdown(index=False)
    return f"```\n{result}\n```"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and write the report; exit status 1 if any benchmark failed."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "results" / "report.md"), help="markdown report path")
    ap.add_argument(
        "--device", default=None, choices=["cpu", "cuda"], help="passed to benchmarks that accept it"
    )
    ap.add_argument("--only", nargs="+", help="run only benchmarks whose file name contains one of these")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    files = discover(HERE, args.only)
    if not files:
        ap.error(f"no benchmark matches {args.only} in {HERE}")
    env = environment(args.device, argv)
    runs = []
    for f in files:
        print(f"\n=== {f.stem} ===", flush=True)
        runs.append(run_benchmark(f, args.device))
        if runs[-1]["error"]:
            print(runs[-1]["error"], file=sys.stderr)
    from rho.io import write_text_atomic

    write_text_atomic(args.out, render(env, runs) + "\n")
    failed = [r["name"] for r in runs if r["error"]]
    print(f"\nreport: {args.out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
