"""The CPU inference form of the EDSR family's layers: the same function as the layer-by-layer
forward, with less memory traffic and (opt-in) less arithmetic.

* **Convolution + ReLU** and **convolution + residual addition** run as one oneDNN convolution
  with a post-op (``torch.ops.mkldnn._convolution_pointwise``, the kernels torch.compile emits for
  these patterns on the CPU, here without a compiler), and ``MeanShift``'s identity 1x1
  convolution as a bias add. In float32 the results are bit-identical to the separate
  operations (tested): the post-op applies the same single rounding to the same sum. This is
  the default on the CPU (``cpu_fusion``).
* **Less fresh memory, the same bits** (default too): inside the body, every ResBlock after the
  first adds its residual into its input in place (:func:`conv_add_`), and the upsampler and
  tail convolution of x2/x3 models run in bands of LR rows (:func:`project_in_bands`) instead of
  through a full-size 4F-channel map. A 256 x 256 EDSR-baseline forward used to fault in
  200-300 MB of new pages; these keep it to a few bands' worth. Both step aside where a forward
  hook watches the modules (:func:`hooked`).
* **Opt-in: the upsampler and the tail convolution compose into one LR convolution**
  (``compose_upsampler``). Without an activation between them, ``tail(shuffle(conv(...)))`` is
  linear in the body's features, so it is one convolution of the LR features (``3 s^2``
  outputs, a 5x5 kernel for x2/x3/x4) followed by a pixel shuffle of 3 channels: 8x fewer
  multiply-adds for EDSR-baseline x2, and no 4F-channel map to shuffle. The composed kernel is
  computed in float64 from the live weights (cached until a weight changes) and rounded once to
  the model's dtype; the outputs are as close to a float64 forward as the layers' are, but not
  the same bits, so a few uint8 pixels of an evaluation flip (Set5 x2 with the committed
  EDSR-baseline: -1.4e-5 dB): hence opt-in. The composition is exact inside the image; on the
  outermost LR ring the high-resolution layers pad with zeros, which no LR convolution
  reproduces, so that ring is recomputed by the layers themselves on thin strips.

A module uses these only where they apply: on the CPU, in eval mode, without autograd, in float32
or bfloat16, with its switches on (:func:`sr_bench.inference.prepare_model` sets them;
:func:`set_cpu_fusion` by hand).
"""

from __future__ import annotations

import contextlib
import functools
import math
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as torch_module

__all__ = [
    "applies",
    "conv_relu",
    "conv_add",
    "conv_add_",
    "hooked",
    "project_in_bands",
    "fold_upsampler",
    "FoldedUpsampler",
    "upsample_and_project",
    "set_cpu_fusion",
    "cpu_fusion_disabled",
    "fused_ops_available",
]

_DTYPES = (torch.float32, torch.bfloat16)


@functools.cache
def fused_ops_available() -> bool:
    """Whether this torch has oneDNN's fused convolution ops and they give the separate ops' bits.

    They are internal ops (the ones torch.compile emits), so they are checked, not assumed: once
    per process, on a small case; a torch release that drops or changes them falls back to the
    layers instead of breaking or changing results."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        conv = nn.Conv2d(8, 8, 3, padding=1).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = torch.randn(1, 8, 6, 7, generator=gen).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            ref = conv(x)
            acc = x.clone(memory_format=torch.channels_last)
            return (torch.equal(conv_relu(conv, x), torch.relu(ref)) and torch.equal(conv_add(conv, x, x), ref + x)
                    and conv_add_(conv, x, acc) is acc and torch.equal(acc, ref + x))
    except (AttributeError, RuntimeError, TypeError):
        return False


@functools.cache
def _bf16_supported() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def applies(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module`` (a block with a ``cpu_fusion`` switch) may run its fused form on ``x``."""
    return bool(
        getattr(module, "cpu_fusion", False)
        and x.device.type == "cpu"
        and x.ndim == 4
        and not module.training
        and not torch.is_grad_enabled()
        and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _bf16_supported()))
        and torch.backends.mkldnn.enabled
        and fused_ops_available()
        and not _dispatch_mode_active()
    )


def _dispatch_mode_active() -> bool:
    """Whether a TorchDispatchMode is on (FLOP counting, fake tensors): it knows the aten
    convolution, not oneDNN's fused ops, so the layers run (flops.count_flops counts them)."""
    return torch._C._len_torch_dispatch_stack() > 0


