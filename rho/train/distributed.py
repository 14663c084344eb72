"""Data-parallel plumbing, kept apart from the model and the loop (torchtitan style).

``torchrun --nproc_per_node N -m rho.train --config x.yaml`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and
joins the process group (gloo on CPU, NCCL on CUDA).  Without them everything here is a no-op
on a single process, so the loop has one code path.

- ``parallel="ddp"``: ``DistributedDataParallel``; gradients are *averaged* over ranks, which the
  loop compensates (see :mod:`rho.train.objective`).
- ``parallel="fsdp"``: FSDP2 ``fully_shard`` on every decoder layer and the root, for models
  whose parameters + optimizer state do not fit one device; also averages gradients.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


class DistributedError(ValueError):
    """The data-parallel environment is inconsistent with the config."""


@dataclass
class DistContext:
    """Where this process sits in the data-parallel group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    parallel: str = "ddp"

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that writes files and shows progress)."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """Whether there is more than one rank."""
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's CUDA device if available else CPU; ``cuda`` fails clearly without one."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise DistributedError("device=cuda but no CUDA device is visible; use device=cpu or auto")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(device: str = "auto", backend: str = "auto", parallel: str = "ddp") -> DistContext:
    """Join the process group described by torchrun's environment variables (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistContext(device=dev, parallel=parallel)
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl" and dev.type != "cuda":
        raise DistributedError("dist_backend=nccl needs CUDA devices; use gloo (or auto) on CPU")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise DistributedError("the process group does not match RANK/WORLD_SIZE in the environment")
    return DistContext(rank, world, local_rank, dev, backend, parallel)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (if this process joined one)."""
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank."""
    if ctx.is_distributed:
        dist.barrier()


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """Move ``model`` to the device and wrap it for data parallelism (DDP or FSDP2)."""
    model = model.to(ctx.device)
    if not ctx.is_distributed:
        return model
    if ctx.parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in _decoder_layers(model):
            fully_shard(layer)
        fully_shard(model)
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The underlying model of a DDP wrapper (FSDP2 modifies the model in place)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _decoder_layers(model: nn.Module) -> list[nn.Module]:
    base = getattr(model, "model", model)
    layers = getattr(base, "layers", None)
    return list(layers) if layers is not None else []


@contextlib.contextmanager
def no_grad_sync(model: nn.Module, ctx: DistContext, skip: bool) -> Iterator[None]:
    """Within the block, backward accumulates locally without an all-reduce when ``skip``.

    Used for every micro-batch but the last of an optimizer step.
    """
    if not (skip and ctx.is_distributed):
        yield
        return
    if isinstance(model, nn.parallel.DistributedDataParallel):
        with model.no_sync():
            yield
        return
    setter = getattr(model, "set_requires_gradient_sync", None)  # FSDP2
    if setter is None:
        yield
        return
    setter(False)
    try:
        yield
    finally:
        setter(True)


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum of ``t`` over ranks (a new tensor; ``t`` itself is left as it was)."""
    out = t.clone()
    if ctx.is_distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_cat(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenate every rank's ``t`` along dim 0, in rank order (all ranks' shapes must agree)."""
    if not ctx.is_distributed:
        return t
    parts = [torch.empty_like(t) for _ in range(ctx.world_size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=0)


def full_state_dicts(
    model: nn.Module, optimizer: torch.optim.Optimizer, ctx: DistContext
) -> tuple[dict, dict]:
    """Complete (unsharded, CPU) model and optimizer state dicts; every rank must call this."""
    if ctx.parallel == "fsdp" and ctx.is_distributed:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_state_dict(model, optimizer, options=opts)
    return unwrap(model).state_dict(), optimizer.state_dict()


def load_full_state_dicts(
    model: nn.Module, optimizer: torch.optim.Optimizer, model_sd: dict, optim_sd: dict, ctx: DistContext
) -> None:
    """Load state dicts written by :func:`full_state_dicts` into a (wrapped) model and optimizer."""
    if ctx.parallel == "fsdp" and ctx.is_distributed:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=False)
        set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd, options=opts)
        return
    unwrap(model).load_state_dict(model_sd)
    optimizer.load_state_dict(optim_sd)
