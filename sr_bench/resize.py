"""MATLAB-exact bicubic resizing: ``imresize(I, scale, 'bicubic')``.

What MATLAB does, as measured against all 457 MATLAB-made LR files of the benchmarks
(``PROTOCOL.md`` section 2):

* Keys cubic kernel with a = -0.5; when shrinking by ``s`` the kernel is stretched to a width
  of ``4 s`` (antialiasing) and the taps of every output sample are normalised to sum to 1.
* Output sample ``i`` (1-based) sits at input coordinate ``u = i / scale + (1 - 1 / scale) / 2``.
* Out-of-range taps take the edge pixel.
* Height first, then width; uint8 input is rounded half up and clipped after *each* pass.

Speed: for rational factors the taps repeat with a short period, so each pass is a handful of
strided multiply-adds over whole-image views (no loops over pixels or rows). uint8 input is
accumulated in float32 and every output that lands within ``_TIE_TOLERANCE`` of a rounding
boundary is recomputed in float64, which makes the result bit-identical to a float64
computation at float32 speed.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

__all__ = ["imresize", "downscale", "upscale", "output_size"]

# float32 accumulation of <= 32 taps of uint8 values with normalised weights is off by at most
# ~4e-4 from the float64 sum; anything closer than this to x.5 is redone in float64.
_TIE_TOLERANCE = 1e-3
_MAX_PERIOD = 64


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (
        -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    ) * ((ax > 1) & (ax <= 2))


@dataclass(frozen=True)
class _AxisPlan:
    """Taps for one axis. Output ``o = k * period + r`` reads inputs
    ``first[r] + k * step + t`` (``t < taps``, clamped to the edges) with weights ``w[r, t]``."""

    in_len: int
    out_len: int
    period: int
    step: int
    first: tuple[int, ...]
    weights: np.ndarray  # (period, taps) float64, or (out_len, taps) when not periodic

    @property
    def taps(self) -> int:
        return self.weights.shape[1]

    def indices(self, out: np.ndarray) -> np.ndarray:
        """Clamped input indices (len(out), taps) for output positions ``out``."""
        r, k = out % self.period, out // self.period
        base = np.asarray(self.first)[r] + k * self.step
        return np.clip(base[:, None] + np.arange(self.taps)[None, :], 0, self.in_len - 1)


def _as_factor(scale: float) -> tuple[int | None, int | None]:
    """(shrink, enlarge): the integer factor when ``scale`` is 1/s or s, else None."""
    if scale >= 1:
        s = round(scale)
        return (None, s) if abs(scale - s) < 1e-9 else (None, None)
    s = round(1.0 / scale)
    return (s, None) if abs(1.0 / scale - s) < 1e-9 else (None, None)


@lru_cache(maxsize=256)
def _plan(in_len: int, out_len: int, scale: float) -> _AxisPlan:
    shrink, enlarge = _as_factor(scale)
    x = np.arange(1, out_len + 1, dtype=np.float64)
    if shrink is not None:  # exact arithmetic for 1/s
        u = x * shrink + 0.5 * (1 - shrink)
        width = 4.0 * shrink
        kernel = lambda d: _cubic(d / shrink) / shrink  # noqa: E731
    elif enlarge is not None:
        u = x / enlarge + 0.5 * (1 - 1 / enlarge)
        width = 4.0
        kernel = _cubic
    elif scale < 1:
        u = x / scale + 0.5 * (1 - 1 / scale)
        width = 4.0 / scale
        kernel = lambda d: scale * _cubic(scale * d)  # noqa: E731
    else:
        u = x / scale + 0.5 * (1 - 1 / scale)
        width = 4.0
        kernel = _cubic
    left = np.floor(u - width / 2).astype(np.int64)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based, unclamped
    w = kernel(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    # MATLAB drops tap columns that are zero for every output; they change nothing numerically,
    # but trimming them saves work.
    used = np.flatnonzero(np.any(w != 0, axis=0))
    w, idx = w[:, used[0] : used[-1] + 1], idx[:, used[0] : used[-1] + 1]
    first = idx[:, 0] - 1  # 0-based
    for period in range(1, min(out_len, _MAX_PERIOD) + 1):
        if period == out_len:
            break
        step = first[period] - first[0]
        if np.array_equal(first[period:] - first[:-period], np.full(out_len - period, step)) and (
            np.abs(w[period:] - w[:-period]).max() < 1e-12
        ):
            return _AxisPlan(in_len, out_len, period, int(step), tuple(int(f) for f in first[:period]), w[:period].copy())
    return _AxisPlan(in_len, out_len, out_len, 0, tuple(int(f) for f in first), w)


def _accumulate(x: torch.Tensor, plan: _AxisPlan, dtype: torch.dtype) -> torch.Tensor:
    """Resample dim 1 of ``x`` (B, L, M) to (B, out_len, M) in ``dtype``."""
    # uint8 views are read directly: promoting inside each multiply-add beats a float copy.
    xs = x if x.dtype in (dtype, torch.uint8) else x.to(dtype)
    if plan.step == 0:  # no short period (irrational-looking factor): gather everything
        return _gather(xs, plan, np.arange(plan.out_len), dtype)
    B, L, M = x.shape
    out = torch.empty(B, plan.out_len, M, dtype=dtype, device=x.device)
    taps, step = plan.taps, plan.step
    for r in range(plan.period):
        n = len(range(r, plan.out_len, plan.period))
        f, w = plan.first[r], plan.weights[r]
        # Repetitions k in [k_lo, k_hi) read only in-range inputs: one strided view per tap.
        k_lo = max(0, -(f // step))
        k_hi = max(k_lo, min(n, (L - taps - f) // step + 1))
        dst = out[:, r :: plan.period] if plan.period > 1 else out
        if k_hi > k_lo:
            acc = dst[:, k_lo:k_hi]
            start = f + k_lo * step
            span = (k_hi - k_lo - 1) * step + 1
            torch.mul(xs[:, start : start + span : step], float(w[0]), out=acc)
            for t in range(1, taps):
                acc.add_(xs[:, start + t : start + t + span : step], alpha=float(w[t]))
        # The few repetitions at the borders clamp their taps to the edge pixels.
        border = np.r_[0:k_lo, k_hi:n]
        if len(border):
            dst[:, torch.as_tensor(border, device=x.device)] = _gather(xs, plan, border * plan.period + r, dtype)
    return out


def _gather(x: torch.Tensor, plan: _AxisPlan, outputs: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """Outputs at positions ``outputs`` (any subset) by explicit clamped gathers, one per tap."""
    idx = torch.as_tensor(plan.indices(outputs), device=x.device)  # (n, taps)
    w = torch.as_tensor(plan.weights[outputs % plan.period], dtype=dtype, device=x.device)
    acc = x.index_select(1, idx[:, 0]).to(dtype).mul_(w[:, :1])
    for t in range(1, plan.taps):
        acc.addcmul_(x.index_select(1, idx[:, t]).to(dtype), w[:, t : t + 1])
    return acc


def _round_uint8(acc: torch.Tensor, x: torch.Tensor, plan: _AxisPlan) -> torch.Tensor:
    """MATLAB's uint8 rounding of a float32 pass, with near-ties redone in float64."""
    # torch.round breaks ties to even, MATLAB away from zero: the two differ only at exact ties,
    # and every output near a tie is recomputed in float64 and rounded half up below.
    rounded = torch.round(acc)
    pos = (acc.sub_(rounded).abs_() > 0.5 - _TIE_TOLERANCE).nonzero()
    if len(pos):
        b, o, m = pos.unbind(1)
        o_np = o.cpu().numpy()
        idx = torch.as_tensor(plan.indices(o_np), device=x.device)  # (n, taps)
        w = torch.as_tensor(plan.weights[o_np % plan.period], dtype=torch.float64, device=x.device)
        vals = x[b[:, None], idx, m[:, None]].to(torch.float64)
        exact = (vals * w).sum(dim=1)
        rounded[b, o, m] = torch.floor(exact + 0.5).to(rounded.dtype)
    return rounded.clamp_(0, 255)


