"""One training loop for causal LM (CLM) and Selective LM (SLM) pretraining.

Public entry points::

    from rho.train import TrainConfig, train
    result = train(TrainConfig(model="llama-mini", tokenizer="data/tok", train_shard="data/train",
                               scores="data/scores", objective="slm", selection={"ratio": 0.6},
                               max_tokens=10**6, out_dir="runs/slm"))

    python -m rho.train --config run.yaml key=value ...            # one process (selection.ratio=0.7)
    torchrun --nproc_per_node 2 -m rho.train --config run.yaml     # data-parallel (DDP / FSDP)

Modules: :mod:`~rho.train.config` (the validated config), :mod:`~rho.train.batches` (block order,
aligned batches, rank slices), :mod:`~rho.train.objective` (token weights: CLM / SLM / reweight,
micro or global selection scope), :mod:`~rho.train.distributed` (DDP/FSDP plumbing),
:mod:`~rho.train.checkpoint` (atomic checkpoints and HF snapshots, loaded without code execution),
:mod:`~rho.train.rundir` (which folders a run may write into; leftovers of killed saves), :mod:`~rho.train.schedule`,
:mod:`~rho.train.metrics` (per-step log) and :mod:`~rho.train.loop` (the loop itself).
"""

from importlib import import_module
from typing import Any

#: Public name -> submodule defining it.  Imported on first use (PEP 562), so that reading a
#: ``TrainConfig`` (e.g. in the study's notebooks) does not pay for importing torch/transformers.
_EXPORTS = {
    "Batch": "batches",
    "BatchLoader": "batches",
    "BlockOrder": "batches",
    "DataError": "batches",
    "CheckpointError": "checkpoint",
    "ConfigError": "config",
    "TrainConfig": "config",
    "DistributedError": "distributed",
    "TrainingDivergedError": "loop",
    "TrainResult": "loop",
    "train": "loop",
    "Objective": "objective",
    "StepSelector": "objective",
    "RunDirError": "rundir",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"rho.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'rho.train' has no attribute {name!r}")


__all__ = [
    "Batch",
    "BatchLoader",
    "BlockOrder",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DistributedError",
    "Objective",
    "RunDirError",
    "StepSelector",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "train",
]
