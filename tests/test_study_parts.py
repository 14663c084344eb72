"""The study's parts package: lazy re-exports, the shared reader's steps, and notebooks that call them."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rho.study.config import StudyError
from rho.study.parts import reader

ROOT = Path(__file__).resolve().parents[1]
PARTS = (
    "data",
    "token_dynamics",
    "reference_model",
    "math_cpt",
    "general_cpt",
    "self_reference",
    "analysis",
    "report",
)


class FakeStudy:
    """What the reader's steps use of a ``Study``: a profile and run / evaluation folders."""

    profile = "smoke"
    run_names: list[str] = []

    def __init__(self, root: Path) -> None:
        self.root = root

    def run_dir(self, run: str) -> Path:
        return self.root / "runs" / run

    def eval_dir(self, run: str) -> Path:
        return self.root / "evals" / run

    def run_spec(self, run: str) -> dict:
        raise StudyError(run)


def test_importing_the_package_imports_no_part_and_names_resolve_lazily() -> None:
    code = (
        "import sys; from rho.study import parts; "
        "assert not [m for m in sys.modules if m.startswith('rho.study.parts.')], sys.modules.keys(); "
        "f = parts.math_cpt_part; "
        "assert f.__module__ == 'rho.study.parts.math_cpt', f.__module__; "
        "assert 'rho.study.parts.analysis' not in sys.modules; "
        "from rho.study.parts import run_step_time_ratio, _ours, average_accuracy; "
        "assert _ours is parts.paper_rows; print('ok')"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_every_exported_name_exists_and_unknown_names_are_refused() -> None:
    from rho.study import parts

    for name in parts.__all__:
        assert getattr(parts, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        parts.nope  # noqa: B018


def test_all_token_loss_weighs_selected_and_unselected_tokens() -> None:
    log = pd.DataFrame(
        {
            "step": [1, 2],
            "tokens": [10, 20],
            "loss": [2.0, 3.0],
            "loss_selected": [2.0, 3.0],
            "loss_unselected": [4.0, None],  # step 2 kept every token
            "n_selected": [6, 10],
            "n_valid": [10, 10],
        }
    )
    out = reader.with_all_token_loss(log)
    assert out["loss_all"].tolist() == pytest.approx([(2.0 * 6 + 4.0 * 4) / 10, 3.0])
    assert "loss_all" not in log.columns  # the input is not changed


def test_training_curves_read_every_runs_log(tmp_path: Path) -> None:
    study = FakeStudy(tmp_path)
    for run, lu in (("clm", None), ("slm", 5.0)):
        d = study.run_dir(run)
        d.mkdir(parents=True)
        rec = {"step": 1, "tokens": 8, "loss": 1.0, "loss_selected": 1.0, "loss_unselected": lu}
        rec |= {"n_selected": 2, "n_valid": 4}
        (d / "log.jsonl").write_text(json.dumps(rec) + "\n")
    curves = reader.training_curves(study, ["clm", "slm"])
    got = {(r, m): v for r, m, v in curves[["run", "metric", "value"]].itertuples(index=False)}
    assert got == {
        ("clm", "loss_all"): 1.0,
        ("clm", "loss_selected"): 1.0,
        ("slm", "loss_all"): 3.0,
        ("slm", "loss_selected"): 1.0,
        ("slm", "loss_unselected"): 5.0,
    }


def test_task_accuracy_shows_value_and_stderr_per_run() -> None:
    res = pd.DataFrame(
        {
            "run": ["a", "b", "a"],
            "task": ["gsm", "gsm", "sat"],
            "role": ["gsm8k", "gsm8k", "sat"],
            "n": [4, 4, 2],
            "value": [0.25, 0.5, 1.0],
            "stderr": [0.25, None, 0.0],
        }
    )
    t = reader.task_accuracy(res)
    assert list(t.columns) == ["a", "b"]
    assert t.loc[("gsm", "gsm8k", 4), "a"] == "0.250 ± 0.250"
    assert t.loc[("gsm", "gsm8k", 4), "b"] == "0.500 ± 0.000"


def test_sample_completions_pick_right_and_wrong_per_task(tmp_path: Path) -> None:
    study = FakeStudy(tmp_path)
    rows = [
        {
            "task": "gsm",
            "question": "q1",
            "completion": "1",
            "prediction": "1",
            "gold": "2",
            "correct": False,
        },
        {"task": "gsm", "question": "q2", "completion": "2", "prediction": "2", "gold": "2", "correct": True},
        {
            "task": "gsm",
            "question": "q3",
            "completion": "3",
            "prediction": "3",
            "gold": "2",
            "correct": False,
        },
        {
            "task": "sat",
            "question": "x" * 300,
            "logprobs": [-1.234, -0.5],
            "prediction": "B",
            "gold": "B",
            "correct": True,
        },
    ]
    d = study.eval_dir("clm") / "final"
    d.mkdir(parents=True)
    (d / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = reader.sample_completions(study, ["clm"], per_task=1, width=20)
    assert s[["task", "correct", "prediction"]].values.tolist() == [
        ["gsm", False, "1"],
        ["gsm", True, "2"],
        ["sat", True, "B"],
    ]
    sat = s[s.task == "sat"].iloc[0]
    assert sat["completion"] == "[-1.23, -0.5]" and len(sat["question"]) == 20
    with pytest.raises(StudyError, match="no completions of 'gone'"):
        reader.sample_completions(study, ["gone"])


def test_claim_verdicts_are_the_scorecard_rows_of_the_named_claims(tmp_path: Path) -> None:
    v = reader.claim_verdicts(FakeStudy(tmp_path), {"clm_avg_acc": 0.2, "slm_avg_acc": 0.5}, ["C3", "C4"])
    assert v["id"].tolist() == ["C3", "C4"]
    assert v.set_index("id").loc["C4", "status"] == "not tested at this scale"
    with pytest.raises(StudyError, match="unknown claims"):
        reader.claim_verdicts(FakeStudy(tmp_path), {}, ["C99"])


def _notebook_code(name: str) -> list[str]:
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("part", PARTS)
def test_each_notebook_calls_its_own_part_and_only_names_that_exist(part: str) -> None:
    """Every ``part.X`` / ``reader.X`` a notebook cell uses is defined; the final function is called."""
    name = next(p.stem for p in (ROOT / "notebooks").glob("*.ipynb") if p.stem[3:] == part)
    code = _notebook_code(name)
    assert any(f"from rho.study.parts import {part} as part" in c for c in code)
    modules = {"part": importlib.import_module(f"rho.study.parts.{part}"), "reader": reader}
    used = set()
    for cell in code:
        for node in ast.walk(ast.parse(cell)):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
            ):
                assert hasattr(modules[node.value.id], node.attr), f"{name}: {node.value.id}.{node.attr}"
                used.add(node.attr)
    assert any(u.endswith("_part") for u in used), f"{name} never calls its part's final function"
    claims = getattr(modules["part"], "CLAIMS", ())
    if claims:
        assert "claim_verdicts" in used, f"{name} does not show the verdict of {claims}"


def test_sparse_backward_ablation_pairs_each_approximate_run_with_the_exact_run_of_its_seed() -> None:
    from rho.study import Study
    from rho.study.parts.sparse_backward import PART, ablation_pairs

    study = Study.load(ROOT / "params.yaml", profile="mini")
    pairs = ablation_pairs(study)
    assert pairs and all(study.run_spec(a)["part"] == PART for _, a in pairs)
    for exact, approx in pairs:
        e, a = study.run_spec(exact), study.run_spec(approx)
        assert e["group"] == "slm_runs" and e["part"] == "math_cpt"
        assert a.get("sparse_backward") == "layers" and e.get("sparse_backward", "exact") == "exact"
        assert e.get("seed", study.seed) == a.get("seed", study.seed)
        # only the approximation differs: same corpus, base, scorer, score and ratio
        assert (e["corpus"], e["base"], e["scorer"], e["score"], e["ratio"]) == (
            a["corpus"],
            a["base"],
            a["scorer"],
            a["score"],
            a["ratio"],
        )
