"""Named evaluation protocols: how an SR output is turned into the numbers of a table.

Every number sr_bench writes says which protocol made it, because protocols alone move PSNR by
0.01-0.1 dB (docs/protocol.md#protocols). Common to all: HR is cropped to the SR size, the SR output
is quantised to uint8 before any metric, PSNR is averaged per image over a set.

==========  ======================================  ==========================  ===================
protocol    luma (benchmarks)                       single-channel images       DIV2K
==========  ======================================  ==========================  ===================
paper       MATLAB rgb2ycbcr Y, rounded to uint8    the channel is Y            RGB, shave s + 6
vdsr        as paper; the model sees float Y made   the channel is Y            as benchmarks
            from the HR (Y-first, float bicubic)
pytorch     16 + (65.738 R + 129.057 G + 25.064 B)  replicated to RGB first     RGB, shave s + 6
            / 256, unrounded (EDSR-PyTorch)         (+1.3 dB on such images)
basicsr     MATLAB Y, unrounded float (BasicSR      replicated to RGB first     as benchmarks
            calculate_psnr, test_y_channel=True)
==========  ======================================  ==========================  ===================

Benchmarks shave ``scale`` pixels on every side. SSIM is Wang et al.'s (Gaussian 11x11,
sigma 1.5, valid filtering) on the same values as PSNR, averaged over channels for RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch

from sr_bench import metrics
from sr_bench.images import as_batch
from sr_bench.lookup import Registry
from sr_bench.resize import imresize

__all__ = ["Protocol", "PROTOCOLS", "Reference", "Score", "get_protocol", "Luma", "Gray", "Div2k"]


class Luma(str, Enum):
    """The luma a protocol scores colour images on."""

    Y_ROUNDED = "y_rounded"  # MATLAB rgb2ycbcr Y, rounded to uint8
    Y_FLOAT = "y_float"  # MATLAB Y, unrounded (BasicSR)
    Y_PYTORCH = "y_pytorch"  # EDSR-PyTorch's /256 weights, unrounded


class Gray(str, Enum):
    """What a protocol does with single-channel images."""

    AS_Y = "as_y"  # the channel is its own Y
    REPLICATE = "replicate"  # expanded to RGB first (EDSR-PyTorch, BasicSR)


class Div2k(str, Enum):
    """How a protocol scores DIV2K (non-benchmark) images."""

    RGB = "rgb"  # RGB with shave scale + 6
    LUMA = "luma"  # as the benchmarks


def _member(enum: type[Enum], value: object, field: str, protocol: str) -> Enum:
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in enum)
        raise ValueError(f"protocol {protocol!r}: {field}={value!r} is not one of {choices}") from None


@dataclass(frozen=True)
class Score:
    psnr: float
    ssim: float


@dataclass(frozen=True)
class Reference:
    """An HR image as a protocol compares against it: (1, c, H, W) planes, uint8 or float64."""

    planes: torch.Tensor
    hr_channels: int
    benchmark: bool


@dataclass(frozen=True)
class Protocol:
    """``luma``, ``gray`` and ``div2k`` take the enum or its string value; anything else raises
    here, since a misspelt value would otherwise fall through to another protocol's numbers."""

    name: str
    summary: str
    luma: Luma
    gray: Gray
    div2k: Div2k
    y_first: bool = False  # the model input is the float Y of the HR, bicubic-shrunk in float

    def __post_init__(self) -> None:
        for field, enum in (("luma", Luma), ("gray", Gray), ("div2k", Div2k)):
            object.__setattr__(self, field, _member(enum, getattr(self, field), field, self.name))

    def shave(self, scale: int, benchmark: bool) -> int:
        return scale if benchmark or self.div2k is Div2k.LUMA else scale + 6

    def _plane(self, img: torch.Tensor, hr_channels: int, benchmark: bool) -> torch.Tensor:
        """The values PSNR and SSIM compare for one uint8 (1, C, H, W) image: uint8 where they
        are integers (rounded luma, single-channel or RGB images), float64 otherwise."""
        if img.shape[1] == 1 and self.gray is Gray.REPLICATE:
            img = img.expand(-1, 3, -1, -1)
        if not benchmark and self.div2k is Div2k.RGB:
            if img.shape[1] != hr_channels and img.shape[1] == 3:  # RGB output of a gray image
                return metrics.rgb_to_luma(img, rounded=True)
            return img
        if img.shape[1] == 1:
            return img
        if hr_channels == 1 and self.gray is Gray.AS_Y:
            # RGB output of a single-channel image: reduce it to that one channel.
            return metrics.rgb_to_luma(img, rounded=self.luma is Luma.Y_ROUNDED)
        if self.luma is Luma.Y_ROUNDED:
            return metrics.rgb_to_y(img, rounded=True)
        if self.luma is Luma.Y_FLOAT:
            return metrics.rgb_to_y(img, rounded=False)
        if self.luma is Luma.Y_PYTORCH:
            return metrics.rgb_to_y_pytorch(img)
        raise AssertionError(f"unhandled luma {self.luma!r}")  # every member is handled above

    def reference(self, hr, benchmark: bool) -> Reference:
        """What every scale of one HR image is scored against; compute it once per image."""
        hr = as_batch(hr)
        if hr.dtype != torch.uint8:
            raise TypeError(f"reference: HR must be uint8, got {hr.dtype}")
        return Reference(self._plane(hr, hr.shape[1], benchmark), hr.shape[1], benchmark)

    def model_input(self, reference: Reference, lr: np.ndarray | None, scale: int) -> np.ndarray:
        """The image the model sees: the MATLAB-made LR file, or (``y_first``, the vdsr protocol)
        the float Y of the modcropped HR shrunk with float MATLAB bicubic."""
        if not self.y_first:
            if lr is None:
                raise ValueError(f"protocol {self.name} needs an LR image")
            return lr
        y = reference.planes[0, 0]
        H, W = y.shape
        return imresize(y[: H - H % scale, : W - W % scale].cpu().numpy().astype(np.float64), 1.0 / scale)

    def score_reference(self, sr, reference: Reference, scale: int) -> Score:
        """PSNR / SSIM of one quantised uint8 SR image against a :meth:`reference`; the reference
        is cropped to the SR size (LR size x scale)."""
        sr = as_batch(sr)
        if sr.dtype != torch.uint8:
            raise TypeError(f"score: quantise the SR output to uint8 first (got {sr.dtype})")
        ref = reference.planes
        H, W = sr.shape[-2:]
        if ref.shape[-2] < H or ref.shape[-1] < W:
            raise ValueError(f"SR output {H}x{W} is larger than the HR image {ref.shape[-2]}x{ref.shape[-1]}")
        a = self._plane(sr, reference.hr_channels, reference.benchmark)
        b = ref[..., :H, :W].to(a.device)
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"SR output has {sr.shape[1]} channel(s); cannot score it against this HR image")
        border = self.shave(scale, reference.benchmark)
        a, b = metrics.shave(a, border), metrics.shave(b, border)
        return Score(float(metrics.psnr(a, b, data_range=255.0)[0]), float(metrics.ssim(a, b, data_range=255.0)[0]))

    def score(self, sr, hr, scale: int, benchmark: bool) -> Score:
        """PSNR / SSIM of one quantised SR image against its HR image (uint8, numpy (H, W[, C])
        or torch (1, C, H, W))."""
        return self.score_reference(sr, self.reference(hr, benchmark), scale)