def set_cpu_fusion(model: nn.Module, enabled: bool, *, compose_upsampler: bool = False) -> None:
    """Switch the fused CPU inference form on or off for every block of ``model`` that has one;
    ``compose_upsampler`` (with ``enabled``) also composes the upsampler and tail convolution."""
    for m in model.modules():
        if hasattr(m, "cpu_fusion"):
            setattr(m, "cpu_fusion", enabled)  # noqa: B010  # an instance switch over the class default
        if hasattr(m, "compose_upsampler"):
            setattr(m, "compose_upsampler", enabled and compose_upsampler)  # noqa: B010


@contextlib.contextmanager
def cpu_fusion_disabled(model: nn.Module) -> Iterator[None]:
    """Run ``model`` layer by layer inside the block (e.g. to see every layer's output in hooks)."""
    switches = ("cpu_fusion", "compose_upsampler")
    before = [(m, name, getattr(m, name)) for m in model.modules() for name in switches if hasattr(m, name)]
    set_cpu_fusion(model, False)
    try:
        yield
    finally:
        for m, name, on in before:
            setattr(m, name, on)


def fusable_conv(conv: nn.Module) -> bool:
    """A plain 'same'-padded 2D convolution (what the fused ops reproduce)."""
    return (
        isinstance(conv, nn.Conv2d)
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
    )


def _conv_args(conv: nn.Conv2d) -> tuple[list[int], list[int], list[int], int]:
    return list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups  # type: ignore[arg-type]


def conv_relu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``relu(conv(x))`` as one oneDNN convolution."""
    return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, *_conv_args(conv), "relu", [], "")


def conv_add(conv: nn.Conv2d, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``conv(x) + skip`` as one oneDNN convolution (a new tensor; ``skip`` is left as it is)."""
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, skip, conv.weight, conv.bias, *_conv_args(conv), "add", None, None, [], None
    )


def conv_add_(conv: nn.Conv2d, x: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
    """``acc += conv(x)`` as one oneDNN convolution writing into ``acc`` (returned): the bits of
    :func:`conv_add` without a new tensor, for a caller that owns ``acc`` (no fresh memory to
    fault in, one stream less to read)."""
    return torch.ops.mkldnn._convolution_pointwise_.binary(
        acc, x, conv.weight, conv.bias, *_conv_args(conv), "add", None, None, [], None
    )


def hooked(*modules: nn.Module) -> bool:
    """Whether a forward hook could see these modules run (one of theirs or their submodules', or a
    global one). The fused forms that skip layers or write over their intermediate tensors then
    step aside, so a hook sees each layer run and no tensor it kept changes afterwards."""
    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for top in modules for m in top.modules())


# --------------------------------------------------------------------------------------------
# The upsampler and tail convolution as one LR convolution


@dataclass(frozen=True)
class FoldedUpsampler:
    """``tail(upsampler(f))`` as ``pixel_shuffle(conv2d(f, weight, bias, padding=radius), scale)``
    away from the image's outermost ``ring`` LR pixels."""

    weight: torch.Tensor  # (out * scale^2, in, 2 radius + 1, 2 radius + 1)
    bias: torch.Tensor
    radius: int
    scale: int
    ring: int


def _stages(upsampler: nn.Module) -> list[tuple[nn.Conv2d, int]] | None:
    """(conv, shuffle factor) pairs of a sub-pixel upsampler, None if it is not exactly that
    (an activation after a shuffle makes it non-linear)."""
    layers = list(upsampler.children()) if isinstance(upsampler, nn.Sequential) else [upsampler]
    if len(layers) % 2:
        return None
    pairs = list(zip(layers[::2], layers[1::2], strict=True))
    if not all(fusable_conv(c) and isinstance(p, nn.PixelShuffle) for c, p in pairs):
        return None
    return [(c, p.upscale_factor) for c, p in pairs]  # type: ignore[misc]


