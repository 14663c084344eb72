"""World specs: what ``data/<profile>/`` holds (the miniature world's sizes, or the paper's hub corpora).

A *world* is the data a study profile trains and evaluates on; ``params.yaml``'s
``profiles.<profile>.world`` names one of :data:`WORLDS`.  (A *profile* is a study setting of
``params.yaml``: sizes of models, runs and evaluations; it picks a world.)  This module was
``rho.data.profiles`` (``DataProfile``, ``PROFILES``, ``get_profile``, ``ProfileError``); those
names still import, as deprecated aliases.

``smoke`` builds in seconds (tests), ``mini`` is the default study (whole study < 1 hour on
2 CPU cores), ``gpu`` is sized for one GPU and ~100M-parameter models, ``paper`` points at the
hub corpora and the TinyLlama tokenizer, and ``paper_7b`` is the same corpora tokenized for
Mistral-7B (the paper's 7B math rows need only OpenWebMath and the reference corpus).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from rho.data.sources import PAPER_CORPORA, PAPER_GENERAL_MIX


class WorldError(ValueError):
    """An unknown world or a bad override."""


@dataclass(frozen=True)
class WorldSpec:
    """Sizes and settings of one world (token counts are approximate targets).

    ``block_size`` is the block length the study's profile of the same name trains and scores
    this world with (``params.yaml`` ``profiles.<profile>.block_size``; a test keeps them equal);
    the shards themselves are block-free streams.  It is recorded in ``world.json``.
    """

    name: str
    owm_docs: int = 0  # noisy OpenWebMath-analog pages
    owm_val_docs: int = 0  # held-out owm pages (validation shard, token dynamics)
    ref_docs: int = 0  # clean reference pages (the curated high-quality corpus)
    ppile_extra_docs: int = 0  # extra math docs: ppile = owm + these
    general_tokens: int = 0  # 6:3:1 prose:code:owm mix (general continual pretraining)
    base_tokens: int = 0  # base-model pretraining mix (prose:code:math, math not from owm)
    val_math_docs: int = 0  # held-out problems with reference solutions (downstream loss)
    n_test: int = 0  # test problems per evaluation task
    n_shots: int = 4  # few-shot exemplars per task
    lm_eval_items: int = 0  # items per general (lm-eval) task
    vocab_size: int = 2048
    noise: float = 1.0  # scale of noise-block probabilities in owm pages
    tokenizer_train_chars: int = 0  # characters sampled to train the BPE
    num_proc: int = 1  # tokenization processes
    general_mix: dict[str, float] = field(default_factory=lambda: {"prose": 6.0, "code": 3.0, "owm": 1.0})
    base_mix: dict[str, float] = field(default_factory=lambda: {"prose": 6.0, "code": 3.0, "math": 1.0})
    # real-scale settings (worlds "paper", "paper_7b")
    tokenizer: str | None = None  # hub name / folder of a pretrained tokenizer; None: train a BPE
    block_size: int = 256
    hub_corpora: dict[str, Any] = field(default_factory=dict)
    hub_shards: tuple[str, ...] | None = None  # shards a hub world builds (None: all of them)

    @property
    def is_miniature(self) -> bool:
        """Whether this world builds the miniature world (else it reads hub corpora)."""
        return not self.hub_corpora

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (``hub_shards`` only when set: miniature manifests stay as they were)."""
        d = asdict(self)
        d["hub_corpora"] = {
            k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in self.hub_corpora.items()
        }
        if d["hub_shards"] is None:
            del d["hub_shards"]
        return d


WORLDS: dict[str, WorldSpec] = {
    "smoke": WorldSpec(
        "smoke",
        owm_docs=120,
        owm_val_docs=20,
        ref_docs=60,
        ppile_extra_docs=80,
        general_tokens=40_000,
        base_tokens=40_000,
        val_math_docs=40,
        n_test=10,
        n_shots=2,
        lm_eval_items=12,
        vocab_size=512,
        tokenizer_train_chars=400_000,
        num_proc=1,
        block_size=64,
    ),
    "mini": WorldSpec(
        "mini",
        owm_docs=7_000,
        owm_val_docs=300,
        ref_docs=1_600,
        ppile_extra_docs=9_000,
        general_tokens=2_500_000,
        base_tokens=4_000_000,
        val_math_docs=500,
        n_test=500,
        n_shots=4,
        lm_eval_items=150,
        vocab_size=2048,
        tokenizer_train_chars=6_000_000,
        num_proc=1,  # encode_batch already uses both cores (benchmarks/bench_data_tokenize.py)
        block_size=256,
        # calibrated (docs/calibration.md): ~60% content in owm, and a base that has seen math
        noise=0.6,
        base_mix={"prose": 4.0, "code": 2.0, "math": 4.0},
    ),
    "gpu": WorldSpec(
        "gpu",
        owm_docs=100_000,  # ~46M tokens: the 20M-token CPT runs see less than one epoch
        owm_val_docs=3_000,
        ref_docs=30_000,
        ppile_extra_docs=20_000,
        general_tokens=30_000_000,
        base_tokens=60_000_000,
        val_math_docs=3_000,
        n_test=600,
        n_shots=4,
        lm_eval_items=500,
        vocab_size=8192,
        tokenizer_train_chars=50_000_000,
        num_proc=8,
        block_size=1024,
    ),
    "paper": WorldSpec(
        "paper",
        n_shots=4,
        tokenizer="TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T",
        block_size=2048,
        general_mix=dict(PAPER_GENERAL_MIX),
        num_proc=16,
        hub_corpora={k: v for k, v in PAPER_CORPORA.items()},
    ),
    "paper_7b": WorldSpec(
        "paper_7b",
        n_shots=4,
        tokenizer="mistralai/Mistral-7B-v0.1",
        block_size=4096,
        general_mix=dict(PAPER_GENERAL_MIX),
        num_proc=16,
        hub_corpora={k: v for k, v in PAPER_CORPORA.items()},
        hub_shards=("owm_val", "owm", "ref"),
    ),
}


def get_world(name: str | WorldSpec, **overrides: Any) -> WorldSpec:
    """A world by name with field overrides; unknown names or fields raise :class:`WorldError`."""
    if isinstance(name, WorldSpec):
        spec = name
    elif name in WORLDS:
        spec = WORLDS[name]
    else:
        raise WorldError(f"unknown world {name!r}; choose one of {sorted(WORLDS)}")
    known = {f.name for f in fields(WorldSpec)} - {"name"}
    bad = sorted(set(overrides) - known)
    if bad:
        raise WorldError(f"unknown world field(s) {bad}; known fields: {sorted(known)}")
    for k, v in overrides.items():
        if isinstance(v, int | float) and not isinstance(v, bool) and v < 0:
            raise WorldError(f"world field {k} must be >= 0, got {v}")
    return replace(spec, **overrides)
