"""The processes of one run: torchrun's environment, the process group, and the two collective
steps the trainer needs (a barrier, and every rank agreeing on a flag). One process (no
``WORLD_SIZE``) skips them all.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist

__all__ = ["dist_env", "process_group", "barrier", "agree"]


def dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment (1 process without it)."""
    env = os.environ
    return int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0")), int(env.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def process_group(world: int, device: torch.device) -> Iterator[None]:
    """torchrun's process group, created (and destroyed) here unless the caller made one."""
    own = world > 1 and not dist.is_initialized()
    if own:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        if own:
            dist.destroy_process_group()


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def agree(flags: list[float], world: int, device: torch.device) -> list[bool]:
    """Whether each flag is set on any rank (every rank then takes the same branch)."""
    if world == 1:
        return [bool(f) for f in flags]
    t = torch.tensor(flags, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(f) for f in t.tolist()]
