"""Wall time of the whole `smoke` study DAG (`dvc repro` on a scratch copy), with and without the
fork server (``python -m rho.study serve``), in one run.

    .venv/bin/python benchmarks/bench_study_dag.py [--profile smoke]

Each variant runs the full DAG from nothing on its own scratch copy of this checkout
(:func:`rho.study.scratch.scratch_copy`); the table gives seconds and the ratio to the plain run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from rho.report.markdown import to_markdown  # noqa: E402
from rho.study.scratch import scratch_copy  # noqa: E402


def _repro(repo: Path, server: bool) -> float:
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(repo))
    proc = None
    start = time.perf_counter()
    if server:
        sock = repo.parent / "study.sock"
        proc = subprocess.Popen(
            [sys.executable, "-m", "rho.study", "serve", "--socket", str(sock)],
            cwd=repo,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        while not sock.exists():
            if proc.poll() is not None:
                raise RuntimeError("the study server did not start")
            time.sleep(0.05)
        env["RHO_STUDY_SERVER"] = str(sock)
    try:
        res = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    if res.returncode != 0:
        raise RuntimeError(f"dvc repro failed in {repo}:\n{res.stderr[-3000:]}")
    return time.perf_counter() - start  # the server's start (imports) is counted


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Print and return seconds per variant and the ratio to the plain ``dvc repro``."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--device", default="cpu", help="the smoke DAG runs on the CPU; accepted for run_all.py")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        variants = (
            ("plain", "dvc repro (one process per stage)", False),
            ("server", "dvc repro + rho.study serve", True),
        )
        for folder, name, server in variants:
            repo = scratch_copy(ROOT, Path(tmp) / folder / "repo", args.profile)
            rows.append({"variant": name, "profile": args.profile, "seconds": _repro(repo, server)})
    df = pd.DataFrame(rows)
    df["ratio_to_plain"] = df["seconds"] / df["seconds"].iloc[0]
    print(to_markdown(df, floatfmt=".2f"), end="")
    return df


if __name__ == "__main__":
    main()
