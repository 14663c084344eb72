"""Kill a training process with SIGKILL after a checkpoint, rerun the same command: bit-identical end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _helpers_train import base_config, final_state, make_scores, make_shard, make_tokenizer

from rho.train import train
from rho.train.metrics import read_log

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _command(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "rho.train", "--config", str(config_path)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_sigkill_then_rerun_resumes_to_bit_identical_weights(tmp_path) -> None:
    shard = make_shard(tmp_path / "shard", make_tokenizer(tmp_path / "tok"))
    make_scores(tmp_path / "scores", shard)
    steps = 300
    cfg = base_config(
        tmp_path,
        objective="slm",
        scores=str(tmp_path / "scores"),
        selection={"ratio": 0.6},
        max_steps=steps,
        warmup_steps=10,
        ckpt_every_tokens=64 * 20,
        snapshot_every_tokens=64 * 100,
    )

    train({**cfg, "out_dir": str(tmp_path / "straight")})

    killed = tmp_path / "killed"
    config_path = tmp_path / "run.yaml"
    config_path.write_text(json.dumps({**cfg, "out_dir": str(killed)}))  # JSON is YAML
    proc = subprocess.Popen(
        _command(config_path), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    log = killed / "log.jsonl"
    # kill after the first checkpoint (step 20) and ~10 logged steps later, so the rerun must also
    # drop the log records of steps it repeats
    while not (
        (killed / "ckpt" / "trainer.pt").exists() and log.exists() and log.read_text().count("\n") >= 30
    ):
        assert proc.poll() is None, "the training process ended before writing a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    at_kill = json.loads((killed / "ckpt" / "state.json").read_text())["trainer"]["step"]
    assert 0 < at_kill < steps and not (killed / "final").exists(), "the kill did not land mid-run"

    rerun = subprocess.run(
        _command(config_path), cwd=ROOT, env=_env(), capture_output=True, text=True, check=True
    )
    summary = json.loads(rerun.stdout[rerun.stdout.index("{") :])
    assert summary["resumed_from_step"] >= at_kill and summary["steps"] == steps

    a, b = final_state(tmp_path / "straight"), final_state(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la, lb = read_log(tmp_path / "straight" / "log.jsonl"), read_log(killed / "log.jsonl")
    assert [r["step"] for r in lb] == list(range(1, steps + 1))
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]
    assert sorted(p.name for p in (killed / "snapshots").iterdir()) == [
        "tokens_0",
        "tokens_12800",
        "tokens_19200",
        "tokens_6400",
    ]
