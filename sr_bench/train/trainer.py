"""The network, its optimiser, schedule and one update: what a checkpoint holds.

Also the precision rule of ``runtime.amp auto``: on CUDA :func:`choose_amp` times a few updates
in fp32 and in bf16 and keeps the faster one (measured on an H200: bf16 is slower than fp32
channels_last for the launch-bound EDSR-baseline, 1.9x faster for EDSR 32x256); bf16 is a
candidate only where the GPU runs it natively (compute capability 8.0 and later); on the CPU bf16
only where the CPU has native bf16 instructions.

Adam runs fused on CUDA (:func:`make_optimizer`): one kernel for every parameter, and with fp16's
GradScaler no host synchronisation per update.
"""

from __future__ import annotations

import functools
import gc
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sr_bench.models import create, get_spec
from sr_bench.models.common import Upsampler
from sr_bench.precision import cuda_bf16_native, math_mode, training_flags
from sr_bench.train.config import OptimConfig, TrainConfig
from sr_bench.weights import WeightsMismatchError, check_state_dict, partial_load, read_state_dict, resolve_weights

__all__ = ["Trainer", "AmpChoice", "choose_amp", "time_amp", "cpu_has_native_bf16", "bf16_native", "device_sync",
           "fused_optimizer", "make_optimizer", "BF16_MARGIN"]

#: bf16 must be at least this much faster than fp32 to be chosen: it costs precision, so a tie
#: (or timing noise) goes to fp32.
BF16_MARGIN = 0.95


def cpu_has_native_bf16() -> bool:
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


def bf16_native(device: torch.device | str) -> bool:
    """Whether ``device`` computes in bf16 natively: CUDA compute capability 8.0 and later (an
    older GPU emulates it, slower than float32), or a CPU with bf16 instructions."""
    device = torch.device(device)
    return cuda_bf16_native(device) if device.type == "cuda" else cpu_has_native_bf16()


def device_sync(device: torch.device | str) -> Callable[[], None]:
    """What waits for ``device``'s queued work: ``torch.cuda.synchronize(device)`` for a GPU
    (that GPU, not the current one: a run on ``cuda:1`` timed against ``cuda:0``'s queue would
    measure nothing), nothing elsewhere (CPU work is synchronous)."""
    device = torch.device(device)
    if device.type == "cuda":
        return functools.partial(torch.cuda.synchronize, device)
    return lambda: None


def fused_optimizer(device: torch.device | str) -> bool:
    """Whether Adam runs fused on ``device``: on CUDA, where it updates every parameter in one
    kernel and, under fp16's GradScaler, skips an overflowing step on the device (the unfused step
    reads the overflow flag with ``.item()``: a host synchronisation per update). The CPU keeps
    torch's default implementation, so its runs stay bit-identical to earlier ones."""
    return torch.device(device).type == "cuda"


#: Adam's param-group keys that say how it runs, not what it computes: a checkpoint made on
#: another device must not bring its own (a fused trainer given unfused groups would hand
#: GradScaler's device-side flags to a step that refuses them)
_EXECUTION_KEYS = ("fused", "foreach", "capturable", "differentiable")


def make_optimizer(params: list[nn.Parameter], optim: OptimConfig, device: torch.device | str) -> torch.optim.Adam:
    """The run's Adam, fused where :func:`fused_optimizer` says."""
    execution = {"fused": True} if fused_optimizer(device) else {}
    return torch.optim.Adam(params, lr=optim.lr, betas=(optim.betas[0], optim.betas[1]), eps=optim.eps,
                            weight_decay=optim.weight_decay, **execution)


def _upsampler_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Names of the model's upsampler modules (what an x2 -> x3/x4 warm start leaves)."""
    return tuple(name for name, m in model.named_modules() if isinstance(m, Upsampler))


def _init_from(model: nn.Module, source: str) -> str:
    """Load ``source`` fully when it fits the model; for a single-scale model from another scale,
    load everything but the upsampler and say what was loaded and left."""
    path, _ = resolve_weights(source)
    state, _, _ = read_state_dict(path, model_state=model.state_dict())  # BasicSR's mean: the model's options
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


