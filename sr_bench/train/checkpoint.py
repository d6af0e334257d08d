"""Training checkpoints: the file format, atomic saving, safe loading and the RNG states.

A checkpoint is a plain dict of tensors and Python values saved with ``torch.save`` and read
with ``torch.load(weights_only=True)`` (no pickled code runs on load): the trainer's state
(model, optimizer, scheduler, grad scaler), the iteration, the resolved config, every RNG state,
the validation history and the training seconds so far.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from sr_bench.errors import DataError
from sr_bench.images import atomic_write
from sr_bench.train.config import TrainConfig
from sr_bench.version import __version__

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "training_state", "save_checkpoint",
    "load_checkpoint", "checkpoint_config", "rng_state", "set_rng_state", "seed_everything",
]

CHECKPOINT_FORMAT = "sr_bench-train-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(DataError):
    """A training checkpoint that cannot be read; the message names the file and the fix."""


def training_state(
    config: TrainConfig, trainer: dict[str, Any], iteration: int, rng: dict[str, Any], history: list[dict],
    train_seconds: float,
) -> dict[str, Any]:
    """What a checkpoint holds: the trainer's ``state_dict`` (model, optimizer, scheduler, grad
    scaler), the number of updates done, the run's config, :func:`rng_state`, the validation
    history and the training seconds so far, tagged with this format and the versions."""
    return {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **trainer,
        "iteration": iteration, "config": config.to_dict(), "rng": rng, "history": history,
        "train_seconds": train_seconds, "sr_bench_version": __version__, "torch_version": str(torch.__version__),
    }


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename): a kill at any moment
    leaves the previous checkpoint intact."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain values only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as e:
        # never pass on torch's advice to retry with weights_only=False: that runs pickled code
        raise CheckpointError(
            f"{path}: not a readable sr_bench training checkpoint ({type(e).__name__}); it may be cut short "
            f"or from another program. Delete it and use --overwrite to start the run again"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an sr_bench training checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {state.get('version')}, this sr_bench reads {CHECKPOINT_VERSION}"
        )
    return state


def checkpoint_config(state: dict[str, Any]) -> TrainConfig:
    """The config saved in a checkpoint."""
    return TrainConfig.from_dict(dict(state["config"]))


def rng_state(loader_gen: torch.Generator) -> dict[str, Any]:
    """Every RNG state a run draws from (Python, NumPy, torch CPU and CUDA, the loader's)."""
    np_state = cast(tuple, np.random.get_state(legacy=True))
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "loader": loader_gen.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], loader_gen: torch.Generator) -> None:
    """Restore what :func:`rng_state` saved."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    loader_gen.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
