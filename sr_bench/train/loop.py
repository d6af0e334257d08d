"""The trainer: :func:`train` runs one :class:`~sr_bench.train.config.TrainConfig`, in phases.

1. **resolve** the config once (:func:`resolve_config`: validated, device, amp rule, datasets);
2. **open the run folder** (:func:`sr_bench.train.run_dir.open_run`: a new run needs an empty
   folder, ``resume`` a matching checkpoint, ``overwrite`` clears it);
3. **build the data** (decoded once; batches cut on the device when ``data.on_device`` says so,
   else by a DataLoader) and **the trainer** (:class:`~sr_bench.train.trainer.Trainer`; ``amp
   auto`` timed on CUDA; the checkpoint's state restored on resume);
4. **the loop** (:class:`_Loop`): updates, log points, validation, checkpoints, stop signals;
5. **finish**: the last validation and checkpoint, ``final.safetensors``, the plot.

What a run writes in ``config.out`` (rank 0 only): ``checkpoint.pt`` (the full training state,
atomically, every ``runtime.save_every`` updates, at the end and when stopped by SIGTERM,
SIGUSR2 or SIGINT), ``final.safetensors``, ``log.jsonl`` (``start``/``resume``/``init``/``train``/``val``/
``stopped``/``end``), ``val_curve.png``, ``config.json`` and, for ``amp auto`` on CUDA, ``amp.json``.

Determinism: batch ``i`` is a pure function of (seed, i) (see :mod:`sr_bench.train.patches`),
the learning rate a pure function of the update count (``StepLR`` state restored, never stepped
again on resume), and the checkpoint holds every RNG state. On the CPU an interrupted and resumed
run ends with weights bit-identical to an uninterrupted one.

No host synchronisation per update: the loss and the gradient norm of each update stay on the
device, summed (and their maxima kept) until a log point reads them in one transfer. The price:
a non-finite loss is noticed at the next log point (or checkpoint), up to ``runtime.log_every - 1``
updates late; those updates are never saved, since a checkpoint is written only after the same
check.

MDSR: each minibatch has one scale; the forward pass runs only that scale's pre-process and
upsample modules, so the other branches get no gradient (``grad`` stays None: gradients are
reset with ``zero_grad(set_to_none=True)``, so Adam skips those parameters entirely and neither
they nor their optimizer state move). Under DistributedDataParallel ``find_unused_parameters``
is on for multi-scale models, and DDP leaves globally unused gradients untouched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from sr_bench import __version__
from sr_bench.cli import UsageError
from sr_bench.data import DatasetNotFound, open_dataset
from sr_bench.data import data_root as find_data_root
from sr_bench.inference import resolve_device
from sr_bench.train import patches as P
from sr_bench.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    checkpoint_config,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from sr_bench.train.config import TrainConfig, make_config
from sr_bench.train.plot import plot_log
from sr_bench.train.run_dir import CHECKPOINT, CONFIG, FINAL_WEIGHTS, LOG, PLOT, JsonLog, RunFolder, open_run
from sr_bench.train.trainer import Trainer, cpu_has_native_bf16, time_amp
from sr_bench.train.validate import resolve_val_dataset, validate
from sr_bench.weights import export_safetensors

__all__ = [
    "train", "train_or_reuse", "reuse_config", "Trainer", "TrainResult", "TrainingStopped", "resolve_config",
    "training_dataset",
    "CHECKPOINT", "FINAL_WEIGHTS", "LOG", "PLOT", "CONFIG",
]

logger = logging.getLogger("sr_bench.train")

#: ``data.on_device auto`` holds the decoded training set on CUDA when it takes under this share
#: of the free device memory (the rest is for the network, its activations and Adam state).
ON_DEVICE_MEMORY_SHARE = 0.25


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    out_dir: Path
    checkpoint: Path
    weights: Path
    log: Path
    plot: Path | None
    config_path: Path
    config: TrainConfig
    #: updates done in total (including those before a resume).
    iterations: int
    #: the validation records at the end: ``{"dataset", "scale", "psnr", "ssim", "images", "protocol"}``.
    validation: list[dict]
    #: every validation record of the run, each with its ``iteration``.
    history: list[dict]
    #: training seconds of this call (excluding image decoding), and over the whole run.
    seconds: float
    total_seconds: float
    #: mean updates per second of this call, and the share of step time spent waiting for data.
    updates_per_second: float
    data_wait_share: float
    resumed_from: int | None = None
    diverged: bool = False
    init_report: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def final_psnr(self) -> dict[int, float]:
        """Scale -> final validation PSNR."""
        return {r["scale"]: r["psnr"] for r in self.validation}


#: what stops a run after the current update, with a checkpoint: Ctrl-C, SIGTERM, and SIGUSR2,
#: the warning that Slurm (``--signal=USR2@SECONDS``) and submitit send before a time limit or a
#: preemption (absent on Windows)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR2") if hasattr(signal, name))


class TrainingStopped(SystemExit):
    """A stop signal other than SIGINT stopped the run after saving a checkpoint; exits with
    status 128 + the signal (143 for SIGTERM, 140 for SIGUSR2)."""

    def __init__(self, message: str, signum: int = signal.SIGTERM):
        super().__init__(128 + signum)
        self.message = message
        self.signum = signum

    def __str__(self) -> str:
        return self.message


# ---- phase 1: resolve the config once -------------------------------------------------------------


def _dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment (1 process without it)."""
    env = os.environ
    return int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0")), int(env.get("WORLD_SIZE", "1"))


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


