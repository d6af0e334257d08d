"""Running a model on whole images: self-ensemble, exact tiling, out-of-memory retries.

The one entry point evaluation calls is :func:`super_resolve`. Guarantees:

* with the defaults (no self-ensemble, no tiling) it returns exactly ``model(lr, scale)`` (as
  float), so the float32 path is a plain forward;
* tiles overlap by at least ``model.receptive_field`` LR pixels, so a tiled result equals the
  whole-image forward up to float rounding (< 1e-4 in 0..1 units), at any scale and image size;
* on a CUDA out-of-memory error the tile is halved and the image run again (a whole-image run
  falls back to tiles), down to :data:`MIN_TILE`; a self-ensemble batch that does not fit first
  falls back to one transform at a time (whole images), and only then to tiles;
* float32 runs in IEEE float32, never TF32, without cuDNN's autotuner
  (:func:`sr_bench.precision.ieee_float32`, for the call only): outputs and records mean the
  same on every GPU;
* geometric self-ensemble (EDSR+/MDSR+): the 8 combinations of flip-W, flip-H and transpose;
  each output is transformed back and the 8 are averaged in float32. The 8 inputs run as one
  batch (square images) or two batches of 4 (the transposed ones have the other shape) when the
  memory budget allows, else one by one; both give the same result up to float rounding;
* a tile smaller than ``max(MIN_TILE, model.receptive_field)`` is raised to it with a warning:
  below it the overlap dwarfs the tile (``tile=1`` on a 120x96 image: 11,520 forwards);
* every forward's output is checked before it is used (:func:`check_output`): a tensor, of a
  floating dtype, on the input's device, of shape (N, C, sH, sW) for an (N, C, H, W) input; and
  each returned image is checked for NaN/Inf once (one reduction, one host sync per image, not per
  tile). A failure is a :class:`NetworkOutputError` naming the image and what was wrong;
* the network gets a copy of the caller's pixels, never a view of them: a network that changes
  its input in place cannot corrupt the next tile or self-ensemble transform.

:func:`prepare_model` puts a model in inference form (``eval()``, device, dtype, memory format,
and on the CPU the fused form of :mod:`sr_bench.models.fusion`, bit-identical to the layers).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import re
import weakref
from collections.abc import Callable, Iterator

import torch
from torch import nn

from sr_bench.errors import DataError, UserError
from sr_bench.models.fusion import cpu_fusion_disabled, set_cpu_fusion
from sr_bench.precision import ieee_float32

__all__ = [
    "DeviceError",
    "NetworkOutputError",
    "check_output",
    "check_finite_output",
    "TRANSFORMS",
    "MIN_TILE",
    "transform",
    "inverse_transform",
    "geometric_self_ensemble",
    "forward_tiled",
    "super_resolve",
    "super_resolve_modes",
    "prepare_model",
    "parse_dtype",
    "parse_bytes",
    "memory_size_arg",
    "resolve_device",
    "bytes_per_lr_pixel",
    "tile_for_budget",
    "min_tile",
    "model_device",
    "model_dtype",
]

log = logging.getLogger(__name__)

#: (flip_w, flip_h, transpose) for the 8 geometric transforms; the identity first.
TRANSFORMS: tuple[tuple[bool, bool, bool], ...] = tuple(
    (w, h, t) for w, h, t in itertools.product((False, True), repeat=3)
)

#: the smallest tile (LR pixels) tried after out-of-memory errors, and the smallest accepted.
MIN_TILE = 16

#: memory for one batched self-ensemble forward when no budget is given: on the CPU (on CUDA
#: half the free device memory)
CPU_ENSEMBLE_BUDGET = 2 * 1024**3

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


class DeviceError(ValueError):
    """A ``--device`` torch cannot use (a usage error for ``sr_bench.cli.command``)."""

    exit_code = 2


class NetworkOutputError(DataError):
    """A network whose forward returned something that is not an SR image of its input (exit 1)."""


def _describe(obj: object) -> str:
    """What a forward returned, in a few words: ``a tuple of 2 (Tensor, Tensor)``, ``None``."""
    if obj is None:
        return "None"
    if isinstance(obj, (tuple, list)):
        kinds = ", ".join(type(v).__name__ for v in obj[:4]) + (", ..." if len(obj) > 4 else "")
        return f"a {type(obj).__name__} of {len(obj)} ({kinds})"
    if isinstance(obj, dict):
        return f"a {type(obj).__name__} with keys {sorted(map(str, obj))[:5]}"
    return f"a {type(obj).__name__}"


def check_output(y: object, x: torch.Tensor, scale: int) -> torch.Tensor:
    """``y`` if it is what a forward on ``x`` must return: a floating tensor on ``x``'s device of
    shape (N, C, scale*H, scale*W). Reads metadata only (no host sync).

    Raises:
        NetworkOutputError: saying what was returned and what was expected.
    """
    if not isinstance(y, torch.Tensor):
        raise NetworkOutputError(
            f"the network returned {_describe(y)}, not a tensor; its forward must return the SR image alone, "
            f"a (N, C, H, W) float tensor (wrap the network to pick it out)"
        )
    if not y.is_floating_point():
        raise NetworkOutputError(
            f"the network returned {str(y.dtype).removeprefix('torch.')} values; the network must return float "
            f"in 0..1 (input_range option for 0..255)"
        )
    if y.device != x.device:
        raise NetworkOutputError(
            f"the network returned a tensor on {y.device} for an input on {x.device}; return the output on the "
            f"input's device"
        )
    want = (x.shape[0], x.shape[1], x.shape[2] * scale, x.shape[3] * scale)
    if tuple(y.shape) != want:
        raise NetworkOutputError(
            f"the network returned shape {tuple(y.shape)} for an input of {tuple(x.shape)}; expected {want} "
            f"(x{scale}, the input's batch and channels)"
        )
    return y


def _first_bad(bad: torch.Tensor) -> str:
    n, c, yy, xx = (int(v) for v in bad.nonzero()[0])
    return f"first at y={yy}, x={xx} of channel {c}" + (f" of batch item {n}" if bad.shape[0] > 1 else "")


def check_finite_output(outputs: dict[bool, torch.Tensor], dtype: torch.dtype | None = None) -> None:
    """Raise :class:`NetworkOutputError` unless every value of ``outputs`` (``{self_ensemble: SR}``)
    is finite: one reduction and one host sync for all of them; the count and the first position
    are only computed for the message. ``dtype``: the model's, for the advice (float16 overflows)."""
    if bool(torch.stack([torch.isfinite(y).all() for y in outputs.values()]).all()):
        return
    for ensemble, y in outputs.items():
        nan, inf = int(torch.isnan(y).sum()), int(torch.isinf(y).sum())
        if nan or inf:
            counts = " and ".join(f"{k:,} {what}" for k, what in ((nan, "NaN"), (inf, "Inf")) if k)
            raise NetworkOutputError(
                f"the network's {'self-ensemble ' if ensemble else ''}output holds {counts} of {y.numel():,} values "
                f"({_first_bad(~torch.isfinite(y))}); a network that returns NaN or Inf cannot be scored ("
                + ("float16 overflows above 65504: run it in float32 or bfloat16" if dtype == torch.float16
                   else "diverged, or weights of another model?") + ")"
            )


