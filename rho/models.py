"""Build or load any causal language model ``rho`` trains or scores with.

A *model spec* is one of

- a **preset** name from :data:`PRESETS` (small Llama architectures built in code, randomly
  initialised; the vocabulary size comes from the tokenizer / shard at build time),
- a **local folder** holding a Hugging Face model (``config.json`` + weights), e.g. a run's
  ``final/`` or ``snapshots/tokens_<N>/``,
- a **hub name** such as ``"TinyLlama/TinyLlama_v1.1"``, passed to ``from_pretrained`` unchanged.

Presets (parameter counts from ``python -m rho.models``; tied embeddings except the smoke one):

==================  ===================  ===========================================================
name                params               use
==================  ===================  ===========================================================
``llama-smoke``     41k (vocab 320)      seconds-long smoke runs and tests
``llama-mini-xs``   0.84M (vocab 4096)   small end of the CPU "mini" family (weak model)
``llama-mini``      1.7M (vocab 4096)    the default CPU study model (reference and trained model)
``llama-mini-l``    7.4M (vocab 4096)    the larger "strong" model of the weak-to-strong study
``llama-100m``      95M (vocab 32000)    one-GPU profile
==================  ===================  ===========================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, PreTrainedModel


class ModelError(ValueError):
    """A model spec cannot be resolved or does not fit the data it is used with."""


#: Architecture of each preset (a LlamaConfig's fields, without ``vocab_size``).
PRESETS: dict[str, dict[str, Any]] = {
    "llama-smoke": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    ),
    "llama-mini-xs": dict(
        hidden_size=96,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    ),
    "llama-mini": dict(
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    ),
    "llama-mini-l": dict(
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    ),
    "llama-100m": dict(
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=10,
        num_attention_heads=12,
        num_key_value_heads=12,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    ),
    "llama-300m": dict(
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads=16,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    ),
}

_COMMON = dict(rms_norm_eps=1e-5, hidden_act="silu", attention_dropout=0.0, initializer_range=0.02)


def is_preset(spec: str) -> bool:
    """Whether ``spec`` names a preset of :data:`PRESETS`."""
    return spec in PRESETS


def preset_config(name: str, vocab_size: int, **overrides: Any) -> LlamaConfig:
    """The ``LlamaConfig`` of preset ``name`` for a vocabulary of ``vocab_size`` ids.

    ``overrides`` replace preset fields (e.g. ``max_position_embeddings=4096``).
    """
    if name not in PRESETS:
        raise ModelError(f"unknown preset {name!r}; presets are: {', '.join(PRESETS)}")
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ModelError(
            f"preset {name!r} needs a positive vocab_size (from the tokenizer), got {vocab_size!r}"
        )
    fields = {**_COMMON, **PRESETS[name], **overrides, "vocab_size": vocab_size}
    return LlamaConfig(**fields)


def _looks_like_hub_name(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))


def resolve_spec(spec: str | os.PathLike) -> tuple[str, str]:
    """Classify a model spec as ``("preset", name)``, ``("path", folder)`` or ``("hub", name)``.

    Raises :class:`ModelError` for a spec that is none of them (e.g. a missing local folder).
    """
    s = str(spec)
    if s in PRESETS:
        return "preset", s
    p = Path(s).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelError(
                f"{p} is not a Hugging Face model folder (no config.json); pass a folder written by "
                "save_pretrained (e.g. a run's final/), a preset, or a hub name"
            )
        return "path", str(p)
    if _looks_like_hub_name(s):
        return "hub", s
    raise ModelError(
        f"cannot resolve model {s!r}: it is not a preset ({', '.join(PRESETS)}), not an existing folder, "
        "and not a hub name like 'TinyLlama/TinyLlama_v1.1'"
    )


def model_config(spec: str | os.PathLike, vocab_size: int | None = None) -> Any:
    """The model config a spec resolves to, without loading weights."""
    kind, name = resolve_spec(spec)
    if kind == "preset":
        if vocab_size is None:
            raise ModelError(f"preset {name!r} needs vocab_size (the tokenizer's vocabulary size)")
        return preset_config(name, vocab_size)
    return AutoConfig.from_pretrained(name)


def build_model(
    spec: str | os.PathLike,
    *,
    vocab_size: int | None = None,
    seed: int | None = None,
    dtype: torch.dtype | None = None,
) -> PreTrainedModel:
    """Build (preset, random init from ``seed``) or load (folder / hub) a causal LM.

    ``vocab_size`` is required for presets; for loaded models, if given, the model's embedding
    must cover it (``config.vocab_size >= vocab_size``), else :class:`ModelError`.
    The model is returned in training mode on the CPU, in float32 unless ``dtype`` is given.
    """
    kind, name = resolve_spec(spec)
    if kind == "preset":
        config = model_config(name, vocab_size)
        if seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = AutoModelForCausalLM.from_config(config)
        else:
            model = AutoModelForCausalLM.from_config(config)
    else:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype or torch.float32)
    if dtype is not None:
        model = model.to(dtype)
    if vocab_size is not None:
        check_vocab(model, vocab_size, what="the data")
    model.train()
    return model


def model_vocab_size(model: PreTrainedModel) -> int:
    """Number of rows of the model's input embedding (the ids it can read)."""
    return int(model.get_input_embeddings().weight.shape[0])


def check_vocab(model: PreTrainedModel, vocab_size: int, what: str = "the shard") -> None:
    """Raise :class:`ModelError` if the model cannot read every id of a ``vocab_size`` vocabulary."""
    n = model_vocab_size(model)
    if n < vocab_size:
        raise ModelError(
            f"vocabulary mismatch: the model has {n} embeddings but {what} uses {vocab_size} token ids; "
            "use the model's own tokenizer to build the data, or a model built for this tokenizer"
        )


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def main() -> None:
    """Print the parameter count of every preset with a 4,096-id and a 32,000-id vocabulary."""
    print(f"{'preset':<16}{'vocab 4096':>14}{'vocab 32000':>14}")
    for name in PRESETS:
        counts = []
        for v in (4096, 32000):
            with torch.device("meta"):
                m = AutoModelForCausalLM.from_config(preset_config(name, v))
            counts.append(count_parameters(m))
        print(f"{name:<16}{counts[0]:>14,}{counts[1]:>14,}")


if __name__ == "__main__":
    main()
