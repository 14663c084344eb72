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
    """Python, NumPy, torch CPU (and CUDA) random generator states, as tensors and plain values.

    Only types that ``torch.load(weights_only=True)`` accepts (no NumPy arrays), so a checkpoint is
    read without running pickle's arbitrary-object machinery.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`rng_state`."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    if isinstance(keys, torch.Tensor):
        keys = keys.numpy()
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
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
    trainer = safe_load(path / "trainer.pt", legacy_numpy=True)
    counters, rng = _check_trainer(path / "trainer.pt", trainer)
    return Checkpoint(
        model_state=safe_load(path / "model.pt"),
        optimizer_state=safe_load(path / "optimizer.pt"),
        trainer=TrainerState(**counters),
        rng=rng,
        config=saved_config(out_dir),
    )


def saved_config(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The run config stored in ``<out_dir>/ckpt/state.json`` (damage raises an error naming the file)."""
    path = Path(out_dir) / CKPT_DIR / "state.json"
    state = read_json(path)
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise CheckpointError(f"{path} holds no run config; {_FIX}")
    return state["config"]


_FIX = "delete the run's ckpt/ folder (or use another out_dir) to start afresh"


def _legacy_numpy_globals() -> list[Any]:
    """The NumPy types that checkpoints written before the tensor-only RNG format hold (one array)."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def safe_load(path: Path, legacy_numpy: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors, containers and numbers only, never code.

    ``legacy_numpy`` also admits exactly the NumPy array types of the former RNG format.  A file the
    safe unpickler refuses (a crafted pickle) or cannot read (truncated) raises
    :class:`CheckpointError` naming the file.
    """
    import pickle

    try:
        with torch.serialization.safe_globals(_legacy_numpy_globals() if legacy_numpy else []):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} holds objects that a checkpoint never contains ({first[:300]}); it was not written by "
            f"rho.train or has been tampered with, so it is refused without running it; {_FIX}"
        ) from None
    except (EOFError, RuntimeError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} cannot be read ({type(e).__name__}: {e}); the file is damaged; {_FIX}"
        ) from None


def _check_trainer(path: Path, obj: Any) -> tuple[dict[str, int], dict[str, Any]]:
    """The counters and RNG states of a loaded ``trainer.pt``, after checking their shape."""
    fields = set(TrainerState().to_dict())
    counters = obj.get("trainer") if isinstance(obj, dict) else None
    rng = obj.get("rng") if isinstance(obj, dict) else None
    if (
        not isinstance(counters, dict)
        or set(counters) != fields
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counters.values())
    ):
        raise CheckpointError(
            f"{path} does not hold the trainer counters ({', '.join(sorted(fields))}); {_FIX}"
        )
    if not isinstance(rng, dict) or not {"python", "numpy", "torch"} <= set(rng):
        raise CheckpointError(f"{path} does not hold the random generator states; {_FIX}")
    return counters, rng


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