def _registry(*protocols: Protocol) -> Registry[Protocol]:
    registry: Registry[Protocol] = Registry("protocol")
    for p in protocols:
        registry.add(p.name, p)
    return registry


PROTOCOLS = _registry(
    Protocol(
        "paper",
        "the authors' MATLAB evaluation: Y of rgb2ycbcr rounded to uint8, shave = scale; "
        "DIV2K RGB, shave = scale + 6",
        luma=Luma.Y_ROUNDED,
        gray=Gray.AS_Y,
        div2k=Div2k.RGB,
    ),
    Protocol(
        "vdsr",
        "SRCNN/VDSR pipeline behind the published Bicubic/SRCNN/VDSR rows: Y of the HR (uint8), "
        "float MATLAB bicubic down, model on Y, rounded; scored as paper",
        luma=Luma.Y_ROUNDED,
        gray=Gray.AS_Y,
        div2k=Div2k.LUMA,
        y_first=True,
    ),
    Protocol(
        "pytorch",
        "EDSR-PyTorch calc_psnr: unrounded Y with 65.738/129.057/25.064 / 256, gray replicated to RGB; "
        "DIV2K RGB, shave = scale + 6",
        luma=Luma.Y_PYTORCH,
        gray=Gray.REPLICATE,
        div2k=Div2k.RGB,
    ),
    Protocol(
        "basicsr",
        "BasicSR calculate_psnr/ssim with test_y_channel=True, crop_border = scale: unrounded Y, "
        "gray replicated to RGB",
        luma=Luma.Y_FLOAT,
        gray=Gray.REPLICATE,
        div2k=Div2k.LUMA,
    ),
)


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; an unknown name raises ``UnknownNameError`` (a KeyError)
    that suggests close names and lists every protocol."""
    return PROTOCOLS.get(name)
