"""The run plan: a :class:`~sr_bench.train.config.TrainConfig` resolved once, for one process of
one run, before anything is built.

:func:`planned_run` turns what the caller asked for (a config, ``resume``, ``overwrite``) and
what this machine gives into a frozen :class:`RunPlan`, in this order:

1. the process (:class:`Placement`): torchrun's rank and world size, and the device;
2. the config (:func:`resolve_config`): validated, with every ``auto`` the machine decides
   replaced: the device, the training and validation datasets, and ``amp`` on the CPU;
3. the run folder (:func:`~sr_bench.train.run_dir.open_run`): a new run, a resume (its
   checkpoint's recipe checked against the config) or an overwrite;
4. what depends on the folder: ``amp auto`` on CUDA (the folder's earlier choice, else the
   checkpoint's precision, else timed on the network), the warm start (``--init``, never on a
   resume) and the first update.

The data, the trainer, the loop, the checkpoints and the run folder's files then only read the
plan; nothing after :func:`planned_run` changes the config. A new setting that depends on the
machine, the scheduler or the folder (a time budget, a lock, a requeue) is one more field of
:class:`RunPlan`, resolved in :func:`_plan` and read where it is used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from sr_bench.data import DatasetNotFound, open_dataset
from sr_bench.errors import UsageError
from sr_bench.inference import resolve_device
from sr_bench.precision import math_mode
from sr_bench.train.config import TrainConfig
from sr_bench.train.distributed import agree, barrier, dist_env, process_group
from sr_bench.train.run_dir import RunFolder, RunFolderBusy, open_run, run_lock
from sr_bench.train.trainer import cpu_has_native_bf16, time_amp
from sr_bench.train.validate import resolve_val_dataset

__all__ = ["Placement", "RunPlan", "planned_run", "resolve_config", "training_dataset"]


@dataclass(frozen=True)
class Placement:
    """Where this process runs: its rank among ``world`` processes (torchrun) and its device."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and logs."""
        return self.rank == 0


@dataclass(frozen=True)
class RunPlan:
    """Everything one process of a run needs to know before it builds anything."""

    #: the run's config, resolved (``config.json`` and every checkpoint hold exactly this).
    config: TrainConfig
    placement: Placement
    #: the opened run folder: its checkpoint (``state``) when resuming, and what to tell the user.
    folder: RunFolder
    #: weights to load into the new network (``model.init``); None on a resume, where the
    #: checkpoint restores the network instead.
    warm_start: str | None
    #: ``amp auto``'s choice and why, to log and keep in the run folder; None when amp was given.
    amp_record: dict[str, Any] | None = None

    @property
    def device(self) -> torch.device:
        return self.placement.device

    @property
    def rank(self) -> int:
        return self.placement.rank

    @property
    def world(self) -> int:
        return self.placement.world

    @property
    def is_main(self) -> bool:
        return self.placement.is_main

    @property
    def state(self) -> dict[str, Any] | None:
        """The checkpoint being resumed, or None for a new run."""
        return self.folder.state

    @property
    def start(self) -> int:
        """The first update this call runs (the checkpoint's iteration on a resume)."""
        return int(self.state["iteration"]) if self.state is not None else 0


# ---- the config, resolved on this machine -----------------------------------------------------


def training_dataset(name: str) -> str:
    """Training on ``DIV2K`` means its 800 training images, never 0801-0900 (the one place
    this alias is written)."""
    return "DIV2K-train" if name == "DIV2K" else name


def _resolve_dataset(name: str, root: str | None) -> str:
    name = training_dataset(name)
    if name != "auto":
        return name
    reasons = []
    for candidate in ("DIV2K-train", "T91"):
        try:
            open_dataset(candidate, root)
            return candidate
        except DatasetNotFound as e:
            reasons.append(str(e))
    raise DatasetNotFound(
        "data 'auto' found neither DIV2K-train nor T91: " + " | ".join(reasons)
        + " | pass --data PATH for a folder of images, or --data embedded-train (scikit-image photos, no download)"
    )


def _device(option: str, world: int, local_rank: int) -> torch.device:
    device = torch.device(resolve_device(option))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {option}: torch.cuda.is_available() is False; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
        elif world > 1:  # every process on the one GPU named: never what was meant
            raise UsageError(f"--device {option} with {world} processes: each process trains on "
                             f"cuda:LOCAL_RANK; pass --device cuda (or auto) and choose the GPUs with "
                             f"CUDA_VISIBLE_DEVICES")
    return device


