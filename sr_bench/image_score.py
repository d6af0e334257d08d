"""``sr_bench.score``: PSNR and SSIM of one SR image against its HR image, in one call.

    >>> import sr_bench
    >>> s = sr_bench.score(sr, hr, scale=4)                      # the EDSR paper's protocol
    >>> s = sr_bench.score(sr, hr, scale=4, protocol="basicsr")  # = BasicSR / pyiqa, Y channel
    >>> s.psnr, s.ssim

What the images may be (one image each, RGB or single-channel):

* numpy ``(H, W, C)`` or ``(H, W)``; torch ``(C, H, W)``, ``(1, C, H, W)`` or ``(H, W)``; C is 1 or 3;
  on any device;
* uint8 (0..255), or float in 0..1 (any float dtype). A float image is quantised to the uint8
  image it would be saved as (x 255, clip, round half up), exactly as ``evaluate`` quantises a
  model's output before any metric (docs/protocol.md#metrics). A float image with values outside
  0..1 is refused, never rescaled by a guess: divide 0..255 floats by 255, clamp an unclamped
  model output with ``.clamp(0, 1)``. Other dtypes (int64, uint16, bool) are refused too.

Sizes: the two images are the same size, or HR is larger by less than ``scale`` in each
dimension and SR is its modcrop (``hr[:H - H % scale, :W - W % scale]``, the size of an SR
image made from the LR image of that HR); HR is then cropped as ``evaluate`` crops it. Any other
pair is refused.

Everything past that (luma, shave, rounding) is the named protocol's (:mod:`sr_bench.protocols`).
docs/scoring.md#score compares the numbers with BasicSR's and pyiqa's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sr_bench.images import as_batch, quantize
from sr_bench.protocols import Protocol, get_protocol

__all__ = ["ImageScore", "score"]


@dataclass(frozen=True)
class ImageScore:
    """What :func:`score` measured on one image.

    Attributes:
        psnr: PSNR in dB (+inf for identical images).
        ssim: SSIM (Wang et al.), mean over the map (and over channels for RGB scoring).
        protocol: the protocol that made both numbers.
        scale: the upscaling factor the image was scored at.
        shave: the border dropped on every side before both metrics.
    """

    psnr: float
    ssim: float
    protocol: str
    scale: int
    shave: int


_LAYOUTS = "numpy (H, W, C) / (H, W), or torch (C, H, W) / (1, C, H, W) / (H, W), with C = 1 or 3"


def _batch(image: object, what: str) -> torch.Tensor:
    """``image`` as a (1, C, H, W) tensor, its layout checked."""
    if not isinstance(image, (np.ndarray, torch.Tensor)):
        hint = "; a PIL image: np.asarray(img)" if type(image).__module__.startswith("PIL") else ""
        raise TypeError(f"score: {what} must be a numpy array or a torch tensor, got {type(image).__name__}{hint}")
    shape = tuple(image.shape)
    numpy = isinstance(image, np.ndarray)
    if image.ndim not in ((2, 3) if numpy else (2, 3, 4)):
        raise ValueError(f"score: {what} has shape {shape}; expected one image: {_LAYOUTS}")
    if not numpy and image.ndim == 4 and shape[0] != 1:
        raise ValueError(f"score: {what} is a batch of {shape[0]} images {shape}; score takes one image: "
                         f"loop over the batch (score({what}[i], ...))")
    if isinstance(image, np.ndarray) and not image.flags.writeable:  # np.asarray(PIL image): torch would warn
        image = image.copy()
    batch = as_batch(image)
    channels = batch.shape[1]
    if channels not in (1, 3):
        hint = (" (an (H, W, C) torch tensor: pass it as numpy, or .permute(2, 0, 1))"
                if not numpy and shape[-1] in (1, 3) else "; drop the alpha channel" if channels == 4 else "")
        raise ValueError(f"score: {what} has shape {shape}, read as {channels} channels{hint}; expected {_LAYOUTS}")
    if batch.shape[-2] == 0 or batch.shape[-1] == 0:
        raise ValueError(f"score: {what} is empty (shape {shape})")
    return batch


def _as_uint8(image: object, what: str) -> torch.Tensor:
    """(1, C, H, W) uint8: uint8 as it is, float 0..1 quantised as evaluate quantises."""
    x = _batch(image, what)
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise TypeError(f"score: {what} is {x.dtype}; pass uint8 (0..255) or float in 0..1 "
                        f"(e.g. .astype(np.uint8) / .to(torch.uint8) if its values are 0..255)")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"score: {what} holds NaN or Inf values; a float image must be in 0..1")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        fix = ("divide it by 255 if it holds 0..255 values" if hi > 1.5 else
               "clamp it first (.clamp(0, 1) / np.clip(x, 0, 1)) if it is an unclamped model output")
        raise ValueError(f"score: {what} is a float image with values in {lo:g}..{hi:g}; float images must be "
                         f"in 0..1 (uint8 for 0..255): {fix}")
    return quantize(x)


def _crop_hr(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> None:
    """Check that HR crops to SR as evaluate crops it (the same size, or SR is HR's modcrop)."""
    (h, w), (H, W) = sr.shape[-2:], hr.shape[-2:]
    if (h, w) == (H, W) or (h, w) == (H - H % scale, W - W % scale):
        return
    raise ValueError(
        f"score: SR is {w}x{h} but HR is {W}x{H}; they must be the same size, or SR the size of HR cropped "
        f"to a multiple of the scale x{scale} ({W - W % scale}x{H - H % scale}). Pass the HR image that "
        f"belongs to this SR image, and the scale it was made at"
    )


def score(
    sr: np.ndarray | torch.Tensor,
    hr: np.ndarray | torch.Tensor,
    scale: int,
    protocol: str | Protocol = "paper",
    *,
    benchmark: bool = True,
) -> ImageScore:
    """PSNR and SSIM of one super-resolved image against its HR image, as ``evaluate`` scores it.

    Args:
        sr: the SR image: uint8, or float in 0..1 (quantised to uint8 first); see the module
            docstring for layouts and sizes.
        hr: the HR image, the same way. It may be larger than ``sr`` by its remainder modulo
            ``scale`` (it is then cropped to ``sr``'s size).
        scale: the upscaling factor; benchmarks shave ``scale`` pixels on every side.
        protocol: a registered protocol name (``"paper"``, ``"vdsr"``, ``"pytorch"``,
            ``"basicsr"``; docs/protocol.md#protocols) or a :class:`~sr_bench.protocols.Protocol`.
            ``"paper"``: Y of MATLAB ``rgb2ycbcr`` rounded to uint8, the EDSR authors' evaluation;
            ``"basicsr"``: the unrounded Y that BasicSR's ``calculate_psnr``/``calculate_ssim``
            (``test_y_channel=True, crop_border=scale``) and pyiqa's ``psnr``/``ssim`` score.
        benchmark: True (default) scores as the benchmarks (Set5, Set14, B100, Urban100) are
            scored; False as DIV2K is (RGB, shave ``scale + 6``, for ``paper`` and ``pytorch``).

    Raises:
        TypeError: not a numpy array or tensor, or a dtype other than uint8 / float.
        ValueError: a float image outside 0..1 (the message gives the values and the fix), a
            layout or size that does not fit, an image too small for the shave and SSIM's 11x11
            window; ``KeyError`` for an unknown protocol name.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"score: scale must be a whole number >= 1, got {scale!r}")
    scale = int(scale)
    p = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
    a, b = _as_uint8(sr, "sr"), _as_uint8(hr, "hr")
    _crop_hr(a, b, scale)
    if a.shape[1] == 1 and b.shape[1] == 3:
        raise ValueError("score: SR has 1 channel but HR has 3; score an RGB SR image against it (a single-channel "
                         "SR image can only be scored against a single-channel HR image)")
    result = p.score(a, b, scale, benchmark)
    return ImageScore(result.psnr, result.ssim, p.name, scale, p.shave(scale, benchmark))
