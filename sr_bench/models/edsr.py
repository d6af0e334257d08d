"""EDSR and MDSR (Lim et al., CVPRW 2017), with the official PyTorch port's state_dict layout.

Keys (docs/protocol.md#official-port): ``sub_mean.*``, ``add_mean.*``, ``head.0.*``,
``body.{i}.body.{0,2}.*`` (i < blocks), ``body.{blocks}.*``; EDSR ``tail.0.{0,2}.*`` (upsampler)
and ``tail.1.*``; MDSR ``pre_process.{k}.{0,1}.body.{0,2}.*``, ``upsample.{k}.*`` and ``tail.0.*``
with k following the scales (2, 3, 4). With ``batch_norm=True`` (the ablation) the blocks become
``conv, BN, ReLU, conv, BN`` as in the official ``ResBlock(bn=True)``.

Range: inputs and outputs are 0..1; inside, the network works on 0..``rgb_range`` (255), where
the official weights live, with ``rgb_mean`` (the DIV2K mean) subtracted. Both are model options
(``create("edsr-baseline", scale=2, rgb_range=1, rgb_mean=(0.5, 0.5, 0.5))``; BasicSR's
``img_range`` is accepted as the name of ``rgb_range``): weights trained with other values need
them, and BasicSR keeps them outside its checkpoints (docs/basicsr.md).

CPU inference: with ``cpu_fusion`` on (:func:`sr_bench.inference.prepare_model` switches it on
for the CPU), the blocks run fused, bit-identical to the layers; with ``compose_upsampler`` too
(opt-in), the upsampler and tail convolution run as one composed LR convolution, equal to the
layers to float32 rounding (:mod:`sr_bench.models.fusion`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sr_bench.models import fusion
from sr_bench.models.common import (
    DIV2K_MEAN,
    MeanShift,
    ResBlock,
    Upsampler,
    check_scale,
    conv,
    pixel_range,
    rgb_mean_option,
    upsampler_receptive_field,
)
from sr_bench.models.registry import ModelSpec, register_model

__all__ = ["EDSR", "MDSR", "edsr_baseline", "edsr", "mdsr_baseline", "mdsr"]


def _fused_body_with_skip(body: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``body(x) + x``, the body's last convolution adding the skip itself. Unless a hook watches
    the body, each ResBlock after the first writes its output over its input (the previous
    block's output, which nothing else holds): one feature map in flight instead of a new one
    per block."""
    last = body[-1]
    if not isinstance(last, nn.Conv2d) or not fusion.fusable_conv(last):
        return body(x).add_(x)
    in_place = not fusion.hooked(body)
    res, owned = x, False  # owned: res is a previous block's fresh output, not the caller's x
    for block in list(body)[:-1]:
        res = block.forward_(res) if in_place and owned and isinstance(block, ResBlock) else block(res)
        owned = isinstance(block, ResBlock)
    return fusion.conv_add(last, res, x)


def _check_single_scale(model_scale: int, scale: int | None) -> None:
    if scale is not None and scale != model_scale:
        raise ValueError(f"this model is built for x{model_scale}; got scale={scale}")


class EDSR(nn.Module):
    """Single-scale EDSR: mean shift, head conv, ``blocks`` ResBlocks + conv with a global skip,
    sub-pixel upsampler, tail conv, mean shift back.

    Args:
        scale: upscaling factor (3 or a power of two).
        blocks: residual blocks (16 baseline, 32 EDSR).
        filters: feature maps (64 baseline, 256 EDSR).
        res_scale: residual scaling (1 baseline, 0.1 EDSR).
        batch_norm: add BN to the residual blocks (ablation; official models have none). As in the
            official port, the upsampler never has BN.
        rgb_range: the internal pixel range of the weights (255 for the official checkpoints).
        rgb_mean: the mean RGB (0..1) subtracted inside, as the weights were trained (DIV2K's).
    """

    cpu_fusion = False
    compose_upsampler = False

    def __init__(
        self,
        scale: int = 2,
        *,
        blocks: int = 16,
        filters: int = 64,
        res_scale: float = 1.0,
        batch_norm: bool = False,
        rgb_range: float = 255.0,
        rgb_mean: tuple[float, float, float] = DIV2K_MEAN,
    ) -> None:
        super().__init__()
        self.scale = check_scale(scale)
        self.scales = (scale,)
        self.rgb_range = float(rgb_range)
        self.rgb_mean = tuple(float(m) for m in rgb_mean)
        self.sub_mean = MeanShift(rgb_range, rgb_mean, sign=-1)
        self.head = nn.Sequential(conv(3, filters, 3))
        body: list[nn.Module] = [
            ResBlock(filters, 3, batch_norm=batch_norm, res_scale=res_scale) for _ in range(blocks)
        ]
        body.append(conv(filters, filters, 3))
        self.body = nn.Sequential(*body)
        self.tail = nn.Sequential(Upsampler(scale, filters), conv(filters, 3, 3))
        self.add_mean = MeanShift(rgb_range, rgb_mean, sign=1)
        # head + 2 per block + body conv + upsampler + tail conv at HR resolution
        self.receptive_field = math.ceil(1 + 2 * blocks + 1 + upsampler_receptive_field(scale) + 1 / scale)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        _check_single_scale(self.scale, scale)
        fused = fusion.applies(self, x)
        x = self.sub_mean(x * self.rgb_range)
        x = self.head(x)
        if fused and self.compose_upsampler:
            x = fusion.upsample_and_project(self.tail[0], self.tail[1], _fused_body_with_skip(self.body, x))
        elif fused and not fusion.hooked(self.tail):
            x = fusion.project_in_bands(self.tail[0], self.tail[1], _fused_body_with_skip(self.body, x))
        elif fused:
            x = self.tail(_fused_body_with_skip(self.body, x))
        else:
            x = self.tail(self.body(x).add_(x))
        return self.add_mean(x) / self.rgb_range