def resolve_device(spec: str | None) -> str:
    """``auto`` (or None) -> ``cuda`` when a CUDA device is usable, else ``cpu``; other specs as given.

    Raises :class:`DeviceError` for a string torch does not read as a device, and for a CUDA device
    when this torch has none.
    """
    if spec in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(spec).type
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(
            f"--device {spec!r} is not a device; use auto, cpu, cuda or cuda:N (or mps on Apple)"
        ) from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {spec}: this torch has no usable CUDA device; use --device cpu")
    return spec


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32" | "bfloat16" | "float16"`` (or a torch dtype) -> torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"inference dtype must be float32, bfloat16 or float16, got {dtype}")
        return dtype
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16") from None


def parse_bytes(size: int | str) -> int:
    """``2_000_000_000``, ``"2GB"``, ``"512MiB"`` -> bytes."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?)(i?)b?\s*", size.lower())
    if not m:
        raise ValueError(f"cannot read a memory size from {size!r}; write e.g. 4GB or 512MiB")
    base = 1024 if m.group(3) else 1000
    return int(float(m.group(1)) * base ** " kmgt".index(m.group(2) or " "))


def memory_size_arg(text: str) -> str:
    """argparse ``type=`` for ``--memory-budget``: checks that :func:`parse_bytes` reads it, keeps the text."""
    try:
        if parse_bytes(text) <= 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"cannot read a memory size from {text!r}; write e.g. 4GB or 512MiB"
        ) from None
    return text


def model_device(model: nn.Module, default: torch.device | None = None) -> torch.device:
    """The device of the model's first parameter or buffer (``default`` if it has none)."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return default if default is not None else torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating parameter, None for parameter-free models."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def _is_channels_last(model: nn.Module) -> bool:
    w = next((p for p in model.parameters() if p.ndim == 4), None)
    return w is not None and w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


