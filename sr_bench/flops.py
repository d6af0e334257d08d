"""FLOPs per LR megapixel for any registered model.

Convolutions (and any other matmul-like op) are counted by
:class:`torch.utils.flop_counter.FlopCounterMode`: 2 FLOPs per multiply-add, biases and
element-wise ops (ReLU, residual additions, pixel shuffle) not counted, the usual convention.
Modules whose work is not made of such ops report it through an ``extra_flops(height, width,
channels, scale)`` method, which replaces what the counter saw inside them (the MATLAB bicubic
resampling of ``bicubic`` and ``vdsr``: 4 taps per pass, 2 FLOPs each).

Counts are exact and linear in the pixel count (every layer is a 'same'-padded convolution), so a
small probe input gives the per-pixel figure. Registered names are built on the ``meta`` device:
nothing is computed or allocated, so even EDSR is counted instantly.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sr_bench import models
from sr_bench.inference import model_device, model_dtype

__all__ = ["count_flops", "flops_per_lr_megapixel", "flops_per_lr_pixel"]


def count_flops(model: nn.Module, scale: int, height: int, width: int, channels: int = 3) -> int:
    """FLOPs of one forward of ``model`` on a (1, channels, height, width) input at ``scale``."""
    device = model_device(model)
    dtype = model_dtype(model) or torch.float32
    x = torch.zeros(1, channels, height, width, device=device, dtype=dtype)
    was_training = model.training
    model.eval()  # BN must not update its statistics while we count
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x, scale)
    finally:
        model.train(was_training)
    # Modules with an analytic count replace whatever the counter saw inside them (imresize's
    # border gathers use einsum, which the counter would count as a matmul).
    counts = counter.get_flop_counts()
    root = type(model).__name__
    total = int(counter.get_total_flops())
    for name, m in model.named_modules():
        if hasattr(m, "extra_flops"):
            seen = counts.get(f"{root}.{name}" if name else root, {})
            total += int(m.extra_flops(height, width, channels, scale)) - int(sum(seen.values()))
    return total


def flops_per_lr_pixel(
    model: nn.Module | str, scale: int, *, channels: int | None = None, probe: int = 16, **options: object
) -> float:
    """FLOPs per LR pixel. ``model`` is a module or a registry name (then built on the meta
    device with ``options``)."""
    if isinstance(model, str):
        spec = models.get_spec(model)
        wanted = options.get("in_channels", spec.in_channels)
        channels = channels or (wanted if isinstance(wanted, int) else 3)
        with torch.device("meta"):
            model = models.create(model, scale=scale, **options)
    channels = channels or getattr(model, "in_channels", None) or 3
    return count_flops(model, scale, probe, probe, channels) / (probe * probe)


def flops_per_lr_megapixel(model: nn.Module | str, scale: int, **kwargs: object) -> float:
    """FLOPs per LR megapixel (10^6 LR pixels); see :func:`flops_per_lr_pixel`."""
    return flops_per_lr_pixel(model, scale, **kwargs) * 1e6  # type: ignore[arg-type]