def _same_padded(conv: nn.Conv2d) -> bool:
    kh, kw = conv.kernel_size
    return kh == kw and kh % 2 == 1 and conv.padding == (kh // 2, kw // 2)


def _compose(stage: nn.Conv2d, factor: int, weight: torch.Tensor, bias: torch.Tensor, radius: int
             ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``T(shuffle(stage(f)))`` as one convolution at the stage's resolution, in float64, where T
    is the convolution (``weight``, ``bias``, 'same' padding ``radius``) at ``factor`` x that
    resolution. Output channels come in ``pixel_unshuffle(., factor)`` order.

    T's response to a unit impulse in input channel i of the stage is T applied to the stage's
    weights for i, shuffled: so the composed kernel costs one small convolution per input
    channel, not a forward per impulse."""
    w_s = stage.weight.detach().double()
    b_s = stage.bias.detach().double() if stage.bias is not None else w_s.new_zeros(w_s.shape[0])
    rho = stage.kernel_size[0] // 2
    out_radius = rho + -(-radius // factor)  # reach of T in LR pixels, rounded up, plus the stage's
    size = 2 * out_radius + 3  # one LR pixel of zeros around the support: T's padding sees only zeros
    c = size // 2
    canvas = w_s.new_zeros(w_s.shape[1], w_s.shape[0], size, size)
    canvas[:, :, c - rho : c + rho + 1, c - rho : c + rho + 1] = w_s.flip(-1, -2).transpose(0, 1)
    resp = F.pixel_unshuffle(F.conv2d(F.pixel_shuffle(canvas, factor), weight, None, padding=radius), factor)
    inside = (slice(None), slice(None), slice(c - out_radius, c + out_radius + 1),
              slice(c - out_radius, c + out_radius + 1))
    kernel = resp[inside].flip(-1, -2).transpose(0, 1).contiguous()
    resp[inside] = 0
    if resp.any():  # the support must lie inside the window
        raise AssertionError("composed kernel larger than its computed radius")
    # the stage's bias is a constant map per channel; shuffled, it is periodic, so T gives each
    # output phase its own constant
    const = b_s.view(1, -1, 1, 1).expand(1, -1, size, size)
    new_bias = F.pixel_unshuffle(F.conv2d(F.pixel_shuffle(const, factor), weight, bias, padding=radius), factor)
    return kernel, new_bias[0, :, c, c].clone(), out_radius


def fold_upsampler(upsampler: nn.Module, tail: nn.Module) -> FoldedUpsampler | None:
    """Compose ``tail(upsampler(.))`` into one LR convolution (None where it is not linear or not
    made of 'same'-padded convolutions and pixel shuffles)."""
    stages = _stages(upsampler)
    if stages is None or not fusable_conv(tail) or not all(_same_padded(c) for c, _ in stages):
        return None
    assert isinstance(tail, nn.Conv2d)
    if not _same_padded(tail):
        return None
    weight = tail.weight.detach().double()
    bias = tail.bias.detach().double() if tail.bias is not None else weight.new_zeros(weight.shape[0])
    radius = tail.kernel_size[0] // 2
    out_channels, scale = weight.shape[0], math.prod(f for _, f in stages)
    # the high-resolution layers' zero padding reaches this far into the image, in LR pixels
    resolution, reach = scale, radius / scale
    for conv, f in reversed(stages):
        resolution //= f
        weight, bias, radius = _compose(conv, f, weight, bias, radius)
        if resolution > 1:
            reach += (conv.kernel_size[0] // 2) / resolution
    # nested shuffles (the last stage's innermost) -> the channel order of one pixel_shuffle(scale)
    order = torch.arange(out_channels * scale * scale, dtype=torch.float64).view(1, -1, 1, 1)
    for _, f in stages:
        order = F.pixel_shuffle(order, f)
    perm = F.pixel_unshuffle(order, scale).view(-1).long()
    dtype = stages[0][0].weight.dtype
    return FoldedUpsampler(
        weight[perm].to(dtype).contiguous(memory_format=torch.channels_last),
        bias[perm].to(dtype),
        radius,
        scale,
        math.ceil(reach - 1e-9),
    )


_FOLDS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[object, ...], FoldedUpsampler | None]] = (
    weakref.WeakKeyDictionary()
)


def _signature(modules: tuple[nn.Module, ...]) -> tuple[object, ...] | None:
    """What identifies the weights' current values (None for inference tensors, whose in-place
    changes torch does not count)."""
    sig: list[object] = []
    for m in modules:
        for p in m.parameters():
            if p.is_inference():
                return None
            sig.append((id(m), p.data_ptr(), p._version, p.dtype, p.device, tuple(p.shape)))
    return tuple(sig)


def _cached_fold(upsampler: nn.Module, tail: nn.Module) -> FoldedUpsampler | None:
    sig = _signature((upsampler, tail))
    if sig is None:
        return None
    cached = _FOLDS.get(upsampler)
    if cached is None or cached[0] != sig:
        cached = (sig, fold_upsampler(upsampler, tail))
        _FOLDS[upsampler] = cached
    return cached[1]


def upsample_and_project(upsampler: nn.Module, tail: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``tail(upsampler(x))`` by the composed LR convolution (for a caller that checked
    :func:`applies`), or by the layers where it cannot be composed or the image is tiny."""
    layers: Callable[[torch.Tensor], torch.Tensor] = lambda f: tail(upsampler(f))  # noqa: E731
    fold = _cached_fold(upsampler, tail)
    if fold is None:
        return layers(x)
    H, W = x.shape[-2:]
    n, s, ring = fold.ring + fold.radius, fold.scale, fold.ring
    if min(H, W) <= 2 * n:  # the strips would cover the image
        return layers(x)
    out = F.pixel_shuffle(F.conv2d(x, fold.weight, fold.bias, padding=fold.radius), s)
    if ring:  # each strip is its own image with n - radius exact LR rows at the true border
        out[..., : ring * s, :] = layers(x[..., :n, :])[..., : ring * s, :]
        out[..., -ring * s :, :] = layers(x[..., H - n :, :])[..., -ring * s :, :]
        out[..., :, : ring * s] = layers(x[..., :, :n])[..., :, : ring * s]
        out[..., :, -ring * s :] = layers(x[..., :, W - n :])[..., :, -ring * s :]
    return out


# --------------------------------------------------------------------------------------------
# The upsampler and tail convolution in bands of LR rows (the default; the same bits)

#: upsampled features per band. Smaller than a whole image's map (EDSR-baseline x2 on 256 x 256:
#: 64 MiB, fresh memory faulted in page by page on every call, twice), but not much smaller:
#: each band is 4 parallel regions, and on a loaded machine every region waits for all its
#: threads to get a core (measured on 2 threads under load 5: 4 MiB bands 20% slower than 16 MiB)
BAND_BYTES = 16 << 20
MIN_BAND_ROWS = 8


def _conv_rows(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None, src: torch.Tensor, top: int,
               full: int, lo: int, hi: int) -> torch.Tensor:
    """Rows ``lo:hi`` of ``conv`` (with ``weight`` / ``bias``) over a map of ``full`` rows, of which
    ``src`` holds rows ``top:`` (at least those within the kernel's reach of ``lo:hi``). Zero
    padding is applied only at the map's own top and bottom; the rows a padded side adds inside
    the map are cut off."""
    r, c = _conv_args(conv)[0]
    a, b = max(lo - r, 0), min(hi + r, full)
    pad = r if a == 0 or b == full else 0
    y = F.conv2d(src[..., a - top : b - top, :], weight, bias, padding=(pad, c))
    start = a + r - pad  # the map row of y's first row
    return y[..., lo - start : hi - start, :]


def _shuffle_into(out: torch.Tensor, u: torch.Tensor, s: int) -> None:
    """``out[:] = pixel_shuffle(u', s)`` where ``u`` holds the channels of ``u'`` reordered from
    (c, i, j) to (i, j, c): then every output row is a copy of contiguous (s x C)-value runs of
    ``u`` (channels_last ``out``), not a gather of single values."""
    n, _, h, w = u.shape
    dst = out.permute(0, 2, 3, 1).unflatten(1, (h, s)).unflatten(3, (w, s))  # (n, h, i, w, j, C)
    dst.copy_(u.permute(0, 2, 3, 1).unflatten(3, (s, s, -1)).permute(0, 1, 3, 2, 4, 5))


def _phase_major(conv: nn.Conv2d, s: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``conv``'s weight and bias with output channels reordered from (c, i, j) to (i, j, c)."""
    channels = conv.out_channels // (s * s)
    perm = torch.arange(conv.out_channels, device=conv.weight.device).view(channels, s, s).permute(1, 2, 0).reshape(-1)
    weight = conv.weight[perm]
    if conv.weight.is_contiguous(memory_format=torch.channels_last):
        weight = weight.contiguous(memory_format=torch.channels_last)
    return weight, None if conv.bias is None else conv.bias[perm]


def _single_stage(upsampler: nn.Module, tail: nn.Module) -> tuple[nn.Conv2d, int] | None:
    """The upsampler's (convolution, shuffle factor) where the bands apply: one sub-pixel stage
    (x2, x3) feeding a 'same'-padded tail convolution."""
    stages = _stages(upsampler)
    if stages is None or len(stages) != 1 or not isinstance(tail, nn.Conv2d) or not fusable_conv(tail):
        return None
    conv, s = stages[0]
    if not (_same_padded(conv) and _same_padded(tail) and conv.out_channels == tail.in_channels * s * s):
        return None
    return conv, s


def project_in_bands(upsampler: nn.Module, tail: nn.Module, x: torch.Tensor, rows: int | None = None
                     ) -> torch.Tensor:
    """``tail(upsampler(x))`` bit for bit, computed ``rows`` LR rows at a time (default: about
    :data:`BAND_BYTES` of upsampled features), for a caller that checked :func:`applies`.

    Each band's upsampler convolution computes exactly its rows (from the band plus the kernel's
    reach, zero-padded only at the image's edges); its output channels are reordered so the pixel
    shuffle is a copy of contiguous runs; the tail convolution then produces every output row whose
    features are in, lagging ``radius`` rows behind, and the last ``2 radius`` feature rows carry
    over to the next band. No full-size upsampled map exists. Row slicing, reordered output
    channels and the unpadded interior rows give oneDNN's convolutions the same sums in the same
    order (checked once per process by :func:`bands_exact`, else the layers run). Multi-stage
    upsamplers (x4), inputs not in channels_last, and hooked modules run the layers."""
    stage = _single_stage(upsampler, tail)
    if (stage is None or not x.is_contiguous(memory_format=torch.channels_last) or hooked(upsampler, tail)
            or not bands_exact()):
        return tail(upsampler(x))
    assert isinstance(tail, nn.Conv2d)
    return _bands(*stage, tail, x, rows)


def _bands(conv: nn.Conv2d, s: int, tail: nn.Conv2d, x: torch.Tensor, rows: int | None) -> torch.Tensor:
    """:func:`project_in_bands` for one sub-pixel stage (``conv``, shuffle by ``s``)."""
    n, _, H, W = x.shape
    r = _conv_args(tail)[0][0]
    if rows is None:
        rows = max(MIN_BAND_ROWS, BAND_BYTES // max(1, n * W * conv.out_channels * x.element_size()))
    rows = -(-H // -(-H // max(1, rows)))  # equal bands
    if s * rows < 2 * r:
        return tail(F.pixel_shuffle(conv(x), s))
    weight, bias = _phase_major(conv, s)
    # one feature buffer for every band: 2r rows carried from the band before, then the band's own
    features = torch.empty(n, tail.in_channels, 2 * r + s * rows, s * W, dtype=x.dtype, device=x.device,
                           memory_format=torch.channels_last)
    parts: list[torch.Tensor] = []
    done = filled = 0  # output rows made; feature rows in the buffer
    for a in range(0, H, rows):
        e = min(a + rows, H)
        u = _conv_rows(conv, weight, bias, x, 0, H, a, e)
        k = min(2 * r, filled)
        if k:
            last = features[:, :, filled - k : filled]
            features[:, :, :k] = last.clone() if filled < 2 * k else last  # overlapping rows: a copy first
        filled = k + s * (e - a)
        _shuffle_into(features[:, :, k:filled], u, s)
        del u
        stop = s * H if e == H else s * e - r
        parts.append(_conv_rows(tail, tail.weight, tail.bias, features[:, :, :filled], s * a - k, s * H, done, stop))
        done = stop
    return torch.cat(parts, dim=2)


@functools.cache
def bands_exact() -> bool:
    """Whether :func:`project_in_bands` gives the layers' bits on this machine: checked once per
    process on a small case with several bands (a oneDNN build whose kernels sum row bands or
    reordered channels differently falls back to the layers instead of changing results)."""
    gen = torch.Generator().manual_seed(0)
    conv, tail = nn.Conv2d(16, 64, 3, padding=1), nn.Conv2d(16, 3, 3, padding=1)
    for m in (conv, tail):
        m.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = (torch.randn(1, 16, 11, 7, generator=gen) * 10).contiguous(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            return torch.equal(_bands(conv, 2, tail, x, rows=3), tail(F.pixel_shuffle(conv(x), 2)))
    except (RuntimeError, TypeError):
        return False
