"""benchmarks/run_all.py: discovery, --device pass-through, failures recorded, one markdown report."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH_DEVICE = """import argparse
import pandas as pd


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    df = pd.DataFrame({"device": [a.device], "ratio": [1.01]})
    print(df.to_markdown(index=False))
    return df
"""


def test_run_all_writes_one_report_and_records_failures(tmp_path, monkeypatch, capsys) -> None:
    run_all = _run_all()
    (tmp_path / "bench_dev.py").write_text(BENCH_DEVICE)
    (tmp_path / "bench_dict.py").write_text("def main():\n    return {'slm_over_clm': 1.02}\n")
    (tmp_path / "bench_broken.py").write_text("def main(argv=None):\n    raise RuntimeError('boom')\n")
    (tmp_path / "helper.py").write_text("raise SystemExit('not a benchmark')\n")
    monkeypatch.setattr(run_all, "HERE", tmp_path)
    assert [f.name for f in run_all.discover(tmp_path)] == [
        "bench_broken.py",
        "bench_dev.py",
        "bench_dict.py",
    ]
    assert [f.name for f in run_all.discover(tmp_path, ["dev"])] == ["bench_dev.py"]
    out = tmp_path / "results" / "cpu.md"
    assert run_all.main(["--out", str(out), "--device", "cuda"]) == 1  # one benchmark failed
    report = out.read_text()
    assert report.startswith("# Benchmarks") and "**torch**" in report and "**date**" in report
    assert "--device cuda" in report
    assert "| cuda     |    1.01 |" in report  # the device reached the benchmark's parser
    assert "|           1.02 |" in report  # a returned dict is rendered when nothing was printed
    assert "## bench_broken (FAILED)" in report and "RuntimeError: boom" in report
    assert "main() takes no arguments" in report
    assert "FAILED: bench_broken" in capsys.readouterr().out