def _resolve(cfg: TrainConfig, world: int, local_rank: int) -> tuple[TrainConfig, torch.device]:
    try:
        cfg.validate()
    except ValueError as e:
        raise UsageError(str(e)) from None
    device = _device(cfg.runtime.device, world, local_rank)
    amp = cfg.runtime.amp
    if amp == "fp16" and device.type != "cuda":
        raise UsageError("--amp fp16 needs CUDA; use --amp bf16 or none on the CPU")
    if amp == "auto" and device.type != "cuda":  # CUDA: timed once the network exists (_amp_auto)
        amp = "bf16" if cpu_has_native_bf16() else "none"
    data = _resolve_dataset(cfg.data.dataset, cfg.data.root)
    val = resolve_val_dataset(cfg.val.dataset, data, cfg.data.root)
    device_name = device.type if world > 1 or device.type == "cpu" else str(device)
    changes = {"runtime.device": device_name, "runtime.amp": amp, "data.dataset": data, "val.dataset": val}
    return cfg.replace(**changes), device


def resolve_config(cfg: TrainConfig, *, world_size: int = 1, local_rank: int = 0) -> TrainConfig:
    """A validated copy with every ``auto`` replaced by what this machine and data root give:
    device, training and validation datasets, and amp (except on CUDA, where :func:`planned_run`
    times fp32 against bf16 on the network itself and keeps ``auto`` until then)."""
    return _resolve(cfg, world_size, local_rank)[0]


# ---- what depends on the run folder ---------------------------------------------------------------


def _amp_auto(cfg: TrainConfig, where: Placement, folder: RunFolder) -> dict[str, Any] | None:
    """``amp auto`` on CUDA: the run folder's earlier choice (a resume keeps its precision), else
    the checkpoint's, else timed now on rank 0 and shared with every rank. None when amp was given."""
    if cfg.runtime.amp != "auto":
        return None
    cached = folder.read_amp(str(where.device))
    saved = folder.saved_config
    if cached is None and saved is not None and saved.runtime.amp != "auto":
        cached = {"amp": saved.runtime.amp, "reason": "the precision this run started with"}
    if cached is None:
        choice = time_amp(cfg, where.device, cfg.data.batch_size // where.world)
        gpu = torch.cuda.get_device_name(where.device) if where.device.type == "cuda" else None
        cached = {"device": str(where.device), "gpu": gpu, "amp": choice.amp, "ms_per_update": choice.ms_per_update,
                  "reason": choice.reason,
                  "math_mode": {a: math_mode(a, where.device, tf32=cfg.runtime.tf32) for a in choice.ms_per_update}}
        if where.world > 1:  # every rank must train in the same precision: rank 0's timing decides
            box = [cached]
            dist.broadcast_object_list(box, src=0)
            cached = box[0]
    return cached


def _plan(cfg: TrainConfig, where: Placement, folder: RunFolder) -> RunPlan:
    amp_record = _amp_auto(cfg, where, folder)
    if amp_record is not None:
        cfg = cfg.replace(**{"runtime.amp": amp_record["amp"]})
    warm_start = cfg.model.init if folder.state is None else None
    return RunPlan(cfg, where, folder, warm_start, amp_record)


@contextlib.contextmanager
def planned_run(config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> Iterator[RunPlan]:
    """The plan of ``config`` for this process, inside torchrun's process group (when there is
    one). A new run that fails inside the block before its first checkpoint leaves no files."""
    rank, local_rank, world = dist_env()
    cfg, device = _resolve(config, world, local_rank)
    where = Placement(rank, local_rank, world, device)
    with process_group(world, device), _owned(cfg.out, where):
        folder = open_run(cfg, resume=resume, overwrite=overwrite, writer=where.is_main)
        barrier(world)  # every rank has looked at the folder before rank 0 writes into it
        try:
            yield _plan(cfg, where, folder)
        except BaseException:
            folder.discard()  # a new run that failed before its first checkpoint leaves nothing
            raise


@contextlib.contextmanager
def _owned(out: str, where: Placement) -> Iterator[None]:
    """Rank 0 holds the run folder's lock for the whole run (the other ranks are the same run);
    when it is refused, every rank stops (none is left waiting in a collective)."""
    with contextlib.ExitStack() as stack:
        refused: BaseException | None = None
        if where.is_main:
            try:
                stack.enter_context(run_lock(out))
            except Exception as e:  # noqa: BLE001 - told to the other ranks, then raised here
                refused = e
        if agree([float(refused is not None)], where.world, where.device)[0]:
            if refused is not None:
                raise refused
            raise RunFolderBusy(f"--out {out}: rank 0 could not take the run folder (see its message)")
        yield