def _resolve(cfg: TrainConfig, world_size: int, local_rank: int) -> tuple[TrainConfig, torch.device]:
    try:
        cfg.validate()
    except ValueError as e:
        raise UsageError(str(e)) from None
    device = torch.device(resolve_device(cfg.runtime.device))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {cfg.runtime.device}: torch.cuda.is_available() is False; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        elif world_size > 1:  # every process on the one GPU named: never what was meant
            raise UsageError(f"--device {cfg.runtime.device} with {world_size} processes: each process trains on "
                             f"cuda:LOCAL_RANK; pass --device cuda (or auto) and choose the GPUs with "
                             f"CUDA_VISIBLE_DEVICES")
    amp = cfg.runtime.amp
    if amp == "fp16" and device.type != "cuda":
        raise UsageError("--amp fp16 needs CUDA; use --amp bf16 or none on the CPU")
    if amp == "auto" and device.type != "cuda":  # CUDA: timed once the network exists (_choose_amp)
        amp = "bf16" if cpu_has_native_bf16() else "none"
    data = _resolve_dataset(cfg.data.dataset, cfg.data.root)
    val = resolve_val_dataset(cfg.val.dataset, data, cfg.data.root)
    device_name = device.type if world_size > 1 or device.type == "cpu" else str(device)
    changes = {"runtime.device": device_name, "runtime.amp": amp, "data.dataset": data, "val.dataset": val}
    return cfg.replace(**changes), device


def resolve_config(cfg: TrainConfig, *, world_size: int = 1, local_rank: int = 0) -> TrainConfig:
    """A validated copy with every ``auto`` replaced by what this machine and data root give:
    device, training and validation datasets, and amp (except on CUDA, where :func:`train`
    times fp32 against bf16 on the network itself and keeps ``auto`` until then)."""
    return _resolve(cfg, world_size, local_rank)[0]


# ---- phase 3: data and trainer ---------------------------------------------------------------------


@dataclass
class _Ctx:
    """What every phase of one process's run shares."""

    cfg: TrainConfig
    device: torch.device
    rank: int
    world: int
    folder: RunFolder
    say: Callable[[str], None]

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _use_device_batches(ctx: _Ctx, nbytes: int) -> bool:
    choice = ctx.cfg.data.on_device
    if choice != "auto":
        return bool(choice)
    if ctx.device.type != "cuda":
        return False  # on the CPU the DataLoader's workers cut patches beside the training process
    free, _ = torch.cuda.mem_get_info(ctx.device)
    return nbytes < ON_DEVICE_MEMORY_SHARE * free


