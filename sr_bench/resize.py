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
same matrix for every chunk: each pass is a few batched matrix products (``torch.bmm`` over
strided windows) instead of many small whole-image operations. The height pass converts uint8
to float in cache-sized stripes and writes its rounded stripes straight into the edge-padded
rows the width pass reads; the width pass resamples interleaved RGB as it is (the matrix
kron(band, I)), so nothing is copied into planes and back. uint8 rounding is fused into the
passes, block by block while the products are in cache:

* power-of-two factors have dyadic taps, and every float32 sum of them times uint8 values is
  exact (:func:`_sum_bits`): the rounding is a plain ``floor(x + 0.5)``;
* other factors are accumulated in float32 and every output within ``_TIE_TOLERANCE`` of a
  rounding boundary is recomputed in float64.

Either way the result is bit-identical to a float64 computation, at float32 speed.
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
# Outputs per chunk of a pass, and input elements per converted stripe (~2 MiB of float32).
_CHUNK = 8
_STRIPE = 1 << 19
_BLOCK = 1 << 16  # elements per block of the rounding passes
# (v + m) - m rounds v to the nearest integer for |v| < m / 3 (the spacing of floats near m is 1)
_MAGIC = {torch.float32: 1.5 * 2.0**23, torch.float64: 1.5 * 2.0**52}
_SIGNIFICAND_BITS = {torch.float32: 24, torch.float64: 53}


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
    sum_bits: float  # bits the exact sums of uint8 values need (see _sum_bits); inf if not dyadic

    @property
    def padded_len(self) -> int:
        return (self.chunks - 1) * self.stride + self.matrix.shape[1]

    def exact_in(self, dtype: torch.dtype) -> bool:
        """Whether every ``dtype`` sum of uint8 values times these weights is exact."""
        return self.sum_bits <= _SIGNIFICAND_BITS[dtype]


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
    matrix = matrix[:, : used[-1] + 1]
    return _Band(plan, matrix, stride, -(-out_len // rows), lo, _sum_bits(matrix))


def _sum_bits(weights: np.ndarray) -> float:
    """Significant bits that every sum of products of these weights with integers 0..255 fits
    in, in any order; inf unless the weights are dyadic. With weights multiples of 2^-q (power-
    of-two factors give such taps), every product and partial sum is an integer multiple of 2^-q
    of magnitude <= 255 * sum|w|: a float with that many bits holds it exactly, so a pass in that
    float is exact and its rounding needs no float64 fix-up."""
    for q in range(60):
        scaled = weights * 2.0**q
        if np.array_equal(scaled, np.round(scaled)):
            return math.log2(255 * np.abs(weights).sum(axis=1).max() * 2.0**q)
    return math.inf


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


def _round_into(acc: torch.Tensor, out: torch.Tensor) -> np.ndarray:
    """``out`` = the contiguous ``acc`` clipped to 0..255 and rounded to the nearest integer;
    ``acc`` is used as scratch. Returns the flat positions of ``acc`` within ``_TIE_TOLERANCE`` of
    x.5: elsewhere the nearest integer is MATLAB's half-up rounding of the exact sum, and float
    error cannot cross a tie; there the caller recomputes in float64. (Clipping first is the same:
    0 and 255 are integers, and a clipped value is no tie.)

    One block at a time, right after the product that made it, while it is in cache: adding and
    subtracting 1.5 * 2^mantissa rounds to the nearest integer in two cheap operations."""
    magic = _MAGIC[acc.dtype]
    acc.clamp_(0, 255)
    if acc.device.type == "cpu":  # numpy: a tenth of torch's per-call overhead on these small blocks
        a, o = acc.numpy(), out.numpy()
        np.add(a, magic, out=o)
        np.subtract(o, magic, out=o)
        np.subtract(a, o, out=a)
        np.abs(a, out=a)
        return np.flatnonzero(a > 0.5 - _TIE_TOLERANCE)
    torch.add(acc, magic, out=out).sub_(magic)
    acc.sub_(out).abs_()
    return (acc > 0.5 - _TIE_TOLERANCE).view(-1).nonzero().view(-1).cpu().numpy()


def _round_exact_into(acc: torch.Tensor, out: torch.Tensor) -> None:
    """``out`` = MATLAB's rounding of the exact sums ``acc`` (see :func:`_sum_bits`):
    clipped to 0..255, then rounded half up; ``acc`` is used as scratch."""
    acc.clamp_(0, 255)
    if acc.device.type == "cpu":
        a = acc.numpy()
        np.add(a, 0.5, out=a)
        np.floor(a, out=out.numpy())
    else:
        torch.floor(acc.add_(0.5), out=out)


def _exact(source: torch.Tensor, src: np.ndarray, weights: np.ndarray) -> torch.Tensor:
    """MATLAB's rounding, in float64, of the sums of ``source.view(-1)[src]`` (n, taps) times
    ``weights`` (n, taps), clipped to 0..255."""
    flat = source.reshape(-1)
    if flat.device.type == "cpu":  # numpy's gather is an order of magnitude faster than torch's index
        vals = torch.from_numpy(flat.numpy()[src]).to(torch.float64)
    else:
        vals = flat[torch.as_tensor(src, device=flat.device)].to(torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64, device=flat.device)
    return torch.floor((vals * w).sum(dim=1) + 0.5).clamp_(0, 255)


def _rows_pass(x: torch.Tensor, band: _Band, dtype: torch.dtype, quantize: bool,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """Resample dim 1 of the contiguous ``x`` (P, L, R) to (P, chunks * rows, R) in ``dtype``, into
    ``out`` if given (any strides: e.g. the interior of the next pass's padded rows); the rows
    past ``out_len`` are chunk padding for the caller to drop. ``quantize``: MATLAB's uint8
    rounding, exact (float64 for outputs near a tie).

    The input is converted in stripes of a few chunks that stay in cache, each followed by one
    batched product over its chunks and, for uint8, its rounding, instead of whole-image passes."""
    P, L, R = x.shape
    rows, width = band.matrix.shape
    mat = torch.as_tensor(band.matrix, dtype=dtype, device=x.device)
    if out is None:
        out = torch.empty(P, band.chunks * rows, R, dtype=dtype, device=x.device)
    per = band.chunks if band.stride == 0 else max(1, _STRIPE // max(1, band.stride * R))
    per = min(per, band.chunks)
    buf = torch.empty((per - 1) * band.stride + width, R, dtype=dtype, device=x.device)
    acc = torch.empty(per, rows, R, dtype=dtype, device=x.device)
    hits: list[np.ndarray] = []
    for p in range(P):
        for j in range(0, band.chunks, per):
            n = min(per, band.chunks - j)
            used = buf[: (n - 1) * band.stride + width]
            _fill(used, x[p], band, j * band.stride, 0)
            windows = used.as_strided((n, width, R), (band.stride * R, R, 1))
            block = torch.bmm(mat.expand(n, rows, width), windows, out=acc[:n]).view(n * rows, R)
            dest = out[p, j * rows : (j + n) * rows]
            if quantize and band.exact_in(dtype):
                _round_exact_into(block, dest)
            elif quantize:
                hits.append(_round_into(block, dest) + (p * band.chunks + j) * rows * R)
            else:
                dest.copy_(block)
    if hits:
        _fix_rows(out, np.concatenate(hits), x, band.plan)
    return out


def _fix_rows(out: torch.Tensor, hits: np.ndarray, x: torch.Tensor, plan: _AxisPlan) -> None:
    """Round the outputs of a rows pass at positions ``hits`` (flat, as if ``out`` were
    contiguous) from the exact float64 sums."""
    _, n_out, R = out.shape
    o = hits // R % n_out
    hits = hits[o < plan.out_len]  # rows past the end are chunk padding
    if not len(hits):
        return
    p, o, r = hits // (n_out * R), hits // R % n_out, hits % R
    src = ((p * x.shape[1])[:, None] + plan.indices(o)) * R + r[:, None]
    where = tuple(torch.as_tensor(i, device=out.device) for i in (p, o, r))
    out[where] = _exact(x, src, plan.weights[o % plan.period]).to(out.dtype)


def _cols_pass(padded: torch.Tensor, band: _Band, channels: int, dtype: torch.dtype, quantize: bool,
               rows_kept: tuple[int, int] | None = None) -> torch.Tensor:
    """Resample the rows of ``padded`` (N, padded_len * channels), filled by :func:`_fill` with
    ``channels`` interleaved values per position, to (chunks, N, rows * channels) in ``dtype``:
    output ``c * rows + r``, channel m, of row ``n`` is at ``[c, n, r * channels + m]`` (outputs
    past ``out_len`` are chunk padding). ``quantize`` as for :func:`_rows_pass`, block by block;
    ``rows_kept`` = (k, period): only rows ``n`` with ``n % period < k`` are kept by the caller
    (the others are the previous pass's chunk padding, left unrounded).

    Interleaved channels are resampled in place by the matrix kron(band, I): 3x the multiplies
    for RGB, but no copy of the image into planes and back."""
    N = padded.shape[0]
    rows, width = band.matrix.shape
    rm, wm = rows * channels, width * channels
    windows = padded.as_strided((band.chunks, N, wm), (band.stride * channels, band.padded_len * channels, 1))
    mat_t = torch.as_tensor(np.kron(band.matrix.T, np.eye(channels)), dtype=dtype, device=padded.device)
    out = torch.empty(band.chunks, N, rm, dtype=dtype, device=padded.device)
    if not quantize:
        return torch.bmm(windows, mat_t.expand(band.chunks, wm, rm), out=out)
    per = max(1, min(band.chunks, _BLOCK // max(1, N * rm)))
    acc = torch.empty(per, N, rm, dtype=dtype, device=padded.device)
    hits = []
    for c in range(0, band.chunks, per):
        n = min(per, band.chunks - c)
        torch.bmm(windows[c : c + n], mat_t.expand(n, wm, rm), out=acc[:n])
        if band.exact_in(dtype):
            _round_exact_into(acc[:n], out[c : c + n])
        else:
            hits.append(_round_into(acc[:n], out[c : c + n]) + c * N * rm)
    if hits:
        _fix_cols(out, np.concatenate(hits), padded, band, channels, rows_kept)
    return out


def _fix_cols(out: torch.Tensor, hits: np.ndarray, padded: torch.Tensor, band: _Band, channels: int,
              rows_kept: tuple[int, int] | None) -> None:
    """Round the outputs of a cols pass at flat positions ``hits`` from the exact float64 sums,
    reading the taps from ``padded`` (edge positions hold the replicated edge samples)."""
    _, N, rm = out.shape
    c, n, r, m = hits // (N * rm), hits // rm % N, hits % rm // channels, hits % channels
    o = c * (rm // channels) + r
    keep = o < band.plan.out_len
    if rows_kept is not None:
        keep &= n % rows_kept[1] < rows_kept[0]
    hits, n, o, m = hits[keep], n[keep], o[keep], m[keep]
    if not len(hits):
        return
    plan = band.plan
    start = np.asarray(plan.first)[o % plan.period] + o // plan.period * plan.step - band.offset
    pos = (n * band.padded_len + start)[:, None] + np.arange(plan.taps)[None, :]
    src = pos * channels + m[:, None]
    out.view(-1)[torch.as_tensor(hits, device=out.device)] = _exact(padded, src, plan.weights[o % plan.period]).to(
        out.dtype
    )


def _pass_dtype(band: _Band, quantize: bool, dtype: torch.dtype) -> torch.dtype:
    if quantize and band.plan.taps > _MAX_FLOAT32_TAPS:  # too many terms for float32's error bound
        return torch.float64
    return dtype


def _padded(x: torch.Tensor, band: _Band, dtype: torch.dtype) -> torch.Tensor:
    """``x`` (B, L, W, M) as the (B * L, padded_len * M) rows a cols pass reads, in ``dtype``
    (one copy, row by row: conversion and edge padding together)."""
    B, L, _, M = x.shape
    padded = torch.empty(B, L, band.padded_len, M, dtype=dtype, device=x.device)
    _fill(padded, x, band, 0, 2)
    return padded.view(B * L, band.padded_len * M)


def _assemble(wide: torch.Tensor, shape: tuple[int, int, int, int], dtype: torch.dtype,
              rows_per_image: int | None = None) -> torch.Tensor:
    """A cols pass's (chunks, B * rows_per_image, rows * M) output as a contiguous (B, L, w, M)
    tensor of ``dtype``: the first L rows of each image, the chunk padding dropped (one copy,
    converting)."""
    B, L, w, M = shape
    chunks, _, rm = wide.shape
    rows = rm // M
    src = wide.view(chunks, B, rows_per_image or L, rows, M)[:, :, :L].permute(1, 2, 0, 3, 4)  # (B, L, chunks, rows, M)
    out = torch.empty(shape, dtype=dtype, device=wide.device)
    full = w // rows
    if full:
        out[:, :, : full * rows].view(B, L, full, rows, M).copy_(src[:, :, :full])
    if w > full * rows:
        out[:, :, full * rows :].copy_(src[:, :, full, : w - full * rows])
    return out


def _resize_bhwm(x: torch.Tensor, scale_hw: tuple[float, float], out_hw: tuple[int, int]) -> torch.Tensor:
    """Resize dims 1 and 2 of a contiguous (B, H, W, M) tensor; M rides along (channels of an
    HWC image, or 1 for CHW tensors). Returns a contiguous (B, H', W', M) tensor of x's dtype.

    MATLAB resizes the dimension with the smaller scale first (height on ties). The height pass
    reads rows of W * M values as they are; the width pass reads each row padded at its edges
    (one copy), with the M channels interleaved as they came."""
    quantize = x.dtype == torch.uint8
    dtype = torch.float32 if quantize else _work_dtype(x.dtype)
    B, H, W, M = x.shape
    (h, w), (sh, sw) = out_hw, scale_hw
    bh, bw = _band(H, h, sh), _band(W, w, sw)
    dh, dw = _pass_dtype(bh, quantize, dtype), _pass_dtype(bw, quantize, dtype)
    if sh <= sw:
        lo = -bw.offset  # where the first input column sits in the padded rows
        if lo < 0 or lo + W > bw.padded_len or dh != dw:  # (windows that do not span the input: a copy)
            tall = _rows_pass(x.view(B, H, W * M), bh, dh, quantize)[:, :h]
            wide = _cols_pass(_padded(tall.view(B, h, W, M), bw, dw), bw, M, dw, quantize)
            return _assemble(wide, (B, h, w, M), x.dtype)
        # the height pass writes straight into the padded rows the width pass reads
        n_rows = bh.chunks * bh.matrix.shape[0]
        padded = torch.empty(B, n_rows, bw.padded_len, M, dtype=dw, device=x.device)
        _rows_pass(x.view(B, H, W * M), bh, dh, quantize, padded[:, :, lo : lo + W].view(B, n_rows, W * M))
        padded[:, :, :lo] = padded[:, :, lo : lo + 1]
        padded[:, :, lo + W :] = padded[:, :, lo + W - 1 : lo + W]
        wide = _cols_pass(padded.view(B * n_rows, -1), bw, M, dw, quantize, (h, n_rows))
        return _assemble(wide, (B, h, w, M), x.dtype, n_rows)
    wide = _cols_pass(_padded(x, bw, dw), bw, M, dw, quantize)
    tall = _rows_pass(_assemble(wide, (B, H, w, M), dw).view(B, H, w * M), bh, dh, quantize)
    return torch.empty(B, h, w, M, dtype=x.dtype, device=x.device).copy_(tall[:, :h].view(B, h, w, M))


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


@contextmanager
def _highest_matmul_precision() -> Iterator[None]:
    """float32 products in float32: under ``torch.set_float32_matmul_precision("high"/"medium")``
    torch may run them in TF32 or bfloat16 (oneDNN on CPUs with AMX), whose errors exceed the
    tie tolerance and break the exact sums of power-of-two factors."""
    before = torch.get_float32_matmul_precision()
    if before == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


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
    with _one_cpu_thread(bhwm.device), _highest_matmul_precision():
        out = _resize_bhwm(bhwm, scale_hw, out_hw)
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
