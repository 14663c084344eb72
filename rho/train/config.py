"""``TrainConfig``: every knob of a training run, validated when it is made.

A config comes from keyword arguments, a dict, a YAML file, or the command line::

    python -m rho.train --config run.yaml objective=slm selection.ratio=0.6 out_dir=runs/slm

``key=value`` overrides are parsed as YAML scalars (``0.6`` is a float, ``null`` is None,
``[0.9, 0.95]`` a list); ``selection.<knob>=value`` sets one knob of the nested
:class:`rho.selection.SelectionConfig` (``ratio``, ``score``, ``score2``, ``ratio2``, ``op``,
``scope``, ``temperature``: the names of ``params.yaml``).  Unknown keys and bad values raise
:class:`ConfigError` naming the field and what it accepts, before anything is loaded or written.

The flat names of earlier versions (``ratio``, ``score_kind``, ``score_kind2``, ``ratio2``,
``combine_op``, ``selection_scope``, ``reweight_temperature``) are still read from dicts, YAML
files and checkpoints (:data:`LEGACY_SELECTION_KEYS`), with a ``DeprecationWarning``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rho.selection import COMBINE_OPS, SCOPES, SCORE_KINDS, SelectionConfig, SelectionError

__all__ = [
    "COMBINE_OPS",
    "LEGACY_SELECTION_KEYS",
    "OBJECTIVES",
    "SCOPES",
    "SCORE_KINDS",
    "SPARSE_BACKWARD_MODES",
    "ConfigError",
    "TrainConfig",
    "merge_overrides",
    "normalize",
    "parse_overrides",
]

OBJECTIVES = ("clm", "slm", "reweight")
#: Flat selection fields of earlier versions -> their knob in ``selection`` (read with a warning).
LEGACY_SELECTION_KEYS = {
    "ratio": "ratio",
    "score_kind": "score",
    "score_kind2": "score2",
    "ratio2": "ratio2",
    "combine_op": "op",
    "selection_scope": "scope",
    "reweight_temperature": "temperature",
}
FUSED_LOSS_MODES = ("auto", "keep", "off")
#: ``fused_backend``: the kernel of the fused loss, ``rho.linear_backends.BACKENDS`` (not imported
#: here, so that stages reading only the config do not depend on it): ``auto`` (rho's torch path)
#: or a CUDA kernel by name.
FUSED_BACKENDS = ("auto", "torch", "cce", "liger")
#: ``sparse_backward``: ``exact`` (the head's backward skips unselected tokens, exactly; layers
#: dense) or ``layers`` (also the layers' weight gradients, an approximation: rho.train.sparse_layers).
SPARSE_BACKWARD_MODES = ("exact", "layers")
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
    "fused_backend",
)


class ConfigError(ValueError):
    """A training config field is missing, unknown or out of range."""


@dataclass
class TrainConfig:
    """One training run (CLM, SLM or soft reweighting), single process or data-parallel.

    Batch geometry: an optimizer step consumes ``micro_batch_size * grad_accum * world_size``
    blocks of ``block_size`` tokens (the *optimizer batch*; 1M tokens in the paper).
    Length: exactly one of ``max_tokens`` / ``max_steps``.  ``selection`` holds the selection knobs
    (:class:`rho.selection.SelectionConfig`; a mapping is converted); ``seed`` fixes the data order,
    the initialisation of a preset model and the ``random`` selection.  ``extra`` is free-form
    metadata kept with the run (e.g. the study profile); like every other field, changing it
    forbids resuming.

    ``sparse_backward``: ``exact`` (default; the fused head's backward visits only the selected
    tokens and every gradient is exact) or ``layers`` (SLM only: the Collider approximation, every
    linear layer of the transformer also drops the unselected tokens' rows from its weight gradient;
    see :mod:`rho.train.sparse_layers`).  ``fused_backend``: ``auto`` (default; rho's chunked torch
    path, the one with the sparse backward) or ``cce`` / ``liger`` (CUDA kernels that hold less
    memory and compute every token's gradient; :mod:`rho.linear_backends`).  At their defaults these
    two are left out of :meth:`to_dict`, so the saved config of a run without them is what it was
    before the fields existed.
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
    selection: SelectionConfig = field(default_factory=SelectionConfig)
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
    fused_backend: str = "auto"
    sparse_backward: str = "exact"
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
        if not isinstance(self.selection, SelectionConfig):
            try:
                self.selection = SelectionConfig.from_dict(self.selection)
            except SelectionError as e:
                raise ConfigError(f"selection: {e}") from None
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every field; raise :class:`ConfigError` naming the first bad one and the fix."""
        for name in ("model", "train_shard", "out_dir"):
            v = getattr(self, name)
            if not isinstance(v, str | os.PathLike) or not str(v):
                raise ConfigError(f"{name} is required (a non-empty path or name), got {v!r}")
        _choice("objective", self.objective, OBJECTIVES)
        try:
            self.selection.validate()
            self.selection.check_objective(self.objective)
        except SelectionError as e:
            raise ConfigError(f"selection: {e}") from None
        if self.selection.needs_reference(self.objective) and not self.scores:
            raise ConfigError(
                f"objective={self.objective} with score {'/'.join(self.selection.scores)} needs reference "
                "scores: set scores to a directory written by rho.scoring.score_corpus for this shard "
                "(score random needs none)"
            )
        _choice("fused_loss", self.fused_loss, FUSED_LOSS_MODES)
        _choice("fused_backend", self.fused_backend, FUSED_BACKENDS)
        if self.fused_loss == "keep" and self.fused_backend not in ("auto", "torch"):
            raise ConfigError(
                f"fused_loss=keep keeps the softmax for rho's own backward; fused_backend={self.fused_backend} "
                "has none: use fused_backend=auto with fused_loss=keep"
            )
        _choice("sparse_backward", self.sparse_backward, SPARSE_BACKWARD_MODES)
        if self.sparse_backward == "layers" and self.objective != "slm":
            raise ConfigError(
                f"sparse_backward=layers drops the unselected tokens of SLM; objective={self.objective} "
                "selects no tokens to drop: use sparse_backward=exact (the default) or objective=slm"
            )
        _choice("device", self.device, DEVICES)
        _choice("dtype", self.dtype, DTYPES)
        _choice("dist_backend", self.dist_backend, BACKENDS)
        _choice("parallel", self.parallel, PARALLEL)
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
        """Plain-JSON dict of every field (tuples become lists, ``selection`` a nested dict)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        for name, default in (("sparse_backward", "exact"), ("fused_backend", "auto")):
            if d[name] == default:  # a later field at its default: saved configs stay as they were
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys raise :class:`ConfigError` listing the valid ones."""
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a mapping of field -> value, got {type(d).__name__}")
        d = normalize(d, warn=True)
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
        data = merge_overrides(data, parse_overrides(overrides or []))
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def diff(self, other: TrainConfig | dict[str, Any], ignore: tuple[str, ...] = RESUME_FREE_FIELDS) -> dict:
        """Fields whose values differ from ``other``: ``{name: (self_value, other_value)}``."""
        a = self.to_dict()
        b = other.to_dict() if isinstance(other, TrainConfig) else normalize(dict(other), warn=False)
        if isinstance(b.get("selection"), Mapping):  # a saved config may omit knobs at their defaults
            b["selection"] = {**SelectionConfig().to_dict(), **b["selection"]}
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


def normalize(d: dict[str, Any], *, warn: bool = True) -> dict[str, Any]:
    """``d`` with the legacy flat selection fields moved into ``selection`` (see the module docstring).

    A flat field and the same knob in ``selection`` at once is an error (which one holds?).
    """
    legacy = [k for k in d if k in LEGACY_SELECTION_KEYS]
    if not legacy:
        return d
    out = {k: v for k, v in d.items() if k not in LEGACY_SELECTION_KEYS}
    sel = out.get("selection")
    sel = dict(sel.to_dict() if isinstance(sel, SelectionConfig) else (sel or {}))
    for key in legacy:
        knob = LEGACY_SELECTION_KEYS[key]
        if knob in sel and "selection" in d:
            raise ConfigError(f"{key} and selection.{knob} are both set; keep selection.{knob}")
        sel[knob] = d[key]
    if warn:
        names = ", ".join(f"{k} -> selection.{LEGACY_SELECTION_KEYS[k]}" for k in legacy)
        warnings.warn(f"deprecated TrainConfig field(s): {names}", DeprecationWarning, stacklevel=3)
    out["selection"] = sel
    return out


def merge_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``key=value`` overrides applied; ``selection.<knob>`` sets one nested knob."""
    out = normalize(dict(data), warn=True)
    sel = out.get("selection")
    sel = dict(sel.to_dict() if isinstance(sel, SelectionConfig) else (sel or {}))
    for key, value in overrides.items():
        head, dot, knob = key.partition(".")
        if dot:
            if head != "selection" or not knob:
                raise ConfigError(
                    f"override {key!r}: only selection.<knob> may be dotted (e.g. selection.ratio)"
                )
            sel[knob] = value
        elif key in LEGACY_SELECTION_KEYS:
            knob = LEGACY_SELECTION_KEYS[key]
            warnings.warn(
                f"deprecated override {key}=: use selection.{knob}=", DeprecationWarning, stacklevel=2
            )
            sel[knob] = value
        elif key == "selection":
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"override selection= must be a mapping (e.g. selection={{ratio: 0.7}}), got {value!r}"
                )
            sel.update(value)
        else:
            out[key] = value
    if sel:
        out["selection"] = sel
    return out


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


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