def _build_data(ctx: _Ctx, start: int) -> tuple[Callable[[torch.Generator], Iterator[dict]], dict[str, Any]]:
    """Decode the training set; returns what makes the batches of updates ``start ..`` (called
    once the RNG states are final: a DataLoader draws its workers' seeds from the generator)
    and what the log says about the data."""
    cfg = ctx.cfg
    t_decode = time.perf_counter()
    try:
        dataset = open_dataset(cfg.data.dataset, cfg.data.root)
    except DatasetNotFound as e:
        raise DatasetNotFound(
            f"{e} Or train on other images: --data T91, --data embedded-train or --data PATH."
        ) from None
    store = P.load_images(dataset, cfg.model.scales, cache=cfg.data.cache, cache_dir=cfg.data.cache_dir, log=ctx.say)
    batches = P.PatchBatches(
        store, cfg.model.scales, cfg.data.patch_size, cfg.data.batch_size, cfg.seed,
        hflip=cfg.data.hflip, rot90=cfg.data.rot90, rank=ctx.rank, world_size=ctx.world,
    )
    on_device = _use_device_batches(ctx, store.nbytes)
    if on_device:
        cut = P.DeviceBatches(batches, ctx.device)

        def make_source(gen: torch.Generator) -> Iterator[dict]:
            return cut.iterate(start, cfg.optim.iterations)
    else:
        def make_source(gen: torch.Generator) -> Iterator[dict]:
            return iter(P.make_loader(
                batches, start, cfg.optim.iterations, num_workers=cfg.data.num_workers,
                prefetch_factor=cfg.data.prefetch_factor, pin_memory=ctx.device.type == "cuda", generator=gen,
            ))
    decode_s = time.perf_counter() - t_decode
    left_out = {s: len(store) - len(batches.eligible[s]) for s in cfg.model.scales}
    ctx.say(
        f"data: {dataset.name} ({len(store)} images, {store.nbytes / 2**20:.0f} MiB decoded, {decode_s:.1f} s; "
        f"batches cut {'on ' + str(ctx.device) if on_device else 'by the DataLoader'})"
        + "".join(f"; x{s}: {n} image{'s' if n > 1 else ''} smaller than a {cfg.data.patch_size}px LR patch left out"
                  for s, n in left_out.items() if n)
    )
    info = {"images": len(store), "left_out": left_out, "decode_s": round(decode_s, 2), "on_device": on_device}
    return make_source, info


