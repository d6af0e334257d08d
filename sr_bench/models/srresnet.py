"""SRResNet as the EDSR authors reproduced it (Table 1, first column).

Table 1 fixes 16 residual blocks with batch normalisation, 64 filters, about 1.5M parameters
and the L2 loss. The rest follows Ledig et al. (Fig. 4 of the SRGAN paper) with one change the
EDSR authors' own Torch reimplementation makes:

* head: conv 9x9 (3 -> 64) followed by an activation (Ledig's k9n64s1);
* 16 blocks conv3x3-BN-act-conv3x3-BN with an identity skip, then conv3x3 + BN and a long skip
  from the head output;
* sub-pixel upsampler: per x2 stage conv3x3 (64 -> 256), PixelShuffle(2), activation (x3: one
  conv 64 -> 576, PixelShuffle(3), activation);
* tail: conv 9x9 (64 -> 3) (Ledig's k9n3s1);
* **ReLU instead of PReLU** (``act="prelu"`` restores Ledig's choice): the EDSR paper says its
  reproduction "became slightly different to match the settings of our baseline model training",
  and the authors' Torch ResNet models (LimBee/NTIRE2017 ``resnet.lua``) use ReLU; the paper also
  contrasts its baseline, which "has no ReLU outside the residual blocks", with SRResNet, which
  therefore has one after the head and in the upsampler, as built here;
* the same DIV2K mean shift and 0..255 internal range as the EDSR baseline (same training setup).

Parameters (mean shift included): 1,401,755 (x2), 1,586,395 (x3), 1,549,467 (x4): "1.5M" as
Table 1 prints it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sr_bench.models.common import (
    DIV2K_MEAN,
    MeanShift,
    ResBlock,
    Upsampler,
    check_scale,
    conv,
    make_activation,
    upsampler_receptive_field,
)
from sr_bench.models.registry import ModelSpec, register_model

__all__ = ["SRResNet", "srresnet"]


class SRResNet(nn.Module):
    """SRResNet (see the module docstring for every choice).

    Args:
        scale: upscaling factor (3 or a power of two).
        blocks: residual blocks (16).
        filters: feature maps (64).
        batch_norm: BN in the blocks and after the body conv (True; False is the ablation).
        act: ``"relu"`` (default, EDSR's reproduction) or ``"prelu"`` (Ledig et al.).
        kernel_size: head and tail kernel (9, Ledig et al.).
        res_scale: residual scaling of the blocks (1).
        rgb_range: internal pixel range (255).
    """

    def __init__(
        self,
        scale: int = 4,
        *,
        blocks: int = 16,
        filters: int = 64,
        batch_norm: bool = True,
        act: str = "relu",
        kernel_size: int = 9,
        res_scale: float = 1.0,
        rgb_range: float = 255.0,
    ) -> None:
        super().__init__()
        self.scale = check_scale(scale)
        self.scales = (scale,)
        self.rgb_range = float(rgb_range)
        self.sub_mean = MeanShift(rgb_range, DIV2K_MEAN, sign=-1)
        self.head = nn.Sequential(conv(3, filters, kernel_size), make_activation(act, filters))
        body: list[nn.Module] = [
            ResBlock(filters, 3, batch_norm=batch_norm, act=act, res_scale=res_scale) for _ in range(blocks)
        ]
        body.append(conv(filters, filters, 3))
        if batch_norm:
            body.append(nn.BatchNorm2d(filters))
        self.body = nn.Sequential(*body)
        self.tail = nn.Sequential(Upsampler(scale, filters, act=act), conv(filters, 3, kernel_size))
        self.add_mean = MeanShift(rgb_range, DIV2K_MEAN, sign=1)
        r = kernel_size // 2
        self.receptive_field = math.ceil(r + 2 * blocks + 1 + upsampler_receptive_field(scale) + r / scale)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        if scale is not None and scale != self.scale:
            raise ValueError(f"this model is built for x{self.scale}; got scale={scale}")
        x = self.sub_mean(x * self.rgb_range)
        x = self.head(x)
        res = self.body(x)
        res = res.add_(x)
        x = self.tail(res)
        return self.add_mean(x) / self.rgb_range


@register_model(
    ModelSpec(
        name="srresnet",
        family="srresnet",
        loss="l2",
        scales=(2, 3, 4),
        multi_scale=False,
        receptive_field=40,
        params=(1_401_755, 1_586_395, 1_549_467),
        paper_params="1.5M",
        description="SRResNet as reproduced by the EDSR authors: Ledig et al.'s layout (9x9 head/tail, "
        "16 conv-BN-act-conv-BN blocks, conv+BN with a long skip, sub-pixel upsampler with activation) "
        "with ReLU instead of PReLU (act='prelu' restores it), DIV2K mean shift, L2 loss.",
    )
)
def srresnet(
    scale: int = 4,
    *,
    blocks: int = 16,
    filters: int = 64,
    batch_norm: bool = True,
    act: str = "relu",
    kernel_size: int = 9,
    res_scale: float = 1.0,
) -> SRResNet:
    """SRResNet (Table 1 'SRResNet (reproduced)')."""
    return SRResNet(
        scale, blocks=blocks, filters=filters, batch_norm=batch_norm, act=act, kernel_size=kernel_size,
        res_scale=res_scale,
    )
