"""MATLAB-exact bicubic resizing: ``imresize(I, scale, 'bicubic')``.

What MATLAB does, as measured against all 457 MATLAB-made LR files of the benchmarks
(``docs/protocol.md#bicubic``):

* Keys cubic kernel with a = -0.5; when shrinking by ``s`` the kernel is stretched to a width
  of ``4 s`` (antialiasing) and the taps of every output sample are normalised to sum to 1.
* Output sample ``i`` (1-based) sits at input coordinate ``u = i / scale + (1 - 1 / scale) / 2``.
* Out-of-range taps take the edge pixel.
* Height first, then width; uint8 input is rounded half up and clipped after *each* pass.

Speed: for rational factors the taps repeat with a short period, so a chunk of consecutive
outputs is one small (outputs x window) matrix times a window of the (edge-padded) input, the
same matrix for every chunk: each pass is one batched matrix product (``torch.bmm`` over strided
windows; a few of them over cache-sized stripes of the height pass, which also convert uint8 to
float there) instead of many small whole-image operations. uint8 input is accumulated in float32
and every output within ``_TIE_TOLERANCE`` of a rounding boundary is recomputed in float64,
which makes the result bit-identical to a float64 computation at float32 speed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

__all__ = ["imresize", "downscale", "upscale", "output_size"]

# float32 accumulation of <= 32 taps of uint8 values with normalised weights is off by at most
# ~4e-4 from the float64 sum; anything closer than this to x.5 is redone in float64.
_TIE_TOLERANCE = 1e-3
_MAX_FLOAT32_TAPS = 32
_MAX_PERIOD = 64
# Outputs per chunk of a pass, and input elements per converted stripe (~1 MiB of float32).
_CHUNK = 8
_STRIPE = 1 << 18
_BLOCK = 1 << 16  # elements per block of the rounding passes


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
            starts = tuple(int(f) for f in first[:period])
            return _AxisPlan(in_len, out_len, period, int(step), starts, w[:period].copy())
    return _AxisPlan(in_len, out_len, out_len, 0, tuple(int(f) for f in first), w)


@dataclass(frozen=True)
class _Band:
    """One axis pass as ONE batched matrix product: chunk ``j`` of ``rows`` consecutive outputs
    is ``matrix @ padded[j * stride : j * stride + width]``, where padded position ``q`` holds
    input ``clamp(q + offset, 0, in_len - 1)`` (MATLAB's edge replication)."""

    plan: _AxisPlan
    matrix: np.ndarray  # (rows, width) float64, the same for every chunk
    stride: int
    chunks: int
    offset: int

    @property
    def padded_len(self) -> int:
        return (self.chunks - 1) * self.stride + self.matrix.shape[1]


@lru_cache(maxsize=256)
def _band(in_len: int, out_len: int, scale: float) -> _Band:
    plan = _plan(in_len, out_len, scale)
    first = np.asarray(plan.first)
    if plan.step == 0:  # no short period: one dense (out_len, width) product
        reps, stride = 1, 0
    else:  # ~_CHUNK outputs per product: wider chunks waste multiplies on zeros, narrower ones BLAS speed
        reps = max(1, _CHUNK // plan.period)
        stride = reps * plan.step
    rows = reps * plan.period
    lo = int(first.min())
    matrix = np.zeros((rows, (reps - 1) * plan.step + int(first.max()) - lo + plan.taps))
    for k in range(reps):
        for r in range(plan.period):
            start = int(first[r]) - lo + k * plan.step
            matrix[k * plan.period + r, start : start + plan.taps] = plan.weights[r]
    used = np.flatnonzero(np.any(matrix != 0, axis=0))
    return _Band(plan, matrix[:, : used[-1] + 1], stride, -(-out_len // rows), lo)


def _fill(dst: torch.Tensor, x: torch.Tensor, band: _Band, lo: int, dim: int) -> None:
    """dst = padded positions [lo, lo + dst.shape[dim]) of ``x`` along ``dim``, converted to
    dst's dtype in the same copy; positions beyond the edges repeat the edge sample."""
    n, length = dst.shape[dim], x.shape[dim]
    a = lo + band.offset  # the input index of dst's first position
    left = min(n, max(0, -a))  # positions before the first sample
    right = max(left, min(n, length - a))  # first position after the last sample
    if right > left:
        dst.narrow(dim, left, right - left).copy_(x.narrow(dim, a + left, right - left))
    if left:
        dst.narrow(dim, 0, left).copy_(x.narrow(dim, 0, 1))
    if right < n:
        dst.narrow(dim, right, n - right).copy_(x.narrow(dim, length - 1, 1))


def _rows_pass(x: torch.Tensor, band: _Band, dtype: torch.dtype) -> torch.Tensor:
    """Resample dim 1 of ``x`` (P, L, R) to (P, chunks * rows, R) in ``dtype``; the rows past
    ``out_len`` are chunk padding for the caller to drop.

    The input is converted in stripes of a few chunks that stay in cache, each followed by one
    batched product over its chunks, instead of converting (and re-reading) the whole image."""
    P, _, R = x.shape
    rows, width = band.matrix.shape
    mat = torch.as_tensor(band.matrix, dtype=dtype, device=x.device)
    out = torch.empty(P, band.chunks, rows, R, dtype=dtype, device=x.device)
    per = band.chunks if band.stride == 0 else max(1, _STRIPE // max(1, band.stride * R))
    buf = torch.empty((min(per, band.chunks) - 1) * band.stride + width, R, dtype=dtype, device=x.device)
    for p in range(P):
        for j in range(0, band.chunks, per):
            n = min(per, band.chunks - j)
            used = buf[: (n - 1) * band.stride + width]
            _fill(used, x[p], band, j * band.stride, 0)
            windows = used.as_strided((n, width, R), (band.stride * R, R, 1))
            torch.bmm(mat.expand(n, rows, width), windows, out=out[p, j : j + n])
    return out.view(P, band.chunks * rows, R)


def _cols_pass(x: torch.Tensor, band: _Band, dtype: torch.dtype) -> torch.Tensor:
    """Resample the last dim of ``x`` (Q, L, W) to (Q, L, chunks * rows) in ``dtype`` (the
    outputs past ``out_len`` are chunk padding)."""
    Q, L, _ = x.shape
    rows, width = band.matrix.shape
    padded = torch.empty(Q, L, band.padded_len, dtype=dtype, device=x.device)
    _fill(padded, x, band, 0, 2)
    windows = padded.as_strided((band.chunks, Q * L, width), (band.stride, band.padded_len, 1))
    mat_t = torch.as_tensor(band.matrix.T, dtype=dtype, device=x.device)
    out = torch.bmm(windows, mat_t.expand(band.chunks, width, rows))  # (chunks, Q * L, rows)
    return out.transpose(0, 1).reshape(Q, L, band.chunks * rows)


def _near_ties(acc: torch.Tensor) -> np.ndarray:
    """Round the contiguous float32 ``acc`` half up in place; return the flat positions that
    lie within ``_TIE_TOLERANCE`` of a tie (their rounding is left to the float64 fix-up).

    Works block by block with reused temporaries: the elementwise passes then run in cache."""
    flat = acc.view(-1)
    block = min(flat.numel(), _BLOCK)
    low = torch.empty(block, dtype=acc.dtype, device=acc.device)
    found = []
    for s in range(0, flat.numel(), block):
        a = flat[s : s + block]
        lo = low[: len(a)]
        # floor(acc + 0.5 - tol) != floor(acc + 0.5 + tol) exactly when acc is near a tie; the
        # difference is a float 0 / -1 (a bool comparison is far slower here)
        torch.add(a, 0.5 - _TIE_TOLERANCE, out=lo).floor_()
        lo.sub_(a.add_(0.5 + _TIE_TOLERANCE).floor_())
        # numpy's flatnonzero is an order of magnitude faster than torch's nonzero on the CPU
        hits = np.flatnonzero(lo.numpy() != 0) if lo.device.type == "cpu" else lo.nonzero().view(-1).cpu().numpy()
        found.append(hits + s)
    return np.concatenate(found)


def _round_uint8(acc: torch.Tensor, x: torch.Tensor, plan: _AxisPlan, dim: int) -> torch.Tensor:
    """MATLAB's uint8 rounding (half away from zero, then clipped) of a contiguous float32
    (Q, A, B) pass of the contiguous ``x`` along ``dim`` (1 or 2), in place. Outputs near a tie
    are recomputed from ``x`` in float64, where float32 error cannot move them across it."""
    f = _near_ties(acc)
    _, n_out, n_last = acc.shape
    q, o, last = f // (n_out * n_last), f // n_last % n_out, f % n_last
    keep = (o if dim == 1 else last) < plan.out_len  # rows past the end are chunk padding
    f, q, o, last = f[keep], q[keep], o[keep], last[keep]
    if len(f):
        _, length, x_last = x.shape
        pos = o if dim == 1 else last
        taps = plan.indices(pos)  # (n, taps) input positions along dim
        if dim == 1:
            src = (q * length)[:, None] * x_last + taps * x_last + last[:, None]
        else:
            src = ((q * length + o) * x_last)[:, None] + taps
        vals = x.reshape(-1)[torch.as_tensor(src, device=x.device)].to(torch.float64)
        w = torch.as_tensor(plan.weights[pos % plan.period], dtype=torch.float64, device=x.device)
        exact = (vals * w).sum(dim=1)
        acc.view(-1)[torch.as_tensor(f, device=acc.device)] = torch.floor(exact + 0.5).to(acc.dtype)
    return acc.clamp_(0, 255)


def _resize_dim(x: torch.Tensor, band: _Band, dim: int, quantize: bool, dtype: torch.dtype) -> torch.Tensor:
    if quantize and band.plan.taps > _MAX_FLOAT32_TAPS:  # too many terms for float32's error bound
        dtype = torch.float64
    acc = _rows_pass(x, band, dtype) if dim == 1 else _cols_pass(x, band, dtype)
    if quantize:
        acc = _round_uint8(acc, x.contiguous(), band.plan, dim)
    return acc[:, : band.plan.out_len] if dim == 1 else acc[..., : band.plan.out_len]


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
    HWC image, or 1 for CHW tensors). Returns (B, H', W', M), uint8-valued floats for uint8."""
    quantize = x.dtype == torch.uint8
    dtype = torch.float32 if quantize else _work_dtype(x.dtype)
    B, H, W, M = x.shape
    planes = x.reshape(B, H, W * M)  # the height pass reads rows of W * M values as they are
    channels_last = M > 1
    # MATLAB resizes the dimension with the smaller scale first (height on ties).
    for dim in ((0, 1) if scale_hw[0] <= scale_hw[1] else (1, 0)):
        if dim == 0:
            planes = _resize_dim(planes, _band(planes.shape[1], out_hw[0], scale_hw[0]), 1, quantize, dtype)
        else:
            if channels_last:  # the width pass wants width last: (B, h, W, M) -> (B * M, h, W)
                h = planes.shape[1]
                planes = planes.reshape(B, h, W, M).permute(0, 3, 1, 2).reshape(B * M, h, W)
                channels_last = False
            planes = _resize_dim(planes, _band(W, out_hw[1], scale_hw[1]), 2, quantize, dtype)
    return planes.reshape(B, M, *out_hw).permute(0, 2, 3, 1)


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run the CPU passes on one intra-op thread. They are a few dozen medium-sized operations,
    and on shared cores every parallel one waits for its slowest thread: two threads under load
    were measured 15-25x slower than one, while on idle cores one thread costs little (torch's
    own bicubic kernel gains ~10% from a second thread)."""
    before = torch.get_num_threads()
    if device.type != "cpu" or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
        values = [float(v) for v in scale] if isinstance(scale, (tuple, list)) else [float(scale)] * 2
        if len(values) != 2 or not min(values) > 0:
            raise ValueError(f"imresize: scale must be positive (one value or (height, width)), got {scale}")
        scale_hw = (values[0], values[1])
        out_hw = (output_size(hw[0], scale_hw[0]), output_size(hw[1], scale_hw[1]))
    elif output_shape is not None:
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
    with _one_cpu_thread(bhwm.device):
        out = _resize_bhwm(bhwm, scale_hw, out_hw)
    out = out.to(torch.uint8) if out.dtype != torch.uint8 and bhwm.dtype == torch.uint8 else out
    out = out.to(bhwm.dtype)
    if is_numpy:
        return out.reshape(*out_hw, *image.shape[2:]).contiguous().numpy()
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
