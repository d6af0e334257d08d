"""PSNR, SSIM and the colour conversions they are computed on (docs/protocol.md#metrics).

Pure functions on torch tensors, batched, on any device. Images are (N, C, H, W) or (C, H, W);
every function returns one value per image. uint8 images span 0..255; for any other dtype
:func:`psnr` and :func:`ssim` need ``data_range`` (the span of the values: 255.0 for 0..255,
1.0 for 0..1), since a 0..1 image scored as 0..255 gains 20 log10(255) = 48.13 dB.

To score two images the way a protocol does (luma, shave, quantisation), use
:func:`sr_bench.score`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

__all__ = [
    "psnr",
    "ssim",
    "rgb_to_y",
    "rgb_to_y_pytorch",
    "rgb_to_luma",
    "shave",
    "round_half_up",
    "SSIM_WINDOW",
    "SSIM_SIGMA",
]

# MATLAB rgb2ycbcr (ITU-R BT.601, studio range) on 0..255 values.
_Y_COEFFS = (65.481, 128.553, 24.966)
# The official PyTorch port's calc_psnr: the same weights rescaled to /256, no offset.
_Y_COEFFS_PYTORCH = (65.738, 129.057, 25.064)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's round for non-negative values (torch.round rounds half to even); in place."""
    return x.add_(0.5).floor_()


def _check_rgb(x: torch.Tensor) -> None:
    if x.shape[-3] != 3:
        raise ValueError(f"expected 3 colour channels in dim -3, got shape {tuple(x.shape)}")


def _weighted(x: torch.Tensor, coeffs: tuple[float, float, float], divisor: float, offset: float) -> torch.Tensor:
    _check_rgb(x)
    r, g, b = x.to(torch.float64).unbind(-3)
    c0, c1, c2 = (c / divisor for c in coeffs)
    y = torch.mul(r, c0)
    y.add_(g, alpha=c1).add_(b, alpha=c2).add_(offset)
    return y.unsqueeze(-3)


def _weighted_rounded(
    x: torch.Tensor, coeffs_1000: tuple[int, int, int], divisor_1000: int, offset_1000: int
) -> torch.Tensor:
    """round_half_up((c . rgb + offset) / divisor) in exact integer arithmetic (all values x1000),
    returned as uint8. The int32 sums stay below 2^31 for uint8 input."""
    _check_rgb(x)
    if x.dtype != torch.uint8:
        raise TypeError(f"rounded luma is defined on uint8 images, got {x.dtype}")
    r, g, b = x.to(torch.int32).unbind(-3)
    y = torch.mul(r, coeffs_1000[0])
    y.add_(g, alpha=coeffs_1000[1]).add_(b, alpha=coeffs_1000[2]).add_(offset_1000 + divisor_1000 // 2)
    return torch.div(y, divisor_1000, rounding_mode="floor").clamp_(0, 255).to(torch.uint8).unsqueeze(-3)


def rgb_to_y(x: torch.Tensor, *, rounded: bool) -> torch.Tensor:
    """MATLAB ``rgb2ycbcr`` luma: 16 + (65.481 R + 128.553 G + 24.966 B) / 255.

    ``rounded=True``: what MATLAB returns for uint8 input (as the authors' script used it), as
    uint8, rounded half up in exact integer arithmetic. ``rounded=False``: the float64 value
    (BasicSR)."""
    if rounded:
        return _weighted_rounded(x, (65481, 128553, 24966), 255000, 16000 * 255)
    return _weighted(x, _Y_COEFFS, 255.0, 16.0)


def rgb_to_y_pytorch(x: torch.Tensor) -> torch.Tensor:
    """The official PyTorch port's luma: 16 + (65.738 R + 129.057 G + 25.064 B) / 256, unrounded."""
    return _weighted(x, _Y_COEFFS_PYTORCH, 256.0, 16.0)


def rgb_to_luma(x: torch.Tensor, *, rounded: bool) -> torch.Tensor:
    """Full-range luma with the same weights, (65.481 R + 128.553 G + 24.966 B) / 219: equals the
    channel value when R = G = B. Compares an RGB output with a single-channel HR image.
    ``rounded=True`` returns uint8."""
    if rounded:
        return _weighted_rounded(x, (65481, 128553, 24966), 219000, 0)
    return _weighted(x, _Y_COEFFS, 219.0, 0.0)


def shave(x: torch.Tensor, border: int) -> torch.Tensor:
    """Drop ``border`` pixels on every side of the last two dims."""
    if border == 0:
        return x
    H, W = x.shape[-2:]
    if H <= 2 * border or W <= 2 * border:
        raise ValueError(f"cannot shave {border} pixels from an image of size {H}x{W}")
    return x[..., border : H - border, border : W - border]


def _batched(sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if sr.shape != hr.shape:
        raise ValueError(f"metric inputs differ in shape: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    if sr.ndim == 3:
        return sr[None], hr[None]
    if sr.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) or (C, H, W), got shape {tuple(sr.shape)}")
    return sr, hr


def _data_range(sr: torch.Tensor, hr: torch.Tensor, data_range: float | None, metric: str) -> float:
    """``data_range`` as given; for two uint8 images 255 (the only value that fits them)."""
    uint8 = sr.dtype == torch.uint8 and hr.dtype == torch.uint8
    if data_range is None:
        if uint8:
            return 255.0
        raise TypeError(
            f"{metric}: {sr.dtype}/{hr.dtype} input needs data_range= (the span of the values: 255.0 for "
            f"0..255, 1.0 for 0..1); only uint8 input implies 255"
        )
    if not math.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"{metric}: data_range must be a positive number, got {data_range!r}")
    if uint8 and data_range != 255:
        raise ValueError(f"{metric}: uint8 images span 0..255, so data_range must be 255 (or left out), "
                         f"got {data_range!r}")
    return float(data_range)


def psnr(sr: torch.Tensor, hr: torch.Tensor, data_range: float | None = None) -> torch.Tensor:
    """Per-image PSNR in dB, 10 log10(data_range^2 / MSE), the MSE taken over C, H and W in
    float64. Identical images give +inf.

    ``data_range``: 255 for uint8 input (implied); required for any other dtype (TypeError
    without it)."""
    sr, hr = _batched(sr, hr)
    data_range = _data_range(sr, hr, data_range, "psnr")
    if sr.dtype == torch.uint8 and hr.dtype == torch.uint8:  # exact integer arithmetic
        diff = sr.to(torch.int32) - hr.to(torch.int32)
        mse = diff.square_().sum(dim=(1, 2, 3), dtype=torch.int64).to(torch.float64) / diff[0].numel()
    else:
        mse = (sr.to(torch.float64) - hr.to(torch.float64)).square_().mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(data_range**2 / mse)


@lru_cache(maxsize=8)
def _gaussian(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    radius = SSIM_WINDOW // 2
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x * x) / (2 * SSIM_SIGMA**2))
    return (g / g.sum()).to(device=device, dtype=dtype)


