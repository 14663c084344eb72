"""rho.models: presets, local folders, hub names, vocabulary checks."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from rho.models import (
    PRESETS,
    ModelError,
    build_model,
    check_vocab,
    count_parameters,
    model_vocab_size,
    preset_config,
    resolve_spec,
)


def _llama_params(v: int, h: int, inter: int, n_layers: int, tied: bool) -> int:
    """Parameter count of a Llama: embeddings, per-layer attention + MLP + 2 norms, final norm."""
    per_layer = 4 * h * h + 3 * h * inter + 2 * h
    return v * h * (1 if tied else 2) + n_layers * per_layer + h


def _meta_params(name: str, vocab: int) -> int:
    with torch.device("meta"):
        return count_parameters(AutoModelForCausalLM.from_config(preset_config(name, vocab)))


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameter_count_matches_llama_formula(name: str) -> None:
    p = PRESETS[name]
    want = _llama_params(
        1000, p["hidden_size"], p["intermediate_size"], p["num_hidden_layers"], p["tie_word_embeddings"]
    )
    assert _meta_params(name, 1000) == want


def test_preset_sizes_fit_their_purpose() -> None:
    assert 30_000 <= _meta_params("llama-smoke", 320) <= 80_000  # ~50k for a few-hundred vocab
    mini = [_meta_params(n, 4096) for n in ("llama-mini-xs", "llama-mini", "llama-mini-l")]
    assert mini == sorted(mini) and mini[0] >= 0.5e6 and mini[1] <= 5e6  # CPU family, strong one larger
    assert 70e6 <= _meta_params("llama-100m", 32000) <= 130e6
    assert (
        250e6 <= _meta_params("llama-300m", 32000) <= 400e6
    )  # the gpu profile's larger (weak-to-strong) model


def test_build_preset_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("llama-smoke", vocab_size=64, seed=1)
    after = torch.rand(1)
    b = build_model("llama-smoke", vocab_size=64, seed=1)
    c = build_model("llama-smoke", vocab_size=64, seed=2)
    assert torch.equal(before, after)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.embed_tokens.weight"], sc["model.embed_tokens.weight"])
    assert model_vocab_size(a) == 64 and a.training


def test_build_from_local_folder_round_trips(tmp_path) -> None:
    m = build_model("llama-smoke", vocab_size=50, seed=0)
    m.save_pretrained(tmp_path / "m")
    loaded = build_model(tmp_path / "m", vocab_size=50)
    assert resolve_spec(tmp_path / "m") == ("path", str(tmp_path / "m"))
    sd, sl = m.state_dict(), loaded.state_dict()
    assert sd.keys() == sl.keys() and all(torch.equal(sd[k], sl[k]) for k in sd)
    x = torch.randint(0, 50, (2, 7))
    m.eval(), loaded.eval()
    assert torch.equal(m(x).logits, loaded(x).logits)


def test_resolve_spec_kinds_and_errors(tmp_path) -> None:
    assert resolve_spec("llama-mini") == ("preset", "llama-mini")
    assert resolve_spec("TinyLlama/TinyLlama_v1.1") == ("hub", "TinyLlama/TinyLlama_v1.1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_spec(tmp_path / "empty")
    with pytest.raises(ModelError, match="not a preset"):
        resolve_spec("llama-huge")
    with pytest.raises(ModelError, match="not a preset"):
        resolve_spec(str(tmp_path / "missing" / "deeper" / "x"))
    with pytest.raises(ModelError, match="needs vocab_size"):
        build_model("llama-smoke")
    with pytest.raises(ModelError, match="unknown preset"):
        preset_config("nope", 10)


def test_vocabulary_mismatch_is_refused() -> None:
    m = build_model("llama-smoke", vocab_size=40, seed=0)
    check_vocab(m, 40)
    check_vocab(m, 32)  # a padded embedding covers a smaller vocabulary
    with pytest.raises(ModelError, match="vocabulary mismatch: the model has 40 embeddings .* 41"):
        check_vocab(m, 41)