def prepare_model(
    model: nn.Module,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
    *,
    channels_last: bool | None = None,
    fuse: bool | None = None,
    compose_upsampler: bool = False,
) -> nn.Module:
    """``eval()`` the model and move it to ``device`` / ``dtype`` in the faster memory format.

    Args:
        device: where to run.
        dtype: float32 (default); bfloat16 / float16 only when asked for (they change results).
        channels_last: None picks the faster layout: channels_last on the CPU (oneDNN convolutions
            1.4-2.6x faster, same results up to float rounding: ~1e-6) and for half types
            on CUDA (tensor cores); the default layout for float32 on CUDA.
        fuse: the fused CPU inference form of the EDSR family (:mod:`sr_bench.models.fusion`:
            ReLU and residual additions inside the convolutions, bit-identical to the layers).
            None: on for the CPU; it never runs on other devices.
        compose_upsampler: with ``fuse``, also run the upsampler and tail convolution as one
            composed LR convolution: EDSR-baseline x2 ~20% faster on the CPU, equal to the layers
            to float32 rounding but not bit for bit (a few uint8 pixels of an evaluation flip),
            so off unless asked for.
    """
    device = torch.device(device)
    dtype = parse_dtype(dtype)
    if channels_last is None:
        channels_last = device.type == "cpu" or dtype != torch.float32
    model = model.eval().to(device=device, dtype=dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # not in the stubs
    set_cpu_fusion(model, device.type == "cpu" if fuse is None else fuse, compose_upsampler=compose_upsampler)
    return model


# --------------------------------------------------------------------------------------------
# Geometric self-ensemble


def transform(x: torch.Tensor, t: tuple[bool, bool, bool]) -> torch.Tensor:
    """Apply flip-W, then flip-H, then transpose (as selected by ``t``) to the last two dims."""
    flip_w, flip_h, transpose = t
    if flip_w:
        x = x.flip(-1)
    if flip_h:
        x = x.flip(-2)
    if transpose:
        x = x.transpose(-1, -2)
    return x


def inverse_transform(x: torch.Tensor, t: tuple[bool, bool, bool]) -> torch.Tensor:
    """Undo :func:`transform` (each step is its own inverse; applied in reverse order)."""
    flip_w, flip_h, transpose = t
    if transpose:
        x = x.transpose(-1, -2)
    if flip_h:
        x = x.flip(-2)
    if flip_w:
        x = x.flip(-1)
    return x


def geometric_self_ensemble(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, batched: bool = False
) -> torch.Tensor:
    """Mean over the 8 transforms T of ``T^-1(fn(T(x)))``, accumulated in float32; ``batched``
    runs the transforms that share a shape as one batch."""
    return _ensemble(fn, x, batched)[1]


def ensemble_groups(height: int, width: int) -> list[tuple[tuple[bool, bool, bool], ...]]:
    """The transforms that share an input shape: all 8 for a square image, else the 4 that
    transpose and the 4 that do not."""
    if height == width:
        return [TRANSFORMS]
    return [tuple(t for t in TRANSFORMS if t[2] == tr) for tr in (False, True)]


def _ensemble(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batched: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(plain output, self-ensemble mean): the identity is one of the 8 transforms, so the plain
    output comes for free. Outputs are summed in :data:`TRANSFORMS` order however they were run,
    so batched and sequential means differ only by the forwards' own rounding."""
    outputs: dict[tuple[bool, bool, bool], torch.Tensor] = {}
    acc: torch.Tensor | None = None
    groups = ensemble_groups(*x.shape[-2:]) if batched else [(t,) for t in TRANSFORMS]
    for group in groups:
        ys = fn(torch.cat([transform(x, t) for t in group])) if len(group) > 1 else fn(transform(x, group[0]))
        for t, y in zip(group, ys.split(x.shape[0]), strict=True):
            outputs[t] = inverse_transform(y, t).float()
        if not batched:  # sequential: accumulate as we go, one output alive at a time
            y = outputs.pop(group[0])
            if not any(group[0]):
                outputs[group[0]] = y
            acc = y.clone() if acc is None else acc.add_(y)
    if batched:
        for t in TRANSFORMS:
            acc = outputs[t].clone() if acc is None else acc.add_(outputs[t])
    assert acc is not None
    return outputs[TRANSFORMS[0]], acc.div_(len(TRANSFORMS))


# --------------------------------------------------------------------------------------------
# Tiling


def _splits(length: int, tile: int) -> Iterator[tuple[int, int]]:
    """Cut ``range(length)`` into ceil(length / tile) nearly equal pieces."""
    n = max(1, math.ceil(length / tile))
    edges = [round(i * length / n) for i in range(n + 1)]
    return zip(edges[:-1], edges[1:], strict=True)


def forward_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int, tile: int, overlap: int
) -> torch.Tensor:
    """Run ``fn`` (LR -> x``scale`` SR) on tiles of at most ``tile`` x ``tile`` LR pixels, each
    read with ``overlap`` pixels of context on every side, and stitch the centres (float32).

    With ``overlap >= receptive field`` the result equals ``fn(x)`` up to float rounding.
    """
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be >= 1 and overlap >= 0, got {tile}, {overlap}")
    N, _, H, W = x.shape
    s = scale
    out: torch.Tensor | None = None
    for y0, y1 in _splits(H, tile):
        for x0, x1 in _splits(W, tile):
            py0, py1 = max(y0 - overlap, 0), min(y1 + overlap, H)
            px0, px1 = max(x0 - overlap, 0), min(x1 + overlap, W)
            y = fn(x[..., py0:py1, px0:px1])
            if y.shape[-2:] != ((py1 - py0) * s, (px1 - px0) * s):
                raise ValueError(f"model output {tuple(y.shape)} is not x{s} of its input {(py1 - py0, px1 - px0)}")
            if out is None:
                out = torch.empty(N, y.shape[1], H * s, W * s, dtype=torch.float32, device=y.device)
            oy, ox = (y0 - py0) * s, (x0 - px0) * s
            out[..., y0 * s : y1 * s, x0 * s : x1 * s] = y[..., oy : oy + (y1 - y0) * s, ox : ox + (x1 - x0) * s]
    assert out is not None
    return out


def bytes_per_lr_pixel(model: nn.Module, scale: int, channels: int = 3, *, probe: int = 16) -> float:
    """Estimated peak activation memory of an inference forward, per LR pixel.

    Runs the model once on a ``probe`` x ``probe`` input and takes the largest output of any
    module; the peak is about four such tensors alive at once (block input, its output, the
    global skip and a convolution's workspace).
    """
    device = model_device(model)
    dtype = model_dtype(model) or torch.float32
    largest = 0
    inp_bytes = probe * probe * channels * torch.empty((), dtype=dtype).element_size()

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal largest
        if isinstance(out, torch.Tensor):
            largest = max(largest, out.numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:  # layer by layer: every map the unfused forward makes is seen (an upper bound of the fused one)
        with torch.inference_mode(), cpu_fusion_disabled(model):
            model(torch.zeros(1, channels, probe, probe, device=device, dtype=dtype), scale)
    finally:
        for h in handles:
            h.remove()
    return (4 * largest + inp_bytes) / (probe * probe)


_BPP: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, int], float]] = weakref.WeakKeyDictionary()


