"""rho.train.config (TrainConfig, YAML, CLI overrides) and rho.train.schedule."""

from __future__ import annotations

import math

import pytest

from rho.selection import SelectionConfig
from rho.train.config import ConfigError, TrainConfig, parse_overrides
from rho.train.schedule import lr_at

BASE = dict(model="llama-smoke", train_shard="s", out_dir="o", max_steps=10)


def test_round_trip_through_dict_and_yaml(tmp_path) -> None:
    cfg = TrainConfig(**BASE, objective="slm", scores="sc", selection={"ratio": 0.7}, betas=[0.9, 0.99])
    assert cfg.selection == SelectionConfig(ratio=0.7)
    assert cfg.betas == (0.9, 0.99)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    y = tmp_path / "c.yaml"
    y.write_text(
        "model: llama-smoke\ntrain_shard: s\nout_dir: o\nmax_steps: 10\nobjective: slm\nscores: sc\n"
    )
    got = TrainConfig.from_yaml(
        y, ["selection.ratio=0.7", "betas=[0.9, 0.99]", "grad_clip=null", "resume=false"]
    )
    assert (
        got.selection.ratio == 0.7
        and got.betas == (0.9, 0.99)
        and got.grad_clip is None
        and got.resume is False
    )
    assert got.diff(cfg) == {"grad_clip": (None, 1.0)}  # resume is a run-free field


def test_parse_overrides_types() -> None:
    assert parse_overrides(["a=1", "b=0.5", "c=x/y", "d=null", "e=true", "f=[1, 2]"]) == {
        "a": 1,
        "b": 0.5,
        "c": "x/y",
        "d": None,
        "e": True,
        "f": [1, 2],
    }
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["ratio"])


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, float("nan"), "0.6", True])
def test_ratio_outside_unit_interval_is_refused(ratio) -> None:
    with pytest.raises(ConfigError, match=r"ratio must be in \(0, 1\]"):
        TrainConfig(**BASE, selection={"ratio": ratio})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(objective="slm"), "needs reference scores"),
        (dict(objective="reweight"), "needs reference scores"),
        (dict(objective="dpo"), "objective must be one of clm, slm, reweight"),
        (dict(selection=dict(score="loss")), "selection: score must be one of excess, ref_loss"),
        (dict(objective="slm", scores="s", selection=dict(score2="ref_entropy")), "ratio2 is not"),
        (dict(selection=dict(ratio2=0.5)), "score2 is not"),
        (
            dict(objective="reweight", scores="s", selection=dict(score2="ref_entropy", ratio2=0.5)),
            "only applies to objective=slm",
        ),
        (dict(objective="reweight", selection=dict(score="random")), "only applies to objective=slm"),
        (
            dict(objective="slm", scores="s", selection=dict(score2="ref_entropy", ratio2=2.0)),
            r"ratio2 must be in \(0, 1\]",
        ),
        (dict(selection=dict(ratoi=0.5)), "unknown selection knob.*ratoi"),
        (dict(max_tokens=100), "exactly one of max_tokens or max_steps"),
        (dict(block_size=1), "block_size must be an integer >= 2"),
        (dict(micro_batch_size=0), "micro_batch_size"),
        (dict(min_lr=1.0, lr=0.1), "must not exceed lr"),
        (dict(warmup_fraction=1.0), "warmup_fraction"),
        (dict(betas=(0.9, 1.0)), "betas"),
        (dict(selection=dict(scope="rank")), "scope must be one of global, micro"),
        (dict(device="tpu"), "device must be one of"),
        (dict(model=""), "model is required"),
        (dict(fused_backend="triton"), "fused_backend must be one of auto, torch, cce, liger"),
        (dict(fused_loss="keep", fused_backend="cce"), "fused_loss=keep keeps the softmax"),
    ],
)
def test_bad_fields_are_refused_with_the_fix(changes, message) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{**BASE, **changes})


