"""rho.study: params.yaml -> run specs and training configs; bad parameters are refused."""

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
        assert study.world_dir == ROOT / "data" / profile
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
    assert (cfg.score_kind, cfg.ratio, cfg.score_kind2, cfg.ratio2, cfg.combine_op) == (
        "ref_loss", 0.7, "ref_entropy", 0.7, "intersection")
    assert cfg.scores == str(ROOT / "scores" / "smoke" / "self_owm")
    assert cfg.model == str(ROOT / "runs" / "smoke" / "base" / "final")
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


def test_paper_profile_continues_the_released_model():
    study = Study.load(ROOT / "params.yaml", profile="paper")
    assert study.final_model("base") == "TinyLlama/TinyLlama_v1.1"
    with pytest.raises(StudyError, match="released base model"):
        study.train_config("base")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.update(profile="huge"), "unknown profile 'huge'"),
        (lambda p: p["slm_runs"]["math_slm"].update(ratio=0.5), "unknown fields"),
        (lambda p: p["slm_runs"]["math_slm"].update(scorer="rm_nowhere"), "not in params.yaml `scorers`"),
        (lambda p: p["clm_runs"]["math_clm"].update(corpus="web"), "corpus must be"),
        (lambda p: p["clm_runs"].update(reference={"part": "x", "corpus": "owm", "base": "base"}), "reserved"),
        (lambda p: p.pop("scorers"), "lacks the `scorers` section"),
        (lambda p: p["profiles"]["mini"].pop("lr"), "needs `lr:"),
        (lambda p: p["profiles"]["mini"]["lr"].update(cpt=3.0), r"must be in \(0, 1\)"),
    ],
)
def test_bad_parameters_are_refused_with_the_fix(tmp_path, edit, message):
    params = _params()
    edit(params)
    with pytest.raises(StudyError, match=message):
        Study.load(_write(tmp_path, params))


def test_unknown_run_names_the_known_ones():
    study = Study.load(ROOT / "params.yaml", profile="smoke")
    with pytest.raises(StudyError, match="math_clm"):
        study.run_spec("nope")


def test_selection_scope_carry_only_where_gradients_accumulate():
    for profile in ("smoke", "mini", "gpu", "paper"):
        study = Study.load(ROOT / "params.yaml", profile=profile)
        want = "carry" if int(study.sizes["grad_accum"]) > 1 else "global"
        assert study.train_config("math_slm").selection_scope == want, profile
    paper = Study.load(ROOT / "params.yaml", profile="paper")
    combined = [r for r in paper.run_names if "score2" in paper.run_spec(r)]
    assert combined and all(paper.train_config(r).selection_scope == "global" for r in combined)
