"""rho.train.train: the run directory, the log, errors before work, divergence, config resume checks."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _helpers_train import base_config, final_state, make_shard, make_tokenizer

from rho.data.shards import write_shard
from rho.models import ModelError, build_model
from rho.train import ConfigError, DataError, TrainConfig, TrainingDivergedError, train
from rho.train.__main__ import main as cli_main
from rho.train.metrics import read_log


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    tok = make_tokenizer(tmp / "tok")
    make_shard(tmp / "shard", tok)
    return tmp


def test_clm_run_writes_the_design_run_directory(data, tmp_path) -> None:
    cfg = base_config(
        data,
        out_dir=str(tmp_path / "run"),
        max_steps=12,
        warmup_steps=2,
        lr=2e-2,
        min_lr=2e-3,
        ckpt_every_tokens=256,
        snapshot_every_tokens=384,
    )
    res = train(cfg)
    run = tmp_path / "run"
    assert res.steps == 12 and res.tokens_seen == 12 * 64 and res.resumed_from_step is None
    assert json.loads((run / "config.json").read_text()) == TrainConfig.from_dict(cfg).to_dict()
    log = read_log(run / "log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 13))
    assert [r["tokens"] for r in log] == [64 * s for s in range(1, 13)]
    first = log[0]
    assert first["lr"] == pytest.approx(cfg["lr"] / 2)  # warmup step 1 of 2
    assert log[-1]["lr"] == pytest.approx(cfg["min_lr"])
    for r in log:
        assert r["n_valid"] == 4 * 15 == r["n_selected"] and r["selected_frac"] == 1.0
        assert r["loss_unselected"] is None and r["loss_selected"] == pytest.approx(r["loss"])
        assert sum(v for v, _ in r["label_counts"].values()) == r["n_valid"]
        assert set(r["label_counts"]) == {"content", "noise"}
        assert math.isfinite(r["grad_norm"]) and r["tokens_per_s"] > 0
    assert first["loss"] == pytest.approx(math.log(320), abs=0.1)  # untrained: ~uniform over the vocab
    snaps = sorted(p.name for p in (run / "snapshots").iterdir())
    assert snaps == ["tokens_0", "tokens_384", "tokens_768"]
    # final/ is a loadable HF folder with the tokenizer, equal to the final checkpoint
    final = build_model(run / "final", vocab_size=320)
    ck = final_state(run)
    assert all(torch.equal(v, ck[k]) for k, v in final.state_dict().items())
    assert (run / "final" / "tokenizer.json").is_file()
    info = json.loads((run / "final" / "rho_train.json").read_text())
    assert info["step"] == 12 and info["n_params"] > 0
    # rerunning the finished command resumes at the end and changes nothing
    again = train(cfg)
    assert again.resumed_from_step == 12 and again.steps == 12
    assert len(read_log(run / "log.jsonl")) == 12


def test_clm_learns_the_content_pattern(data, tmp_path) -> None:
    train(
        base_config(
            data,
            out_dir=str(tmp_path / "learn"),
            max_steps=80,
            micro_batch_size=8,
            warmup_steps=5,
            lr=1e-2,
            min_lr=1e-3,
        )
    )
    losses = [r["loss"] for r in read_log(tmp_path / "learn" / "log.jsonl")]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 2.0  # 5.6 -> ~1.3 nats


def test_cli_trains_from_yaml_with_overrides(data, tmp_path, capsys) -> None:
    y = tmp_path / "run.yaml"
    cfg = base_config(data, out_dir=str(tmp_path / "cli"), max_steps=2)
    y.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in cfg.items()))
    assert cli_main(["--config", str(y), "max_steps=3", "lr=0.001", "min_lr=0.0001"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3 and summary["tokens_seen"] == 192
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["lr"] == 0.001


def test_divergence_stops_before_the_update_and_keeps_the_last_checkpoint(
    data, tmp_path, monkeypatch
) -> None:
    import rho.train.loop as loop

    calls = {"n": 0}
    real = loop.HeadLoss.__call__

    def nan_from_step_4(self, model, input_ids, labels):
        calls["n"] += 1
        out = real(self, model, input_ids, labels)
        return out * float("nan") if calls["n"] >= 4 else out

    monkeypatch.setattr(loop.HeadLoss, "__call__", nan_from_step_4)
    run = tmp_path / "nan"
    with pytest.raises(TrainingDivergedError, match=r"step 4: loss=nan .*step 2\).* is kept"):
        train(base_config(data, out_dir=str(run), max_steps=6, ckpt_every_tokens=128))
    state = json.loads((run / "ckpt" / "state.json").read_text())["trainer"]
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in final_state(run).values())
    assert len(read_log(run / "log.jsonl")) == 3 and not (run / "final").exists()


def test_bad_inputs_fail_before_anything_is_written(data, tmp_path) -> None:
    out = tmp_path / "never"
    tiny = tmp_path / "tiny"
    write_shard(
        tiny,
        [[1, 2, 3]],
        vocab_size=320,
        eos_id=0,
        tokenizer_hash=json.loads((data / "shard" / "meta.json").read_text())["tokenizer_hash"],
    )
    with pytest.raises(DataError, match="fewer than one block of 16"):
        train(base_config(data, out_dir=str(out), train_shard=str(tiny)))
    other_tok = make_tokenizer(tmp_path / "tok2", vocab=300)
    assert other_tok is not None
    with pytest.raises(ConfigError, match="is not the one that made the shard"):
        train(base_config(data, out_dir=str(out), tokenizer=str(tmp_path / "tok2")))
    with pytest.raises(ConfigError, match="preset with no tokenizer"):
        train(base_config(data, out_dir=str(out), tokenizer=None))
    build_model("llama-smoke", vocab_size=100, seed=0).save_pretrained(tmp_path / "small")
    with pytest.raises(ModelError, match="vocabulary mismatch: the model has 100 embeddings .* 320"):
        train(base_config(data, out_dir=str(out), init_from=str(tmp_path / "small")))
    with pytest.raises(ModelError, match="is not a llama-mini model"):
        train(base_config(data, out_dir=str(out), model="llama-mini", init_from=str(tmp_path / "small")))
    assert not out.exists()


def test_resume_refuses_a_different_config_or_resume_false(data, tmp_path) -> None:
    cfg = base_config(data, out_dir=str(tmp_path / "r"), max_steps=2)
    train(cfg)
    with pytest.raises(ConfigError, match=r"different config \(lr: now 0.1, checkpoint 0.003\)"):
        train({**cfg, "lr": 0.1})
    with pytest.raises(ConfigError, match="resume=false"):
        train({**cfg, "resume": False})
    assert train({**cfg, "progress": True, "log_every": 5}).resumed_from_step == 2  # run-free fields
    # a checkpoint written by 2 data-parallel processes (8 blocks per step) cannot resume on 1
    path = tmp_path / "r" / "ckpt" / "trainer.pt"
    saved = torch.load(path, weights_only=False)
    saved["trainer"]["blocks_consumed"] *= 2
    torch.save(saved, path)
    with pytest.raises(ConfigError, match="written with 8 blocks per optimizer step, this run takes 4"):
        train(cfg)


def test_data_shard_without_provenance_logs_no_label_counts(data, tmp_path) -> None:
    tok = make_tokenizer(tmp_path / "tok")
    make_shard(tmp_path / "plain", tok, labels=False)
    train(base_config(data, out_dir=str(tmp_path / "p"), train_shard=str(tmp_path / "plain"), max_steps=1))
    assert "label_counts" not in read_log(tmp_path / "p" / "log.jsonl")[0]


def test_two_identical_runs_write_identical_bytes(data, tmp_path, monkeypatch) -> None:
    """Everything a run writes, checkpoints included, is a function of its config (relative paths,
    seeded generators); only the wall-clock log ``timing.jsonl`` differs between two runs."""
    import random

    import numpy as np

    from rho.io import sha256_file

    def run(where: str, noise: int) -> dict[str, str]:
        (tmp_path / where).mkdir()
        monkeypatch.chdir(tmp_path / where)  # the same relative out_dir in two different folders
        random.seed(noise)  # whatever the process did before must not leak into the run's files
        np.random.seed(noise)
        train(base_config(data, out_dir="run", max_steps=6, warmup_steps=1, ckpt_every_tokens=192))
        root = tmp_path / where / "run"
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "timing.jsonl")
        return {str(p.relative_to(root)): sha256_file(p) for p in files}

    a, b = run("x", 1), run("y", 2)
    assert "ckpt/trainer.pt" in a and "log.jsonl" in a and "environment.json" in a
    assert a == b
    log = read_log(tmp_path / "x" / "run" / "log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 7))
    assert all(r["step_time_s"] > 0 for r in log)  # joined from timing.jsonl
