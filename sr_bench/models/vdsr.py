"""VDSR (Kim, Lee, Lee, CVPR 2016): 20 conv layers predicting the residual over the
MATLAB-bicubic-upsampled input; one network for x2/x3/x4.

Layers: conv3x3 (C -> 64) + ReLU, 18 x (conv3x3 64 -> 64 + ReLU), conv3x3 (64 -> C); zero padding
everywhere so borders are predicted too. ``in_channels=1`` is the original luminance-only model
(665,921 parameters, the paper's 0.66M); the default ``in_channels=3`` runs on RGB.
Inputs and outputs are 0..1 (VDSR works in 0..1 and subtracts no mean).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sr_bench.models.bicubic import Bicubic
from sr_bench.models.common import conv
from sr_bench.models.registry import ModelSpec, register_model

__all__ = ["VDSR", "vdsr"]


class VDSR(nn.Module):
    """VDSR.

    Args:
        scales: scales served (2, 3, 4); any integer scale works, these are the trained ones.
        layers: conv layers (20).
        filters: feature maps (64).
        in_channels: 3 (RGB) or 1 (Y channel, the original).
    """

    def __init__(
        self, scales: tuple[int, ...] = (2, 3, 4), *, layers: int = 20, filters: int = 64, in_channels: int = 3
    ) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"VDSR needs at least 2 layers, got {layers}")
        self.scales = tuple(scales)
        self.in_channels = in_channels
        self.upsample = Bicubic(self.scales)  # no parameters: the state_dict is the conv stack only
        body: list[nn.Module] = [conv(in_channels, filters, 3), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            body += [conv(filters, filters, 3), nn.ReLU(inplace=True)]
        body.append(conv(filters, in_channels, 3))
        self.body = nn.Sequential(*body)
        # `layers` 3x3 convs at HR (radius layers / s LR pixels) over bicubic taps (2 LR pixels)
        self.receptive_field = max(math.ceil(layers / s + 2) for s in self.scales)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        if scale is None:
            raise ValueError(f"VDSR serves scales {self.scales}: pass scale=, e.g. model(x, scale=2)")
        if scale not in self.scales:
            raise ValueError(f"this VDSR serves scales {self.scales}; got scale={scale}")
        up = self.upsample(x, scale)
        return self.body(up).add_(up)


@register_model(
    ModelSpec(
        name="vdsr",
        family="vdsr",
        loss="l2",
        scales=(2, 3, 4),
        multi_scale=True,
        receptive_field=12,
        params=(668_227,),
        paper_params=None,
        description="VDSR: 20 3x3 conv layers of 64 filters predicting the residual over MATLAB bicubic "
        "upsampling; one network for x2/x3/x4 (blocks = conv layers); in_channels=1 is the Y-channel original.",
    )
)
def vdsr(
    scale: int | None = None,
    *,
    scales: tuple[int, ...] = (2, 3, 4),
    layers: int = 20,
    filters: int = 64,
    in_channels: int = 3,
) -> VDSR:
    """VDSR (multi-scale, residual over bicubic)."""
    return VDSR(scales, layers=layers, filters=filters, in_channels=in_channels)
