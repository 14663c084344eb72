"""Resumable checkpoints and Hugging Face snapshots of a training run, written atomically.

``<out_dir>/ckpt/`` holds the latest resumable state::

    model.pt        model state dict (full, unsharded)
    optimizer.pt    optimizer state dict (full)
    trainer.pt      step, tokens seen, blocks consumed (the data position), RNG states
    state.json      the same counters in readable form, and the config

The directory is written beside its final place and renamed over the old one only when it is
complete (:func:`rho.io.atomic_dir`), so a run killed at any moment leaves either the previous
checkpoint or the new one, never a mixture.

``<out_dir>/snapshots/tokens_<N>/`` and ``<out_dir>/final/`` are Hugging Face model folders
(``save_pretrained`` + tokenizer + ``rho_train.json``), loadable by ``rho.models.build_model``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rho.io import atomic_dir, read_json, write_json_atomic

CKPT_DIR = "ckpt"
SNAPSHOT_DIR = "snapshots"
FINAL_DIR = "final"


class CheckpointError(ValueError):
    """A checkpoint is missing pieces or belongs to another run."""


@dataclass
class TrainerState:
    """Counters that, with the model and optimizer, determine the rest of the run."""

    step: int = 0
    tokens_seen: int = 0
    blocks_consumed: int = 0
    last_ckpt_tokens: int = 0
    last_snapshot_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        """Plain dict of the counters."""
        return dict(self.__dict__)


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) random generator states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    out_dir: str | os.PathLike,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    trainer: TrainerState,
    config: dict[str, Any],
) -> Path:
    """Write ``<out_dir>/ckpt`` atomically (replacing the previous one only once complete)."""
    path = Path(out_dir) / CKPT_DIR
    with atomic_dir(path) as tmp:
        torch.save(model_state, tmp / "model.pt")
        torch.save(optimizer_state, tmp / "optimizer.pt")
        torch.save({"trainer": trainer.to_dict(), "rng": rng_state()}, tmp / "trainer.pt")
        write_json_atomic(tmp / "state.json", {"trainer": trainer.to_dict(), "config": config})
    return path


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    trainer: TrainerState
    rng: dict[str, Any]
    config: dict[str, Any]


def has_checkpoint(out_dir: str | os.PathLike) -> bool:
    """Whether ``out_dir`` holds a resumable checkpoint."""
    return (Path(out_dir) / CKPT_DIR / "trainer.pt").is_file()


def load_checkpoint(out_dir: str | os.PathLike) -> Checkpoint:
    """Read ``<out_dir>/ckpt`` (tensors on the CPU)."""
    path = Path(out_dir) / CKPT_DIR
    missing = [
        n for n in ("model.pt", "optimizer.pt", "trainer.pt", "state.json") if not (path / n).is_file()
    ]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks {', '.join(missing)}; it was not written by rho.train: "
            "delete it (or use another out_dir) to start afresh"
        )
    trainer = torch.load(path / "trainer.pt", map_location="cpu", weights_only=False)
    return Checkpoint(
        model_state=torch.load(path / "model.pt", map_location="cpu", weights_only=True),
        optimizer_state=torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True),
        trainer=TrainerState(**trainer["trainer"]),
        rng=trainer["rng"],
        config=read_json(path / "state.json")["config"],
    )


def save_hf_model(
    path: str | os.PathLike,
    model: torch.nn.Module,
    model_state: dict[str, torch.Tensor],
    tokenizer: Any | None,
    info: dict[str, Any],
) -> Path:
    """Write a Hugging Face model folder (weights from ``model_state``) + tokenizer, atomically."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, state_dict=model_state)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / "rho_train.json", info)
    return path


def snapshot_path(out_dir: str | os.PathLike, tokens_seen: int) -> Path:
    """``<out_dir>/snapshots/tokens_<N>``."""
    return Path(out_dir) / SNAPSHOT_DIR / f"tokens_{tokens_seen}"
