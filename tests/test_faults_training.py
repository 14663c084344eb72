"""Fault injection in training: crafted and damaged checkpoints, foreign out_dirs, kills mid-run and mid-save.

Every test reproduces a fault of issue 14 with a tiny ``llama-smoke`` run (seconds).  Kills are
injected inside a subprocess (SIGKILL of itself at a chosen optimizer step or at a chosen file
operation of a save, the points drawn from a seeded RNG), then the same run is resumed in-process:
it must end with bit-identical weights to an uninterrupted run and leave no temporary folder.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers_train import base_config, final_state, make_shard, make_tokenizer

from rho.io import JSONFileError
from rho.train import CheckpointError, DataError, train
from rho.train import checkpoint as ckpt_io
from rho.train.rundir import MARKER, RunDirError

ROOT = Path(__file__).resolve().parents[1]
STEPS = 12
TOKENS_PER_STEP = 4 * 16  # micro_batch_size x block_size of base_config


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Tokenizer, shard and one uninterrupted reference run (``straight``)."""
    tmp = tmp_path_factory.mktemp("faults_training")
    make_shard(tmp / "shard", make_tokenizer(tmp / "tok"))
    train(_cfg(tmp, "straight"))
    return tmp


def _cfg(tmp: Path, name: str, **over) -> dict:
    return base_config(
        tmp,
        out_dir=str(tmp / name),
        max_steps=STEPS,
        ckpt_every_tokens=2 * TOKENS_PER_STEP,
        snapshot_every_tokens=4 * TOKENS_PER_STEP,
        **over,
    )


def _short_run(world: Path, name: str) -> Path:
    out = world / name
    train({**_cfg(world, name), "max_steps": 2})
    return out


