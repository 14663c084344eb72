"""rho.study: params.yaml -> run specs and training configs; bad parameters are refused."""

import os
from pathlib import Path

import pytest
import yaml

from rho.study import Study, StudyError

ROOT = Path(__file__).resolve().parents[1]


def _params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _write(tmp_path: Path, params: dict) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    return p


def test_repo_params_resolve_for_every_profile():
    for profile in ("smoke", "mini", "gpu", "paper"):
        study = Study.load(ROOT / "params.yaml", profile=profile)
        assert study.profile == profile
        assert study.world_dir.resolve() == ROOT / "data" / profile
        assert len(study.run_names) == len(set(study.run_names)) >= 10


def test_slm_runs_take_method_defaults_and_variants_their_own():
    params = _params()
    params["slm"]["ratio"] = 0.55
    study = Study(params=params, root=ROOT)
    study.validate()
    assert study.run_spec("math_slm")["ratio"] == 0.55
    assert study.run_spec("math_slm")["objective"] == "slm"
    assert study.run_spec("ratio_80")["ratio"] == 0.8
    assert study.run_spec("math_clm")["objective"] == "clm"
    assert "math_slm_70" in study.runs_of("math_cpt")


def test_train_config_of_a_combined_self_reference_run():
    study = Study.load(ROOT / "params.yaml", profile="smoke")
    cfg = study.train_config("self_inter")
    assert cfg.objective == "slm"
    sel = cfg.selection
    assert (sel.score, sel.ratio, sel.score2, sel.ratio2, sel.op) == (
        "ref_loss",
        0.7,
        "ref_entropy",
        0.7,
        "intersection",
    )
    assert sel == study.selection("self_inter")
    assert Path(cfg.scores).resolve() == ROOT / "scores" / "smoke" / "self_owm"
    assert Path(cfg.model).resolve() == ROOT / "runs" / "smoke" / "base" / "final"
    assert cfg.max_tokens == study.sizes["cpt_tokens"]
    assert cfg.snapshot_every_tokens == study.sizes["cpt_tokens"] // study.sizes["snapshots"]
    clm = study.train_config("math_clm")
    assert clm.objective == "clm" and clm.scores is None


def test_learning_rates_come_from_the_profile():
    paper = Study.load(ROOT / "params.yaml", profile="paper")
    assert paper.learning_rates == {"base": None, "cpt": 8e-5, "reference": 5e-5}  # the paper's, Sec. 3.1
    assert paper.train_config("math_slm").lr == 8e-5
    mini = Study.load(ROOT / "params.yaml", profile="mini")
    rates = mini.learning_rates
    base, ref = mini.train_config("base"), mini.train_config("math_clm")
    assert base.lr == rates["base"] and ref.lr == rates["cpt"]
    assert ref.min_lr == pytest.approx(rates["cpt"] * mini.params["cpt"]["min_lr_ratio"])


def test_base_large_pretrains_on_its_own_token_budget():
    params = _params()
    params["profiles"]["mini"].pop("large_base_tokens", None)  # default: the base's budget
    z = Study(params=params, root=ROOT).sizes
    assert Study(params=params, root=ROOT).train_config("base_large").max_tokens == z["base_tokens"]
    params["profiles"]["mini"]["large_base_tokens"] = z["base_tokens"] // 2
    mini = Study(params=params, root=ROOT)
    assert mini.train_config("base").max_tokens == z["base_tokens"]
    assert mini.train_config("base_large").max_tokens == z["base_tokens"] // 2
    assert mini.train_config("base_large").model == z["large_model"]
    params["profiles"]["mini"]["large_base_tokens"] = 0  # 0: the released large model, not trained
    study = Study(params=params, root=ROOT)
    assert study.final_model("base_large") == z["large_model"]
    with pytest.raises(StudyError, match="released base model"):
        study.train_config("base_large")


