"""MATLAB bicubic enlargement as a model: the Bicubic column of Table 3."""

from __future__ import annotations

import torch
from torch import nn

from sr_bench.models.registry import ModelSpec, register_model
from sr_bench.resize import imresize

__all__ = ["Bicubic", "bicubic", "bicubic_flops"]


def bicubic_flops(height: int, width: int, channels: int, scale: int) -> int:
    """Multiply-adds (x2) of MATLAB bicubic enlargement by ``scale``: 4 taps per output sample,
    height pass then width pass."""
    taps = 4
    first = (height * scale) * width * channels * taps * 2
    second = (height * scale) * (width * scale) * channels * taps * 2
    return first + second


def _axis_matrix(n: int, scale: int, like: torch.Tensor) -> torch.Tensor:
    """The (scale * n, n) matrix of MATLAB bicubic enlargement along one axis, made by resizing
    the identity (column i of the result is the response to the unit impulse e_i)."""
    eye = torch.eye(n, dtype=like.dtype, device=like.device).reshape(n, n, 1)
    return imresize(eye, float(scale))[:, :, 0].t()


class _Imresize(torch.autograd.Function):
    """``imresize`` with a gradient: the forward is the exact MATLAB resampling, the backward its
    adjoint ``A_h^T g A_w`` (the resampling is linear and separable)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: int) -> torch.Tensor:
        ctx.in_hw = tuple(x.shape[-2:])
        ctx.scale = scale
        return imresize(x, float(scale))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        H, W = ctx.in_hw
        a_h = _axis_matrix(H, ctx.scale, grad)
        a_w = _axis_matrix(W, ctx.scale, grad)
        return a_h.t() @ grad @ a_w, None


class Bicubic(nn.Module):
    """``imresize(x, scale, 'bicubic')`` on float tensors (no rounding), any channel count;
    differentiable with respect to ``x``.

    Has no parameters; serves every integer scale (``scales`` lists the benchmark ones).
    """

    def __init__(self, scales: tuple[int, ...] = (2, 3, 4)) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.in_channels: int | None = None  # any number of channels
        self.receptive_field = 2  # the cubic kernel reaches 2 LR pixels when enlarging

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        if scale is None:
            raise ValueError(f"bicubic serves scales {self.scales}: pass scale=, e.g. model(x, scale=2)")
        if int(scale) != scale or scale < 1:
            raise ValueError(f"bicubic: scale must be a positive integer, got {scale}")
        return _Imresize.apply(x, int(scale))

    def extra_flops(self, height: int, width: int, channels: int, scale: int) -> int:
        """FLOPs not made of convolutions, for :mod:`sr_bench.flops`."""
        return bicubic_flops(height, width, channels, scale)


@register_model(
    ModelSpec(
        name="bicubic",
        family="bicubic",
        loss="l1",
        scales=(2, 3, 4),
        multi_scale=True,
        receptive_field=2,
        params=(0,),
        paper_params=None,
        description="MATLAB imresize(x, s, 'bicubic') on float input (docs/protocol.md#bicubic); no parameters.",
    )
)
def bicubic(scale: int | None = None, *, scales: tuple[int, ...] = (2, 3, 4)) -> Bicubic:
    """The bicubic upsampler (no parameters, any number of channels)."""
    return Bicubic(scales)