def _cached_bytes_per_lr_pixel(model: nn.Module, scale: int, channels: int) -> float:
    """:func:`bytes_per_lr_pixel` once per model and scale (its probe forward costs a second on
    the CPU for EDSR; evaluation asks for every image)."""
    per_model = _BPP.setdefault(model, {})
    if (scale, channels) not in per_model:
        per_model[(scale, channels)] = bytes_per_lr_pixel(model, scale, channels)
    return per_model[(scale, channels)]


def min_tile(model: nn.Module) -> int:
    """The smallest tile accepted: the receptive field (an overlap larger than the tile makes
    each tile's forward mostly context), and at least :data:`MIN_TILE`."""
    return max(MIN_TILE, int(getattr(model, "receptive_field", 0)))


def _checked_tile(model: nn.Module, tile: int | None) -> int | None:
    if tile is None:
        return None
    if tile < 1:
        raise ValueError(f"tile must be a positive number of LR pixels, got {tile}")
    low = min_tile(model)
    if tile < low:
        log.warning("tile %d is below this model's receptive field (%d LR pixels of overlap on each side): using "
                    "%d-pixel tiles instead", tile, int(getattr(model, "receptive_field", 0)), low)
        return low
    return tile


def _batch_fits(model: nn.Module, lr: torch.Tensor, scale: int, tile: int | None,
                memory_budget: int | str | None) -> bool:
    """Whether 8 (square) or 4 transforms of ``lr`` fit one forward within the memory budget
    (given, else half the free CUDA memory, else :data:`CPU_ENSEMBLE_BUDGET`)."""
    N, C, H, W = lr.shape
    if memory_budget is not None:
        budget = parse_bytes(memory_budget)
    elif lr.device.type == "cuda":
        budget = torch.cuda.mem_get_info(lr.device)[0] // 2
    else:
        budget = CPU_ENSEMBLE_BUDGET
    if not any(True for _ in model.parameters()):
        return True  # parameter-free (bicubic): activations are the output alone
    side = None if tile is None else tile + 2 * int(getattr(model, "receptive_field", 0))
    pixels = H * W if side is None else min(H, side) * min(W, side)
    group = 8 if H == W else 4
    return group * N * pixels * _cached_bytes_per_lr_pixel(model, scale, C) <= budget


