"""Training-loss CSVs behind the study's loss plots (rho.analysis.curves_export, rho.study.curves)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from rho.analysis.curves_export import COLUMNS, thin, write_training_losses
from rho.analysis.errors import AnalysisInputError
from rho.study import Study
from rho.study.curves import part_runs

ROOT = Path(__file__).resolve().parents[1]


def _log(path: Path, steps: int, slm: bool) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in range(1, steps + 1):
        row = {"step": s, "tokens": 100 * s, "loss": 5.0 - s / 10}
        if slm:
            row.update(loss_selected=4.0 - s / 10, loss_unselected=6.0 + s / 3)
        rows.append(json.dumps(row))
    (path / "log.jsonl").write_text("\n".join(rows) + "\n")
    return path


def test_write_training_losses_rows_and_values(tmp_path: Path) -> None:
    logs = {
        "clm": _log(tmp_path / "clm", 3, slm=False),
        "slm": _log(tmp_path / "slm", 3, slm=True) / "log.jsonl",
    }
    out = write_training_losses(logs, tmp_path / "res" / "training_losses.csv")
    df = pd.read_csv(out)
    assert tuple(df.columns) == COLUMNS
    assert len(df) == 3 + 3 * 3
    assert list(df["run"].unique()) == ["clm", "slm"]
    slm = df[df["run"] == "slm"]
    assert list(slm["metric"].unique()) == ["loss", "loss_selected", "loss_unselected"]
    unsel = slm[slm["metric"] == "loss_unselected"]
    assert unsel["tokens"].tolist() == [100, 200, 300]
    assert unsel["value"].tolist() == pytest.approx([6.33333, 6.66667, 7.0])  # 6 significant digits
    assert os.listdir(out.parent) == ["training_losses.csv"]  # no temporary file left


def test_long_runs_are_thinned_keeping_the_last_step(tmp_path: Path) -> None:
    out = write_training_losses(
        {"r": _log(tmp_path / "r", 1001, slm=False)}, tmp_path / "c.csv", max_points=100
    )
    steps = pd.read_csv(out)["step"].tolist()
    assert len(steps) <= 100 and steps[0] == 1 and steps[-1] == 1001
    assert steps[:3] == [1, 12, 23]  # stride ceil(1001 / 100) = 11
    short = pd.DataFrame({"run": "a", "metric": "loss", "step": [1, 2, 3], "tokens": 1, "value": 0.0})
    assert thin(short, 100)["step"].tolist() == [1, 2, 3]
    for n in (2, 7, 99, 100, 101, 250):
        df = pd.DataFrame({"run": "a", "metric": "loss", "step": range(n), "tokens": 1, "value": 0.0})
        kept = thin(df, 10)["step"].tolist()
        assert len(kept) <= 10 and kept[0] == 0 and kept[-1] == n - 1


def test_a_missing_log_names_the_run(tmp_path: Path) -> None:
    with pytest.raises(AnalysisInputError, match="math_slm"):
        write_training_losses({"math_slm": tmp_path / "nope"}, tmp_path / "c.csv")
    assert not (tmp_path / "c.csv").exists()


def test_parts_export_the_runs_they_report() -> None:
    study = Study.load(ROOT / "params.yaml", profile="mini")
    assert part_runs(study, "math_cpt") == study.runs_of("math_cpt")
    assert {"math_clm", "math_slm", "math_slm_70", "math_random"} <= set(part_runs(study, "math_cpt"))
    assert part_runs(study, "reference_model") == ["reference"]
    assert part_runs(study, "analysis") == (
        study.runs_of("ratio_ablation") + study.runs_of("weak_to_strong") + study.runs_of("sparse_backward")
    )


def test_notebook_stages_depend_on_the_runs_they_read() -> None:
    """Every run a part reports is a dependency of its notebook stage (log and evaluation), so a
    new seed or control run in params.yaml cannot be left out of dvc.yaml."""
    import yaml

    study = Study.load(ROOT / "params.yaml", profile="mini")
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for part in ("math_cpt", "general_cpt", "self_reference", "analysis"):
        deps = [str(d).split()[0] for d in stages[part]["deps"]]
        for run in part_runs(study, part):
            run_dir = f"runs/${{profile}}/{run}"
            assert run_dir in deps or f"{run_dir}/log.jsonl" in deps, (part, run)
            if part != "self_reference" or run in study.runs_of("self_reference"):
                assert f"evals/${{profile}}/{run}" in deps, (part, run)
    assert part_runs(study, "report") == [] and part_runs(study, "token_dynamics") == []
