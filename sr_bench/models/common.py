"""Building blocks shared by the EDSR family, laid out as in the official PyTorch port
(sanghyun-son/EDSR-PyTorch ``src/model/common.py``) so that its state_dict keys load unchanged:
``MeanShift`` is a frozen 1x1 conv, ``ResBlock.body`` is ``[conv, (BN), act, conv, (BN)]``, and
``Upsampler`` is a ``Sequential`` of ``conv, PixelShuffle[, conv, PixelShuffle]``.

``MeanShift`` and ``ResBlock`` have a fused CPU inference form (:mod:`sr_bench.models.fusion`),
used when their ``cpu_fusion`` switch is on; it gives the same bits as the layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from sr_bench.errors import UsageError
from sr_bench.models import fusion

__all__ = [
    "DIV2K_MEAN",
    "conv",
    "MeanShift",
    "ResBlock",
    "Upsampler",
    "make_activation",
    "upsampler_receptive_field",
    "check_scale",
    "UnsupportedScaleError",
    "pixel_range",
    "rgb_mean_option",
]

# Mean RGB of the DIV2K training images, as the official port uses it (docs/protocol.md#official-port).
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


def conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    """A 'same'-padded convolution (zero padding), stride 1."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


def make_activation(kind: str, channels: int) -> nn.Module:
    """``"relu"`` (in place) or ``"prelu"`` (one slope per channel)."""
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "prelu":
        return nn.PReLU(channels)
    raise ValueError(f"activation must be 'relu' or 'prelu', got {kind!r}")


def rgb_mean_option(value: Sequence[float] | str) -> tuple[float, float, float]:
    """The ``rgb_mean`` model option: three numbers in 0..1, given as a sequence or as the text
    ``"R,G,B"`` (``--option rgb_mean=0.5,0.5,0.5``; ``[0.5,0.5,0.5]`` arrives as a list)."""
    parts: Sequence[object] = value.strip().strip("[]()").split(",") if isinstance(value, str) else value
    try:
        mean = tuple(float(v) for v in parts)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        mean = ()
    if len(mean) != 3 or not all(0.0 <= m <= 1.0 for m in mean):
        raise UsageError(f"rgb_mean={value!r}: expected three numbers in 0..1 (the mean RGB the weights were trained "
                         f"with, e.g. rgb_mean=0.4488,0.4371,0.4040)")
    return (mean[0], mean[1], mean[2])


def _positive(name: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise UsageError(f"{name}={value!r}: expected a positive number (255 for 0..255 weights, 1 for 0..1)")
    return number


def pixel_range(rgb_range: float, img_range: float | None = None) -> float:
    """The ``rgb_range`` model option (EDSR-PyTorch's name; BasicSR calls it ``img_range``): the
    pixel range the network works in, > 0 (255 for the official weights, 1 for 0..1)."""
    value = _positive("rgb_range", rgb_range)
    if img_range is None:
        return value
    basicsr = _positive("img_range", img_range)
    if value not in (255.0, basicsr):  # 255: rgb_range left at its default
        raise UsageError(f"rgb_range={rgb_range!r} and img_range={img_range!r} disagree; they are one option "
                         f"(img_range is BasicSR's name for it): give one")
    return basicsr


class MeanShift(nn.Conv2d):
    """Subtract (``sign=-1``) or add (``sign=+1``) ``rgb_range * mean`` per channel.

    A frozen 1x1 convolution, exactly as in the official port, so ``sub_mean.weight`` /
    ``sub_mean.bias`` are in the state_dict and official checkpoints load strictly.
    """

    #: fused CPU inference: with the identity weight of every official model (std 1), the
    #: convolution is ``x + bias`` to the bit, and torch's general 1x1 path is 10x slower
    cpu_fusion = False

    def __init__(
        self,
        rgb_range: float = 255.0,
        rgb_mean: tuple[float, float, float] = DIV2K_MEAN,
        rgb_std: tuple[float, float, float] = (1.0, 1.0, 1.0),
        sign: int = -1,
    ) -> None:
        super().__init__(3, 3, kernel_size=1)
        std = torch.tensor(rgb_std)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1))
            assert self.bias is not None  # a Conv2d built with bias=True
            self.bias.copy_(sign * rgb_range * torch.tensor(rgb_mean) / std)
        for p in self.parameters():
            p.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fusion.applies(self, x) and self._identity_weight():
            assert self.bias is not None
            return x + self.bias.view(1, -1, 1, 1)
        return super().forward(x)

    def _identity_weight(self) -> bool:
        eye = torch.eye(self.weight.shape[0], dtype=self.weight.dtype, device=self.weight.device)
        return self.weight.shape[1:] == (eye.shape[0], 1, 1) and torch.equal(self.weight.view_as(eye), eye)