def ssim(sr: torch.Tensor, hr: torch.Tensor, data_range: float | None = None) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03,
    'valid' filtering (no padding), mean of the map, averaged over channels. ``data_range`` as
    for :func:`psnr`: implied (255) for uint8, required otherwise.

    Computed from the local moments of s = x + y and d = x - y (four filtered maps instead of
    the textbook five: mu_x mu_y = (S^2 - D^2) / 4, sigma_xy = (E[s^2] - E[d^2]) / 4 - ...), centred
    on ``data_range / 2``, filtered by a separable depthwise convolution in float32 (its float64
    version is 30x slower on CPU). Agrees with a float64 implementation to ~2e-7."""
    sr, hr = _batched(sr, hr)
    data_range = _data_range(sr, hr, data_range, "ssim")
    N, C, H, W = sr.shape
    if H < SSIM_WINDOW or W < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {H}x{W}")
    centre = data_range / 2
    x = sr.permute(0, 2, 3, 1).to(torch.float32)  # (N, H, W, C)
    y = hr.permute(0, 2, 3, 1).to(torch.float32)
    s = (x + y).sub_(2 * centre)
    d = x - y
    # Stacking last gives (N, H, W, C, 4) memory: channels_last, the depthwise convolution's fast
    # path on CPU (about 10x the default layout).
    moments = torch.stack([s, d, s * s, d * d], dim=-1).reshape(N, H, W, C * 4).permute(0, 3, 1, 2)
    g = _gaussian(sr.device, torch.float32)
    k = C * 4
    m = F.conv2d(moments, g.view(1, 1, -1, 1).expand(k, 1, -1, 1).contiguous(), groups=k)
    m = F.conv2d(m, g.view(1, 1, 1, -1).expand(k, 1, 1, -1).contiguous(), groups=k)
    m = m.permute(0, 2, 3, 1).reshape(N, H - SSIM_WINDOW + 1, W - SSIM_WINDOW + 1, C, 4)
    S, D, Ess, Edd = m.unbind(-1)  # filtered s, d, s^2, d^2
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    S2, D2 = S * S, D * D
    U = S2 + D2
    # mu_x^2 + mu_y^2 + c1 and 2 mu_x mu_y + c1, with mu = centred mean + centre
    luminance_den = torch.add(2 * centre * centre + c1, S, alpha=2 * centre).add_(U, alpha=0.5)
    luminance_num = luminance_den - D2
    # sigma_x^2 + sigma_y^2 + c2 and 2 sigma_xy + c2
    contrast_den = (Ess + Edd).sub_(U).mul_(0.5).add_(c2)
    contrast_num = (Ess - Edd).sub_(S2).add_(D2).mul_(0.5).add_(c2)
    ssim_map = luminance_num.mul_(contrast_num).div_(luminance_den.mul_(contrast_den))
    return ssim_map.to(torch.float64).mean(dim=(1, 2)).mean(dim=1)


def psnr_from_mse(mse: float, *, data_range: float) -> float:
    """10 log10(data_range^2 / mse); +inf for mse = 0. The range is not implied: an MSE does not
    say which values it was taken over."""
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)