_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"l1": F.l1_loss, "l2": F.mse_loss}
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _wrap_ddp(net: nn.Module, device: torch.device, multi_scale: bool) -> tuple[nn.Module, nn.Module]:
    """(net, runner) for DistributedDataParallel."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda" and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        # BN statistics over the global batch, as one process would compute them (CUDA only:
        # SyncBatchNorm has no CPU kernel, so CPU ranks normalise their own slice)
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    # multi-scale: the other scales' modules get no gradient in an update
    runner = DDP(net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=multi_scale)
    return net, runner


class Trainer:
    """The network, its optimiser, schedule and one update.

    ``Trainer(cfg, device)`` takes a *resolved* config (``sr_bench.train.resolve_config``) and
    reads it here only. The network starts from ``cfg.model.init`` unless ``warm_start`` is
    False (a resumed run: its checkpoint restores the network instead); ``amp`` replaces
    ``cfg.runtime.amp`` (what :func:`time_amp` compares).
    ``step`` runs one update on a batch of one scale and returns the loss as a device tensor
    (never read back here: no host synchronisation per update); the total L2 norm of the
    gradients of that update is left in :attr:`grad_norm`, also on the device.
    ``state_dict``/``load_state_dict`` save and restore everything but the data position.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device | str = "cpu", *, world_size: int = 1,
                 warm_start: bool = True, amp: str | None = None):
        self.device = device = torch.device(device)
        spec = get_spec(cfg.model.name)
        self.loss_name = cfg.model.loss or spec.loss
        self.loss_fn = _LOSSES[self.loss_name]
        net = create(cfg.model.name, scale=None if spec.multi_scale else cfg.model.scales[0], **cfg.model.options)
        served = tuple(getattr(net, "scales", cfg.model.scales))
        missing = [s for s in cfg.model.scales if s not in served]
        if missing:
            raise ValueError(f"{cfg.model.name} built with {cfg.model.options} serves {served}, not x{missing}")
        self.init_report = _init_from(net, cfg.model.init) if cfg.model.init and warm_start else None
        self.memory_format = torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format
        to_device: Any = net.to  # its stubs omit the memory_format keyword, which it accepts
        net = to_device(device=device, memory_format=self.memory_format)
        self.net = net
        self.optimizer = make_optimizer([p for p in self.net.parameters() if p.requires_grad], cfg.optim, device)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=cfg.optim.lr_step, gamma=cfg.optim.lr_gamma
        )
        amp = cfg.runtime.amp if amp is None else amp
        self.amp_dtype = _AMP_DTYPES.get(amp)
        #: the math of the training forward and backward (sr_bench.precision.math_mode), under
        #: sr_bench.precision.training_flags(device, cfg.runtime.tf32)
        self.math_mode = math_mode(amp, device, tf32=cfg.runtime.tf32)
        self.scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
        self.runner: nn.Module = self.net
        if world_size > 1:
            self.net, self.runner = _wrap_ddp(self.net, device, len(cfg.model.scales) > 1)
        if cfg.runtime.compile != "none":
            self.runner = torch.compile(self.runner, mode=cfg.runtime.compile)  # type: ignore[assignment]
        self.grad_norm = torch.zeros((), device=device)

    @property
    def lr(self) -> float:
        """The learning rate of the next update."""
        return float(self.scheduler.get_last_lr()[0])

    def _total_grad_norm(self) -> torch.Tensor:
        """L2 norm over every gradient, computed on the device (per-tensor norms in one fused
        call, then the norm of those); unused branches (grad None) count as zero."""
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        return torch.linalg.vector_norm(torch.stack([n.float() for n in torch._foreach_norm(grads)]))

    def step(self, x: torch.Tensor, y: torch.Tensor, scale: int) -> torch.Tensor:
        """One update on LR ``x`` and HR ``y`` (float 0..1 on the device); returns the loss.

        Gradients are reset to None (not zero) first: parameters that the forward pass does not
        use (other scales' branches of MDSR) keep ``grad is None``, and Adam skips them, state
        included."""
        self.net.train()
        amp = self.amp_dtype is not None
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=amp):
            sr = self.runner(x, scale=scale)
        loss = self.loss_fn(sr.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # the norm of the true gradients, not the scaled ones
            self.grad_norm = self._total_grad_norm()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.grad_norm = self._total_grad_norm()
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
        execution = {k: self.optimizer.param_groups[0][k] for k in _EXECUTION_KEYS
                     if k in self.optimizer.param_groups[0]}
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # how this trainer runs Adam, not how the saver did
            group.update(execution)
        # StepLR's state is its update count and current lr: restored as saved, never stepped
        # again here (the official port halves the lr once more on every resume).
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


# ---- amp auto -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AmpChoice:
    """What ``amp auto`` chose, and the milliseconds per update it measured (empty: a rule)."""

    amp: str
    ms_per_update: dict[str, float]
    reason: str


def choose_amp(
    candidates: Mapping[str, Callable[[], object]],
    *,
    steps: int = 10,
    warmup: int = 3,
    clock: Callable[[], float] = time.perf_counter,
    sync: Callable[[], None] = lambda: None,
) -> AmpChoice:
    """Time ``steps`` calls of each candidate (``{"none": step, "bf16": step}``) after ``warmup``
    untimed ones, and pick the fastest; bf16 (or fp16) wins only when it takes under
    :data:`BF16_MARGIN` of fp32's time. ``sync`` waits for queued device work (CUDA)."""
    ms: dict[str, float] = {}
    for name, step in candidates.items():
        for _ in range(warmup):
            step()
        sync()
        t0 = clock()
        for _ in range(steps):
            step()
        sync()
        ms[name] = 1000.0 * (clock() - t0) / steps
    fp32 = ms.get("none")
    low = {k: v for k, v in ms.items() if k != "none"}
    best = min(low, key=low.__getitem__) if low else None
    if best is not None and (fp32 is None or low[best] < BF16_MARGIN * fp32):
        choice = best
    else:
        choice = "none"
    reason = "timed: " + ", ".join(f"{'fp32' if k == 'none' else k} {v:.2f} ms" for k, v in ms.items()) + " per update"
    return AmpChoice(choice, ms, reason)


def time_amp(cfg: TrainConfig, device: torch.device, batch: int, steps: int = 10) -> AmpChoice:
    """:func:`choose_amp` on throwaway copies of the network (fp32, and bf16 where
    :func:`bf16_native`) and random patches of the run's shape, timed as the run will train: its
    memory format, its TF32 setting and cuDNN's autotuner (:func:`~sr_bench.precision.training_flags`,
    restored after), waiting on the run's own device. The run's weights, optimiser and RNG streams
    are untouched (the caller seeds after this), and both copies are freed, and CUDA's cached
    blocks returned, before this returns: the free memory the run reads next is really free."""
    device = torch.device(device)
    amps = ["none"] + (["bf16"] if bf16_native(device) else [])
    with training_flags(device, cfg.runtime.tf32):
        choice = _time_candidates(cfg, device, batch, amps, steps)
    gc.collect()  # any reference cycle of the trainers (optimiser, scheduler), before the cache is emptied
    torch.cuda.empty_cache()  # a no-op where CUDA was never initialised
    return choice


def _time_candidates(cfg: TrainConfig, device: torch.device, batch: int, amps: list[str], steps: int) -> AmpChoice:
    """Build, time and drop one throwaway trainer per precision (nothing of them outlives this call)."""
    scale, p = cfg.model.scales[0], cfg.data.patch_size
    fmt = torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format
    x = torch.rand(batch, 3, p, p, device=device).contiguous(memory_format=fmt)
    y = torch.rand(batch, 3, p * scale, p * scale, device=device).contiguous(memory_format=fmt)
    trainers = {a: Trainer(cfg, device, warm_start=False, amp=a) for a in amps}
    steps_of = {a: functools.partial(t.step, x, y, scale) for a, t in trainers.items()}
    return choose_amp(steps_of, steps=steps, sync=device_sync(device))
