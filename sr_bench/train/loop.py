"""The trainer: :func:`train` runs one :class:`~sr_bench.train.config.TrainConfig`, in phases.

1. **plan** the run once (:func:`sr_bench.train.plan.planned_run`): the config validated and
   resolved on this machine (device, datasets, amp), the run folder opened (a new run needs an
   empty folder, ``resume`` a matching checkpoint, ``overwrite`` clears it), ``amp auto`` timed
   on CUDA, the warm start decided. Every later phase reads the :class:`~sr_bench.train.plan.RunPlan`
   and changes nothing in it;
2. **build the data** (decoded once; batches cut on the device when ``data.on_device`` says so,
   else by a DataLoader) and **the trainer** (:class:`~sr_bench.train.trainer.Trainer`; the
   checkpoint's state restored on resume);
3. **the loop** (:class:`_Loop`): updates, log points, validation, checkpoints, stop signals;
4. **finish**: the last validation and checkpoint, ``final.safetensors``, the plot.

What a run writes in ``config.out`` (rank 0 only): ``checkpoint.pt`` (the full training state,
atomically, every ``runtime.save_every`` updates, at the first log point after :data:`SAVE_EVERY_S`
seconds without one, at the end and when stopped by SIGTERM, SIGUSR2 or SIGINT), ``final.safetensors``,
``log.jsonl`` (``start``/``resume``/``init``/``train``/``val``/``stopped``/``end``),
``val_curve.png``, ``config.json`` and, for ``amp auto`` on CUDA, ``amp.json``.

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
from tqdm import tqdm

from sr_bench import deadline
from sr_bench.data import DatasetNotFound, open_dataset
from sr_bench.data import data_root as find_data_root
from sr_bench.precision import training_flags
from sr_bench.train import patches as P
from sr_bench.train.checkpoint import rng_state, save_checkpoint, seed_everything, set_rng_state, training_state
from sr_bench.train.config import TrainConfig, make_config
from sr_bench.train.distributed import agree, barrier
from sr_bench.train.plan import RunPlan, planned_run
from sr_bench.train.plot import plot_log
from sr_bench.train.run_dir import CHECKPOINT, CONFIG, FINAL_WEIGHTS, LOG, PLOT, JsonLog
from sr_bench.train.trainer import Trainer
from sr_bench.train.validate import validate
from sr_bench.version import __version__
from sr_bench.weights import export_safetensors

__all__ = ["train", "train_or_reuse", "reuse_config", "TrainResult", "TrainingStopped", "STOP_SIGNALS", "CHECKPOINT",
           "FINAL_WEIGHTS", "LOG", "PLOT", "CONFIG"]

Say = Callable[[str], None]

logger = logging.getLogger("sr_bench.train")

#: ``data.on_device auto`` holds the decoded training set on CUDA when it takes under this share
#: of the free device memory (the rest is for the network, its activations and Adam state).
ON_DEVICE_MEMORY_SHARE = 0.25

#: a checkpoint is also written at the first log point after this many seconds without one, so a
#: kill (or a Ctrl-C that cannot wait) loses minutes at most, however slow the updates are
SAVE_EVERY_S = 300.0


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


# ---- phase 2: data and trainer ---------------------------------------------------------------------


def _use_device_batches(plan: RunPlan, nbytes: int) -> bool:
    choice = plan.config.data.on_device
    if choice != "auto":
        return bool(choice)
    if plan.device.type != "cuda":
        return False  # on the CPU the DataLoader's workers cut patches beside the training process
    free, _ = torch.cuda.mem_get_info(plan.device)
    return nbytes < ON_DEVICE_MEMORY_SHARE * free


def _build_data(plan: RunPlan, say: Say) -> tuple[Callable[[torch.Generator], Iterator[dict]], dict[str, Any]]:
    """Decode the training set; returns what makes the batches of updates ``plan.start ..``
    (called once the RNG states are final: a DataLoader draws its workers' seeds from the
    generator) and what the log says about the data."""
    cfg, start = plan.config, plan.start
    t_decode = time.perf_counter()
    try:
        dataset = open_dataset(cfg.data.dataset, cfg.data.root)
    except DatasetNotFound as e:
        raise DatasetNotFound(
            f"{e} Or train on other images: --data T91, --data embedded-train or --data PATH."
        ) from None
    store = P.load_images(dataset, cfg.model.scales, cache=cfg.data.cache, cache_dir=cfg.data.cache_dir, log=say)
    batches = P.PatchBatches(
        store, cfg.model.scales, cfg.data.patch_size, cfg.data.batch_size, cfg.seed,
        hflip=cfg.data.hflip, rot90=cfg.data.rot90, rank=plan.rank, world_size=plan.world,
    )
    on_device = _use_device_batches(plan, store.nbytes)
    if on_device:
        cut = P.DeviceBatches(batches, plan.device)

        def make_source(gen: torch.Generator) -> Iterator[dict]:
            return cut.iterate(start, cfg.optim.iterations)
    else:
        def make_source(gen: torch.Generator) -> Iterator[dict]:
            return iter(P.make_loader(
                batches, start, cfg.optim.iterations, num_workers=cfg.data.num_workers,
                prefetch_factor=cfg.data.prefetch_factor, pin_memory=plan.device.type == "cuda", generator=gen,
            ))
    decode_s = time.perf_counter() - t_decode
    left_out = {s: len(store) - len(batches.eligible[s]) for s in cfg.model.scales}
    say(
        f"data: {dataset.name} ({len(store)} images, {store.nbytes / 2**20:.0f} MiB decoded, {decode_s:.1f} s; "
        f"batches cut {'on ' + str(plan.device) if on_device else 'by the DataLoader'})"
        + "".join(f"; x{s}: {n} image{'s' if n > 1 else ''} smaller than a {cfg.data.patch_size}px LR patch left out"
                  for s, n in left_out.items() if n)
    )
    info = {"images": len(store), "left_out": left_out, "decode_s": round(decode_s, 2), "on_device": on_device}
    return make_source, info


def _build_trainer(plan: RunPlan, loader_gen: torch.Generator, say: Say) -> Trainer:
    """The network, optimiser and schedule, seeded, with the checkpoint's state on resume."""
    cfg, state = plan.config, plan.state
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    seed_everything(cfg.seed)
    loader_gen.manual_seed(cfg.seed)
    trainer = Trainer(cfg, plan.device, world_size=plan.world, warm_start=plan.warm_start is not None)
    if trainer.init_report:
        say(trainer.init_report)
    if state is not None:
        trainer.load_state_dict(state)
        set_rng_state(state["rng"], loader_gen)
    return trainer