def _choose_amp(ctx: _Ctx) -> dict[str, Any] | None:
    """``amp auto`` on CUDA: the run folder's earlier choice (a resume keeps its precision), else
    timed now. Returns the record to cache (None: nothing new to cache)."""
    if ctx.cfg.runtime.amp != "auto":
        return None
    cached = ctx.folder.read_amp(str(ctx.device))
    state = ctx.folder.state
    if cached is None and state is not None and checkpoint_config(state).runtime.amp != "auto":
        cached = {"amp": checkpoint_config(state).runtime.amp, "reason": "the precision this run started with"}
    if cached is None:
        choice = time_amp(ctx.cfg, ctx.device, ctx.cfg.data.batch_size // ctx.world)
        gpu = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else None
        cached = {"device": str(ctx.device), "gpu": gpu, "amp": choice.amp, "ms_per_update": choice.ms_per_update,
                  "reason": choice.reason}
        if ctx.world > 1:  # every rank must train in the same precision: rank 0's timing decides
            box = [cached]
            dist.broadcast_object_list(box, src=0)
            cached = box[0]
    ctx.say(f"amp auto: {cached['amp']} ({cached['reason']})")
    ctx.cfg = ctx.cfg.replace(**{"runtime.amp": cached["amp"]})
    return cached


def _build_trainer(ctx: _Ctx, loader_gen: torch.Generator) -> Trainer:
    """The network, optimiser and schedule, seeded, with the checkpoint's state on resume."""
    cfg, state = ctx.cfg, ctx.folder.state
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch sizes: autotune each convolution once
    seed_everything(cfg.seed)
    loader_gen.manual_seed(cfg.seed)
    init_cfg = cfg if state is None else cfg.replace(**{"model.init": None})  # a resume restores, never re-inits
    trainer = Trainer(init_cfg, ctx.device, world_size=ctx.world)
    if trainer.init_report:
        ctx.say(trainer.init_report)
    if state is not None:
        trainer.load_state_dict(state)
        set_rng_state(state["rng"], loader_gen)
    return trainer


# ---- phase 4: the loop -----------------------------------------------------------------------------


class _StopSignals:
    """:data:`STOP_SIGNALS` ask the loop to stop after the current update and save a checkpoint
    (handlers can only be installed from the main thread; elsewhere signals act as before)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once, without the checkpoint
        self.signum = self.signum or signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


class _Window:
    """Loss and gradient-norm statistics since the last log point, kept on the device."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(2, device=self.device)  # loss, grad norm
        self.maxes = torch.zeros(2, device=self.device)
        self.n = 0

    def add(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        both = torch.stack([loss.float(), grad_norm.float()])
        self.sums += both
        torch.maximum(self.maxes, both, out=self.maxes)  # NaN propagates: a NaN update is never hidden
        self.n += 1

    def read(self) -> dict[str, float]:
        """The window's statistics: the one host synchronisation of a log point."""
        s_loss, s_norm, m_loss, m_norm = torch.cat([self.sums, self.maxes]).tolist()
        n = max(self.n, 1)
        return {"loss": s_loss / n, "loss_max": m_loss, "grad_norm": s_norm / n, "grad_norm_max": m_norm}


def _agree(flags: list[float], world: int, device: torch.device) -> list[bool]:
    """Whether each flag is set on any rank (every rank then takes the same branch)."""
    if world == 1:
        return [bool(f) for f in flags]
    t = torch.tensor(flags, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(f) for f in t.tolist()]


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


class _Loop:
    """Updates from ``start`` to ``cfg.optim.iterations``, with log points, validation,
    checkpoints and stop signals; then :meth:`finish`."""

    def __init__(self, ctx: _Ctx, trainer: Trainer, jlog: JsonLog, loader_gen: torch.Generator,
                 callbacks: Sequence[Callable[[dict[str, Any]], None]]):
        state = ctx.folder.state
        self.ctx, self.cfg, self.trainer, self.jlog, self.loader_gen = ctx, ctx.cfg, trainer, jlog, loader_gen
        self.callbacks = callbacks
        self.start = int(state["iteration"]) if state is not None else 0
        self.history: list[dict] = list(state.get("history", [])) if state is not None else []
        self.total_before = float(state.get("train_seconds", 0.0)) if state is not None else 0.0
        self.iteration = self.start
        self.last_saved = self.start if state is not None else -1
        self.last_val: list[dict] = []
        self.diverged = False
        self.wait_total = self.paused_total = 0.0
        self.run_start = self.win_start = time.perf_counter()
        self.win_wait = 0.0
        self.window = _Window(ctx.device)

    def train_seconds(self) -> float:
        return self.total_before + (time.perf_counter() - self.run_start) - self.paused_total

    def save(self, train_seconds: float | None = None) -> None:
        if self.ctx.is_main:
            state = {
                "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **self.trainer.state_dict(),
                "iteration": self.iteration, "config": self.cfg.to_dict(), "rng": rng_state(self.loader_gen),
                "history": self.history,
                "train_seconds": self.train_seconds() if train_seconds is None else train_seconds,
                "sr_bench_version": __version__, "torch_version": str(torch.__version__),
            }
            save_checkpoint(self.ctx.folder.checkpoint, state)
        self.last_saved = self.iteration

    def validate(self) -> list[dict]:
        cfg, device = self.cfg, self.ctx.device
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False  # full images of many sizes: no autotuning per shape
        try:
            recs = validate(self.trainer.net, cfg.val.dataset, cfg.model.scales, name=cfg.model.name,
                            root=cfg.data.root, protocol=cfg.val.protocol, device=device,
                            max_images=cfg.val.max_images)
        finally:
            torch.backends.cudnn.benchmark = benchmark
        for r in recs:
            r["iteration"] = self.iteration
            self.history.append(r)
            self.jlog.write("val", **r)
        self.ctx.say(f"update {self.iteration}: " + ", ".join(
            f"{r['dataset']} x{r['scale']} {r['psnr']:.2f} dB / {r['ssim']:.4f}" for r in recs))
        return recs

    def _diverge(self, stats: dict[str, float]) -> None:
        self.diverged = True
        self.jlog.write("diverged", iteration=self.iteration, **stats)
        self.ctx.say(f"update {self.iteration}: the loss is {stats['loss']}; training diverged, stopping")

    def log_point(self, lr_now: float, stop_requested: bool) -> bool:
        """Write the window's ``train`` event; returns whether training must stop (a non-finite
        loss, or a stop signal on any rank)."""
        stats = self.window.read()
        now = time.perf_counter()
        span = now - self.win_start
        ups, share = (self.window.n / span, self.win_wait / span) if span > 0 else (float("nan"), 0.0)
        self.jlog.write("train", iteration=self.iteration, **stats, lr=lr_now, updates_per_s=round(ups, 4),
                        data_wait_share=round(share, 5), elapsed_s=round(now - self.run_start, 2))
        self.bar.set_postfix(loss=f"{stats['loss']:.4f}", lr=f"{lr_now:.2g}", wait=f"{100 * share:.1f}%", refresh=False)
        self.window.reset()
        self.win_wait, self.win_start = 0.0, now
        flags = [float(not math.isfinite(stats["loss"])), float(stop_requested)]
        bad, stop = _agree(flags, self.ctx.world, self.ctx.device)
        if bad:
            self._diverge(stats)
        return bad or stop

    def pause(self, need_val: bool, need_save: bool) -> bool:
        """Validate and/or checkpoint (time not counted as training); a checkpoint is written
        only after the loss since the last log point is found finite. Returns False on divergence."""
        t_pause, seconds = time.perf_counter(), self.train_seconds()
        if need_save and self.window.n:
            stats = self.window.read()
            if _agree([float(not math.isfinite(stats["loss"]))], self.ctx.world, self.ctx.device)[0]:
                self._diverge(stats)
                return False
        if self.ctx.is_main and need_val:
            self.last_val = self.validate()
        if need_save:
            self.save(seconds)
        _barrier(self.ctx.world)
        paused = time.perf_counter() - t_pause
        self.paused_total += paused
        self.win_start += paused
        return True

    def run(self, source: Iterator[dict], stop: _StopSignals) -> int | None:
        """The updates; returns the signal that stopped them early, if any."""
        cfg, total, device = self.cfg, self.cfg.optim.iterations, self.ctx.device
        desc = f"{cfg.model.name} x{'/x'.join(map(str, cfg.model.scales))}"
        self.bar = tqdm(
            total=total, initial=self.start, desc=desc, unit="upd", dynamic_ncols=True, smoothing=0.1,
            disable=not (self.ctx.is_main and cfg.runtime.progress),
        )
        t_ready = time.perf_counter()
        while self.iteration < total:
            try:
                batch = next(source)
            except Exception:
                if stop.signum is not None:  # Ctrl-C also reached the DataLoader's workers
                    break
                raise
            wait = time.perf_counter() - t_ready
            if int(batch["iteration"]) != self.iteration:  # pragma: no cover - the sampler is a range
                raise RuntimeError(f"data order broken: expected batch {self.iteration}, got {batch['iteration']}")
            scale, lr_now = int(batch["scale"]), self.trainer.lr
            loss = self.trainer.step(P.to_model_input(batch["lr"], device, cfg.runtime.channels_last),
                                     P.to_model_input(batch["hr"], device, cfg.runtime.channels_last), scale)
            self.iteration += 1
            self.window.add(loss, self.trainer.grad_norm)
            self.win_wait += wait
            self.wait_total += wait
            self.bar.update(1)
            for cb in self.callbacks:
                cb({"iteration": self.iteration, "loss": loss, "grad_norm": self.trainer.grad_norm, "lr": lr_now,
                    "scale": scale})
            # one process reads its own flag every update (no device sync); under DDP the ranks
            # agree at log points, so that all of them stop after the same update
            stop_now = stop.signum is not None and self.ctx.world == 1
            if self.iteration % cfg.runtime.log_every == 0 or self.iteration == total or stop_now:
                if self.log_point(lr_now, stop.signum is not None):
                    break
            need_val = cfg.val.every > 0 and self.iteration % cfg.val.every == 0 and self.iteration != total
            need_save = self.iteration % cfg.runtime.save_every == 0 and self.iteration != total
            if (need_val or need_save) and not self.pause(need_val, need_save):
                break
            t_ready = time.perf_counter()
        self.bar.close()
        return stop.signum if not self.diverged else None

    def stopped(self, signum: int) -> None:
        """Save a checkpoint of the last complete update, log it, and raise (SIGINT:
        KeyboardInterrupt; SIGTERM, SIGUSR2: :class:`TrainingStopped`, exit status 128 + signal)."""
        if self.window.n:  # every rank: a log point agrees across ranks
            self.log_point(self.trainer.lr, True)
        if self.last_saved != self.iteration:
            self.save()
        _barrier(self.ctx.world)
        name = signal.Signals(signum).name
        self.jlog.write("stopped", iteration=self.iteration, signal=name, train_seconds=round(self.train_seconds(), 2))
        message = (f"{name} at update {self.iteration} of {self.cfg.optim.iterations}: checkpoint saved in "
                   f"{self.ctx.folder.checkpoint}; continue with --resume")
        self.ctx.say(message)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt(message)
        raise TrainingStopped(message, signum)


# ---- phase 5: finish and export --------------------------------------------------------------------


def _finish(loop: _Loop) -> TrainResult:
    ctx, cfg, out = loop.ctx, loop.cfg, loop.ctx.folder.out
    train_seconds = loop.train_seconds() - loop.total_before
    done = loop.iteration - loop.start
    plot_path: Path | None = None
    if ctx.is_main:
        if not loop.last_val or loop.last_val[0].get("iteration") != loop.iteration:
            loop.last_val = [r for r in loop.history if r.get("iteration") == loop.iteration]
        if not loop.diverged and not loop.last_val:
            loop.last_val = loop.validate()
        if loop.last_saved != loop.iteration:
            loop.save(loop.total_before + train_seconds)
        export_safetensors(
            loop.trainer.net, out / FINAL_WEIGHTS,
            metadata={"arch": cfg.model.name, "scales": ",".join(map(str, cfg.model.scales)),
                      "options": json.dumps(cfg.model.options), "iterations": str(loop.iteration),
                      "profile": cfg.profile, "sr_bench": __version__},
        )
    _barrier(ctx.world)
    ups = done / train_seconds if train_seconds > 0 and done else 0.0
    wait_share = loop.wait_total / train_seconds if train_seconds > 0 and done else 0.0
    if ctx.is_main:
        loop.jlog.write("end", iteration=loop.iteration, train_seconds=round(train_seconds, 2),
                        updates_per_s=round(ups, 4), data_wait_share=round(wait_share, 5), diverged=loop.diverged,
                        validation=loop.last_val)
        scales = "/x".join(map(str, cfg.model.scales))
        try:
            plot_path = plot_log(out / LOG, out / PLOT, title=f"{cfg.model.name} x{scales} ({cfg.profile} profile)")
        except Exception as e:  # a plot must never lose a finished run
            ctx.say(f"could not draw {PLOT}: {type(e).__name__}: {e}")
        ctx.say(
            f"done: {loop.iteration} updates ({done} in this call, {ups:.3f} updates/s, "
            f"data wait {100 * wait_share:.2f}% of step time); "
            + ", ".join(f"{r['dataset']} x{r['scale']} {r['psnr']:.2f} dB" for r in loop.last_val)
            + f"; weights {out / FINAL_WEIGHTS}"
        )
    return TrainResult(
        out_dir=out, checkpoint=ctx.folder.checkpoint, weights=out / FINAL_WEIGHTS, log=out / LOG, plot=plot_path,
        config_path=out / CONFIG, config=cfg, iterations=loop.iteration, validation=loop.last_val, history=loop.history,
        seconds=train_seconds, total_seconds=loop.total_before + train_seconds, updates_per_second=ups,
        data_wait_share=wait_share, resumed_from=loop.start if ctx.folder.state is not None else None,
        diverged=loop.diverged, init_report=loop.trainer.init_report, notes=list(cfg.notes),
    )


# ---- the run -------------------------------------------------------------------------------------


def _describe(ctx: _Ctx, trainer: Trainer) -> int:
    cfg = ctx.cfg
    n_params = sum(p.numel() for p in trainer.net.parameters())
    d, r = cfg.data, cfg.runtime
    ctx.say(
        f"{cfg.model.name} x{'/x'.join(map(str, cfg.model.scales))} ({n_params:,} parameters, "
        f"{trainer.loss_name.upper()} loss) on {ctx.device}{f' x{ctx.world} processes' if ctx.world > 1 else ''}; "
        f"profile {cfg.profile}: {cfg.optim.iterations} updates, batch {d.batch_size} of {d.patch_size}x{d.patch_size} "
        f"LR patches, Adam lr {cfg.optim.lr:g} x{cfg.optim.lr_gamma:g} every {cfg.optim.lr_step}; amp {r.amp}, "
        f"channels_last {r.channels_last}, compile {r.compile}, {d.num_workers} data workers; "
        f"validation on {cfg.val.dataset}"
    )
    for note in [*cfg.notes, *ctx.folder.notes]:
        ctx.say(note)
    return n_params


def _run(ctx: _Ctx, callbacks: Sequence[Callable[[dict[str, Any]], None]]) -> TrainResult:
    """Phases 3-5 in one process, the run folder already open."""
    amp_record = _choose_amp(ctx)
    loader_gen = torch.Generator()
    trainer = _build_trainer(ctx, loader_gen)
    state = ctx.folder.state
    start = int(state["iteration"]) if state is not None else 0
    make_source, data_info = _build_data(ctx, start) if start < ctx.cfg.optim.iterations else (None, {})
    jlog = ctx.folder.begin(ctx.cfg)  # nothing is written before the data and the network exist
    if amp_record is not None and ctx.is_main:
        ctx.folder.write_amp(amp_record)
    n_params = _describe(ctx, trainer)
    if state is not None:
        ctx.say(f"resuming at update {start} of {ctx.cfg.optim.iterations} (next lr {trainer.lr:g})")
        jlog.write("resume", iteration=start, lr=trainer.lr)
    else:
        jlog.write("start", iteration=0, config=ctx.cfg.to_dict(), parameters=n_params, world_size=ctx.world,
                   sr_bench=__version__, torch=str(torch.__version__), init=trainer.init_report, data=data_info,
                   amp=amp_record)
    loop = _Loop(ctx, trainer, jlog, loader_gen, callbacks)
    if make_source is not None:
        with _StopSignals() as stop:
            signum = loop.run(make_source(loader_gen), stop)
            if signum is not None:
                loop.stopped(signum)
    return _finish(loop)


@contextlib.contextmanager
def _process_group(world: int, device: torch.device) -> Iterator[None]:
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


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``config`` in the folder ``config.out``.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this runs DistributedDataParallel (gloo on the CPU,
    nccl on CUDA); the global batch stays ``data.batch_size``; rank 0 alone writes files.

    Args:
        config: the run (see :mod:`sr_bench.train.config`); resolved and validated here, once.
        resume: continue the run in ``config.out``. Recipe fields must equal the checkpoint's;
            execution fields (:data:`~sr_bench.train.config.EXECUTION_FIELDS`) may change, and
            ``optim.iterations`` may grow.
        overwrite: delete the sr_bench files in ``config.out`` and start again. Without
            ``resume`` or ``overwrite`` the folder must be empty or missing.
        callbacks: called after every update with ``{"iteration", "loss", "grad_norm" (device
            tensors), "lr", "scale"}``.
        log: where human-readable messages go (default: the ``sr_bench.train`` logger, rank 0).

    Returns:
        :class:`TrainResult` (on every rank; only rank 0's has validation numbers).

    Raises:
        KeyboardInterrupt: after SIGINT, once the checkpoint of the last update is saved.
        TrainingStopped: (a ``SystemExit`` with status 128 + signal) after SIGTERM or SIGUSR2, likewise.
    """
    rank, local_rank, world = _dist_env()
    cfg, device = _resolve(config, world, local_rank)
    say = (log or logger.info) if rank == 0 else (lambda msg: None)
    with _process_group(world, device):
        folder = open_run(cfg, resume=resume, overwrite=overwrite, writer=rank == 0)
        _barrier(world)  # every rank has looked at the folder before rank 0 writes into it
        try:
            return _run(_Ctx(cfg, device, rank, world, folder, say), callbacks)
        except BaseException:
            folder.discard()  # a new run that failed before its first checkpoint leaves nothing
            raise


def reuse_config(
    profile: str, model: str, scale: int, out: str | os.PathLike, *, data_root: str | None = None,
    device: str = "auto", **changes: Any,
) -> TrainConfig:
    """The config :func:`train_or_reuse` trains (or checks a finished run in ``out`` against)."""
    changes = {**changes, "out": str(out), "runtime.device": device}
    if data_root:
        changes["data.root"] = data_root
    if find_data_root(data_root) is None:
        changes.update({"data.dataset": "embedded-train", "val.dataset": "embedded"})
    return make_config(profile, model, scale, **changes)


def train_or_reuse(
    profile: str, model: str, scale: int, out: str | os.PathLike, *, data_root: str | None = None,
    device: str = "auto", **changes: Any,
) -> TrainResult:
    """Train a ``profile`` run in ``out``, resume it, or pick up its finished weights (the trainer
    checks that the recipe in ``out`` is the one asked for): what ``sr_bench.reproduce`` and
    ``sr_bench.ablate`` call. ``changes`` are dotted config fields. Without a data root the run
    trains and validates on the scikit-image photos."""
    cfg = reuse_config(profile, model, scale, out, data_root=data_root, device=device, **changes)
    return train(cfg, resume=(Path(out) / CHECKPOINT).is_file())