def _resize_dim1(x: torch.Tensor, plan: _AxisPlan, quantize: bool, dtype: torch.dtype) -> torch.Tensor:
    if not quantize:
        return _accumulate(x, plan, dtype)
    return _round_uint8(_accumulate(x, plan, torch.float32), x, plan)


def output_size(size: int, scale: float) -> int:
    """MATLAB's output length ``ceil(size * scale)``, exact for integer factors."""
    shrink, enlarge = _as_factor(scale)
    if shrink is not None:
        return -(-size // shrink)
    if enlarge is not None:
        return size * enlarge
    return math.ceil(size * scale - 1e-9)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype == torch.uint8:
        return torch.float32
    if dtype in (torch.float64, torch.float32):
        return dtype
    if dtype.is_floating_point:
        return torch.float32
    raise TypeError(f"imresize: unsupported dtype {dtype}; pass uint8 or a floating-point tensor")


def _resize_bhwm(x: torch.Tensor, scale_hw: tuple[float, float], out_hw: tuple[int, int]) -> torch.Tensor:
    """Resize dims 1 and 2 of a contiguous (B, H, W, M) tensor; M rides along (channels of an
    HWC image, or 1 for CHW tensors)."""
    quantize = x.dtype == torch.uint8
    dtype = _work_dtype(x.dtype)
    B, H, W, M = x.shape
    # MATLAB resizes the dimension with the smaller scale first (height on ties).
    for dim in ((0, 1) if scale_hw[0] <= scale_hw[1] else (1, 0)):
        H, W = x.shape[1:3]
        if dim == 0:
            plan = _plan(H, out_hw[0], scale_hw[0])
            x = _resize_dim1(x.reshape(B, H, W * M), plan, quantize, dtype).reshape(B, -1, W, M)
        else:
            plan = _plan(W, out_hw[1], scale_hw[1])
            xt = x.transpose(1, 2).reshape(B, W, H * M)
            x = _resize_dim1(xt, plan, quantize, dtype).reshape(B, -1, H, M).transpose(1, 2).contiguous()
    return x


def imresize(image, scale: float | tuple[float, float] | None = None, *, output_shape: tuple[int, int] | None = None):
    """MATLAB ``imresize(image, scale, 'bicubic')``.

    Args:
        image: numpy array (H, W) or (H, W, C), or torch tensor (..., C, H, W) or (H, W) on any
            device. uint8 in gives uint8 out (rounded half up and clipped after each pass, as
            MATLAB does); floating point in gives the same floating type out, unrounded.
        scale: MATLAB's scale: ``1/4`` shrinks by 4, ``4`` enlarges by 4; or (height, width).
        output_shape: (H, W) instead of ``scale``.
    """
    is_numpy = isinstance(image, np.ndarray)
    if not is_numpy and not isinstance(image, torch.Tensor):
        raise TypeError(f"imresize: expected a numpy array or torch tensor, got {type(image).__name__}")
    if is_numpy:
        if image.ndim not in (2, 3):
            raise ValueError(f"imresize: numpy images are (H, W) or (H, W, C), got shape {image.shape}")
        hw = image.shape[:2]
    else:
        if image.ndim < 2:
            raise ValueError(f"imresize: tensors are (..., H, W), got shape {tuple(image.shape)}")
        hw = tuple(image.shape[-2:])
    if min(hw) < 1:
        raise ValueError(f"imresize: empty image of size {hw}")
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize: pass exactly one of scale and output_shape")
    if scale is not None:
        scale_hw = tuple(float(v) for v in scale) if isinstance(scale, (tuple, list)) else (float(scale),) * 2
        if len(scale_hw) != 2 or not min(scale_hw) > 0:
            raise ValueError(f"imresize: scale must be positive (one value or (height, width)), got {scale}")
        out_hw = (output_size(hw[0], scale_hw[0]), output_size(hw[1], scale_hw[1]))
    else:
        out_hw = (int(output_shape[0]), int(output_shape[1]))
        scale_hw = (out_hw[0] / hw[0], out_hw[1] / hw[1])
    if min(out_hw) < 1:
        raise ValueError(f"imresize: scale {scale} turns an image of size {hw} into {out_hw}")

    if is_numpy:
        if image.dtype not in (np.uint8, np.float32, np.float64):
            raise TypeError(f"imresize: unsupported dtype {image.dtype}; pass uint8, float32 or float64")
        with warnings.catch_warnings():  # read-only arrays are fine: nothing writes to them
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(np.ascontiguousarray(image))
        bhwm = t.reshape(1, hw[0], hw[1], -1)
    else:
        _work_dtype(image.dtype)
        bhwm = image.reshape(-1, hw[0], hw[1], 1)
    out = _resize_bhwm(bhwm, scale_hw, out_hw)
    out = out.to(torch.uint8) if out.dtype != torch.uint8 and bhwm.dtype == torch.uint8 else out
    out = out.to(bhwm.dtype)
    if is_numpy:
        return out.reshape(*out_hw, *image.shape[2:]).numpy()
    return out.reshape(*image.shape[:-2], *out_hw)


def downscale(image, factor: int):
    """MATLAB bicubic shrink by an integer factor after a modcrop (how benchmark LR images are made)."""
    if isinstance(image, np.ndarray):
        H, W = image.shape[:2]
        if H < factor or W < factor:
            raise ValueError(f"downscale: image of size {H}x{W} is smaller than the factor {factor}")
        image = image[: H - H % factor, : W - W % factor]
    else:
        H, W = image.shape[-2:]
        if H < factor or W < factor:
            raise ValueError(f"downscale: image of size {H}x{W} is smaller than the factor {factor}")
        image = image[..., : H - H % factor, : W - W % factor]
    return imresize(image, 1.0 / factor)


def upscale(image, factor: int):
    """MATLAB bicubic enlargement by an integer factor."""
    return imresize(image, float(factor))
