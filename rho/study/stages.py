"""One function per pipeline stage: build data, train a run, score a corpus, evaluate a run.

Each is called by ``python -m rho.study <stage> <name>`` from ``dvc.yaml`` (so a training stage
can be launched under ``torchrun``) and can be called from a notebook.  Every output goes to the
directories of :class:`rho.study.config.Study`, written atomically by the modules underneath.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from rho.io import atomic_dir, write_json_atomic, write_text_atomic
from rho.study.config import Study, StudyError

#: Config fields that do not change a run's result.
_FREE = ("progress", "log_every", "num_threads", "resume", "device", "dist_backend")

#: Parts whose CLM and main SLM runs (``clm_runs``, ``slm_runs``; not variants or random runs) are
#: evaluated at every snapshot (Figure 1 / Figure 7 curves).
CURVE_PARTS = ("math_cpt",)


def build_data(study: Study, *, progress: bool = True) -> dict[str, Any]:
    """Build the profile's data into ``data/<profile>/``: the miniature world (replacing an old one),
    or, for hub profiles (``paper``), the real corpora tokenized by ``rho.data.paper.build_hub_data``."""
    from rho.data import build_world
    from rho.data.worlds import get_world

    world = study.sizes["world"]
    if not get_world(world).is_miniature:
        from rho.data.paper import build_hub_data

        return build_hub_data(study.world_dir, world, seed=study.seed, progress=progress)
    return build_world(study.world_dir, world, seed=study.seed, overwrite=True, progress=progress)


def train_run(study: Study, run: str) -> Path:
    """Train one run (``base``, ``base_large``, ``reference`` or a name of ``params.runs``).

    With the profile's ``launcher`` set to ``python`` the run trains in this process; any other
    launcher (e.g. ``torchrun --nproc_per_node 8``) is started as
    ``<launcher> -m rho.train --config <run>.yaml`` and this function waits for it.
    """
    from rho.train import train

    if run in ("base", "base_large") and study.pretrain_tokens(run) == 0:
        # The profile continues a released model (the paper's Tinyllama): nothing to train.
        out = study.run_dir(run)
        write_json_atomic(out / "released.json", {"model": study.final_model(run)})
        return out
    cfg = study.train_config(run)
    _fresh_or_resume(cfg)
    launcher = str(study.sizes.get("launcher", "python")).strip()
    if launcher in ("python", ""):
        train(cfg)
    else:
        cfg_file = Path(cfg.out_dir) / "launch.yaml"
        cfg_file.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cfg_file, yaml.safe_dump(cfg.to_dict(), sort_keys=True))
        cmd = [*shlex.split(launcher), "-m", "rho.train", "--config", str(cfg_file)]
        if cmd[0] == "python":
            cmd[0] = sys.executable
        subprocess.run(cmd, check=True)
    return Path(cfg.out_dir)


def inputs_fingerprint(cfg: Any) -> dict[str, Any]:
    """What a run's result depends on beyond its config: the content of its inputs.

    The config (minus fields that do not change results), the starting weights (SHA-256 of the
    model folder's weight files; the name for presets and hub models), the token shard's hash and
    the reference scores' identity.
    """
    from rho.io import sha256_file

    fp: dict[str, Any] = {"config": {k: v for k, v in cfg.to_dict().items() if k not in _FREE}}
    model = Path(cfg.model)
    if model.is_dir():
        fp["model"] = {p.name: sha256_file(p) for p in sorted(model.glob("*.safetensors"))}
    else:
        fp["model"] = str(cfg.model)
    fp["shard"] = json.loads((Path(cfg.train_shard) / "meta.json").read_text())["tokens_sha256"]
    if cfg.scores:
        meta = json.loads((Path(cfg.scores) / "meta.json").read_text())
        fp["scores"] = {k: meta.get(k) for k in sorted(meta) if k != "created"}
    return fp


def _fresh_or_resume(cfg: Any) -> None:
    """Keep a run directory only if it was made from the same config and the same inputs.

    DVC keeps training outputs between attempts (``persist``) so an interrupted stage resumes from
    its last checkpoint; when anything it depends on changed, the stale directory is removed first.
    """
    from rho.train.rundir import mark as mark_run_dir

    out = Path(cfg.out_dir)
    fp = inputs_fingerprint(cfg)
    marker = out / "inputs.json"
    if out.exists() and (
        not marker.is_file() or json.loads(marker.read_text()) != json.loads(json.dumps(fp))
    ):
        shutil.rmtree(out)
    if not marker.is_file():
        write_json_atomic(marker, fp)
    mark_run_dir(out)  # the folder is this run's: rho.train may write into it (rho.train.rundir)


def score(study: Study, scorer: str, *, batch_size: int = 16, backend: str = "torch") -> Path:
    """Score a corpus with a reference model: ``rm_<corpus>`` or ``self_<corpus>``."""
    import torch
    from transformers import AutoModelForCausalLM

    from rho.data.shards import TokenShard
    from rho.scoring import score_corpus

    shard = TokenShard.open(study.shard(study.scorer_corpus(scorer)))
    model = AutoModelForCausalLM.from_pretrained(study.scorer_model(scorer))
    if torch.cuda.is_available():  # the paper profiles score billions of tokens: on the GPU, not the CPU
        model = model.to("cuda")
    out = study.scores_dir(scorer)
    score_corpus(
        model, shard, out, block_size=int(study.sizes["block_size"]), batch_size=batch_size, backend=backend
    )
    return out


def _math_tasks(study: Study) -> list[str]:
    """The tasks of the profile's suite, ``data/<profile>/eval/tasks.json``: the miniature world's, or
    the paper's nine benchmarks that the hub-data build writes there (rho.evaluate.builtin_suite)."""
    index = study.world_dir / "eval" / "tasks.json"
    if not index.is_file():
        from rho.evaluate import builtin_task_names

        return list(builtin_task_names())
    return [t["name"] for t in json.loads(index.read_text())]


def _snapshot_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    snaps = []
    for p in (run_dir / "snapshots").glob("tokens_*"):
        snaps.append((int(p.name.split("_", 1)[1]), p))
    return sorted(snaps)


def evaluate_run(study: Study, run: str, *, batch_size: int | None = None) -> Path:
    """Evaluate a run's final model on the math suite (+ general tasks for ``general_cpt``).

    Writes ``evals/<profile>/<run>/``: ``results.csv`` (tidy: task, role, metric, value, stderr,
    n), ``completions.jsonl``, ``downstream.csv`` (downstream loss per checkpoint) and, for the
    parts in :data:`CURVE_PARTS`, ``curve.csv`` (accuracy per task at every snapshot; the snapshots
    before the last answer the first ``curve_eval_limit`` problems per task, the last point is the
    final evaluation; downstream loss also reads the first ``curve_eval_limit`` problems, since it is
    computed at every snapshot), and for ``general_cpt`` runs ``general.csv`` with lm-eval's
    per-document records under ``general/``. ``batch_size`` defaults to the profile's ``eval_batch_size`` (16).
    """
    from rho.evaluate import PAPER_GENERAL_TASKS, downstream_loss, evaluate_model, run_lm_eval

    z = study.sizes
    batch_size = int(batch_size or z.get("eval_batch_size", 16))
    tasks = _math_tasks(study)
    spec = study.run_spec(run) if run in study.run_names else {"part": run}
    limit = eval_limit(study, run)
    context = int(z["block_size"])  # the models never saw positions beyond the training block
    eval_kw = dict(
        data_root=study.world_dir,
        limit=limit,
        batch_size=batch_size,
        max_new_tokens=int(z["max_new_tokens"]),
        context_length=context,
        progress=True,
    )
    out = study.eval_dir(run)
    with atomic_dir(out) as tmp:
        final = evaluate_model(study.final_model(run), tasks, out_dir=tmp / "final", **eval_kw)
        final.insert(0, "run", run)
        final.to_csv(tmp / "results.csv", index=False)
        cps = snapshots(study, run)
        rows = []
        generate = _generate_tasks(study, tasks)
        for tok, path in cps if generate else []:  # no model loaded when there is nothing to score
            model, tokenizer = _load(path)
            for t in generate:
                val = downstream_loss(
                    model,
                    study.world_dir / "eval" / t,
                    tokenizer=tokenizer,
                    limit=z.get("curve_eval_limit", limit),
                    batch_size=batch_size,
                    progress=False,
                    context_length=context,
                )
                rows.append({"run": run, "tokens": tok, "task": t, "downstream_loss": val})
        columns = ["run", "tokens", "task", "downstream_loss"]  # the header even with no rows
        pd.DataFrame(rows, columns=columns).to_csv(tmp / "downstream.csv", index=False)
        if (
            spec.get("part") in CURVE_PARTS
            and spec.get("group") in ("clm_runs", "slm_runs")
            and "seed" not in spec
        ):
            end = cps[-1][0]
            curve = []
            for tok, path in cps:
                kw = eval_kw | {"limit": z.get("curve_eval_limit", limit)}
                df = final.drop(columns="run") if tok == end else evaluate_model(str(path), tasks, **kw)
                curve.append(df.assign(run=run, tokens=tok))
            pd.concat(curve, ignore_index=True).to_csv(tmp / "curve.csv", index=False)
        if spec.get("part") == "general_cpt":
            lm_dir = study.world_dir / "eval" / "lm_eval"
            local = lm_dir.is_dir()  # miniature worlds: their own YAMLs; hub data: lm-eval's own tasks
            names = sorted(p.stem for p in lm_dir.glob("*.yaml")) if local else list(PAPER_GENERAL_TASKS)
            general = run_lm_eval(
                study.final_model(run),
                names,
                include_path=lm_dir if local else None,
                limit=limit,
                batch_size=batch_size,
                max_length=context,
                out_dir=tmp / "general",  # per-document outcomes: SLM vs CLM paired on the same documents
            )
            general.insert(0, "run", run)
            general.to_csv(tmp / "general.csv", index=False)
    return out


#: Parts whose runs are evaluated on ``eval_limit`` problems: the main comparison (Table 1), the
#: two single-run comparisons the scorecard judges (C6 general CPT, C12 weak-to-strong) and the
#: sparse-backward ablation (paired with the main SLM run on its problems).
FULL_EVAL_PARTS = ("math_cpt", "general_cpt", "weak_to_strong", "sparse_backward")


def eval_limit(study: Study, run: str) -> int | None:
    """Problems per task for a run's final evaluation: ``eval_limit`` for the base and the runs of
    :data:`FULL_EVAL_PARTS`, ``side_eval_limit`` (when set) for the other runs (reference,
    self-reference, ratio ablation and other ablations)."""
    z = study.sizes
    main = run == "base" or (run in study.run_names and study.run_spec(run)["part"] in FULL_EVAL_PARTS)
    return z.get("eval_limit") if main or z.get("side_eval_limit") is None else z["side_eval_limit"]


def _load(path: str | Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(str(path)).eval(), AutoTokenizer.from_pretrained(str(path))


def snapshots(study: Study, run: str) -> list[tuple[int, Path]]:
    """``(tokens, folder)`` of a run's model snapshots and its final model (runs without snapshots: final).

    Snapshots are Hugging Face model folders (``snapshots/tokens_<N>/``, ``profiles.*.snapshots``
    per run); they are not the resumable training checkpoints (``ckpt/``, ``profiles.*.checkpoints``).
    """
    run_dir = study.run_dir(run)
    if (run_dir / "released.json").is_file():
        return [(0, Path(study.final_model(run)))]
    snaps = _snapshot_dirs(run_dir)
    final_tokens = _tokens_seen(run_dir)
    if not snaps or snaps[-1][0] != final_tokens:
        snaps.append((final_tokens, run_dir / "final"))
    return snaps


def checkpoints(study: Study, run: str) -> list[tuple[int, Path]]:
    """Deprecated name of :func:`snapshots` (it returns model snapshots, not resumable checkpoints)."""
    import warnings

    warnings.warn("rho.study.stages.checkpoints is now snapshots()", DeprecationWarning, stacklevel=2)
    return snapshots(study, run)


def _generate_tasks(study: Study, tasks: list[str]) -> list[str]:
    """The free-form tasks of the miniature suite (downstream loss needs local reference solutions;
    five of the paper's nine benchmarks, ``builtin`` entries, have none; its Figure 6(b) is on MetaMath)."""
    index = study.world_dir / "eval" / "tasks.json"
    if not index.is_file():
        return []
    kinds = {t["name"]: t["kind"] for t in json.loads(index.read_text()) if "builtin" not in t}
    return [t for t in tasks if kinds.get(t) == "generate"]


def _tokens_seen(run_dir: Path) -> int:
    log = run_dir / "log.jsonl"
    last = None
    if log.is_file():
        for line in log.read_text().splitlines():
            if line.strip():
                last = json.loads(line)
    if last is None:
        raise StudyError(
            f"{run_dir} has no training log: train the run first (`python -m rho.study train ...`)"
        )
    return int(last.get("tokens_seen", last.get("tokens", 0)))