def test_paper_profile_continues_the_released_model():
    study = Study.load(ROOT / "params.yaml", profile="paper")
    assert study.final_model("base") == "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"
    with pytest.raises(StudyError, match="released base model"):
        study.train_config("base")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.update(profile="huge"), "unknown profile 'huge'"),
        (lambda p: p["slm_runs"]["math_slm"].update(ratio=0.5), r"unknown key `slm_runs\.math_slm\.ratio`"),
        (lambda p: p["slm_runs"]["math_slm"].update(scorer="rm_nowhere"), "not in params.yaml `scorers`"),
        (
            lambda p: p["clm_runs"]["math_clm"].update(corpus="web"),
            r"`clm_runs\.math_clm\.corpus` must be one of owm",
        ),
        (
            lambda p: p["clm_runs"].update(reference={"part": "x", "corpus": "owm", "base": "base"}),
            "reserved",
        ),
        (lambda p: p.pop("scorers"), "`scorers` is missing"),
        (lambda p: p["profiles"]["mini"].pop("lr"), r"`profiles\.mini\.lr` is missing"),
        (
            lambda p: p["profiles"]["mini"]["lr"].update(cpt=3.0),
            r"`profiles\.mini\.lr\.cpt` must be a number > 0 and < 1",
        ),
        # issue 14: typos and bad values anywhere in the file, named with the nearest valid key
        (
            lambda p: p["profiles"]["mini"].update(eval_limt=4),
            r"`profiles\.mini\.eval_limt`; did you mean `eval_limit`",
        ),
        (lambda p: p["slm"].update(ratoi=0.5), r"`slm\.ratoi`; did you mean `ratio`"),
        (lambda p: p["cpt"].update(weight_decy=0.1), r"`cpt\.weight_decy`; did you mean `weight_decay`"),
        (lambda p: p.update(sead=1), r"unknown key `sead`; did you mean `seed`"),
        (lambda p: p["slm"].update(ratio=1.5), r"`slm\.ratio` must be a number > 0 and <= 1, got 1\.5"),
        (lambda p: p["slm"].update(score="exces"), r"`slm\.score` must be one of excess"),
        (lambda p: p["profiles"]["gpu"].pop("block_size"), r"`profiles\.gpu\.block_size` is missing"),
        (
            lambda p: p["profiles"]["paper"].update(checkpoints=0),
            r"`profiles\.paper\.checkpoints` must be an integer >= 1, got 0",
        ),
        (
            lambda p: p["profiles"]["smoke"].update(block_size="64"),
            r"`profiles\.smoke\.block_size` must be an integer",
        ),
        (
            lambda p: p["profiles"]["smoke"].update(eval_limit=True),
            r"`profiles\.smoke\.eval_limit` must be an integer",
        ),
        (
            lambda p: p["reference"].update(epochs=2.5),
            r"`reference\.epochs` must be an integer >= 1, got 2\.5",
        ),
        (lambda p: p["profiles"].update({"../x": p["profiles"]["mini"]}), r"names must be letters"),
        (
            lambda p: p["clm_runs"].update({"a/b": p["clm_runs"]["math_clm"]}),
            r"`clm_runs\.a/b`: names must be",
        ),
        (lambda p: p["slm_variants"]["self_inter"].pop("ratio2"), "set `score2` and `ratio2` together"),
        (lambda p: p.update(slm=[0.6]), r"`slm` must be a mapping"),
    ],
)
def test_bad_parameters_are_refused_with_the_fix(tmp_path, edit, message):
    params = _params()
    edit(params)
    with pytest.raises(StudyError, match=message):
        Study.load(_write(tmp_path, params))


def test_every_profile_is_checked_not_only_the_active_one(tmp_path):
    params = _params()
    params["profiles"]["paper"]["max_new_tokns"] = 512
    with pytest.raises(StudyError, match=r"profiles\.paper\.max_new_tokns.*`max_new_tokens`"):
        Study.load(_write(tmp_path, params), profile="smoke")


def test_optional_keys_may_be_left_out(tmp_path):
    params = _params()
    for key in ("snapshots", "checkpoints", "launcher", "eval_limit", "base_tokens", "dynamics_blocks"):
        params["profiles"]["smoke"].pop(key)
    params.pop("seed")
    params["slm"].pop("scope")
    study = Study.load(_write(tmp_path, params), profile="smoke")
    assert study.seed == 0 and study.sizes.get("eval_limit") is None


def test_unknown_run_names_the_known_ones():
    study = Study.load(ROOT / "params.yaml", profile="smoke")
    with pytest.raises(StudyError, match="math_clm"):
        study.run_spec("nope")


def test_paths_are_relative_inside_the_repository(monkeypatch, tmp_path) -> None:
    """Run from the repository root, a study's paths are relative: what runs record (configs, logs)
    is the same in every clone; from elsewhere they stay absolute."""
    monkeypatch.chdir(ROOT)
    study = Study.load("params.yaml", profile="smoke")
    assert study.root == Path(".") and study.run_dir("base") == Path("runs/smoke/base")
    assert study.train_config("math_slm").out_dir == "runs/smoke/math_slm"
    monkeypatch.chdir(tmp_path)
    assert Study.load(ROOT / "params.yaml", profile="smoke").root == ROOT


def test_num_threads_pins_torch_threads(monkeypatch) -> None:
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    try:
        Study.load(ROOT / "params.yaml", profile="mini")
        assert torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "2"
    finally:
        torch.set_num_threads(before)


def test_selection_scope_carry_only_where_gradients_accumulate():
    for profile in ("smoke", "mini", "gpu", "paper"):
        study = Study.load(ROOT / "params.yaml", profile=profile)
        want = "carry" if int(study.sizes["grad_accum"]) > 1 else "global"
        assert study.train_config("math_slm").selection.scope == want, profile
    paper = Study.load(ROOT / "params.yaml", profile="paper")
    combined = [r for r in paper.run_names if "score2" in paper.run_spec(r)]
    assert combined and all(paper.train_config(r).selection.scope == "global" for r in combined)
