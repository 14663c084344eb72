"""One selection config (rho.selection.SelectionConfig), the random-selection control and per-run seeds.

- ``score: random`` keeps exactly top-k's count, uniformly at random, from the run's seed and the
  step, with no reference scores; a tiny run trains end to end with it.
- The refactor into ``SelectionConfig`` leaves every existing setting's masks unchanged (hashes
  recorded with the code before it, on fixed inputs).
- A run's own ``seed`` (params.yaml) sets its data order; the model it continues is the same.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import yaml
from _helpers_train import base_config, make_shard, make_tokenizer

from rho.selection import (
    SCORE_KINDS,
    SelectionConfig,
    SelectionError,
    keep_count,
    random_scores,
    topk_mask,
)
from rho.train.batches import Batch
from rho.train.distributed import DistContext
from rho.train.objective import Objective, StepSelector

CTX = DistContext()
ROOT = Path(__file__).resolve().parents[1]


def _fixed_inputs() -> tuple[list[Batch], list[torch.Tensor]]:
    """Three micro-batches [2, 16] with unlabeled tokens, a NaN reference loss, and train losses."""
    g = torch.Generator().manual_seed(1234)
    batches, losses = [], []
    for _ in range(3):
        ids = torch.randint(0, 50, (2, 16), generator=g)
        labels = torch.randint(0, 50, (2, 16), generator=g)
        labels[:, -1] = -100
        labels[0, 3] = -100
        ref = torch.rand(2, 16, generator=g) * 3
        ref[1, 5] = float("nan")
        ent = torch.rand(2, 16, generator=g) * 2
        batches.append(Batch(ids, labels, ref_loss=ref, ref_entropy=ent))
        losses.append(torch.rand(2, 16, generator=g) * 4)
    return batches, losses


def _digest(obj: Objective) -> str:
    batches, losses = _fixed_inputs()
    sel = StepSelector(obj, batches, CTX)
    if sel.needs_scoring_pass:
        sel.prepare(losses)
    h = hashlib.sha256()
    for m in range(len(batches)):
        w, d = sel.weights(m, losses[m])
        h.update(w.float().numpy().tobytes())
        h.update(repr(round(d, 10)).encode())
    return h.hexdigest()[:16]


#: (objective, selection knobs) -> sha256[:16] of the step's weights and denominators, recorded with
#: the code before SelectionConfig (``Objective(kind, ratio=..., score_kind=..., combine_op=...)``).
BEFORE = {
    ("slm", (("ratio", 0.4), ("scope", "global"))): "60c0f50a08892b58",
    ("slm", (("ratio", 0.4), ("scope", "micro"))): "c77ddcacc833b3f2",
    ("slm", (("ratio", 0.3), ("scope", "dp"))): "a7611f6553ce01fd",
    ("slm", (("ratio", 0.5), ("scope", "carry"))): "627e5c2f8fec3c6c",
    ("slm", (("ratio", 0.6), ("score", "ref_loss"))): "0afc1fbc47e09c15",
    ("slm", (("ratio", 0.7), ("score", "ref_entropy"), ("scope", "micro"))): "1fb548e155b25ba4",
    (
        "slm",
        (
            ("ratio", 0.7),
            ("score", "ref_loss"),
            ("score2", "ref_entropy"),
            ("ratio2", 0.6),
            ("op", "intersection"),
        ),
    ): "285304643a22bdc8",
    (
        "slm",
        (("ratio", 0.6), ("score", "ref_loss"), ("score2", "ref_entropy"), ("ratio2", 0.6), ("op", "union")),
    ): "a6d31bc099547e84",
    ("reweight", (("temperature", 0.5),)): "414c9bb68b51df6e",
    ("reweight", (("temperature", 2.0), ("scope", "dp"))): "6895105a659a4cb2",
    ("clm", ()): "aac198e327f9df17",
}


@pytest.mark.parametrize(
    ("key", "want"), list(BEFORE.items()), ids=[f"{k[0]}-{i}" for i, k in enumerate(BEFORE)]
)
def test_existing_settings_select_the_same_tokens_as_before_the_refactor(key, want) -> None:
    objective, knobs = key
    assert _digest(Objective(objective, SelectionConfig(**dict(knobs)))) == want


def test_selection_config_is_the_one_validator_of_the_knobs() -> None:
    assert SCORE_KINDS == ("excess", "ref_loss", "ref_entropy", "random")
    cfg = SelectionConfig.from_dict({"ratio": 0.7, "score": "random"}, scope="micro")
    assert (cfg.ratio, cfg.score, cfg.scope, cfg.op) == (0.7, "random", "micro", "intersection")
    assert not cfg.needs_reference() and SelectionConfig().needs_reference()
    assert not cfg.needs_reference("clm")
    for bad, msg in [
        ({"ratio": 0}, r"ratio must be in \(0, 1\]"),
        ({"ratio": "0.6"}, r"ratio must be in \(0, 1\]"),
        ({"score": "loss"}, "score must be one of excess, ref_loss, ref_entropy, random"),
        ({"score2": "ref_entropy"}, "ratio2 is not"),
        ({"op": "xor"}, "op must be one of intersection, union"),
        ({"scope": "dp", "score2": "ref_loss", "ratio2": 0.5}, "ranks one score"),
        ({"temperature": 0}, "temperature must be a positive"),
        ({"ratoi": 0.5}, "unknown selection knob.*ratoi"),
    ]:
        with pytest.raises(SelectionError, match=msg):
            SelectionConfig.from_dict(bad)


def test_random_scores_depend_on_seed_and_step_only() -> None:
    a = random_scores(0, 5, 1000)
    assert torch.equal(a, random_scores(0, 5, 1000))
    assert sorted(a.tolist()) == list(range(1000))  # a permutation: no ties
    assert not torch.equal(a, random_scores(0, 6, 1000))
    assert not torch.equal(a, random_scores(1, 5, 1000))


def _random_masks(ratio: float, scope: str, step: int, seed: int, refs: bool = False) -> torch.Tensor:
    batches, losses = _fixed_inputs()
    if not refs:  # the random control reads no reference scores
        batches = [Batch(b.input_ids, b.labels) for b in batches]
    obj = Objective("slm", SelectionConfig(ratio=ratio, score="random", scope=scope))
    sel = StepSelector(obj, batches, CTX, step=step, seed=seed)
    assert not sel.needs_scoring_pass
    return torch.stack([sel.weights(m, losses[m])[0] for m in range(3)]).bool()


@pytest.mark.parametrize("scope", ["global", "micro", "dp"])
@pytest.mark.parametrize("ratio", [0.3, 0.6, 0.9])
def test_random_keeps_exactly_the_topk_count_per_scope(scope, ratio) -> None:
    batches, losses = _fixed_inputs()
    masks = _random_masks(ratio, scope, step=3, seed=7)
    # top-k by excess loss over the same valid tokens (finite reference everywhere)
    dense = [Batch(b.input_ids, b.labels, torch.nan_to_num(b.ref_loss)) for b in batches]
    sel = StepSelector(Objective("slm", SelectionConfig(ratio=ratio, scope=scope)), dense, CTX)
    if sel.needs_scoring_pass:
        sel.prepare(losses)
    topk = torch.stack([sel.weights(m, losses[m])[0] for m in range(3)]).bool()
    labelled = torch.stack([b.labels != -100 for b in batches])
    if scope == "global":  # one top-k over the optimizer batch: the same total
        assert int(masks.sum()) == int(topk.sum()) == keep_count(int(labelled.sum()), ratio)
    else:  # one top-k per micro-step: the same count in each
        want = [keep_count(int(v.sum()), ratio) for v in labelled]
        assert [int(m.sum()) for m in masks] == [int(m.sum()) for m in topk] == want
    assert not (masks & ~labelled).any()  # never an unlabeled token
    assert not torch.equal(masks, topk)


def test_random_global_mask_is_the_topk_of_the_step_noise() -> None:
    batches, _ = _fixed_inputs()
    labelled = torch.stack([b.labels != -100 for b in batches])
    want = topk_mask(random_scores(7, 3, labelled.numel()).view(labelled.shape), 0.6, labelled)
    assert torch.equal(_random_masks(0.6, "global", step=3, seed=7), want)


def test_random_masks_are_reproducible_and_change_with_step_and_seed() -> None:
    base = _random_masks(0.5, "global", step=1, seed=0)
    assert torch.equal(base, _random_masks(0.5, "global", step=1, seed=0))
    assert torch.equal(base, _random_masks(0.5, "global", step=1, seed=0, refs=True))  # refs unread
    assert not torch.equal(base, _random_masks(0.5, "global", step=2, seed=0))
    assert not torch.equal(base, _random_masks(0.5, "global", step=1, seed=1))


def test_random_selection_trains_end_to_end_without_scores(tmp_path) -> None:
    from rho.train import train
    from rho.train.metrics import read_log

    tok = make_tokenizer(tmp_path / "tok")
    make_shard(tmp_path / "shard", tok)
    cfg = base_config(tmp_path, objective="slm", selection={"score": "random", "ratio": 0.6}, max_steps=2)
    res = train(cfg)
    log = read_log(tmp_path / "run" / "log.jsonl")
    assert res.steps == 2 and len(log) == 2
    for r in log:  # 4 blocks of 15 labelled tokens: 36 kept, as top-k would
        assert r["n_valid"] == 60 and r["n_selected"] == keep_count(60, 0.6) == 36
    again = train(
        base_config(
            tmp_path,
            objective="slm",
            selection={"score": "random", "ratio": 0.6},
            max_steps=2,
            out_dir=str(tmp_path / "again"),
        )
    )
    assert again.last_record["loss"] == res.last_record["loss"]  # same seed: the same masks and update
    other = train(
        base_config(
            tmp_path,
            objective="slm",
            selection={"score": "random", "ratio": 0.6},
            max_steps=2,
            out_dir=str(tmp_path / "other"),
            seed=1,
        )
    )
    assert other.last_record["loss"] != res.last_record["loss"]


# ---------------------------------------------------------------- params.yaml: random_runs, per-run seed
def _study(tmp_path: Path, edit) -> object:
    from rho.study import Study

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(params)
    groups = ("clm_runs", "slm_runs", "slm_variants", "random_runs")
    params["eval_runs"] = ["base", "reference", *(r for g in groups for r in params.get(g) or {})]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return Study.load(path, profile="smoke")


def test_a_random_run_needs_no_scorer_and_uses_its_own_seed(tmp_path) -> None:
    from rho.study import StudyError

    def add(p):
        p["random_runs"] = {
            "math_random": {"part": "math_cpt", "corpus": "owm", "base": "base", "ratio": 0.6}
        }
        p["slm_variants"]["math_random_s3"] = {
            "part": "math_cpt",
            "corpus": "owm",
            "base": "base",
            "scorer": "rm_owm",
            "score": "random",
            "ratio": 0.6,
            "seed": 3,
        }

    study = _study(tmp_path, add)
    cfg = study.train_config("math_random")
    assert cfg.objective == "slm" and cfg.scores is None
    assert cfg.selection == SelectionConfig(ratio=0.6, score="random")
    assert cfg.seed == study.seed == 0
    variant = study.train_config("math_random_s3")
    assert variant.seed == 3 and variant.selection == cfg.selection
    assert variant.model == cfg.model == study.train_config("math_clm").model  # the same starting model
    assert "math_random" in study.runs_of("math_cpt")
    with pytest.raises(StudyError, match=r"unknown key `random_runs\.x\.scorer`"):
        _study(
            tmp_path,
            lambda p: p.update(
                random_runs={"x": {**p["clm_runs"]["math_clm"], "ratio": 0.5, "scorer": "rm_owm"}}
            ),
        )
    with pytest.raises(StudyError, match=r"`random_runs\.x\.score` must be one of random"):
        _study(
            tmp_path,
            lambda p: p.update(
                random_runs={"x": {**p["clm_runs"]["math_clm"], "ratio": 0.5, "score": "excess"}}
            ),
        )
    with pytest.raises(StudyError, match=r"`random_runs\.x\.ratio` must be a number > 0 and <= 1"):
        _study(tmp_path, lambda p: p.update(random_runs={"x": {**p["clm_runs"]["math_clm"], "ratio": 1.5}}))


def test_a_run_seed_changes_its_batch_order_and_nothing_else(tmp_path) -> None:
    from rho.train.batches import BatchLoader

    def seeds(p):
        run = p["clm_runs"]["math_clm"]
        p["clm_runs"].update(s1={**run, "seed": 1}, s1_again={**run, "seed": 1}, s2={**run, "seed": 2})

    study = _study(tmp_path, seeds)
    tok = make_tokenizer(tmp_path / "tok")
    shard = make_shard(tmp_path / "shard", tok, n_docs=60)
    cfgs = {r: study.train_config(r) for r in ("math_clm", "s1", "s1_again", "s2")}
    assert [c.seed for c in cfgs.values()] == [0, 1, 1, 2]
    plain = {k: v for k, v in cfgs["s1"].to_dict().items() if k not in ("seed", "out_dir")}
    assert plain == {k: v for k, v in cfgs["s2"].to_dict().items() if k not in ("seed", "out_dir")}

    def order(run):
        loader = BatchLoader(shard, 16, 4, 1, seed=cfgs[run].seed)
        return [loader.global_blocks(s).tolist() for s in range(3)]

    assert order("s1") == order("s1_again")
    assert order("s1") != order("s2") and order("s1") != order("math_clm")


def test_snapshots_lists_model_snapshots_and_the_old_name_warns(tmp_path) -> None:
    import json

    from rho.study import stages

    study = _study(tmp_path, lambda p: None)
    run_dir = study.run_dir("math_clm")
    for tokens in (0, 4096):
        (run_dir / "snapshots" / f"tokens_{tokens}").mkdir(parents=True)
    (run_dir / "log.jsonl").write_text(json.dumps({"step": 2, "tokens": 8192}) + "\n")
    want = [(0, run_dir / "snapshots" / "tokens_0"), (4096, run_dir / "snapshots" / "tokens_4096")]
    want.append((8192, run_dir / "final"))
    assert stages.snapshots(study, "math_clm") == want
    with pytest.warns(DeprecationWarning, match="snapshots"):
        assert stages.checkpoints(study, "math_clm") == want


#: Parameters of the README's public selection/loss/training functions before SelectionConfig: they
#: stay a prefix of today's (new parameters only appended, with defaults).
API_BEFORE = {
    "rho.loss.token_loss": ["logits", "labels", "ignore_index", "chunk_size"],
    "rho.loss.clm_loss": ["logits", "labels", "ignore_index", "chunk_size"],
    "rho.loss.slm_loss": [
        "logits", "labels", "ref_loss", "ratio", "score_kind", "ref_entropy", "ignore_index", "chunk_size", "denom"
    ],
    "rho.loss.reweighted_loss": ["logits", "labels", "ref_loss", "temperature", "ignore_index", "chunk_size"],
    "rho.selection.score": ["kind", "train_loss", "ref_loss", "ref_entropy"],
    "rho.selection.topk_mask": ["scores", "ratio", "valid"],
    "rho.selection.select_combined": ["scores_a", "ratio_a", "scores_b", "ratio_b", "op", "valid"],
    "rho.selection.select_global": ["parts", "ratio", "valids"],
    "rho.dynamics.classify_tokens": ["losses", "threshold"],
    "rho.train.train": ["config"],
}  # fmt: skip


def test_readme_public_api_names_import_with_their_signatures() -> None:
    import importlib
    import inspect
    import re

    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Public API", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    imports = re.findall(r"^from (\S+) import (.+)$", block, flags=re.M)
    assert len(imports) >= 6
    for module, names in imports:
        mod = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",")):
            obj = getattr(mod, name)
            key = f"{module}.{name}"
            if key in API_BEFORE:
                params = list(inspect.signature(obj).parameters.values())
                assert [p.name for p in params[: len(API_BEFORE[key])]] == API_BEFORE[key], key
                assert all(
                    p.default is not inspect.Parameter.empty for p in params[len(API_BEFORE[key]) :]
                ), key
    assert set(API_BEFORE) <= {f"{m}.{n.strip()}" for m, ns in imports for n in ns.split(",")}


def test_two_ranks_random_selection_equals_one_process(tmp_path) -> None:
    import torch.multiprocessing as mp
    from _helpers_train import ddp_worker, final_state, free_port

    from rho.train import train
    from rho.train.metrics import read_log

    make_shard(tmp_path / "shard", make_tokenizer(tmp_path / "tok"))
    common = dict(objective="slm", selection={"score": "random", "ratio": 0.6}, max_steps=3, device="cpu")
    dist = base_config(tmp_path, **common, micro_batch_size=1, grad_accum=2, out_dir=str(tmp_path / "dist"))
    mp.spawn(ddp_worker, args=(2, free_port(), dist, str(tmp_path)), nprocs=2, join=True)
    train(base_config(tmp_path, **common, micro_batch_size=4, out_dir=str(tmp_path / "one")))

    # step 0: the ranks' micro-batch masks, in rank then micro order, are one top-k of the step's noise
    masks = torch.cat([torch.cat(torch.load(tmp_path / f"rank{r}.pt")) for r in range(2)]).bool()
    labels = torch.cat([torch.full((4, 15), True), torch.full((4, 1), False)], 1)
    assert torch.equal(masks, topk_mask(random_scores(0, 0, 64).view(4, 16), 0.6, labels))
    assert int(masks.sum()) == keep_count(60, 0.6) == 36
    ld, lo = read_log(tmp_path / "dist" / "log.jsonl"), read_log(tmp_path / "one" / "log.jsonl")
    assert [r["label_counts"] for r in ld] == [r["label_counts"] for r in lo]
    a, b = final_state(tmp_path / "dist"), final_state(tmp_path / "one")
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5)
