"""The whole study DAG on the `smoke` profile, through real `dvc repro` on a copy of the repository.

Checks that every stage runs, every result file exists and is well formed, the scorecard covers
C1..C14, a re-run of a notebook stage reproduces its tables byte for byte, and a stage that fails
leaves no partial results behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow

EXPECTED = {
    "data": ["corpus_table.csv", "corpus_table.md", "noise_shares.png"],
    "token_dynamics": [
        "category_shares.csv",
        "category_curves.csv",
        "figure3_category_curves.png",
        "measured.json",
    ],
    "reference_model": ["accuracy.csv", "training_loss.png", "ref_scores_by_label.csv"],
    "math_cpt": [
        "table1.csv",
        "table1.md",
        "average_accuracy.csv",
        "figure1_curves.csv",
        "figure1_accuracy_vs_tokens.png",
        "measured.json",
    ],
    "general_cpt": ["figure5_table.csv", "figure5_bars.png", "measured.json"],
    "self_reference": ["table3.csv", "table4.csv", "measured.json"],
    "analysis": [
        "figure6_losses.csv",
        "figure7_points.csv",
        "figure8_ppl.csv",
        "figure9_ratio.csv",
        "table5.csv",
        "kept_by_label.csv",
        "selection_vs_noise.csv",
        "measured.json",
    ],
    "report": ["scorecard.csv", "scorecard.md", "token_selection.html"],
}


def _env(cwd: Path, **extra: str) -> dict[str, str]:
    return dict(
        os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(cwd), **extra
    )


def _run(cmd: list[str], cwd: Path, timeout: int = 1500, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=_env(cwd, **env), capture_output=True, text=True, timeout=timeout)


def _start_server(repo: Path, sock: Path) -> subprocess.Popen:
    """``python -m rho.study serve`` in ``repo``: the DAG's stages then skip importing torch 44 times."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rho.study", "serve", "--socket", str(sock)],
        cwd=repo,
        env=_env(repo),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not sock.exists():
        assert proc.poll() is None, f"the study server died: {proc.stderr.read().decode()[-3000:]}"
        assert time.monotonic() < deadline, "the study server did not start in 120 s"
        time.sleep(0.1)
    return proc


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory) -> Path:
    """A git + DVC copy of the working tree with `profile: smoke`, after a full `dvc repro`."""
    from rho.study.scratch import scratch_copy

    repo = scratch_copy(ROOT, tmp_path_factory.mktemp("study") / "repo", "smoke")
    assert not (repo / "results" / "mini").exists() and (repo / "results" / "paper").is_dir()
    sock = repo.parent / "study.sock"
    server = _start_server(repo, sock)
    try:
        res = _run(["dvc", "repro"], repo, RHO_STUDY_SERVER=str(sock))
    finally:
        server.kill()
        server.wait()
    assert res.returncode == 0, f"dvc repro failed:\n{res.stdout[-6000:]}\n{res.stderr[-6000:]}"
    return repo


def test_every_result_file_is_written(smoke_repo):
    results = smoke_repo / "results" / "smoke"
    for part, names in EXPECTED.items():
        for name in names:
            path = results / part / name
            assert path.is_file() and path.stat().st_size > 0, f"missing {path}"
    for csv in results.rglob("*.csv"):
        assert len(pd.read_csv(csv)) > 0, f"{csv} is empty"
    for nb in ("01_data", "02_token_dynamics", "04_math_cpt", "07_analysis", "08_report"):
        assert (smoke_repo / "outputs" / "smoke" / f"{nb}.ipynb").is_file()
    assert not list((smoke_repo / "outputs").rglob("*.failed.ipynb"))


def test_tables_carry_the_papers_numbers_beside_ours(smoke_repo):
    t1 = pd.read_csv(smoke_repo / "results" / "smoke" / "math_cpt" / "table1.csv")
    assert set(t1["source"]) == {"paper", "ours"}
    rho1 = t1[(t1["source"] == "paper") & (t1["model"] == "RHO-1-Math") & (t1["train_tokens"] == "9B")]
    assert rho1["avg"].tolist() == [38.1]
    ours = t1[t1["source"] == "ours"]
    assert set(ours["profile"]) == {"smoke"}
    assert ours["avg"].between(0, 100).all()
    shares = pd.read_csv(smoke_repo / "results" / "smoke" / "token_dynamics" / "category_shares.csv")
    assert shares["share"].sum() == pytest.approx(1.0)
    assert set(shares["category"]) == {"H->H", "L->H", "H->L", "L->L"}


