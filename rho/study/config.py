"""Resolve ``params.yaml`` into paths and training configs for every run of the study.

Layout (relative to the repository root)::

    data/<profile>/                  the miniature world (rho.data.build_world), DVC output
    runs/<profile>/<run>/            training runs (rho.train run directories), DVC outputs
    scores/<profile>/<scorer>/       reference scores (rho.scoring), DVC outputs
    evals/<profile>/<run>/           evaluation results of a run (CSV + completions), DVC outputs
    results/<profile>/               tables, metrics and figures, tracked in git

Runs come in four groups (``clm_runs``, ``slm_runs`` with the method defaults ``slm.*``,
``slm_variants`` that set every selection knob, and ``random_runs``: the random-selection control,
``score: random``, no scorer); any run may set its own ``seed`` (data order and the random
selection; the model it continues is the same).  A run's selection knobs keep their
``params.yaml`` names all the way down (:meth:`Study.selection` -> :class:`rho.selection.SelectionConfig`). Special runs besides these: ``base`` (the base model pretrained on the ``base``
corpus: the Tinyllama analog; in the ``paper`` profile the hub model itself), ``base_large``
(the larger base for weak-to-strong) and ``reference`` (the reference model: the base trained
``reference.epochs`` epochs on the clean ``ref`` corpus, Sec. 3.1).

Scorers: ``rm_<corpus>`` (the reference model scoring a corpus) and ``self_<corpus>`` (the CLM
continual-pretraining model ``math_clm`` scoring its own corpus: self-reference, Sec. 3.4).
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rho.selection import STREAMING_SCOPES, SelectionConfig, SelectionError
from rho.study.schema import NAME_RE, SchemaError, check_params
from rho.train.config import TrainConfig

SPECIAL_RUNS = ("base", "base_large", "reference")
RUN_GROUPS = ("clm_runs", "slm_runs", "slm_variants", "random_runs")
#: Selection knobs a run entry may set (the names of :class:`rho.selection.SelectionConfig`).
RUN_KNOBS = ("ratio", "score", "score2", "ratio2", "op")


class StudyError(ValueError):
    """``params.yaml`` names something that does not exist or does not fit together."""


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is safe as one path component (``NAME_RE``), else raise :class:`StudyError`.

    Stage arguments such as ``--part`` become folder names under ``results/<profile>/``; a name like
    ``..``, ``""`` or ``/abs`` would point outside it (and a failed stage removes that folder).
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise StudyError(
            f"bad {kind} name {name!r}: use letters, digits, _ or - (it becomes a folder name; "
            "no '/', '.', or empty names)"
        )
    return name


@dataclass
class Study:
    """The study's parameters, resolved for one profile, rooted at the repository."""

    params: dict[str, Any]
    root: Path

    @classmethod
    def load(cls, params_file: str | Path = "params.yaml", profile: str | None = None) -> Study:
        """Read ``params_file``; ``profile`` overrides its ``profile`` key."""
        path = Path(params_file).resolve()
        if not path.is_file() and not Path(params_file).is_absolute():
            # notebooks may run in notebooks/: look in the parent directories too
            for parent in Path.cwd().resolve().parents:
                if (parent / params_file).is_file():
                    path = parent / params_file
                    break
        if not path.is_file():
            raise StudyError(
                f"no parameters file at {path}: run from the repository root or pass params_file"
            )
        params = yaml.safe_load(path.read_text()) or {}
        if profile is not None:
            params["profile"] = profile
        root = path.parent
        with contextlib.suppress(ValueError):  # inside the working directory: paths relative to it, so
            root = root.relative_to(Path.cwd().resolve())  # what runs record is the same in any clone
        study = cls(params=params, root=root)
        study.validate()
        study.pin_threads()
        return study

    def pin_threads(self) -> None:
        """Set torch's CPU threads to the profile's ``num_threads`` (when set).

        Parallel CPU reductions split their work by thread count, so the same run on machines with
        different core counts differs in the last bits; a fixed count makes the bytes the same.
        Applies to torch already imported here and, through ``OMP_NUM_THREADS``, to torch imported
        later or in child processes (papermill kernels, torchrun workers).
        """
        n = self.sizes.get("num_threads")
        if not n:
            return
        os.environ["OMP_NUM_THREADS"] = str(int(n))
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(n))

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
        """Check the whole file against :data:`rho.study.schema.PARAMS` (every key, type and range, all
        profiles), then the profile, names and cross-references; raise :class:`StudyError` naming the
        problem and the fix."""
        try:
            check_params(self.params)
        except SchemaError as exc:
            raise StudyError(str(exc)) from None
        if self.profile not in self.params["profiles"]:
            raise StudyError(
                f"unknown profile {self.profile!r}; choose one of {sorted(self.params['profiles'])}"
            )
        seen: set[str] = set()
        for group in RUN_GROUPS:
            for name, spec in (self.params.get(group) or {}).items():
                where = f"run {name!r} ({group})"
                if name in SPECIAL_RUNS or name in seen:
                    raise StudyError(f"{where}: the name is reserved or used twice; rename it in params.yaml")
                seen.add(name)
                if "scorer" in spec and spec["scorer"] not in self.params["scorers"]:
                    raise StudyError(f"{where}: scorer {spec['scorer']!r} is not in params.yaml `scorers`")
                if ("score2" in spec) != ("ratio2" in spec):
                    raise StudyError(f"{where}: set `score2` and `ratio2` together (and optionally `op`)")
                try:
                    selection = self.selection(name)
                except SelectionError as exc:
                    raise StudyError(f"{where}: {exc}") from None
                if group != "clm_runs" and selection.needs_reference() and "scorer" not in spec:
                    raise StudyError(f"{where}: score {selection.score} needs a `scorer`")
        evaluated = ["base", "reference", *seen]
        if set(self.params["eval_runs"]) != set(evaluated):
            missing = [r for r in evaluated if r not in self.params["eval_runs"]]
            extra = [r for r in self.params["eval_runs"] if r not in evaluated]
            raise StudyError(
                "params.yaml: `eval_runs` must name the base, the reference and every run of "
                f"{', '.join(RUN_GROUPS)} (dvc.yaml's evaluate stage loops over it); "
                + "; ".join(
                    x
                    for x in (missing and f"add {', '.join(missing)}", extra and f"remove {', '.join(extra)}")
                    if x
                )
            )
        for name, sc in self.params["scorers"].items():
            if sc.get("model") not in ("reference", *seen):
                raise StudyError(
                    f"scorer {name!r}: model must be `reference` or a run name, got {sc.get('model')!r}"
                )
        self.learning_rates  # noqa: B018 - raises StudyError when the profile's lr block is bad

    # ----------------------------------------------------------------- basics
    @property
    def profile(self) -> str:
        """The active profile name."""
        return str(self.params["profile"])

    @property
    def sizes(self) -> dict[str, Any]:
        """The active profile's sizes."""
        return dict(self.params["profiles"][self.profile])

    @property
    def learning_rates(self) -> dict[str, float | None]:
        """Peak learning rates of the profile: ``base`` (pretraining), ``cpt`` and ``reference``.

        They scale with model size, so each profile sets them (``profiles.<profile>.lr``);
        ``base`` is ``None`` for profiles that start from a released model.
        """
        lr = self.sizes.get("lr")
        if not isinstance(lr, dict) or any(k not in lr for k in ("base", "cpt", "reference")):
            raise StudyError(
                f"profile {self.profile!r} needs `lr: {{base: ..., cpt: ..., reference: ...}}` "
                "(peak learning rates) in params.yaml"
            )
        out = {k: None if lr[k] is None else float(lr[k]) for k in ("base", "cpt", "reference")}
        bad = {k: v for k, v in out.items() if v is not None and not 0 < v < 1}
        if bad or out["cpt"] is None or out["reference"] is None:
            raise StudyError(f"profile {self.profile!r}: learning rates must be in (0, 1), got {lr}")
        return out

    @property
    def seed(self) -> int:
        """The study seed."""
        return int(self.params.get("seed", 0))

    @property
    def world_dir(self) -> Path:
        """Directory of the miniature world (or of the tokenized real corpora)."""
        return self.root / "data" / self.profile

    def shard(self, corpus: str) -> Path:
        """Token shard directory of a corpus."""
        return self.world_dir / "shards" / corpus

    @property
    def tokenizer_dir(self) -> Path:
        """The world's tokenizer folder."""
        return self.world_dir / "tokenizer"

    def run_dir(self, run: str) -> Path:
        """Run directory of a training run."""
        return self.root / "runs" / self.profile / run

    def scores_dir(self, scorer: str) -> Path:
        """Directory of reference scores ``rm_<corpus>`` or ``self_<corpus>``."""
        return self.root / "scores" / self.profile / scorer

    def eval_dir(self, run: str) -> Path:
        """Evaluation output directory of a run."""
        return self.root / "evals" / self.profile / run

    @property
    def results_dir(self) -> Path:
        """Tracked results of the active profile."""
        return self.root / "results" / self.profile

    def final_model(self, run: str) -> str:
        """Path (or hub name) of a run's final model."""
        if run == "base" and self.pretrain_tokens(run) == 0:
            return str(self.sizes["model"])
        if run == "base_large" and not self.sizes.get("large_model"):
            raise StudyError(
                f"profile {self.profile!r} has no large_model: weak-to-strong runs are not part of it"
            )
        if run == "base_large" and self.pretrain_tokens(run) == 0:
            return str(self.sizes["large_model"])
        return str(self.run_dir(run) / "final")

    def pretrain_tokens(self, run: str) -> int:
        """Pretraining tokens of ``base`` (``base_tokens``) or ``base_large`` (``large_base_tokens``,
        default ``base_tokens``); 0 means the profile continues a released model."""
        tokens = self.sizes.get("base_tokens", 0)
        if run == "base_large":
            tokens = self.sizes.get("large_base_tokens", tokens)
        return int(tokens or 0)

    # ----------------------------------------------------------------- runs
    @property
    def run_names(self) -> list[str]:
        """Every continual-pretraining run, group by group, in file order."""
        return [n for g in RUN_GROUPS for n in (self.params.get(g) or {})]

    def runs_of(self, part: str) -> list[str]:
        """Runs belonging to one part of the study (``math_cpt``, ``self_reference``, ...)."""
        return [n for n in self.run_names if self.run_spec(n)["part"] == part]

    def run_spec(self, run: str) -> dict[str, Any]:
        """A run's spec with ``objective`` set and the method defaults (``slm.*``) filled in."""
        for group in RUN_GROUPS:
            if run in (self.params.get(group) or {}):
                spec = copy.deepcopy(self.params[group][run])
                spec["group"] = group
                if group == "clm_runs":
                    spec["objective"] = "clm"
                elif group == "random_runs":
                    spec["objective"] = "slm"
                    spec.setdefault("score", "random")
                else:
                    spec["objective"] = "slm"
                    spec.setdefault("ratio", self.params["slm"]["ratio"])
                    spec.setdefault("score", self.params["slm"]["score"])
                return spec
        raise StudyError(f"unknown run {run!r}; params.yaml has {self.run_names}")

    def selection(self, run: str) -> SelectionConfig:
        """A run's selection knobs, named as in ``params.yaml`` (CLM runs: the defaults).

        ``scope`` is the profile's ``selection_scope`` or else ``slm.scope``; a run with a second
        score ranks globally (``dp`` / ``carry`` rank one score).
        """
        spec = self.run_spec(run)
        scope = str(self.sizes.get("selection_scope") or self.params["slm"].get("scope", "global"))
        knobs: dict[str, Any] = {}
        if spec["objective"] != "clm":
            knobs = {k: spec[k] for k in RUN_KNOBS if k in spec}
            for k in ("ratio", "ratio2"):
                if isinstance(knobs.get(k), int | float) and not isinstance(knobs[k], bool):
                    knobs[k] = float(knobs[k])
            if "score2" in knobs and scope in STREAMING_SCOPES:
                scope = "global"
        return SelectionConfig.from_dict(knobs, scope=scope)

    def run_seed(self, run: str) -> int:
        """A run's seed: its own ``seed`` in params.yaml, else the study's."""
        if run in SPECIAL_RUNS:
            return self.seed
        return int(self.run_spec(run).get("seed", self.seed))

    @property
    def scorers(self) -> list[str]:
        """Names of the reference-score sets of ``params.scorers``."""
        return list(self.params["scorers"])

    def scorer_corpus(self, scorer: str) -> str:
        """The corpus a scorer scores."""
        return str(self._scorer(scorer)["corpus"])

    def scorer_model(self, scorer: str) -> str:
        """The model that produces a set of scores."""
        return self.final_model(str(self._scorer(scorer)["model"]))

    def _scorer(self, scorer: str) -> dict[str, Any]:
        if scorer not in self.params["scorers"]:
            raise StudyError(f"unknown scorer {scorer!r}; params.yaml `scorers` has {self.scorers}")
        return dict(self.params["scorers"][scorer])

    # ----------------------------------------------------------------- configs
    def _common(self) -> dict[str, Any]:
        z = self.sizes
        return dict(
            tokenizer=str(self.tokenizer_dir),
            block_size=int(z["block_size"]),
            micro_batch_size=int(z["micro_batch_size"]),
            grad_accum=int(z["grad_accum"]),
            seed=self.seed,
            warmup_fraction=float(self.params["cpt"]["warmup_fraction"]),
            weight_decay=float(self.params["cpt"]["weight_decay"]),
            grad_clip=float(self.params["cpt"]["grad_clip"]),
            progress=True,
        ) | ({"parallel": str(z["parallel"])} if z.get("parallel") else {})  # paper_7b: fsdp; others: ddp

    def _ckpt_every(self, tokens: int) -> int:
        return max(1, tokens // int(self.sizes.get("checkpoints", 4)))

    def _snapshot_every(self, tokens: int) -> int | None:
        n = int(self.sizes.get("snapshots", 0))
        return max(1, tokens // n) if n > 0 else None

    def train_config(self, run: str) -> TrainConfig:
        """The ``TrainConfig`` of any run (special or continual pretraining)."""
        z = self.sizes
        common = self._common()
        rates = self.learning_rates
        lr = rates["cpt"]
        min_lr = lr * float(self.params["cpt"]["min_lr_ratio"])
        if run in ("base", "base_large"):
            tokens = self.pretrain_tokens(run)
            if tokens <= 0:
                raise StudyError(
                    f"profile {self.profile!r} uses a released base model: `{run}` is not trained"
                )
            model = z["model"] if run == "base" else z["large_model"]
            blr = rates["base"]
            if blr is None:
                raise StudyError(
                    f"profile {self.profile!r} pretrains `{run}` but sets no lr.base in params.yaml"
                )
            return TrainConfig(
                model=str(model),
                train_shard=str(self.shard("base")),
                out_dir=str(self.run_dir(run)),
                objective="clm",
                max_tokens=tokens,
                ckpt_every_tokens=self._ckpt_every(tokens),
                # the base's snapshots show its loss on the CPT domain flattening (token dynamics)
                snapshot_every_tokens=self._snapshot_every(tokens) if run == "base" else None,
                lr=blr,
                min_lr=blr * float(self.params["cpt"]["min_lr_ratio"]),
                **common,
            )
        if run == "reference":
            from rho.data.shards import TokenShard

            ref = TokenShard.open(self.shard("ref"))
            blocks = ref.n_blocks(int(z["block_size"]))
            tokens = int(self.params["reference"]["epochs"]) * blocks * int(z["block_size"])
            rlr = rates["reference"]
            return TrainConfig(
                model=self.final_model("base"),
                train_shard=str(self.shard("ref")),
                out_dir=str(self.run_dir(run)),
                objective="clm",
                max_tokens=tokens,
                ckpt_every_tokens=self._ckpt_every(tokens),
                lr=rlr,
                min_lr=rlr * float(self.params["cpt"]["min_lr_ratio"]),
                **common,
            )
        spec = self.run_spec(run)
        tokens = int(z["cpt_tokens"])
        base = spec["base"]
        kwargs: dict[str, Any] = dict(
            common,
            model=self.final_model(base),
            train_shard=str(self.shard(spec["corpus"])),
            out_dir=str(self.run_dir(run)),
            objective=spec["objective"],
            max_tokens=tokens,
            ckpt_every_tokens=self._ckpt_every(tokens),
            lr=lr,
            min_lr=min_lr,
            snapshot_every_tokens=self._snapshot_every(tokens),
            selection=self.selection(run),
            seed=self.run_seed(run),
        )
        if spec["objective"] != "clm" and "scorer" in spec:
            kwargs["scores"] = str(self.scores_dir(spec["scorer"]))
        if "sparse_backward" in spec:  # slm_variants only (the schema): exact | layers
            kwargs["sparse_backward"] = str(spec["sparse_backward"])
        return TrainConfig(**kwargs)