# ---- phase 3: the loop -----------------------------------------------------------------------------


#: the signal a run stopped by the time budget (sr_bench.deadline) reports, as Slurm's warning
#: before a time limit: stopped early, checkpoint saved, to be resumed (exit status 140)
DEADLINE_SIGNAL = getattr(signal, "SIGUSR2", signal.SIGTERM)


class _StopSignals:
    """:data:`STOP_SIGNALS` ask the loop to stop after the current update and save a checkpoint
    (handlers can only be installed from the main thread; elsewhere signals act as before); so
    does the time budget (:mod:`sr_bench.deadline`) once it has run out, read by :meth:`requested`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.by_deadline = False
        self._previous: dict[int, Any] = {}

    def requested(self) -> bool:
        """Whether a stop was asked for: a signal, or the time budget (one clock read)."""
        if self.signum is None and deadline.expired():
            self.signum, self.by_deadline = DEADLINE_SIGNAL, True
        return self.signum is not None

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


class _Loop:
    """Updates from ``start`` to ``cfg.optim.iterations``, with log points, validation,
    checkpoints and stop signals; then :meth:`finish`."""

    def __init__(self, plan: RunPlan, trainer: Trainer, jlog: JsonLog, loader_gen: torch.Generator,
                 callbacks: Sequence[Callable[[dict[str, Any]], None]], say: Say):
        state = plan.state
        self.plan, self.cfg, self.trainer, self.jlog, self.loader_gen = plan, plan.config, trainer, jlog, loader_gen
        self.callbacks, self.say = callbacks, say
        self.start = plan.start
        self.history: list[dict] = list(state.get("history", [])) if state is not None else []
        self.total_before = float(state.get("train_seconds", 0.0)) if state is not None else 0.0
        self.iteration = self.start
        self.last_saved = self.start if state is not None else -1
        self.last_val: list[dict] = []
        self.diverged = False
        self.wait_total = self.paused_total = 0.0
        self.run_start = self.win_start = time.perf_counter()
        self.win_wait = 0.0
        self.window = _Window(plan.device)
        self.saved_at = time.monotonic()
        self.save_due = False  # SAVE_EVERY_S has passed since the last checkpoint (agreed by every rank)

    def train_seconds(self) -> float:
        return self.total_before + (time.perf_counter() - self.run_start) - self.paused_total

    def save(self, train_seconds: float | None = None) -> None:
        if self.plan.is_main:
            seconds = self.train_seconds() if train_seconds is None else train_seconds
            state = training_state(self.cfg, self.trainer.state_dict(), self.iteration, rng_state(self.loader_gen),
                                   self.history, seconds)
            save_checkpoint(self.plan.folder.checkpoint, state)
        self.last_saved = self.iteration
        self.saved_at, self.save_due = time.monotonic(), False

    def validate(self) -> list[dict]:
        cfg, device = self.cfg, self.plan.device
        # evaluation sets its own flags for the call (IEEE float32, no autotuning per image size)
        recs = validate(self.trainer.net, cfg.val.dataset, cfg.model.scales, name=cfg.model.name,
                        root=cfg.data.root, protocol=cfg.val.protocol, device=device, max_images=cfg.val.max_images)
        for r in recs:
            r["iteration"] = self.iteration
            self.history.append(r)
            self.jlog.write("val", **r)
        self.say(f"update {self.iteration}: " + ", ".join(
            f"{r['dataset']} x{r['scale']} {r['psnr']:.2f} dB / {r['ssim']:.4f}" for r in recs))
        return recs

    def _diverge(self, stats: dict[str, float]) -> None:
        self.diverged = True
        self.jlog.write("diverged", iteration=self.iteration, **stats)
        self.say(f"update {self.iteration}: the loss is {stats['loss']}; training diverged, stopping")

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
        flags = [float(not math.isfinite(stats["loss"])), float(stop_requested),
                 float(time.monotonic() - self.saved_at >= SAVE_EVERY_S)]
        bad, stop, self.save_due = agree(flags, self.plan.world, self.plan.device)
        if bad:
            self._diverge(stats)
        return bad or stop

    def pause(self, need_val: bool, need_save: bool) -> bool:
        """Validate and/or checkpoint (time not counted as training); a checkpoint is written
        only after the loss since the last log point is found finite. Returns False on divergence."""
        t_pause, seconds = time.perf_counter(), self.train_seconds()
        if need_save and self.window.n:
            stats = self.window.read()
            if agree([float(not math.isfinite(stats["loss"]))], self.plan.world, self.plan.device)[0]:
                self._diverge(stats)
                return False
        if self.plan.is_main and need_val:
            self.last_val = self.validate()
        if need_save:
            self.save(seconds)
        barrier(self.plan.world)
        paused = time.perf_counter() - t_pause
        self.paused_total += paused
        self.win_start += paused
        return True

    def run(self, source: Iterator[dict], stop: _StopSignals) -> int | None:
        """The updates; returns the signal that stopped them early, if any."""
        cfg, total, device = self.cfg, self.cfg.optim.iterations, self.plan.device
        desc = f"{cfg.model.name} x{'/x'.join(map(str, cfg.model.scales))}"
        self.bar = tqdm(
            total=total, initial=self.start, desc=desc, unit="upd", dynamic_ncols=True, smoothing=0.1,
            disable=not (self.plan.is_main and cfg.runtime.progress),
        )
        t_ready = time.perf_counter()
        if self.plan.world == 1 and stop.requested():  # the budget ran out before the first update of this call
            total = self.iteration
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
            stop_now = stop.requested() and self.plan.world == 1
            if self.iteration % cfg.runtime.log_every == 0 or self.iteration == total or stop_now:
                if self.log_point(lr_now, stop.requested()):
                    break
            need_val = cfg.val.every > 0 and self.iteration % cfg.val.every == 0 and self.iteration != total
            need_save = (self.iteration % cfg.runtime.save_every == 0 or self.save_due) and self.iteration != total
            if (need_val or need_save) and not self.pause(need_val, need_save):
                break
            t_ready = time.perf_counter()
        self.bar.close()
        return stop.signum if not self.diverged else None

    def stopped(self, signum: int, by_deadline: bool = False) -> None:
        """Save a checkpoint of the last complete update, log it, and raise (SIGINT:
        KeyboardInterrupt; SIGTERM, SIGUSR2: :class:`TrainingStopped`, exit status 128 + signal)."""
        if self.window.n:  # every rank: a log point agrees across ranks
            self.log_point(self.trainer.lr, True)
        if self.last_saved != self.iteration:
            self.save()
        barrier(self.plan.world)
        name = "the time budget ran out" if by_deadline else signal.Signals(signum).name
        self.jlog.write("stopped", iteration=self.iteration, signal="deadline" if by_deadline else name,
                        train_seconds=round(self.train_seconds(), 2))
        message = (f"{name} at update {self.iteration} of {self.cfg.optim.iterations}: checkpoint saved in "
                   f"{self.plan.folder.checkpoint}; continue with `python -m sr_bench.train --out "
                   f"{self.plan.folder.out} --resume`, or run again the reproduce/ablate command that started it")
        self.say(message)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt(message)
        raise TrainingStopped(message, signum)


# ---- phase 4: finish and export --------------------------------------------------------------------


def _finish(loop: _Loop) -> TrainResult:
    plan, cfg, out, say = loop.plan, loop.cfg, loop.plan.folder.out, loop.say
    train_seconds = loop.train_seconds() - loop.total_before
    done = loop.iteration - loop.start
    plot_path: Path | None = None
    if plan.is_main:
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
    barrier(plan.world)
    ups = done / train_seconds if train_seconds > 0 and done else 0.0
    wait_share = loop.wait_total / train_seconds if train_seconds > 0 and done else 0.0
    if plan.is_main:
        loop.jlog.write("end", iteration=loop.iteration, train_seconds=round(train_seconds, 2),
                        updates_per_s=round(ups, 4), data_wait_share=round(wait_share, 5), diverged=loop.diverged,
                        validation=loop.last_val)
        scales = "/x".join(map(str, cfg.model.scales))
        try:
            plot_path = plot_log(out / LOG, out / PLOT, title=f"{cfg.model.name} x{scales} ({cfg.profile} profile)")
        except Exception as e:  # a plot must never lose a finished run
            say(f"could not draw {PLOT}: {type(e).__name__}: {e}")
        say(
            f"done: {loop.iteration} updates ({done} in this call, {ups:.3f} updates/s, "
            f"data wait {100 * wait_share:.2f}% of step time); "
            + ", ".join(f"{r['dataset']} x{r['scale']} {r['psnr']:.2f} dB" for r in loop.last_val)
            + f"; weights {out / FINAL_WEIGHTS}"
        )
    return TrainResult(
        out_dir=out, checkpoint=plan.folder.checkpoint, weights=out / FINAL_WEIGHTS, log=out / LOG, plot=plot_path,
        config_path=out / CONFIG, config=cfg, iterations=loop.iteration, validation=loop.last_val, history=loop.history,
        seconds=train_seconds, total_seconds=loop.total_before + train_seconds, updates_per_second=ups,
        data_wait_share=wait_share, resumed_from=loop.start if plan.state is not None else None,
        diverged=loop.diverged, init_report=loop.trainer.init_report, notes=list(cfg.notes),
    )


# ---- the run -------------------------------------------------------------------------------------


def _describe(plan: RunPlan, trainer: Trainer, say: Say) -> int:
    cfg = plan.config
    n_params = sum(p.numel() for p in trainer.net.parameters())
    d, r = cfg.data, cfg.runtime
    say(
        f"{cfg.model.name} x{'/x'.join(map(str, cfg.model.scales))} ({n_params:,} parameters, "
        f"{trainer.loss_name.upper()} loss) on {plan.device}{f' x{plan.world} processes' if plan.world > 1 else ''}; "
        f"profile {cfg.profile}: {cfg.optim.iterations} updates, batch {d.batch_size} of {d.patch_size}x{d.patch_size} "
        f"LR patches, Adam lr {cfg.optim.lr:g} x{cfg.optim.lr_gamma:g} every {cfg.optim.lr_step}; "
        f"amp {r.amp} ({trainer.math_mode}), channels_last {r.channels_last}, compile {r.compile}, "
        f"{d.num_workers} data workers; validation on {cfg.val.dataset}"
    )
    for note in [*cfg.notes, *plan.folder.notes]:
        say(note)
    return n_params


def _run(plan: RunPlan, callbacks: Sequence[Callable[[dict[str, Any]], None]], say: Say) -> TrainResult:
    """Phases 2-4 in one process, from its plan."""
    cfg, amp_record = plan.config, plan.amp_record
    if amp_record is not None:
        say(f"amp auto: {amp_record['amp']} ({amp_record['reason']})")
    loader_gen = torch.Generator()
    trainer = _build_trainer(plan, loader_gen, say)
    make_source, data_info = _build_data(plan, say) if plan.start < cfg.optim.iterations else (None, {})
    jlog = plan.folder.begin(cfg)  # nothing is written before the data and the network exist
    if amp_record is not None and plan.is_main:
        plan.folder.write_amp(amp_record)
    n_params = _describe(plan, trainer, say)
    if plan.state is not None:
        say(f"resuming at update {plan.start} of {cfg.optim.iterations} (next lr {trainer.lr:g})")
        jlog.write("resume", iteration=plan.start, lr=trainer.lr, math_mode=trainer.math_mode)
    else:
        jlog.write("start", iteration=0, config=cfg.to_dict(), parameters=n_params, world_size=plan.world,
                   math_mode=trainer.math_mode,
                   sr_bench=__version__, torch=str(torch.__version__), init=trainer.init_report, data=data_info,
                   amp=amp_record)
    loop = _Loop(plan, trainer, jlog, loader_gen, callbacks, say)
    if make_source is not None:
        with _StopSignals() as stop:
            signum = loop.run(make_source(loader_gen), stop)
            if signum is not None:
                loop.stopped(signum, stop.by_deadline)
    return _finish(loop)


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
        config: the run (see :mod:`sr_bench.train.config`); resolved and validated here, once, into
            a :class:`~sr_bench.train.plan.RunPlan` that every phase reads.
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
    with planned_run(config, resume=resume, overwrite=overwrite) as plan:
        say = (log or logger.info) if plan.is_main else (lambda msg: None)
        # TF32 as runtime.tf32 says, cuDNN's autotuner on CUDA: for this run only (validation
        # inside it runs IEEE float32 without autotuning; both are restored when train returns)
        with training_flags(plan.device, plan.config.runtime.tf32):
            return _run(plan, callbacks, say)


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
