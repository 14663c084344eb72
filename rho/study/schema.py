"""The schema of ``params.yaml``: every key, its type and range, checked once at the start of each stage.

:func:`check_params` walks the whole file (every profile, not only the active one) and raises
:class:`SchemaError` naming the key's dotted path, what it must be, and for an unknown key the
nearest valid one (``profiles.mini.eval_limt: unknown key; did you mean `eval_limit`?``).  The
check is cheap (a walk over a small dict), so a typo fails the very first stage of ``dvc repro``
instead of silently using a default or failing at stage 11.  Cross-references (a run's scorer
exists, names are not reserved) are checked by :meth:`rho.study.config.Study.validate` after it.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rho.selection import COMBINE_OPS, SCOPES, SCORE_KINDS, SelectionError, check_knob
from rho.train.config import SPARSE_BACKWARD_MODES

#: Names that become path components (profiles, runs, scorers, notebook parts): no separators, no dots.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

CORPORA = ("owm", "general", "ppile")
#: Deprecated alias of :data:`rho.selection.SCORE_KINDS` (the one list of score kinds).
SCORES = SCORE_KINDS


class SchemaError(ValueError):
    """``params.yaml`` has an unknown key, a missing key, or a value of the wrong type or range."""


@dataclass(frozen=True)
class Value:
    """A leaf: ``kind`` is ``int``, ``float``, ``str``, ``choice`` or ``knob``; optional bounds and ``null``.

    ``knob`` values are selection knobs, checked by :func:`rho.selection.check_knob` (their one
    validator) under the knob name ``knob``.
    """

    kind: str
    low: float | None = None  # inclusive unless low_open
    high: float | None = None  # inclusive unless high_open
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False
    pattern: re.Pattern[str] | None = None
    knob: str | None = None

    def describe(self) -> str:
        """What a valid value looks like, in words."""
        if self.kind == "knob":
            assert self.knob is not None
            text = _KNOB_TEXT[self.knob]
        elif self.kind == "choice":
            text = "one of " + ", ".join(self.choices)
        elif self.kind == "str":
            text = "a name (letters, digits, _ or -)" if self.pattern else "a string"
        else:
            text = "an integer" if self.kind == "int" else "a number"
            lo = None if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
            hi = None if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
            if lo or hi:
                text += " " + " and ".join(x for x in (lo, hi) if x)
        return text + (" (or null)" if self.nullable else "")

    def check(self, path: str, value: Any) -> None:
        """Raise :class:`SchemaError` unless ``value`` fits."""
        if value is None:
            if self.nullable:
                return
            raise SchemaError(f"params.yaml: `{path}` must be {self.describe()}, got null")
        ok = True
        if self.kind == "knob":
            assert self.knob is not None
            try:
                check_knob(self.knob, value)
            except SelectionError:
                ok = False
        elif self.kind in ("str", "choice"):
            ok = isinstance(value, str) and (self.kind == "str" or value in self.choices)
            ok = ok and (self.pattern is None or bool(self.pattern.match(value)))
        else:
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            ok = numeric and (self.kind == "float" or isinstance(value, int) or float(value).is_integer())
            if ok:
                v = float(value)
                ok = math.isfinite(v)
                if ok and self.low is not None:
                    ok = v > self.low if self.low_open else v >= self.low
                if ok and self.high is not None:
                    ok = v < self.high if self.high_open else v <= self.high
        if not ok:
            raise SchemaError(f"params.yaml: `{path}` must be {self.describe()}, got {value!r}")


@dataclass(frozen=True)
class Section:
    """A mapping with fixed keys: ``required`` and ``optional`` map a key to its schema."""

    required: Mapping[str, Any]
    optional: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    """A mapping from free names (``NAME_RE``) to entries of one schema (runs, scorers, profiles)."""

    entry: Any
    allow_empty: bool = True


@dataclass(frozen=True)
class Names:
    """A list of distinct names (``NAME_RE``), e.g. ``eval_runs``."""

    def check(self, path: str, value: Any) -> None:
        """Raise :class:`SchemaError` unless ``value`` is a list of distinct names."""
        if not isinstance(value, list) or not all(isinstance(v, str) and NAME_RE.match(v) for v in value):
            raise SchemaError(
                f"params.yaml: `{path}` must be a list of names (letters, digits, _ or -), got {value!r:.60}"
            )
        dup = sorted({v for v in value if value.count(v) > 1})
        if dup:
            raise SchemaError(f"params.yaml: `{path}` names {', '.join(dup)} more than once; list each once")


def _int(low: float | None = None, **kw: Any) -> Value:
    return Value("int", low=low, **kw)


def _frac(**kw: Any) -> Value:
    return Value("float", low=0.0, high=1.0, low_open=True, **kw)


_KNOB_TEXT = {
    "ratio": "a number > 0 and <= 1",
    "ratio2": "a number > 0 and <= 1",
    "score": "one of " + ", ".join(SCORE_KINDS),
    "score2": "one of " + ", ".join(SCORE_KINDS),
    "op": "one of " + ", ".join(COMBINE_OPS),
    "scope": "one of " + ", ".join(SCOPES),
    "temperature": "a number > 0",
}


def _knob(name: str) -> Value:
    return Value("knob", knob=name)


NAME = Value("str", pattern=NAME_RE)
_RUN = {
    "part": NAME,
    "corpus": Value("choice", choices=CORPORA),
    "base": Value("choice", choices=("base", "base_large")),
}
#: Optional in every run group: the run's own seed (data order, random selection).
_RUN_OPTIONAL = {"seed": _int(0)}
_VARIANT_OPTIONAL = {
    **_RUN_OPTIONAL,
    "score2": _knob("score2"),
    "ratio2": _knob("ratio2"),
    "op": _knob("op"),
    # the Collider approximation of the layers' backward (rho.train.sparse_layers); default exact
    "sparse_backward": Value("choice", choices=SPARSE_BACKWARD_MODES),
}
_PROFILE = Section(
    required={
        "world": NAME,
        "model": Value("str"),
        "large_model": Value("str", nullable=True),
        "block_size": _int(1),
        "micro_batch_size": _int(1),
        "grad_accum": _int(1),
        "cpt_tokens": _int(1),
        "max_new_tokens": _int(1),
        "lr": Section(
            required={
                "base": _frac(high_open=True, nullable=True),
                "cpt": _frac(high_open=True),
                "reference": _frac(high_open=True),
            }
        ),
    },
    optional={
        "base_tokens": _int(0),
        "large_base_tokens": _int(0),
        "snapshots": _int(0),
        "checkpoints": _int(1),
        "dynamics_blocks": _int(1),
        "eval_limit": _int(1, nullable=True),
        "curve_eval_limit": _int(1, nullable=True),
        "side_eval_limit": _int(1, nullable=True),
        "eval_batch_size": _int(1),
        "launcher": Value("str"),
        "parallel": Value("choice", choices=("ddp", "fsdp")),
        "num_threads": _int(1, nullable=True),
        "selection_scope": _knob("scope"),
    },
)

#: The whole file.
PARAMS = Section(
    required={
        "profile": NAME,
        "slm": Section(
            required={"ratio": _knob("ratio"), "score": _knob("score")},
            optional={"scope": _knob("scope")},
        ),
        "cpt": Section(
            required={
                "min_lr_ratio": Value("float", low=0.0, high=1.0),
                "warmup_fraction": Value("float", low=0.0, high=1.0, high_open=True),
                "weight_decay": Value("float", low=0.0),
                "grad_clip": Value("float", low=0.0, low_open=True),
            }
        ),
        "reference": Section(required={"epochs": _int(1)}),
        "clm_runs": Table(Section(required=_RUN, optional=_RUN_OPTIONAL)),
        "slm_runs": Table(Section(required={**_RUN, "scorer": NAME}, optional=_RUN_OPTIONAL)),
        "slm_variants": Table(
            Section(
                required={**_RUN, "scorer": NAME, "score": _knob("score"), "ratio": _knob("ratio")},
                optional=_VARIANT_OPTIONAL,
            )
        ),
        "scorers": Table(Section(required={"model": NAME, "corpus": Value("choice", choices=CORPORA)})),
        "eval_runs": Names(),
        "profiles": Table(_PROFILE, allow_empty=False),
    },
    optional={
        "seed": _int(0),
        # the random-selection control: no scorer (dvc.yaml's train_random stage loops over them)
        "random_runs": Table(
            Section(
                required={**_RUN, "ratio": _knob("ratio")},
                optional={**_RUN_OPTIONAL, "score": Value("choice", choices=("random",))},
            )
        ),
    },
)


def check_params(params: Any, schema: Section = PARAMS) -> None:
    """Check the whole ``params.yaml`` mapping against ``schema``; raise :class:`SchemaError` on the first problem."""
    _check("", params, schema)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check(path: str, value: Any, schema: Any) -> None:
    if isinstance(schema, Value | Names):
        schema.check(path, value)
        return
    where = f"`{path}`" if path else "the file"
    if value is None and isinstance(schema, Table) and schema.allow_empty:
        return
    if not isinstance(value, Mapping):
        raise SchemaError(
            f"params.yaml: {where} must be a mapping of keys, got {type(value).__name__} {value!r:.60}"
        )
    if isinstance(schema, Table):
        if not value and not schema.allow_empty:
            raise SchemaError(f"params.yaml: {where} must name at least one entry")
        for name, entry in value.items():
            if not isinstance(name, str) or not NAME_RE.match(name):
                raise SchemaError(
                    f"params.yaml: `{_join(path, str(name))}`: names must be letters, digits, _ or - "
                    "(they become folder names)"
                )
            _check(_join(path, name), entry, schema.entry)
        return
    known = {**schema.required, **schema.optional}
    for key in value:
        if key not in known:
            near = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            hint = f"did you mean `{near[0]}`?" if near else f"valid keys: {', '.join(sorted(known))}"
            raise SchemaError(f"params.yaml: unknown key `{_join(path, str(key))}`; {hint}")
    for key in schema.required:
        if key not in value:
            raise SchemaError(
                f"params.yaml: `{_join(path, key)}` is missing; add it ({_what(schema.required[key])})"
            )
    for key, sub in value.items():
        _check(_join(path, key), sub, known[key])


def _what(schema: Any) -> str:
    if isinstance(schema, Value):
        return schema.describe()
    if isinstance(schema, Names):
        return "a list of names"
    if isinstance(schema, Table):
        return "a mapping of named entries"
    return "a mapping with keys " + ", ".join(schema.required)