class MDSR(nn.Module):
    """Multi-scale EDSR: per-scale pre-processing (two 5x5 ResBlocks) and upsampler around a
    shared body. ``forward(x, scale)`` runs only that scale's modules, so only they get gradients.

    Args:
        scales: the scales served, in the order of the module lists (official: 2, 3, 4).
        blocks: shared residual blocks (16 baseline, 80 MDSR).
        filters: feature maps (64).
        res_scale, batch_norm, rgb_range, rgb_mean: as for :class:`EDSR`.
    """

    cpu_fusion = False
    compose_upsampler = False

    def __init__(
        self,
        scales: tuple[int, ...] = (2, 3, 4),
        *,
        blocks: int = 16,
        filters: int = 64,
        res_scale: float = 1.0,
        batch_norm: bool = False,
        rgb_range: float = 255.0,
        rgb_mean: tuple[float, float, float] = DIV2K_MEAN,
    ) -> None:
        super().__init__()
        self.scales = tuple(check_scale(s) for s in scales)
        if len(set(self.scales)) != len(self.scales):
            raise ValueError(f"duplicate scales {scales}")
        self.rgb_range = float(rgb_range)
        self.rgb_mean = tuple(float(m) for m in rgb_mean)
        self.sub_mean = MeanShift(rgb_range, rgb_mean, sign=-1)
        self.head = nn.Sequential(conv(3, filters, 3))
        self.pre_process = nn.ModuleList(
            nn.Sequential(
                ResBlock(filters, 5, batch_norm=batch_norm, res_scale=res_scale),
                ResBlock(filters, 5, batch_norm=batch_norm, res_scale=res_scale),
            )
            for _ in self.scales
        )
        body: list[nn.Module] = [
            ResBlock(filters, 3, batch_norm=batch_norm, res_scale=res_scale) for _ in range(blocks)
        ]
        body.append(conv(filters, filters, 3))
        self.body = nn.Sequential(*body)
        self.upsample = nn.ModuleList(Upsampler(s, filters) for s in self.scales)
        self.tail = nn.Sequential(conv(filters, 3, 3))
        self.add_mean = MeanShift(rgb_range, rgb_mean, sign=1)
        # head + 2 ResBlocks of two 5x5 convs + 2 per block + body conv + upsampler + tail
        self.receptive_field = max(
            math.ceil(1 + 8 + 2 * blocks + 1 + upsampler_receptive_field(s) + 1 / s) for s in self.scales
        )

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        if scale is None:
            raise ValueError(f"MDSR serves scales {self.scales}: pass scale=, e.g. model(x, scale=2)")
        try:
            k = self.scales.index(scale)
        except ValueError:
            raise ValueError(f"this MDSR serves scales {self.scales}; got scale={scale}") from None
        fused = fusion.applies(self, x)
        x = self.sub_mean(x * self.rgb_range)
        x = self.head(x)
        x = self.pre_process[k](x)
        if fused and self.compose_upsampler:
            x = fusion.upsample_and_project(self.upsample[k], self.tail[0], _fused_body_with_skip(self.body, x))
        elif fused and not fusion.hooked(self.upsample[k], self.tail):
            x = fusion.project_in_bands(self.upsample[k], self.tail[0], _fused_body_with_skip(self.body, x))
        elif fused:
            x = self.tail(self.upsample[k](_fused_body_with_skip(self.body, x)))
        else:
            x = self.tail(self.upsample[k](self.body(x).add_(x)))
        return self.add_mean(x) / self.rgb_range


_EDSR_NOTE = (
    "Keys and parameter counts follow the official PyTorch port, so its checkpoints load strictly; "
    "inputs/outputs 0..1, 0..255 inside (DIV2K mean shift as frozen 1x1 convs)."
)


