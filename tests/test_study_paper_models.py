"""The paper's models and settings in params.yaml: ``paper`` (1.1B, weak-to-strong) and ``paper_7b``."""

import shlex
from pathlib import Path

import pytest
import yaml

from rho.data.worlds import WORLDS
from rho.study import Study, StudyError

ROOT = Path(__file__).resolve().parents[1]
TINYLLAMA = "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"
MISTRAL = "mistralai/Mistral-7B-v0.1"


def _gpus(study: Study) -> int:
    cmd = shlex.split(study.sizes["launcher"])
    return int(cmd[cmd.index("--nproc_per_node") + 1])


def _batch_tokens(study: Study) -> int:
    z = study.sizes
    return _gpus(study) * z["micro_batch_size"] * z["grad_accum"] * z["block_size"]


def test_paper_continues_the_papers_tinyllama_at_60_percent():
    study = Study.load(ROOT / "params.yaml", profile="paper")
    assert study.final_model("base") == TINYLLAMA and WORLDS["paper"].tokenizer == TINYLLAMA
    assert study.sizes["block_size"] == 2048 and _batch_tokens(study) == 2**20  # 1M tokens per step
    slm = study.train_config("math_slm")
    assert (slm.model, slm.selection.ratio, slm.lr, slm.max_tokens) == (TINYLLAMA, 0.6, 8e-5, 15_000_000_000)
    assert study.train_config("math_clm").objective == "clm"
    assert study.learning_rates["reference"] == 5e-5


def test_paper_weak_to_strong_is_llama2_7b_scored_by_the_1b_reference():
    study = Study.load(ROOT / "params.yaml", profile="paper")
    w2s = study.train_config("w2s_slm")
    assert w2s.model == "meta-llama/Llama-2-7b-hf" and w2s.scores == str(study.scores_dir("rm_owm"))
    assert study.scorer_model("rm_owm") == str(study.run_dir("reference") / "final")
    assert study.params["scorers"]["rm_owm"]["model"] == "reference"  # trained from the 1.1B base


def test_paper_7b_is_tables_1_mistral_rows():
    study = Study.load(ROOT / "params.yaml", profile="paper_7b")
    assert study.final_model("base") == MISTRAL and study.world_dir.resolve() == ROOT / "data" / "paper_7b"
    clm, slm = study.train_config("math_clm"), study.train_config("math_slm_70")
    assert clm.objective == "clm" and (slm.objective, slm.selection.ratio, slm.selection.score) == (
        "slm",
        0.7,
        "excess",
    )
    for cfg in (clm, slm):
        assert cfg.model == MISTRAL and cfg.lr == 2e-5 and cfg.max_tokens == 15_000_000_000
        assert (
            cfg.block_size == 4096
            and cfg.parallel == "fsdp"
            and cfg.train_shard.endswith("paper_7b/shards/owm")
        )
    assert _batch_tokens(study) == 2**20
    assert study.learning_rates == {"base": None, "cpt": 2e-5, "reference": 1e-5}
    assert slm.scores == str(study.scores_dir("rm_owm"))  # scored by the 7B reference (Mistral on `ref`)
    data = WORLDS["paper_7b"]
    assert (
        data.tokenizer == MISTRAL and data.block_size == 4096 and data.hub_shards == ("owm_val", "owm", "ref")
    )
    with pytest.raises(StudyError, match="no large_model"):
        study.final_model("base_large")


def test_other_profiles_keep_ddp_and_their_models():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name in ("smoke", "mini", "gpu"):
        assert "parallel" not in params["profiles"][name]
        assert Study.load(ROOT / "params.yaml", profile=name).train_config("math_clm").parallel == "ddp"
    # the paper profile shards its runs (FSDP): w2s's Llama-2-7B does not fit one GPU under DDP
    assert Study.load(ROOT / "params.yaml", profile="paper").train_config("w2s_clm").parallel == "fsdp"
    assert params["profiles"]["mini"]["model"] == "llama-mini-xs"
