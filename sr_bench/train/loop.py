"""The trainer: :func:`train` runs one :class:`~sr_bench.train.config.TrainConfig`.

What a run writes in ``config.out`` (rank 0 only):

* ``checkpoint.pt``: the latest full training state (model, optimizer, scheduler, grad scaler,
  every RNG state, iteration, config, validation history), written atomically (temp file +
  rename) every ``runtime.save_every`` updates and at the end; it loads with
  ``torch.load(weights_only=True)`` and with ``sr_bench.weights.load_weights``;
* ``final.safetensors``: the weights at the end;
* ``log.jsonl``: one JSON object per line (``start``/``resume``/``init``/``train``/``val``/``end``);
* ``val_curve.png``: validation PSNR (and training loss) against updates;
* ``config.json``: the resolved config.

Determinism: batch ``i`` is a pure function of (seed, i) (see :mod:`sr_bench.train.patches`),
the learning rate a pure function of the update count (``StepLR`` state restored, never stepped
again on resume), and the checkpoint holds every RNG state. On the CPU an interrupted and resumed
run ends with weights bit-identical to an uninterrupted one.

MDSR: each minibatch has one scale; the forward pass runs only that scale's pre-process and
upsample modules, so the other branches get no gradient (``grad`` stays None: gradients are
reset with ``zero_grad(set_to_none=True)``, so Adam skips those parameters entirely and neither
they nor their optimizer state move). Under DistributedDataParallel ``find_unused_parameters``
is on for multi-scale models, and DDP leaves globally unused gradients untouched.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sr_bench.train.config import EXECUTION_FIELDS, TrainConfig, config_diff

__all__ = ["train", "train_or_reuse", "Trainer", "TrainResult", "resolve_config", "CHECKPOINT", "FINAL_WEIGHTS", "LOG", "PLOT", "CONFIG"]

CHECKPOINT = "checkpoint.pt"
FINAL_WEIGHTS = "final.safetensors"
LOG = "log.jsonl"
PLOT = "val_curve.png"
CONFIG = "config.json"
CHECKPOINT_FORMAT = "sr_bench-train-checkpoint"
CHECKPOINT_VERSION = 1


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


# ---- environment ------------------------------------------------------------------------------


def _dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment (1 process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, local, world


def _cpu_has_native_bf16() -> bool:
    """Whether this CPU executes bf16 matrix instructions (AVX512-BF16 or AMX), where bf16
    autocast roughly halves convolution time; elsewhere bf16 is emulated and slower."""
    if platform.system() != "Linux":
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def _resolve_device(spec: str, local_rank: int, world: int) -> torch.device:
    from sr_bench.inference import resolve_device

    device = torch.device(resolve_device(spec))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("runtime.device asks for CUDA, but torch.cuda.is_available() is False")
        if device.index is None:
            device = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
    return device


def _resolve_dataset(name: str, root: str | None) -> str:
    if name == "DIV2K":
        return "DIV2K-train"  # training data means the 800 training images, never 0801-0900
    if name != "auto":
        return name
    from sr_bench.data import DatasetNotFound, open_dataset

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


def resolve_config(cfg: TrainConfig, *, world_size: int = 1, local_rank: int = 0) -> TrainConfig:
    """A copy with every ``auto`` replaced by what this machine and data root give: device, amp,
    training and validation datasets."""
    from sr_bench.train.validate import resolve_val_dataset

    device = _resolve_device(cfg.runtime.device, local_rank, world_size)
    amp = cfg.runtime.amp
    if amp == "auto":
        if device.type == "cuda":
            amp = "bf16" if torch.cuda.is_bf16_supported() else "none"
        else:
            amp = "bf16" if _cpu_has_native_bf16() else "none"
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("runtime.amp fp16 needs CUDA; use bf16 or none on the CPU")
    data = _resolve_dataset(cfg.data.dataset, cfg.data.root)
    val = resolve_val_dataset(cfg.val.dataset, data, cfg.data.root)
    device_name = device.type if world_size > 1 or device.type == "cpu" else str(device)
    return cfg.replace(**{"runtime.device": device_name, "runtime.amp": amp, "data.dataset": data, "val.dataset": val})


# ---- RNG state -------------------------------------------------------------------------------


def _rng_state(loader_gen: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
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


def _set_rng_state(state: dict[str, Any], loader_gen: torch.Generator) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    loader_gen.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---- files ------------------------------------------------------------------------------------


class _JsonLog:
    """Append-only JSON-lines log, owned by rank 0."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def truncate_after(self, iteration: int | None) -> None:
        """Drop entries past ``iteration`` (a killed run logs beyond its last checkpoint), or
        everything when ``iteration`` is None (a fresh start)."""
        if not self.enabled or not self.path.exists():
            return
        from sr_bench.images import atomic_write

        keep = []
        if iteration is not None:
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut short by the kill
                if rec.get("iteration", 0) <= iteration:
                    keep.append(line)
        text = "".join(k + "\n" for k in keep)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))

    def write(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        rec = {"event": event, "time": round(time.time(), 3), **fields}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    from sr_bench.images import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an sr_bench training checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {state.get('version')}, this sr_bench reads {CHECKPOINT_VERSION}")
    return state


# ---- model set-up ------------------------------------------------------------------------------


def _upsampler_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Names of the model's upsampler modules (what an x2 -> x3/x4 warm start leaves)."""
    from sr_bench.models.common import Upsampler

    return tuple(name for name, m in model.named_modules() if isinstance(m, Upsampler))


def _init_from(model: nn.Module, source: str) -> str:
    """Load ``source`` fully when it fits the model; for a single-scale model from another scale,
    load everything but the upsampler and say what was loaded and left."""
    from sr_bench.weights import WeightsMismatchError, check_state_dict, partial_load, read_state_dict, resolve_weights

    path, _ = resolve_weights(source)
    state, _, _ = read_state_dict(path)
    try:
        check_state_dict(model, state, what=f"--init {path.name}")
    except WeightsMismatchError as full_error:
        prefixes = _upsampler_prefixes(model)
        if not prefixes:
            raise
        try:
            report = partial_load(model, state, exclude=prefixes)
        except WeightsMismatchError as e:
            raise WeightsMismatchError(f"--init {path}: {full_error}; and without the upsampler: {e}") from None
        return f"--init {path}: {report}"
    model.load_state_dict(state, strict=True)
    return f"--init {path}: loaded all {len(state)} tensors (same architecture and scale)"


def _loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return {"l1": F.l1_loss, "l2": F.mse_loss}[name]


# ---- the trainer ---------------------------------------------------------------------------------


class Trainer:
    """The network, its optimiser, schedule and one update: what a checkpoint holds.

    ``Trainer(cfg, device)`` takes a *resolved* config (:func:`resolve_config`). ``step`` runs
    one update on a batch of one scale; ``state_dict``/``load_state_dict`` save and restore
    everything but the data position (the loop adds the iteration and RNG states).
    """

    def __init__(self, cfg: TrainConfig, device: torch.device | str = "cpu", *, world_size: int = 1):
        from sr_bench.models import create, get_spec

        self.cfg = cfg
        self.device = device = torch.device(device)
        spec = get_spec(cfg.model.name)
        self.loss_name = cfg.model.loss or spec.loss
        self.loss_fn = _loss_fn(self.loss_name)
        net = create(cfg.model.name, scale=None if spec.multi_scale else cfg.model.scales[0], **cfg.model.options)
        served = tuple(getattr(net, "scales", cfg.model.scales))
        missing = [s for s in cfg.model.scales if s not in served]
        if missing:
            raise ValueError(f"{cfg.model.name} built with {cfg.model.options} serves {served}, not x{missing}")
        self.init_report = _init_from(net, cfg.model.init) if cfg.model.init else None
        self.memory_format = torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format
        self.net = net.to(device=device, memory_format=self.memory_format)
        self.optimizer = torch.optim.Adam(
            [p for p in self.net.parameters() if p.requires_grad],
            lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=cfg.optim.lr_step, gamma=cfg.optim.lr_gamma)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.runtime.amp)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.runtime.amp == "fp16" else None
        self.runner: nn.Module = self.net
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            if device.type == "cuda" and any(isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d, nn.BatchNorm1d)) for m in self.net.modules()):
                # BN statistics over the global batch, as one process would compute them (CUDA
                # only: SyncBatchNorm has no CPU kernel, so CPU ranks normalise their own slice)
                self.net = nn.SyncBatchNorm.convert_sync_batchnorm(self.net)

            # multi-scale: the other scales' modules get no gradient in an update
            self.runner = DDP(
                self.net,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=len(cfg.model.scales) > 1,
            )
        if cfg.runtime.compile:
            self.runner = torch.compile(self.runner)

    @property
    def lr(self) -> float:
        """The learning rate of the next update."""
        return self.scheduler.get_last_lr()[0]

    def step(self, x: torch.Tensor, y: torch.Tensor, scale: int) -> torch.Tensor:
        """One update on LR ``x`` and HR ``y`` (float 0..1 on the device); returns the loss.

        Gradients are reset to None (not zero) first: parameters that the forward pass does not
        use (other scales' branches of MDSR) keep ``grad is None``, and Adam skips them, state
        included."""
        self.net.train()
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None):
            sr = self.runner(x, scale=scale)
        loss = self.loss_fn(sr.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        # StepLR's state is its update count and current lr: restored as saved, never stepped
        # again here (the official port halves the lr once more on every resume).
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


# ---- the run ------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``config``; with ``resume`` continue from ``config.out/checkpoint.pt`` if it exists.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this runs DistributedDataParallel (gloo on the CPU,
    nccl on CUDA); the global batch stays ``data.batch_size``; rank 0 alone writes files.

    Args:
        config: the run (see :mod:`sr_bench.train.config`).
        resume: continue the run in ``config.out``. Recipe fields must equal the checkpoint's;
            execution fields (:data:`~sr_bench.train.config.EXECUTION_FIELDS`) may change, and
            ``optim.iterations`` may grow.
        callbacks: called after every update with ``{"iteration", "loss" (tensor), "lr", "scale"}``.
        log: where human-readable messages go (default: stderr, rank 0).

    Returns:
        :class:`TrainResult` (on every rank; only rank 0's has validation numbers).
    """
    config.validate()
    rank, local_rank, world = _dist_env()
    is_main = rank == 0
    if log is not None:
        say = log if is_main else (lambda msg: None)
    elif is_main:
        say = _stderr
    else:
        say = _silent
    cfg = resolve_config(config, world_size=world, local_rank=local_rank)
    device = _resolve_device(cfg.runtime.device, local_rank, world)
    own_pg = False
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            own_pg = True
    try:
        return _run(cfg, device, resume, callbacks, say, rank, world)
    finally:
        if own_pg:
            import torch.distributed as dist

            dist.destroy_process_group()


def train_or_reuse(
    profile: str, model: str, scale: int, out: str | os.PathLike, *, data_root: str | None = None,
    device: str = "auto", **changes: Any,
) -> TrainResult:
    """Train a ``profile`` run in ``out``, resume it, or pick up its finished weights (the trainer
    checks that the recipe in ``out`` is the one asked for): what ``sr_bench.reproduce`` and
    ``sr_bench.ablate`` call. ``changes`` are dotted config fields. Without a data root the run
    trains and validates on the scikit-image photos."""
    from sr_bench.data import data_root as find_data_root
    from sr_bench.train.config import make_config

    changes = {**changes, "out": str(out), "runtime.device": device}
    if data_root:
        changes["data.root"] = data_root
    if find_data_root(data_root) is None:
        changes.update({"data.dataset": "embedded-train", "val.dataset": "embedded"})
    cfg = make_config(profile, model, scale, **changes)
    return train(cfg, resume=(Path(out) / CHECKPOINT).is_file())


def _stderr(msg: str) -> None:
    print(f"[sr_bench.train] {msg}", file=sys.stderr, flush=True)


def _silent(msg: str) -> None:
    pass


def _all_finite(value: float, world: int, device: torch.device) -> bool:
    """Whether ``value`` is finite on every rank."""
    bad = torch.tensor(0.0 if math.isfinite(value) else 1.0, device=device)
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    return float(bad) == 0.0


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _run(cfg: TrainConfig, device: torch.device, resume: bool, callbacks, say, rank: int, world: int) -> TrainResult:
    from tqdm import tqdm

    from sr_bench import __version__
    from sr_bench.data import DatasetNotFound, open_dataset
    from sr_bench.train import patches as P
    from sr_bench.train.plot import plot_log
    from sr_bench.train.validate import validate
    from sr_bench.weights import export_safetensors

    is_main = rank == 0
    out = Path(cfg.out).expanduser().resolve()
    ckpt_path, log_path, cfg_path = out / CHECKPOINT, out / LOG, out / CONFIG

    # ---- checkpoint / resume decision (every rank reads the same file) -------------------------
    state: dict[str, Any] | None = None
    if ckpt_path.exists():
        if not resume:
            raise FileExistsError(
                f"{ckpt_path} exists: pass --resume (resume=True) to continue that run, or choose another --out"
            )
        state = _load_checkpoint(ckpt_path)
        saved = TrainConfig.from_dict(state["config"])
        diff = config_diff(saved, cfg, ignore=EXECUTION_FIELDS)
        if diff:
            lines = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"--resume: the recipe differs from the checkpoint's ({lines}); use a new --out for a new recipe")
        if cfg.optim.iterations < int(state["iteration"]):
            raise ValueError(f"--resume: iterations {cfg.optim.iterations} is fewer than the {state['iteration']} already done")
        changed = config_diff(saved, cfg, ignore=("out", "notes"))
        if changed:
            say("resume: execution settings changed: " + "; ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
    elif resume:
        say(f"--resume: no checkpoint in {out}; starting a new run")

    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    _seed_everything(cfg.seed)

    # ---- model, optimiser, schedule -------------------------------------------------------------
    init_cfg = cfg if state is None else cfg.replace(**{"model.init": None})  # a resume restores, never re-inits
    trainer = Trainer(init_cfg, device, world_size=world)
    if trainer.init_report:
        say(trainer.init_report)
    loader_gen = torch.Generator()
    loader_gen.manual_seed(cfg.seed)
    start, history, total_before = 0, [], 0.0
    if state is not None:
        trainer.load_state_dict(state)
        _set_rng_state(state["rng"], loader_gen)
        start = int(state["iteration"])
        history = list(state.get("history", []))
        total_before = float(state.get("train_seconds", 0.0))

    jlog = _JsonLog(log_path, is_main)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(cfg_path)
        jlog.truncate_after(start if state is not None else None)

    # ---- data (none to decode when a finished run is only picked up again) ---------------------
    total = cfg.optim.iterations
    batches, data_info = None, {}
    if start < total:
        t_decode = time.perf_counter()
        try:
            dataset = open_dataset(cfg.data.dataset, cfg.data.root)
        except DatasetNotFound as e:
            raise DatasetNotFound(f"{e} Or train on other images: --data T91, --data embedded-train or --data PATH.") from None
        store = P.load_images(dataset, cfg.model.scales, cache=cfg.data.cache, cache_dir=cfg.data.cache_dir, log=say)
        batches = P.PatchBatches(
            store, cfg.model.scales, cfg.data.patch_size, cfg.data.batch_size, cfg.seed,
            hflip=cfg.data.hflip, rot90=cfg.data.rot90, rank=rank, world_size=world,
        )
        decode_s = time.perf_counter() - t_decode
        left_out = {s: len(store) - len(batches.eligible[s]) for s in cfg.model.scales}
        say(
            f"data: {dataset.name} ({len(store)} images, {store.nbytes / 2**20:.0f} MiB decoded, {decode_s:.1f} s)"
            + "".join(f"; x{s}: {n} image{'s' if n > 1 else ''} smaller than a {cfg.data.patch_size}px LR patch left out"
                      for s, n in left_out.items() if n)
        )
        data_info = {"images": len(store), "left_out": left_out, "decode_s": round(decode_s, 2)}
    scales_txt = "/x".join(map(str, cfg.model.scales))
    n_params = sum(p.numel() for p in trainer.net.parameters())
    say(
        f"{cfg.model.name} x{scales_txt} ({n_params:,} parameters, {trainer.loss_name.upper()} loss) on {device}"
        f"{f' x{world} processes' if world > 1 else ''}; profile {cfg.profile}: {cfg.optim.iterations} updates, "
        f"batch {cfg.data.batch_size} of {cfg.data.patch_size}x{cfg.data.patch_size} LR patches, Adam lr {cfg.optim.lr:g} "
        f"x{cfg.optim.lr_gamma:g} every {cfg.optim.lr_step}; amp {cfg.runtime.amp}, channels_last {cfg.runtime.channels_last}, "
        f"{cfg.data.num_workers} data workers; validation on {cfg.val.dataset}"
    )
    for note in cfg.notes:
        say(note)
    if state is not None:
        say(f"resuming at update {start} of {cfg.optim.iterations} (next lr {trainer.lr:g})")
        jlog.write("resume", iteration=start, lr=trainer.lr)
    else:
        jlog.write(
            "start", iteration=0, config=cfg.to_dict(), parameters=n_params, world_size=world,
            sr_bench=__version__, torch=str(torch.__version__), init=trainer.init_report,
            data=data_info,
        )

    def checkpoint_state(iteration: int, train_seconds: float) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            **trainer.state_dict(),
            "iteration": iteration,
            "config": cfg.to_dict(),
            "rng": _rng_state(loader_gen),
            "history": history,
            "train_seconds": train_seconds,
            "sr_bench_version": __version__,
            "torch_version": str(torch.__version__),
        }

    def run_validation(iteration: int) -> list[dict]:
        recs = validate(
            trainer.net, cfg.val.dataset, cfg.model.scales, name=cfg.model.name, root=cfg.data.root, protocol=cfg.val.protocol,
            device=device, max_images=cfg.val.max_images,
        )
        for r in recs:
            r["iteration"] = iteration
            history.append(r)
            jlog.write("val", **r)
        say(f"update {iteration}: " + ", ".join(f"{r['dataset']} x{r['scale']} {r['psnr']:.2f} dB / {r['ssim']:.4f}" for r in recs))
        return recs

    # ---- loop ---------------------------------------------------------------------------------
    loader = () if batches is None else P.make_loader(
        batches, start, total, num_workers=cfg.data.num_workers, prefetch_factor=cfg.data.prefetch_factor,
        pin_memory=device.type == "cuda", generator=loader_gen,
    )
    bar = tqdm(
        total=total, initial=start, desc=f"{cfg.model.name} x{scales_txt}", unit="upd", file=sys.stderr,
        dynamic_ncols=True, disable=not (is_main and cfg.runtime.progress), smoothing=0.1,
    )
    iteration, diverged = start, False
    last_val: list[dict] = []
    wait_total = paused_total = 0.0
    win_loss = torch.zeros((), device=device)
    win_n, win_wait = 0, 0.0
    last_saved = start if state is not None else -1
    run_start = win_start = t_ready = time.perf_counter()
    for batch in loader:
        wait = time.perf_counter() - t_ready
        if int(batch["iteration"]) != iteration:  # pragma: no cover - the sampler is a range
            raise RuntimeError(f"data order broken: expected batch {iteration}, got {batch['iteration']}")
        scale = int(batch["scale"])
        lr_now = trainer.lr
        loss = trainer.step(
            P.to_model_input(batch["lr"], device, cfg.runtime.channels_last),
            P.to_model_input(batch["hr"], device, cfg.runtime.channels_last),
            scale,
        )
        iteration += 1
        win_loss += loss
        win_n += 1
        win_wait += wait
        wait_total += wait
        bar.update(1)
        for cb in callbacks:
            cb({"iteration": iteration, "loss": loss, "lr": lr_now, "scale": scale})

        if iteration % cfg.runtime.log_every == 0 or iteration == total:
            loss_avg = float(win_loss) / win_n
            now = time.perf_counter()
            window = now - win_start
            ups = win_n / window if window > 0 else float("nan")
            share = win_wait / window if window > 0 else 0.0
            jlog.write(
                "train", iteration=iteration, loss=loss_avg, lr=lr_now, updates_per_s=round(ups, 4),
                data_wait_share=round(share, 5), elapsed_s=round(now - run_start, 2),
            )
            bar.set_postfix(loss=f"{loss_avg:.4f}", lr=f"{lr_now:.2g}", wait=f"{100 * share:.1f}%", refresh=False)
            win_loss.zero_()
            win_n, win_wait, win_start = 0, 0.0, now
            if not _all_finite(loss_avg, world, device):  # every rank stops at the same update
                diverged = True
                jlog.write("diverged", iteration=iteration, loss=loss_avg)
                say(f"update {iteration}: the loss is {loss_avg}; training diverged, stopping")
                break
        need_val = cfg.val.every > 0 and iteration % cfg.val.every == 0 and iteration != total
        need_save = iteration % cfg.runtime.save_every == 0 and iteration != total
        if need_val or need_save:
            t_pause = time.perf_counter()
            if is_main and need_val:
                last_val = run_validation(iteration)
            if is_main and need_save:
                _save_checkpoint(ckpt_path, checkpoint_state(iteration, total_before + (t_pause - run_start) - paused_total))
                last_saved = iteration
            _barrier(world)
            paused = time.perf_counter() - t_pause
            paused_total += paused
            win_start += paused  # validation and checkpoints are not training time
        t_ready = time.perf_counter()
    bar.close()
    train_seconds = time.perf_counter() - run_start - paused_total
    done = iteration - start

    # ---- the end ------------------------------------------------------------------------------
    plot_path: Path | None = None
    if is_main:
        if not last_val or last_val[0].get("iteration") != iteration:
            last_val = [r for r in history if r.get("iteration") == iteration]
        if not diverged and not last_val:
            last_val = run_validation(iteration)
        if last_saved != iteration:
            _save_checkpoint(ckpt_path, checkpoint_state(iteration, total_before + train_seconds))
        export_safetensors(
            trainer.net, out / FINAL_WEIGHTS,
            metadata={"arch": cfg.model.name, "scales": ",".join(map(str, cfg.model.scales)),
                      "options": json.dumps(cfg.model.options), "iterations": str(iteration), "profile": cfg.profile, "sr_bench": __version__},
        )
    _barrier(world)
    ups = done / train_seconds if train_seconds > 0 and done else 0.0
    wait_share = wait_total / train_seconds if train_seconds > 0 and done else 0.0
    if is_main:
        jlog.write(
            "end", iteration=iteration, train_seconds=round(train_seconds, 2), updates_per_s=round(ups, 4),
            data_wait_share=round(wait_share, 5), diverged=diverged, validation=last_val,
        )
        try:
            plot_path = plot_log(log_path, out / PLOT, title=f"{cfg.model.name} x{scales_txt} ({cfg.profile} profile)")
        except Exception as e:  # a plot must never lose a finished run
            say(f"could not draw {PLOT}: {type(e).__name__}: {e}")
        say(
            f"done: {iteration} updates ({done} in this call, {ups:.3f} updates/s, data wait {100 * wait_share:.2f}% "
            f"of step time); " + ", ".join(f"{r['dataset']} x{r['scale']} {r['psnr']:.2f} dB" for r in last_val)
            + f"; weights {out / FINAL_WEIGHTS}"
        )
    return TrainResult(
        out_dir=out, checkpoint=ckpt_path, weights=out / FINAL_WEIGHTS, log=log_path, plot=plot_path,
        config_path=cfg_path, config=cfg, iterations=iteration, validation=last_val, history=history,
        seconds=train_seconds, total_seconds=total_before + train_seconds, updates_per_second=ups,
        data_wait_share=wait_share, resumed_from=start if state is not None else None, diverged=diverged,
        init_report=trainer.init_report, notes=list(cfg.notes),
    )