@register_model(
    ModelSpec(
        name="edsr-baseline",
        family="edsr",
        loss="l1",
        scales=(2, 3, 4),
        multi_scale=False,
        receptive_field=36,
        params=(1_369_883, 1_554_523, 1_517_595),
        paper_params="1.5M",
        description="The paper's single-scale baseline: 16 ResBlocks (conv-ReLU-conv, no BN), 64 filters. "
        + _EDSR_NOTE,
    )
)
def edsr_baseline(
    scale: int = 2,
    *,
    blocks: int = 16,
    filters: int = 64,
    res_scale: float = 1.0,
    batch_norm: bool = False,
    rgb_range: float = 255.0,
    rgb_mean: tuple[float, float, float] | str = DIV2K_MEAN,
    img_range: float | None = None,
) -> EDSR:
    """EDSR baseline (Table 1 'Baseline (single-scale)'): 16 x 64, no residual scaling.
    ``rgb_range`` / ``rgb_mean``: the range and mean the weights were trained with (``img_range``
    is BasicSR's name of ``rgb_range``)."""
    return EDSR(scale, blocks=blocks, filters=filters, res_scale=res_scale, batch_norm=batch_norm,
                rgb_range=pixel_range(rgb_range, img_range), rgb_mean=rgb_mean_option(rgb_mean))


@register_model(
    ModelSpec(
        name="edsr",
        family="edsr",
        loss="l1",
        scales=(2, 3, 4),
        multi_scale=False,
        receptive_field=68,
        params=(40_729_627, 43_680_027, 43_089_947),
        paper_params="43M",
        description="EDSR: 32 ResBlocks of 256 filters with residual scaling 0.1, no BN. " + _EDSR_NOTE,
    )
)
def edsr(
    scale: int = 2,
    *,
    blocks: int = 32,
    filters: int = 256,
    res_scale: float = 0.1,
    batch_norm: bool = False,
    rgb_range: float = 255.0,
    rgb_mean: tuple[float, float, float] | str = DIV2K_MEAN,
    img_range: float | None = None,
) -> EDSR:
    """EDSR (Table 1 'EDSR'): 32 x 256, residual scaling 0.1. ``rgb_range`` / ``rgb_mean`` /
    ``img_range``: as for :func:`edsr_baseline`."""
    return EDSR(scale, blocks=blocks, filters=filters, res_scale=res_scale, batch_norm=batch_norm,
                rgb_range=pixel_range(rgb_range, img_range), rgb_mean=rgb_mean_option(rgb_mean))


@register_model(
    ModelSpec(
        name="mdsr-baseline",
        family="mdsr",
        loss="l1",
        scales=(2, 3, 4),
        multi_scale=True,
        receptive_field=44,
        params=(3_227_227,),
        paper_params="3.2M",
        description="The paper's multi-scale baseline: per-scale 5x5 pre-processing blocks and upsamplers "
        "around 16 shared ResBlocks of 64 filters. " + _EDSR_NOTE,
    )
)
def mdsr_baseline(
    scale: int | None = None,
    *,
    scales: tuple[int, ...] = (2, 3, 4),
    blocks: int = 16,
    filters: int = 64,
    res_scale: float = 1.0,
    batch_norm: bool = False,
    rgb_range: float = 255.0,
    rgb_mean: tuple[float, float, float] | str = DIV2K_MEAN,
) -> MDSR:
    """MDSR baseline (Table 1 'Baseline (multi-scale)'). ``scale`` is only checked by
    :func:`~sr_bench.models.create`; the model serves all of ``scales``."""
    return MDSR(scales, blocks=blocks, filters=filters, res_scale=res_scale, batch_norm=batch_norm,
                rgb_range=pixel_range(rgb_range), rgb_mean=rgb_mean_option(rgb_mean))


@register_model(
    ModelSpec(
        name="mdsr",
        family="mdsr",
        loss="l1",
        scales=(2, 3, 4),
        multi_scale=True,
        receptive_field=172,
        params=(7_954_011,),
        paper_params="8.0M",
        description="MDSR: 80 shared ResBlocks of 64 filters, per-scale 5x5 pre-processing and upsamplers. "
        + _EDSR_NOTE,
    )
)
def mdsr(
    scale: int | None = None,
    *,
    scales: tuple[int, ...] = (2, 3, 4),
    blocks: int = 80,
    filters: int = 64,
    res_scale: float = 1.0,
    batch_norm: bool = False,
    rgb_range: float = 255.0,
    rgb_mean: tuple[float, float, float] | str = DIV2K_MEAN,
) -> MDSR:
    """MDSR (Table 1 'MDSR'): 80 x 64, multi-scale."""
    return MDSR(scales, blocks=blocks, filters=filters, res_scale=res_scale, batch_norm=batch_norm,
                rgb_range=pixel_range(rgb_range), rgb_mean=rgb_mean_option(rgb_mean))