def test_scorecard_covers_every_claim_and_metrics_are_tracked(smoke_repo):
    card = pd.read_csv(smoke_repo / "results" / "smoke" / "report" / "scorecard.csv")
    assert card["id"].tolist() == [f"C{i}" for i in range(1, 16)]
    assert set(card["status"]) <= {"reproduced", "not reproduced", "not tested at this scale", "partially"}
    metrics = json.loads((smoke_repo / "results" / "smoke" / "metrics.json").read_text())
    assert metrics["profile"] == "smoke"
    assert sum(metrics["scorecard"].values()) == 15
    show = _run(["dvc", "metrics", "show", "--json"], smoke_repo)
    assert show.returncode == 0 and "scorecard" in show.stdout


def test_rerun_reproduces_tables_and_pipeline_is_up_to_date(smoke_repo):
    """Re-running a stage without the server (each stage its own process) gives the same bytes."""
    part = smoke_repo / "results" / "smoke" / "self_reference"
    before = {p.name: p.read_bytes() for p in part.iterdir()}
    res = _run(["dvc", "repro", "-f", "-s", "self_reference"], smoke_repo)
    assert res.returncode == 0, res.stderr[-3000:]
    after = {p.name: p.read_bytes() for p in part.iterdir()}
    assert after == before
    status = _run(["dvc", "status", "--json"], smoke_repo)
    assert status.returncode == 0 and json.loads(status.stdout or "{}") == {}


def test_a_failing_stage_leaves_no_partial_results(smoke_repo):
    nb = smoke_repo / "notebooks" / "06_self_reference.ipynb"
    original = nb.read_text()
    # fail after the part has written its tables: the runner must take them away again
    broken = original.replace('out[\\"table3\\"]', "raise RuntimeError('boom')")
    assert broken != original
    nb.write_text(broken)
    try:
        res = _run(["dvc", "repro", "-s", "self_reference"], smoke_repo)
        assert res.returncode != 0
        assert not (smoke_repo / "results" / "smoke" / "self_reference").exists()
        assert (smoke_repo / "outputs" / "smoke" / "06_self_reference.failed.ipynb").is_file()
    finally:
        nb.write_text(original)
    res = _run(["dvc", "repro", "-s", "self_reference"], smoke_repo)
    assert res.returncode == 0, res.stderr[-3000:]


PINS = ROOT / "tests" / "data" / "smoke_outputs.json"


def _lock_outs(repo: Path) -> dict[str, str]:
    """``{path: md5}`` of every stage output recorded in ``dvc.lock`` (directories by their tree hash)."""
    import yaml

    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {
        o["path"]: o.get("md5") or o.get("hash")
        for stage in lock["stages"].values()
        for o in stage.get("outs", [])
    }


def test_smoke_outputs_equal_the_committed_pins(smoke_repo):
    """A clean smoke run writes exactly the committed bytes: models, scores, evaluations and results.

    Reproducibility is tested, not assumed: any output whose hash differs from
    ``tests/data/smoke_outputs.json`` is named. After a deliberate change of numerics, rewrite the
    pins with ``RHO_UPDATE_PINS=1 pytest tests/test_study_smoke.py`` and say why in the commit.
    """
    outs = _lock_outs(smoke_repo)
    if os.environ.get("RHO_UPDATE_PINS") == "1":
        PINS.write_text(json.dumps(outs, indent=1, sort_keys=True) + "\n")
    pins = json.loads(PINS.read_text())
    differ = sorted(p for p in pins.keys() | outs.keys() if pins.get(p) != outs.get(p))
    assert not differ, f"smoke outputs differ from tests/data/smoke_outputs.json: {differ}"