# ------------------------------------------------------------------ code execution from a checkpoint
class _RunsCode:
    """Unpickling this calls ``exec``: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_crafted_trainer_pt_is_refused_and_runs_nothing(world) -> None:
    out = _short_run(world, "crafted")
    marker = world / "pwned"
    torch.save({"trainer": _RunsCode(marker), "rng": {}}, out / "ckpt" / "trainer.pt")
    with pytest.raises(CheckpointError, match=r"trainer\.pt holds objects .* refused"):
        train({**_cfg(world, "crafted"), "max_steps": 2})
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.pt", "optimizer.pt"])
def test_crafted_weights_files_are_refused_and_run_nothing(world, name) -> None:
    out = _short_run(world, f"crafted_{name}")
    marker = world / f"pwned_{name}"
    torch.save({"w": _RunsCode(marker)}, out / "ckpt" / name)
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        ckpt_io.load_checkpoint(out)
    assert not marker.exists()


def test_checkpoint_rng_state_needs_no_pickled_objects(world) -> None:
    out = _short_run(world, "safe_format")
    obj = torch.load(out / "ckpt" / "trainer.pt", weights_only=True)  # default allowlist only
    assert obj["trainer"]["step"] == 2 and isinstance(obj["rng"]["numpy"][1], torch.Tensor)


def test_checkpoint_of_the_former_format_still_resumes(world) -> None:
    out = _short_run(world, "legacy")
    obj = torch.load(out / "ckpt" / "trainer.pt", weights_only=True)
    kind, keys, pos, has_gauss, cached = obj["rng"]["numpy"]
    obj["rng"]["numpy"] = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached)  # numpy array inside
    torch.save(obj, out / "ckpt" / "trainer.pt")
    ck = ckpt_io.load_checkpoint(out)
    assert ck.trainer.step == 2
    ckpt_io.set_rng_state(ck.rng)
    assert np.random.get_state()[1].tolist() == keys.tolist()


@pytest.mark.parametrize("name", ["trainer.pt", "model.pt"])
def test_truncated_checkpoint_file_names_the_file(world, name) -> None:
    out = _short_run(world, f"trunc_{name}")
    f = out / "ckpt" / name
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=str(f).replace(".", r"\.")):
        ckpt_io.load_checkpoint(out)


def test_corrupt_state_json_names_the_file(world) -> None:
    out = _short_run(world, "bad_state")
    f = out / "ckpt" / "state.json"
    f.write_text(f.read_text()[:20])
    with pytest.raises(JSONFileError, match=str(f)):
        train({**_cfg(world, "bad_state"), "max_steps": 2})


def test_state_json_without_a_config_names_the_file(world) -> None:
    out = _short_run(world, "no_config")
    (out / "ckpt" / "state.json").write_text("[]")
    with pytest.raises(CheckpointError, match=str(out / "ckpt" / "state.json")):
        train({**_cfg(world, "no_config"), "max_steps": 2})


# ------------------------------------------------------------------ out_dir: only the trainer's own folder
def test_out_dir_equal_to_init_from_is_refused_and_left_intact(world) -> None:
    model_dir = _short_run(world, "base_for_init") / "final"
    before = (model_dir / "config.json").read_bytes()
    cfg = {**_cfg(world, "x"), "init_from": str(model_dir), "out_dir": str(model_dir), "max_steps": 1}
    with pytest.raises(RunDirError, match="init_from"):
        train(cfg)
    assert (model_dir / "config.json").read_bytes() == before
    assert not (model_dir / MARKER).exists()


def test_foreign_non_empty_out_dir_is_refused(world) -> None:
    foreign = world / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(RunDirError, match="did not create"):
        train({**_cfg(world, "foreign"), "max_steps": 1})
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_own_run_dir_resumes_and_marker_written(world) -> None:
    out = _short_run(world, "own")
    assert json.loads((out / MARKER).read_text())["written_by"] == "rho.train"
    result = train({**_cfg(world, "own"), "max_steps": 2})  # rerun of a finished run: a no-op resume
    assert result.resumed_from_step == 2


def test_run_dir_of_the_former_layout_is_adopted(world) -> None:
    out = _short_run(world, "legacy_dir")
    (out / MARKER).unlink()
    assert train({**_cfg(world, "legacy_dir"), "max_steps": 2}).resumed_from_step == 2
    assert (out / MARKER).is_file()


# ------------------------------------------------------------------ smaller faults
def test_block_size_above_max_positions_is_refused_before_writing(world) -> None:
    cfg = {**_cfg(world, "long_blocks"), "block_size": 513}  # llama-smoke: 512 positions
    with pytest.raises(DataError, match="max_position_embeddings"):
        train(cfg)
    assert not (world / "long_blocks").exists()


def test_stale_tmp_folders_of_killed_saves_are_removed_on_resume(world) -> None:
    out = _short_run(world, "stale")
    own = [out / ".ckpt.k1l3d_x.tmp", out / ".final.abc123.tmp", out / "snapshots" / ".tokens_64.zz9.tmp"]
    for d in own:
        d.mkdir(parents=True)
        (d / "model.pt").write_bytes(b"partial")
    (out / ".config.json.q1w2e3.tmp").write_text("{")
    foreign = out / ".mine.keep.tmp"
    foreign.mkdir()
    train({**_cfg(world, "stale"), "max_steps": 2})
    assert not any(d.exists() for d in own) and not (out / ".config.json.q1w2e3.tmp").exists()
    assert foreign.is_dir()


def test_checkpoint_moved_aside_by_a_killed_save_is_restored(world) -> None:
    out = _short_run(world, "moved_aside")
    os.replace(out / "ckpt", out / ".ckpt.old-12345")  # killed between the two renames of atomic_dir
    assert train({**_cfg(world, "moved_aside"), "max_steps": 2}).resumed_from_step == 2
    assert not (out / ".ckpt.old-12345").exists()


# ------------------------------------------------------------------ kills: at a random step, at a random save operation
_KILLER = textwrap.dedent(
    """
    import json, os, signal, sys
    import torch
    import rho.train.loop as loop
    from rho.train import train

    cfg, mode, k = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    count = [0]

    def hit():
        count[0] += 1
        if count[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)

    if mode == "step":  # killed when optimizer step k (0-based) starts
        lr_at = loop.lr_at
        def patched(step, **kw):
            if step == k:
                os.kill(os.getpid(), signal.SIGKILL)
            return lr_at(step, **kw)
        loop.lr_at = patched
    else:  # killed before the k-th file operation of a save (torch.save or os.replace)
        save, replace = torch.save, os.replace
        def patched_save(*a, **kw):
            hit()
            return save(*a, **kw)
        def patched_replace(*a, **kw):
            hit()
            return replace(*a, **kw)
        torch.save, os.replace = patched_save, patched_replace
    train(cfg)
    """
)

_RNG = random.Random(14)
KILL_POINTS = [
    ("step", _RNG.randrange(3, STEPS)),
    ("save", _RNG.randrange(2, 12)),
    ("save", _RNG.randrange(12, 40)),
]


@pytest.mark.parametrize(("mode", "k"), KILL_POINTS, ids=[f"{m}{k}" for m, k in KILL_POINTS])
def test_sigkill_then_resume_is_exact_and_leaves_no_tmp(world, mode, k) -> None:
    name = f"killed_{mode}{k}"
    cfg = _cfg(world, name)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, json.dumps(cfg), mode, str(k)], cwd=ROOT, env=env, capture_output=True
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    out = world / name
    assert not (out / "final").exists()

    assert (out / "ckpt" / "trainer.pt").is_file()  # every kill point lies after the first checkpoint
    if mode == "save":  # killed inside a checkpoint save: its half-written folder is there
        assert [p.name for p in out.glob(".ckpt.*.tmp")]
    result = train(cfg)
    assert result.steps == STEPS and result.resumed_from_step >= 2
    a, b = final_state(world / "straight"), final_state(out)
    assert a.keys() == b.keys() and all(torch.equal(a[x], b[x]) for x in a)
    leftovers = [p for p in out.rglob(".*") if p.name.endswith(".tmp") or ".old-" in p.name]
    assert leftovers == []