def test_legacy_flat_selection_fields_are_read_into_selection_with_a_warning() -> None:
    new = TrainConfig(
        **BASE, objective="slm", scores="sc", selection=dict(ratio=0.7, score2="ref_entropy", ratio2=0.5)
    )
    flat = {
        **BASE,
        "objective": "slm",
        "scores": "sc",
        "ratio": 0.7,
        "score_kind2": "ref_entropy",
        "ratio2": 0.5,
    }
    with pytest.warns(DeprecationWarning, match="score_kind2 -> selection.score2"):
        assert TrainConfig.from_dict(flat) == new
    old_saved = {**new.to_dict(), **flat, "combine_op": "intersection", "selection_scope": "global"}
    del old_saved["selection"]
    assert new.diff(old_saved) == {}  # a checkpoint written before the rename resumes
    assert new.diff({**old_saved, "selection_scope": "micro"}) == {
        "selection": (new.selection.to_dict(), {**new.selection.to_dict(), "scope": "micro"})
    }
    with pytest.raises(ConfigError, match="both set"):
        TrainConfig.from_dict({**BASE, "ratio": 0.5, "selection": {"ratio": 0.6}})


def test_from_dict_names_unknown_and_missing_fields() -> None:
    with pytest.raises(ConfigError, match="unknown config field.*ratoi"):
        TrainConfig.from_dict({**BASE, "ratoi": 0.6})
    with pytest.raises(ConfigError, match="missing required field.*out_dir"):
        TrainConfig.from_dict({"model": "m", "train_shard": "s", "max_steps": 1})


def test_derived_geometry() -> None:
    cfg = TrainConfig(
        **{**BASE, "max_steps": None},
        max_tokens=1000,
        block_size=16,
        micro_batch_size=4,
        grad_accum=3,
        warmup_fraction=0.1,
    )
    assert cfg.blocks_per_step(2) == 24 and cfg.tokens_per_step(2) == 384
    assert cfg.total_steps(1) == math.ceil(1000 / 192) == 6
    assert cfg.total_steps(2) == 3
    assert cfg.warmup(40) == 4 and cfg.replace(warmup_steps=7).warmup(40) == 7


def test_lr_schedule_warmup_then_cosine_to_min() -> None:
    kw = dict(lr=1.0, min_lr=0.1, warmup=4, total=15)
    lrs = [lr_at(s, **kw) for s in range(15)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == 1.0 and lrs[-1] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(0.55)  # half-way through the decay: the mean of lr and min_lr
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lr_at(0, lr=1.0, min_lr=0.0, warmup=0, total=1) == 1.0
    with pytest.raises(ValueError):
        lr_at(-1, **kw)


def test_cli_overrides_set_selection_knobs_by_their_params_names() -> None:
    from rho.train.config import merge_overrides

    got = merge_overrides(
        {**BASE, "selection": {"score": "ref_loss"}},
        parse_overrides(["objective=slm", "scores=s", "selection.ratio=0.7", "selection.scope=micro"]),
    )
    cfg = TrainConfig.from_dict(got)
    assert cfg.selection == SelectionConfig(ratio=0.7, score="ref_loss", scope="micro")
    with pytest.warns(DeprecationWarning, match="selection.ratio"):
        assert merge_overrides(BASE, {"ratio": 0.5})["selection"] == {"ratio": 0.5}
    with pytest.raises(ConfigError, match="only selection.<knob> may be dotted"):
        merge_overrides(BASE, {"lr.peak": 1.0})


def test_fused_backend_default_is_left_out_of_the_saved_config_and_does_not_block_resuming() -> None:
    cfg = TrainConfig(**BASE)
    assert cfg.fused_backend == "auto" and "fused_backend" not in cfg.to_dict()
    liger = TrainConfig(**BASE, fused_backend="liger")
    assert liger.to_dict()["fused_backend"] == "liger"
    assert TrainConfig.from_dict(liger.to_dict()) == liger
    assert cfg.diff(liger) == {}  # an execution choice, like fused_loss: resuming across it is allowed


def test_fused_backend_choices_are_the_loss_backends() -> None:
    from rho.linear_backends import BACKENDS
    from rho.train.config import FUSED_BACKENDS

    assert FUSED_BACKENDS == BACKENDS