def tile_for_budget(model: nn.Module, scale: int, memory_budget: int | str, channels: int = 3) -> int:
    """The largest tile (LR pixels) whose forward, with its overlap, fits ``memory_budget`` bytes."""
    budget = parse_bytes(memory_budget)
    overlap = int(getattr(model, "receptive_field", 0))
    side = math.isqrt(int(budget / bytes_per_lr_pixel(model, scale, channels)))
    tile = side - 2 * overlap
    if tile < MIN_TILE:
        need = (MIN_TILE + 2 * overlap) ** 2 * bytes_per_lr_pixel(model, scale, channels)
        raise ValueError(
            f"memory budget {budget / 1e6:.0f} MB is too small for this model at x{scale}: a {MIN_TILE}-pixel "
            f"tile with {overlap} pixels of overlap needs about {need / 1e6:.0f} MB"
        )
    return tile


class _Runner:
    """Runs the model whole or tiled, shrinking the tile on out-of-memory errors (unless
    ``shrink`` is False: the error is then the caller's to handle)."""

    def __init__(self, model: nn.Module, scale: int, tile: int | None, channels_last: bool, *,
                 shrink: bool = True) -> None:
        self.model, self.scale, self.tile, self.shrink = model, scale, tile, shrink
        self.overlap = int(getattr(model, "receptive_field", 0))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        inp = x.contiguous(memory_format=self.memory_format)
        if inp is x:  # x may be the caller's image or a view of it: the network gets its own copy
            inp = x.clone(memory_format=self.memory_format)
        return check_output(self.model(inp, self.scale), x, self.scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        while True:
            try:
                if self.tile is None or (self.tile >= H and self.tile >= W):
                    return self._forward(x).float()
                return forward_tiled(self._forward, x, self.scale, self.tile, self.overlap)
            except torch.OutOfMemoryError:
                current = max(H, W) if self.tile is None else min(self.tile, max(H, W))
                if not self.shrink or current // 2 < MIN_TILE:
                    raise
                log.warning(
                    "out of memory with %s; retrying with %d-pixel tiles",
                    "the whole image" if self.tile is None else f"{self.tile}-pixel tiles",
                    current // 2,
                )
                self.tile = current // 2
            # outside the except block the failed attempt's tensors are released
            if x.device.type == "cuda":
                torch.cuda.empty_cache()


def super_resolve(
    model: nn.Module,
    lr: torch.Tensor,
    scale: int,
    *,
    self_ensemble: bool = False,
    tile: int | None = None,
    memory_budget: int | str | None = None,
    batch_transforms: bool | None = None,
    name: str | None = None,
) -> torch.Tensor:
    """Super-resolve ``lr`` (float (N, C, H, W) in 0..1 on the model's device) by ``scale``.

    Args:
        model: a registered model (``model(x, scale)``), ideally from :func:`prepare_model`.
        self_ensemble: average the 8 flip/transpose transforms (the "+" models of the paper).
        tile: LR tile size; tiles overlap by ``model.receptive_field`` pixels. None: the whole
            image (falling back to tiles on CUDA out-of-memory). Below :func:`min_tile` it is
            raised to it, with a warning.
        memory_budget: bytes (or "4GB") to size tiles from when ``tile`` is None, and to decide
            whether the self-ensemble's transforms run as one batch.
        batch_transforms: run the self-ensemble's transforms batched (True), one by one (False),
            or batched when the memory budget allows (None).
        name: what ``lr`` is (an image file, ``Set5/baby``), for the first words of an error.

    Returns:
        float32 (N, C, sH, sW), not clamped or quantised.

    Raises:
        NetworkOutputError: a forward returned something other than a float (N, C, sH, sW) tensor
            on ``lr``'s device, or the result holds NaN/Inf (see :func:`check_output`).
    """
    return super_resolve_modes(model, lr, scale, (self_ensemble,), tile=tile, memory_budget=memory_budget,
                               batch_transforms=batch_transforms, name=name)[self_ensemble]


def super_resolve_modes(
    model: nn.Module,
    lr: torch.Tensor,
    scale: int,
    modes: tuple[bool, ...] = (False, True),
    *,
    tile: int | None = None,
    memory_budget: int | str | None = None,
    batch_transforms: bool | None = None,
    name: str | None = None,
) -> dict[bool, torch.Tensor]:
    """:func:`super_resolve` without and/or with self-ensemble: ``{False: plain, True: ensemble}``
    for the ``modes`` asked. Asking for both costs 8 forwards, not 9."""
    try:
        outputs = _super_resolve_modes(model, lr, scale, modes, tile, memory_budget, batch_transforms)
        check_finite_output(outputs, model_dtype(model))
    except UserError as e:  # the network's own errors too (an imported network's forward that raised)
        if name is not None and e.args and isinstance(e.args[0], str):
            e.args = (f"{name}: {e.args[0]}", *e.args[1:])
        raise
    return outputs


def _super_resolve_modes(
    model: nn.Module,
    lr: torch.Tensor,
    scale: int,
    modes: tuple[bool, ...],
    tile: int | None,
    memory_budget: int | str | None,
    batch_transforms: bool | None,
) -> dict[bool, torch.Tensor]:
    if lr.ndim != 4 or not lr.is_floating_point():
        raise ValueError(f"lr must be a float (N, C, H, W) tensor, got {lr.dtype} {tuple(lr.shape)}")
    scales = getattr(model, "scales", None)
    if scales is not None and scale not in scales:
        raise ValueError(f"this model serves scales {tuple(scales)}; got scale={scale}")
    device = model_device(model, lr.device)
    if lr.device != device:
        raise ValueError(f"lr is on {lr.device} but the model is on {device}; move it with lr.to({str(device)!r})")
    dtype = model_dtype(model)
    if dtype is not None and lr.dtype != dtype:
        lr = lr.to(dtype)
    tile = _checked_tile(model, tile)
    if tile is None and memory_budget is not None:
        tile = tile_for_budget(model, scale, memory_budget, lr.shape[1])
    channels_last = _is_channels_last(model)
    with torch.inference_mode(), ieee_float32():
        if True not in modes:
            return {False: _Runner(model, scale, tile, channels_last)(lr)}
        if batch_transforms is None:
            batch_transforms = _batch_fits(model, lr, scale, tile, memory_budget)
        plain, ensemble = _ensemble_falling_back(model, lr, scale, tile, channels_last, batch_transforms)
        return {m: ensemble if m else plain for m in modes}


def _ensemble_falling_back(model: nn.Module, lr: torch.Tensor, scale: int, tile: int | None, channels_last: bool,
                           batched: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_ensemble`, batched when asked; a batch that runs out of memory falls back to one
    transform at a time at the same tile (an 8-image batch needs 8x the memory of one image:
    shrinking its tiles first would end at :data:`MIN_TILE` and fail where one transform at a
    time fits), and only that path shrinks tiles further."""
    if batched:
        try:
            return _ensemble(_Runner(model, scale, tile, channels_last, shrink=False), lr, True)
        except torch.OutOfMemoryError:
            log.warning("out of memory running the self-ensemble's transforms as one batch%s; running them one "
                        "at a time", "" if tile is None else f" ({tile}-pixel tiles)")
        # outside the except block the failed batch's tensors are released
        if lr.device.type == "cuda":
            torch.cuda.empty_cache()
    return _ensemble(_Runner(model, scale, tile, channels_last), lr, False)