class ResBlock(nn.Module):
    """``out = x + res_scale * body(x)``, body = conv, [BN], act, conv, [BN].

    With ``cpu_fusion`` on (and no BN, ReLU), the ReLU and the residual addition run inside the
    convolutions (:func:`sr_bench.models.fusion.conv_relu` / ``conv_add``): the same bits in float32.
    """

    cpu_fusion = False

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        *,
        batch_norm: bool = False,
        act: str = "relu",
        res_scale: float = 1.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(2):
            layers.append(conv(filters, filters, kernel_size))
            if batch_norm:
                layers.append(nn.BatchNorm2d(filters))
            if i == 0:
                layers.append(make_activation(act, filters))
        self.body = nn.Sequential(*layers)
        self.res_scale = float(res_scale)
        self._fusable = not batch_norm and act == "relu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fusable and fusion.applies(self, x):
            first, second = cast(nn.Conv2d, self.body[0]), cast(nn.Conv2d, self.body[2])
            t = fusion.conv_relu(first, x)
            if self.res_scale == 1.0:
                return fusion.conv_add(second, t, x)
            return torch.add(x, second(t), alpha=self.res_scale)
        res = self.body(x)
        if self.res_scale == 1.0:
            return res.add_(x)
        # one fused op: x + res_scale * res (same value as the official res.mul(s) += x)
        return torch.add(x, res, alpha=self.res_scale)

    def forward_(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x)`` written over ``x`` where the fused form applies (the same bits; no new
        feature map), else ``forward(x)``. ``x`` must be the caller's own tensor, which nothing
        else holds or reads afterwards (a previous block's output inside the body)."""
        if not (self._fusable and fusion.applies(self, x)):
            return self(x)
        first, second = cast(nn.Conv2d, self.body[0]), cast(nn.Conv2d, self.body[2])
        t = fusion.conv_relu(first, x)
        if self.res_scale == 1.0:
            return fusion.conv_add_(second, t, x)
        return x.add_(second(t), alpha=self.res_scale)


class UnsupportedScaleError(ValueError):
    """A scale the sub-pixel upsampler cannot build (a usage error for ``sr_bench.cli.command``)."""

    exit_code = 2


def check_scale(scale: int) -> int:
    """Scales the sub-pixel upsampler supports: 3 and powers of two."""
    if not isinstance(scale, int) or isinstance(scale, bool):
        raise TypeError(f"scale must be an int, got {scale!r}")
    if scale != 3 and (scale < 2 or scale & (scale - 1)):
        raise UnsupportedScaleError(
            f"scale x{scale} is not supported: the sub-pixel upsampler builds x3 and powers of two "
            f"(x2, x4, x8, ...); use --scale 2, 3 or 4"
        )
    return scale


class Upsampler(nn.Sequential):
    """Sub-pixel upsampling: ``log2(s)`` stages of conv(F -> 4F) + PixelShuffle(2), or one
    conv(F -> 9F) + PixelShuffle(3). ``act`` (SRResNet) adds an activation after each shuffle;
    the EDSR family has none."""

    def __init__(self, scale: int, filters: int, *, act: str | None = None) -> None:
        check_scale(scale)
        layers: list[nn.Module] = []
        factors = [3] if scale == 3 else [2] * int(math.log2(scale))
        for f in factors:
            layers.append(conv(filters, f * f * filters, 3))
            layers.append(nn.PixelShuffle(f))
            if act is not None:
                layers.append(make_activation(act, filters))
        super().__init__(*layers)


def upsampler_receptive_field(scale: int) -> float:
    """Radius, in LR pixels, added by :class:`Upsampler` (3x3 convs at each stage's resolution)."""
    factors = [3] if scale == 3 else [2] * int(math.log2(scale))
    radius, resolution = 0.0, 1
    for f in factors:
        radius += 1.0 / resolution
        resolution *= f
    return radius
