"""An independent MATLAB ``imresize(..., 'bicubic')``: the resampling matrix written out from the
documented kernel, in float64, with a Python loop per output (slow, obvious, shared by the tests
that must not compare sr_bench's resize with itself)."""

import math

import numpy as np


def _cubic(x):
    ax = np.abs(x)
    outer = np.where(ax <= 2, -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2, 0.0)
    return np.where(ax <= 1, 1.5 * ax**3 - 2.5 * ax**2 + 1, outer)


def matlab_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """(out_len, in_len) resampling matrix of imresize(..., 'bicubic') with edge replication."""
    m = np.zeros((out_len, in_len))
    width = 4.0 / scale if scale < 1 else 4.0
    for i in range(1, out_len + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = np.arange(left, left + math.ceil(width) + 2)
        d = u - taps
        w = scale * _cubic(scale * d) if scale < 1 else _cubic(d)
        w = w / w.sum()
        for j, wj in zip(taps, w, strict=True):
            m[i - 1, min(max(j, 1), in_len) - 1] += wj
    return m


def reference_resize(img: np.ndarray, scale: float) -> np.ndarray:
    """Height then width; uint8 rounded half up and clipped after each pass (float64 maths)."""
    x = img.astype(np.float64)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[..., None]
    H, W = x.shape[:2]
    oh, ow = math.ceil(H * scale - 1e-9), math.ceil(W * scale - 1e-9)
    x = np.einsum("oh,hwc->owc", matlab_matrix(H, oh, scale), x)
    if img.dtype == np.uint8:
        x = np.clip(np.floor(x + 0.5), 0, 255)
    x = np.einsum("pw,hwc->hpc", matlab_matrix(W, ow, scale), x)
    if img.dtype == np.uint8:
        x = np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)
    return x[..., 0] if squeeze else x
