"""``TrainConfig``: every knob of a training run, validated when it is made.

A config comes from keyword arguments, a dict, a YAML file, or the command line::

    python -m rho.train --config run.yaml objective=slm ratio=0.6 out_dir=runs/slm

``key=value`` overrides are parsed as YAML scalars (``0.6`` is a float, ``null`` is None,
``[0.9, 0.95]`` a list).  Unknown keys and bad values raise :class:`ConfigError` naming the
field and what it accepts, before anything is loaded or written.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

OBJECTIVES = ("clm", "slm", "reweight")
SCORE_KINDS = ("excess", "ref_loss", "ref_entropy")
COMBINE_OPS = ("intersection", "union")
SCOPES = ("global", "micro", "dp", "carry")
FUSED_LOSS_MODES = ("auto", "off")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16")
BACKENDS = ("auto", "gloo", "nccl")
PARALLEL = ("ddp", "fsdp")

#: Fields that may differ between a run and its resumption (they do not change the result).
RESUME_FREE_FIELDS = (
    "progress",
    "log_every",
    "num_threads",
    "resume",
    "device",
    "dist_backend",
    "fused_loss",
)


class ConfigError(ValueError):
    """A training config field is missing, unknown or out of range."""


@dataclass
class TrainConfig:
    """One training run (CLM, SLM or soft reweighting), single process or data-parallel.

    Batch geometry: an optimizer step consumes ``micro_batch_size * grad_accum * world_size``
    blocks of ``block_size`` tokens (the *optimizer batch*; 1M tokens in the paper).
    Length: exactly one of ``max_tokens`` / ``max_steps``.  ``extra`` is free-form metadata kept with
    the run (e.g. the study profile); like every other field, changing it forbids resuming.
    """

    # what to train, on what
    model: str
    train_shard: str
    out_dir: str
    init_from: str | None = None
    tokenizer: str | None = None
    scores: str | None = None
    # objective and selection
    objective: str = "clm"
    ratio: float = 0.6
    score_kind: str = "excess"
    score_kind2: str | None = None
    ratio2: float | None = None
    combine_op: str = "intersection"
    selection_scope: str = "global"
    reweight_temperature: float = 1.0
    # batch geometry
    block_size: int = 256
    micro_batch_size: int = 8
    grad_accum: int = 1
    # optimisation
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int | None = None
    warmup_fraction: float = 0.05
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float | None = 1.0
    max_tokens: int | None = None
    max_steps: int | None = None
    seed: int = 0
    # outputs
    ckpt_every_tokens: int | None = None
    snapshot_every_tokens: int | None = None
    log_every: int = 10
    # execution
    chunk_size: int | None = None
    fused_loss: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    dist_backend: str = "auto"
    parallel: str = "ddp"
    num_threads: int | None = None
    resume: bool = True
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every field; raise :class:`ConfigError` naming the first bad one and the fix."""
        for name in ("model", "train_shard", "out_dir"):
            v = getattr(self, name)
            if not isinstance(v, str | os.PathLike) or not str(v):
                raise ConfigError(f"{name} is required (a non-empty path or name), got {v!r}")
        _choice("objective", self.objective, OBJECTIVES)
        _choice("score_kind", self.score_kind, SCORE_KINDS)
        _choice("combine_op", self.combine_op, COMBINE_OPS)
        _choice("selection_scope", self.selection_scope, SCOPES)
        if self.selection_scope in ("dp", "carry") and self.score_kind2 is not None:
            raise ConfigError(
                f"selection_scope={self.selection_scope} ranks one score; with score_kind2 use global or micro"
            )
        _choice("fused_loss", self.fused_loss, FUSED_LOSS_MODES)
        _choice("device", self.device, DEVICES)
        _choice("dtype", self.dtype, DTYPES)
        _choice("dist_backend", self.dist_backend, BACKENDS)
        _choice("parallel", self.parallel, PARALLEL)
        _fraction("ratio", self.ratio)
        if self.score_kind2 is not None:
            _choice("score_kind2", self.score_kind2, SCORE_KINDS)
            if self.ratio2 is None:
                raise ConfigError(
                    "score_kind2 is set but ratio2 is not: give the second score's ratio in (0, 1]"
                )
            _fraction("ratio2", self.ratio2)
            if self.objective != "slm":
                raise ConfigError("score_kind2 (combined selection, Table 4) only applies to objective=slm")
        elif self.ratio2 is not None:
            raise ConfigError(
                "ratio2 is set but score_kind2 is not: name the second score (e.g. ref_entropy)"
            )
        if self.objective in ("slm", "reweight") and not self.scores:
            raise ConfigError(
                f"objective={self.objective} needs reference scores: set scores to a directory written by "
                "rho.scoring.score_corpus for this shard"
            )
        _positive_number("reweight_temperature", self.reweight_temperature)
        _int("block_size", self.block_size, minimum=2)
        _int("micro_batch_size", self.micro_batch_size, minimum=1)
        _int("grad_accum", self.grad_accum, minimum=1)
        _positive_number("lr", self.lr)
        _number("min_lr", self.min_lr, minimum=0.0)
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.warmup_steps is not None:
            _int("warmup_steps", self.warmup_steps, minimum=0)
        _number("warmup_fraction", self.warmup_fraction, minimum=0.0)
        if self.warmup_fraction >= 1:
            raise ConfigError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        _number("weight_decay", self.weight_decay, minimum=0.0)
        if len(self.betas) != 2 or not all(isinstance(b, int | float) and 0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        _positive_number("eps", self.eps)
        if self.grad_clip is not None:
            _number("grad_clip", self.grad_clip, minimum=0.0)
        if (self.max_tokens is None) == (self.max_steps is None):
            raise ConfigError("set exactly one of max_tokens or max_steps (the run's length)")
        if self.max_tokens is not None:
            _int("max_tokens", self.max_tokens, minimum=1)
        if self.max_steps is not None:
            _int("max_steps", self.max_steps, minimum=1)
        _int("seed", self.seed, minimum=0)
        for name in ("ckpt_every_tokens", "snapshot_every_tokens", "chunk_size", "num_threads"):
            if getattr(self, name) is not None:
                _int(name, getattr(self, name), minimum=1)
        _int("log_every", self.log_every, minimum=1)
        if not isinstance(self.extra, dict):
            raise ConfigError(f"extra must be a mapping, got {type(self.extra).__name__}")

    # ------------------------------------------------------------------ derived values
    def blocks_per_step(self, world_size: int = 1) -> int:
        """Blocks in one optimizer batch across all data-parallel ranks."""
        return self.micro_batch_size * self.grad_accum * world_size

    def tokens_per_step(self, world_size: int = 1) -> int:
        """Input tokens in one optimizer batch across all data-parallel ranks."""
        return self.blocks_per_step(world_size) * self.block_size

    def total_steps(self, world_size: int = 1) -> int:
        """Optimizer steps of the run (``max_steps``, or ``ceil(max_tokens / tokens_per_step)``)."""
        if self.max_steps is not None:
            return self.max_steps
        assert self.max_tokens is not None
        return math.ceil(self.max_tokens / self.tokens_per_step(world_size))

    def warmup(self, total_steps: int) -> int:
        """Warmup steps: ``warmup_steps`` if set, else ``round(warmup_fraction * total_steps)``."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return int(round(self.warmup_fraction * total_steps))

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of every field (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys raise :class:`ConfigError` listing the valid ones."""
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a mapping of field -> value, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(
                f"unknown config field(s) {', '.join(unknown)}; valid fields: {', '.join(sorted(names))}"
            )
        missing = [n for n in ("model", "train_shard", "out_dir") if n not in d]
        if missing:
            raise ConfigError(f"config is missing required field(s): {', '.join(missing)}")
        return cls(**{k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()})

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: list[str] | None = None) -> TrainConfig:
        """Read a YAML mapping from ``path`` and apply ``key=value`` overrides."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p} must hold a YAML mapping of field: value")
        data.update(parse_overrides(overrides or []))
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def diff(self, other: TrainConfig | dict[str, Any], ignore: tuple[str, ...] = RESUME_FREE_FIELDS) -> dict:
        """Fields whose values differ from ``other``: ``{name: (self_value, other_value)}``."""
        a = self.to_dict()
        b = other.to_dict() if isinstance(other, TrainConfig) else dict(other)
        return {
            k: (a.get(k), b.get(k))
            for k in sorted(set(a) | set(b))
            if k not in ignore and a.get(k) != b.get(k)
        }


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``["key=value", ...]`` with YAML scalar semantics."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from None
    return out


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _fraction(name: str, value: Any) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not (0 < value <= 1)
        or math.isnan(value)
    ):
        raise ConfigError(
            f"{name} must be in (0, 1] (the fraction of tokens to keep, e.g. 0.6), got {value!r}"
        )


def _number(name: str, value: Any, minimum: float) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < minimum
    ):
        raise ConfigError(f"{name} must be a finite number >= {minimum}, got {value!r}")


def _positive_number(name: str, value: Any) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}")


def _int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
