"""rho.study.stages without training: the launcher path and the fresh-or-resume rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from rho.data.shards import write_shard
from rho.study import Study, stages
from rho.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _study(tmp_path: Path, launcher: str) -> Study:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profile"] = "smoke"
    params["profiles"]["smoke"]["launcher"] = launcher
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return Study.load(tmp_path / "params.yaml")


def _shard(study: Study) -> None:
    rng = np.random.default_rng(0)
    docs = [rng.integers(1, 100, 50) for _ in range(40)]
    write_shard(study.shard("base"), docs, vocab_size=128, eos_id=0, tokenizer_hash="t")


def test_torchrun_launcher_gets_the_resolved_config(tmp_path, monkeypatch):
    study = _study(tmp_path, "torchrun --nproc_per_node 8")
    _shard(study)
    seen = {}

    def fake_run(cmd, check):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(stages.subprocess, "run", fake_run)
    out = stages.train_run(study, "base")
    cmd = seen["cmd"]
    assert cmd[:5] == ["torchrun", "--nproc_per_node", "8", "-m", "rho.train"]
    assert cmd[5] == "--config" and Path(cmd[6]) == out / "launch.yaml"
    assert TrainConfig.from_yaml(cmd[6]) == study.train_config("base")
    assert json.loads((out / "inputs.json").read_text())["shard"]


def test_python_launcher_is_this_interpreter(tmp_path, monkeypatch):
    study = _study(tmp_path, "python -X faulthandler")
    _shard(study)
    seen = {}
    monkeypatch.setattr(stages.subprocess, "run", lambda cmd, check: seen.setdefault("cmd", cmd))
    stages.train_run(study, "base")
    assert seen["cmd"][:3] == [sys.executable, "-X", "faulthandler"]


def test_stale_run_directory_is_replaced_when_its_inputs_change(tmp_path):
    study = _study(tmp_path, "python")
    _shard(study)
    cfg = study.train_config("base")
    out = Path(cfg.out_dir)
    stages._fresh_or_resume(cfg)
    (out / "ckpt").mkdir()
    stages._fresh_or_resume(cfg)  # same config and inputs: the checkpoint is kept (resume)
    assert (out / "ckpt").is_dir()
    write_shard(study.shard("base"), [[5, 6, 7] * 30], vocab_size=128, eos_id=0, tokenizer_hash="t")
    stages._fresh_or_resume(cfg)  # the corpus changed: start afresh
    assert not (out / "ckpt").exists()
    assert (out / "inputs.json").is_file()
    assert (out / "rho_run.json").is_file()  # rho.train may write into it


def test_eval_limit_gives_the_judged_pairs_the_full_problem_count():
    study = Study.load(ROOT / "params.yaml", profile="mini")
    full, side = study.sizes["eval_limit"], study.sizes["side_eval_limit"]
    assert full > side
    parts = {r: study.run_spec(r)["part"] for r in study.run_names}
    for run, part in parts.items():
        want = full if part in ("math_cpt", "general_cpt", "weak_to_strong", "sparse_backward") else side
        assert stages.eval_limit(study, run) == want, run
    assert stages.eval_limit(study, "base") == full
    assert stages.eval_limit(study, "reference") == side
    assert {"general_cpt", "weak_to_strong", "ratio_ablation"} <= set(parts.values())
