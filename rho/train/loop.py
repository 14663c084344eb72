"""The training loop: one loop for CLM, SLM and soft reweighting, single process or data-parallel.

Read it top to bottom, like nanoGPT's ``train.py``:

1. **Inputs** — shard, reference scores, tokenizer and model are opened and checked against each
   other before anything is written (ratio, vocabulary, alignment, corpus size: each mismatch
   raises a ``ValueError`` subclass that says what to fix).
2. **Resume** — if ``<out_dir>/ckpt`` exists, the run continues from it (same config required):
   model, optimizer, RNG and data position are restored, so on CPU the resumed run ends with
   bit-identical weights to an uninterrupted one.
3. **Steps** — each optimizer step takes its global batch of blocks (see
   :mod:`rho.train.batches`), decides every token's weight (:mod:`rho.train.objective`: all
   tokens for CLM, the top-``ratio`` tokens by excess loss for SLM, soft weights for
   reweighting; over the whole optimizer batch for ``selection.scope=global``), accumulates
   ``sum(w * loss) / N`` over micro-batches, clips, and takes an AdamW step with a warmup + cosine
   learning rate.  A NaN/inf loss or gradient stops the run before the update.
4. **Outputs** — ``log.jsonl`` per step, ``ckpt/`` every ``ckpt_every_tokens``,
   ``snapshots/tokens_<N>/`` every ``snapshot_every_tokens``, ``final/`` at the end
   (docs/design.md, "Training run directory").
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from rho.data.shards import TokenShard
from rho.environment import environment
from rho.head import HeadLoss
from rho.io import read_json, write_json_atomic
from rho.loss import selected_loss_sum
from rho.models import ModelError, build_model, check_vocab, count_parameters, is_preset, preset_config
from rho.scoring import ReferenceScores, load_scores
from rho.train import checkpoint as ckpt_io
from rho.train import rundir
from rho.train.batches import Batch, BatchLoader, check_inputs
from rho.train.config import ConfigError, TrainConfig
from rho.train.distributed import (
    DistContext,
    barrier,
    full_state_dicts,
    init_distributed,
    load_full_state_dicts,
    no_grad_sync,
    shutdown,
    unwrap,
    wrap_model,
)
from rho.train.metrics import TIMING_LOG, JsonlLog, StepStats
from rho.train.objective import Objective, StepSelector
from rho.train.schedule import lr_at
from rho.train.sparse_layers import SparseLayers


class TrainingDivergedError(ValueError):
    """The loss or gradient became NaN/inf; the run stopped before applying the update."""


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    out_dir: Path
    steps: int
    tokens_seen: int
    final_dir: Path
    log_path: Path
    resumed_from_step: int | None
    last_record: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return {
            "out_dir": str(self.out_dir),
            "steps": self.steps,
            "tokens_seen": self.tokens_seen,
            "final_dir": str(self.final_dir),
            "resumed_from_step": self.resumed_from_step,
            "loss": self.last_record.get("loss"),
        }


def train(config: TrainConfig | dict[str, Any]) -> TrainResult:
    """Train a model as ``config`` says (see :class:`TrainConfig`); resume if a checkpoint exists.

    Under ``torchrun`` every rank calls this; rank 0 writes the run directory.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    owns_group = not torch.distributed.is_initialized()
    ctx = init_distributed(cfg.device, cfg.dist_backend, cfg.parallel)
    try:
        return _train(cfg, ctx)
    finally:
        if owns_group:
            shutdown(ctx)
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, ctx: DistContext) -> TrainResult:
    out = Path(cfg.out_dir)
    rundir.check_out_dir(cfg)  # only a new/empty folder or this trainer's own run directory
    if ctx.is_main:
        rundir.clean_stale(out)  # leftovers of a killed save
    barrier(ctx)
    # Every generator a checkpoint records starts from the seed (Python's and NumPy's are otherwise
    # seeded from the OS, and a checkpoint would differ between two identical runs).
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)

    # ---------------------------------------------------------------- 1. inputs, checked up front
    shard = TokenShard.open(cfg.train_shard)
    tokenizer = load_tokenizer(cfg, shard)
    model = load_model(cfg, shard)
    check_inputs(shard, model, cfg.block_size)
    scores = load_reference_scores(cfg, shard, model)
    loader = BatchLoader(
        shard,
        cfg.block_size,
        cfg.micro_batch_size,
        cfg.grad_accum,
        seed=cfg.seed,
        scores=scores,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    objective = Objective.from_config(cfg)
    total_steps = cfg.total_steps(ctx.world_size)
    warmup = cfg.warmup(total_steps)
    tokens_per_step = cfg.tokens_per_step(ctx.world_size)
    label_names = shard.label_names

    # ---------------------------------------------------------------- 2. model, optimizer, resume
    checkpoint = find_checkpoint(cfg, out)
    model = wrap_model(model, ctx)
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, foreach=True
    )
    state = ckpt_io.TrainerState()
    if (
        checkpoint is not None
        and checkpoint.trainer.blocks_consumed != checkpoint.trainer.step * loader.blocks_per_step
    ):
        raise ConfigError(
            f"{out / ckpt_io.CKPT_DIR} was written with {checkpoint.trainer.blocks_consumed // max(1, checkpoint.trainer.step)}"
            f" blocks per optimizer step, this run takes {loader.blocks_per_step} ({ctx.world_size} process(es)); "
            "resume with the same number of data-parallel processes"
        )
    if checkpoint is not None:
        load_full_state_dicts(model, optimizer, checkpoint.model_state, checkpoint.optimizer_state, ctx)
        ckpt_io.set_rng_state(checkpoint.rng)
        state = checkpoint.trainer
    resumed_from = state.step if checkpoint is not None else None
    # log.jsonl holds what the step computed (the same bytes on every re-run); wall-clock times go to
    # timing.jsonl, which DVC ignores (.dvcignore), so a re-run leaves the run's DVC hash unchanged.
    log, timing = JsonlLog(out / "log.jsonl"), JsonlLog(out / TIMING_LOG)
    if ctx.is_main:
        rundir.mark(out)
        write_json_atomic(out / "config.json", cfg.to_dict())
        write_json_atomic(out / "environment.json", environment(ctx.device))
        log.truncate_after(state.step)
        timing.truncate_after(state.step)
    run_info = {"config": cfg.to_dict(), "n_params": count_parameters(unwrap(model))}

    def save_checkpoint() -> None:
        model_sd, optim_sd = full_state_dicts(model, optimizer, ctx)
        if ctx.is_main:
            ckpt_io.save_checkpoint(out, model_sd, optim_sd, state, cfg.to_dict())
        state.last_ckpt_tokens = state.tokens_seen
        barrier(ctx)

    def save_hf(path: Path) -> None:
        model_sd, _ = full_state_dicts(model, optimizer, ctx)
        if ctx.is_main:
            ckpt_io.save_hf_model(path, unwrap(model), model_sd, tokenizer, {**run_info, **state.to_dict()})
        barrier(ctx)

    if cfg.snapshot_every_tokens and state.step == 0:
        save_hf(ckpt_io.snapshot_path(out, 0))  # the starting weights: token dynamics start here

    # ---------------------------------------------------------------- 3. optimizer steps
    use_bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and ctx.device.type == "cuda")

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=use_bf16)

    # Per-token losses straight from the last hidden states and the head's weight when the head is
    # a plain linear layer (rho.head): no [tokens, vocab] logits, and a backward that skips the
    # tokens with zero weight.  Otherwise (or fused_loss=off) from the model's logits.
    head_loss = HeadLoss(
        model,
        cfg.fused_loss,
        chunk_size=cfg.chunk_size,
        backend=cfg.fused_backend,
        uniform_grad=objective.objective == "clm"
        or (objective.objective == "slm" and objective.selection.ratio >= 1.0),
    )

    # sparse_backward=layers (SLM only, an approximation): the layers' weight gradients sum over the
    # selected tokens only (rho.train.sparse_layers); exact (the default) installs nothing.
    sparse_layers = None
    if cfg.sparse_backward == "layers":
        if ctx.parallel == "fsdp" and ctx.is_distributed:
            raise ConfigError(
                "sparse_backward=layers does not support FSDP-sharded models; use parallel=ddp or "
                "sparse_backward=exact"
            )
        sparse_layers = SparseLayers.install(model)

    def per_token_loss(batch: Batch) -> torch.Tensor:
        with autocast():
            return head_loss(model, batch.input_ids, batch.labels)

    record: dict[str, Any] = {}
    bar = tqdm(total=total_steps, initial=state.step, unit="step", disable=not (ctx.is_main and cfg.progress))
    model.train()
    for step in range(state.step, total_steps):
        t0, c0 = time.perf_counter(), time.process_time()
        lr = lr_at(step, lr=cfg.lr, min_lr=cfg.min_lr, warmup=warmup, total=total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batches = [b.to(ctx.device) for b in loader.micro_batches(step)]

        # Which tokens count, and with what weight.  A global top-k over several micro-batches
        # needs all their excess losses before the first backward: one no-grad forward each.
        selector = StepSelector(objective, batches, ctx, step=step, seed=cfg.seed)
        if selector.needs_scoring_pass:
            with torch.no_grad():
                selector.prepare([per_token_loss(b) for b in batches])

        stats = StepStats(ctx.device, with_labels=shard.labels is not None)
        for m, batch in enumerate(batches):
            with no_grad_sync(model, ctx, skip=m < len(batches) - 1):
                tok_loss = per_token_loss(batch)
                weight, denom = selector.weights(m, tok_loss.detach())
                loss = selected_loss_sum(tok_loss * weight, weight > 0) / denom
                with sparse_layers.rows(weight > 0) if sparse_layers else contextlib.nullcontext():
                    loss.backward()
            stats.add(tok_loss, weight, selector.valid[m], batch.provenance)
        record = stats.reduce(ctx, label_names)

        max_norm = cfg.grad_clip if cfg.grad_clip else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        if not (math.isfinite(record["loss"]) and math.isfinite(grad_norm)):
            bar.close()
            raise TrainingDivergedError(
                f"step {step + 1}: loss={record['loss']} grad_norm={grad_norm} is not finite; stopped before "
                f"the update. The last good checkpoint ({_last_ckpt_text(out)}) is kept; lower lr, check the "
                "data or add warmup, then rerun the same command to resume from it"
            )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        state.step = step + 1
        state.tokens_seen += tokens_per_step
        state.blocks_consumed += loader.blocks_per_step
        dt = time.perf_counter() - t0
        record.update(
            step=state.step,
            tokens=state.tokens_seen,
            lr=lr,
            grad_norm=grad_norm,
        )
        if ctx.is_main:
            log.append(record)
            timing.append(
                {
                    "step": state.step,
                    "step_time_s": dt,
                    "tokens_per_s": tokens_per_step / dt,
                    "step_cpu_s": time.process_time() - c0,  # this process's CPU time: steadier when shared
                }
            )
        bar.update(1)
        if state.step % cfg.log_every == 0 or state.step == total_steps:
            bar.set_postfix(
                loss=f"{record['loss']:.4f}", sel=f"{record['selected_frac']:.2f}", lr=f"{lr:.2e}"
            )

        if cfg.ckpt_every_tokens and _crossed(
            state.last_ckpt_tokens, state.tokens_seen, cfg.ckpt_every_tokens
        ):
            save_checkpoint()
        if cfg.snapshot_every_tokens and _crossed(
            state.last_snapshot_tokens, state.tokens_seen, cfg.snapshot_every_tokens
        ):
            save_hf(ckpt_io.snapshot_path(out, state.tokens_seen))
            state.last_snapshot_tokens = state.tokens_seen
    bar.close()
    if sparse_layers is not None:
        sparse_layers.uninstall()

    # ---------------------------------------------------------------- 4. final model
    ran = resumed_from is None or state.step > resumed_from
    if ran or not (out / ckpt_io.FINAL_DIR).is_dir():
        save_hf(out / ckpt_io.FINAL_DIR)
    if ran and state.last_ckpt_tokens != state.tokens_seen:
        save_checkpoint()  # so rerunning a finished run's command is a no-op
    return TrainResult(
        out_dir=out,
        steps=state.step,
        tokens_seen=state.tokens_seen,
        final_dir=out / ckpt_io.FINAL_DIR,
        log_path=out / "log.jsonl",
        resumed_from_step=resumed_from,
        last_record=record,
    )


# -------------------------------------------------------------------- helpers (inputs and resume)
def load_reference_scores(
    cfg: TrainConfig, shard: TokenShard, model: torch.nn.Module
) -> ReferenceScores | None:
    """The run's reference scores, checked against the shard, block size and model vocabulary.

    None when the objective reads no scores (CLM, or the ``random`` score alone).
    """
    if not cfg.selection.needs_reference(cfg.objective):
        return None
    need_entropy = "ref_entropy" in cfg.selection.inputs(cfg.objective)
    return load_scores(cfg.scores, shard, block_size=cfg.block_size, model=model, need_entropy=need_entropy)


def load_tokenizer(cfg: TrainConfig, shard: TokenShard) -> Any:
    """The tokenizer saved with every model folder; it must be the one that made the shard."""
    from transformers import AutoTokenizer

    from rho.data.shards import tokenizer_fingerprint

    source = cfg.tokenizer
    if source is None:
        for cand in (cfg.init_from, cfg.model):
            if cand and not is_preset(cand):
                source = cand
                break
    if source is None:
        raise ConfigError(
            f"model {cfg.model!r} is a preset with no tokenizer: set tokenizer to the folder of the tokenizer "
            "that built the shard (it is saved with every model rho writes)"
        )
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"cannot load a tokenizer from {source!r} ({e}); set tokenizer to a tokenizer folder"
        ) from None
    fp = tokenizer_fingerprint(tok)
    if fp != shard.tokenizer_hash:
        raise ConfigError(
            f"tokenizer {source!r} (fingerprint {fp[:12]}) is not the one that made the shard {shard.path} "
            f"({shard.tokenizer_hash[:12]}); use the shard's tokenizer or re-tokenize the corpus"
        )
    return tok


