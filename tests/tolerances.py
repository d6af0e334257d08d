"""Tolerances for comparing two float computations of the same quantity by different code paths.

Two code paths that compute the same sums in a different order (a batch of 8 against 8 batches of
1, a tile against the whole image, another SIMD width: oneDNN and ATen pick their kernels by CPU)
agree only up to rounding. Each rounding of a float ``dtype`` is at most ``eps / 2`` relative;
a reduction of ``n`` terms in some order accumulates about ``sqrt(n) * eps`` relative error (the
statistical rule; the worst case is ``n * eps``: Higham, *Accuracy and Stability of Numerical
Algorithms*, section 2.8 and chapter 4), so two orders differ by up to twice that. A network chains ``depth``
such reductions and each passes its input's error on (weights near unit gain), so the errors add.

Exact equality (``torch.equal``, ``atol=0``) is kept only where the code promises bit-exactness:
a copy of values (weights loading, patches, transforms), uint8 arithmetic (the MATLAB resize, the
metrics on uint8), the same kernels on the same tensors (resume, one code path run twice).
"""

from __future__ import annotations

import math

import torch

__all__ = ["conv_depth_atol", "summation_atol"]


def summation_atol(dtype: torch.dtype, length: int, magnitude: float = 1.0, depth: int = 1) -> float:
    """Largest expected difference between two summation orders: ``2 * depth * sqrt(length) *
    eps(dtype) * magnitude`` for ``depth`` chained reductions of ``length`` terms each, on values of
    size ``magnitude``."""
    return 2.0 * depth * math.sqrt(length) * torch.finfo(dtype).eps * magnitude


def conv_depth_atol(net: torch.nn.Module, dtype: torch.dtype = torch.float32, magnitude: float = 1.0) -> float:
    """:func:`summation_atol` for a convolutional network: ``length`` the longest reduction of any
    of its convolutions (in channels x kernel area), ``depth`` the number of convolutions."""
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        return summation_atol(dtype, 1, magnitude)
    length = max(c.in_channels // c.groups * c.kernel_size[0] * c.kernel_size[1] for c in convs)
    return summation_atol(dtype, length, magnitude, depth=len(convs))
