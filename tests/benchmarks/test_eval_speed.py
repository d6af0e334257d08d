"""Speed of the evaluation core (reported by pytest-benchmark, never asserted as timers).

MATLAB bicubic on a DIV2K-sized image (2040 x 1356 RGB uint8, shrunk by 4) beside torch's own
antialiased bicubic (not MATLAB-exact) in the same run, and SSIM of a 1024 x 768 plane.
``nox -s bench`` (or ``pytest tests/benchmarks --benchmark-only``) prints the table.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sr_bench import imresize, metrics


@pytest.fixture(scope="module")
def div2k_sized():
    rng = np.random.default_rng(0)
    # smooth content, like a photograph, plus noise: rounding paths see realistic values
    y, x = np.mgrid[0:1356, 0:2040]
    base = 128 + 60 * np.sin(x / 37.0)[..., None] * np.cos(y / 23.0)[..., None] + rng.normal(0, 20, (1356, 2040, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def test_matlab_bicubic_shrink_by_4(benchmark, div2k_sized):
    out = benchmark(imresize, div2k_sized, 1 / 4)
    assert out.shape == (339, 510, 3) and out.dtype == np.uint8


def test_torch_antialiased_bicubic_reference(benchmark, div2k_sized):
    """The floor: torch's own kernel on the same image (uint8, not MATLAB-exact)."""
    x = torch.from_numpy(div2k_sized).permute(2, 0, 1)[None].contiguous()
    out = benchmark(F.interpolate, x, scale_factor=0.25, mode="bicubic", antialias=True)
    assert out.shape == (1, 3, 339, 510)


def test_matlab_bicubic_enlarge_by_4_float(benchmark):
    x = torch.rand(1, 3, 256, 192)
    assert benchmark(imresize, x, 4).shape == (1, 3, 1024, 768)


def test_ssim_1024x768(benchmark):
    a = torch.randint(0, 256, (1, 1, 768, 1024), dtype=torch.uint8)
    b = (a.int() + torch.randint(-5, 6, a.shape)).clamp(0, 255).to(torch.uint8)
    value = benchmark(metrics.ssim, a, b)
    assert 0 < value.item() < 1


@pytest.mark.parametrize("batched", [False, True], ids=["sequential", "batched"])
def test_self_ensemble_edsr_baseline_x2(benchmark, batched):
    """EDSR-baseline+ x2 on a 96x96 LR image: the 8 transforms one by one, or as one batch of 8."""
    from sr_bench import models
    from sr_bench.inference import prepare_model, super_resolve

    torch.manual_seed(0)
    m = prepare_model(models.create("edsr-baseline", scale=2))
    x = torch.rand(1, 3, 96, 96)
    out = benchmark(super_resolve, m, x, 2, self_ensemble=True, batch_transforms=batched)
    assert out.shape == (1, 3, 192, 192)