def load_model(cfg: TrainConfig, shard: TokenShard) -> torch.nn.Module:
    """Build the preset / load the model (``init_from`` weights if given) and check its vocabulary."""
    if cfg.init_from is None:
        vocab = shard.vocab_size if is_preset(cfg.model) else None
        model = build_model(cfg.model, vocab_size=vocab, seed=cfg.seed)
    else:
        model = build_model(cfg.init_from)
        if is_preset(cfg.model):
            want = preset_config(cfg.model, model.config.vocab_size)
            keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
            diff = {
                k: (getattr(want, k), getattr(model.config, k, None))
                for k in keys
                if getattr(want, k) != getattr(model.config, k, None)
            }
            if diff:
                raise ModelError(
                    f"init_from {cfg.init_from} is not a {cfg.model} model (preset vs loaded: {diff}); "
                    "set model to the architecture of the init_from weights"
                )
    check_vocab(model, shard.vocab_size, what=f"the shard {shard.path}")
    return model


def find_checkpoint(cfg: TrainConfig, out: Path) -> ckpt_io.Checkpoint | None:
    """The checkpoint to resume from, after checking it belongs to this config."""
    if not ckpt_io.has_checkpoint(out):
        return None
    if not cfg.resume:
        raise ConfigError(
            f"{out} already holds a checkpoint and resume=false; use another out_dir (or delete {out}) "
            "rather than overwrite a run"
        )
    saved = ckpt_io.saved_config(out)
    diff = cfg.diff(saved)
    if diff:
        shown = ", ".join(f"{k}: now {a!r}, checkpoint {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(
            f"{out} holds a run with a different config ({shown}); rerun with the same config to resume, "
            "or use another out_dir"
        )
    return ckpt_io.load_checkpoint(out)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices (dim >= 2), none on norms and biases."""
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _crossed(last: int, now: int, every: int) -> bool:
    return now // every > last // every


def _last_ckpt_text(out: Path) -> str:
    if not ckpt_io.has_checkpoint(out):
        return f"none yet under {out / ckpt_io.CKPT_DIR}"
    step = read_json(out / ckpt_io.CKPT_DIR / "state.json")["trainer"]["step"]
    return f"{out / ckpt_io.CKPT_DIR}, step {step}"
