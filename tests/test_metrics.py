"""PSNR, SSIM and colour conversions against hand computations and scikit-image."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from sr_bench import metrics


def test_psnr_of_a_constant_error_is_hand_computable():
    hr = torch.full((1, 1, 16, 16), 100, dtype=torch.uint8)
    sr = hr + 5
    assert metrics.psnr(sr, hr).item() == pytest.approx(20 * math.log10(255 / 5), abs=1e-12)


def test_psnr_is_per_image_in_a_batch():
    hr = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    sr = hr.clone()
    sr[0] += 1
    sr[1, 0, 0, 0] = 16  # one pixel off by 16 among 192: MSE = 256 / 192
    out = metrics.psnr(sr, hr)
    assert out.tolist() == pytest.approx([20 * math.log10(255), 10 * math.log10(255**2 / (256 / 192))])
    assert math.isinf(metrics.psnr(hr, hr)[0].item())


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_scikit_image_float64(channels):
    rng = np.random.default_rng(channels)
    a = rng.integers(0, 256, (70, 93, channels)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).round()
    expected = np.mean([
        structural_similarity(a[..., c], b[..., c], gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=255)
        for c in range(channels)
    ])
    got = metrics.ssim(torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1), data_range=255)
    assert got.item() == pytest.approx(expected, abs=2e-7)


def test_ssim_of_identical_images_is_one_and_of_shifted_below():
    x = torch.rand(1, 1, 40, 40, dtype=torch.float64) * 255
    assert metrics.ssim(x, x, data_range=255).item() == pytest.approx(1.0, abs=1e-6)
    assert metrics.ssim(x, (x + 20).clamp(0, 255), data_range=255).item() < 0.99


def test_ssim_uses_valid_filtering():
    # One corner pixel differs: with 'valid' filtering only the corner window (of 20 x 20) sees
    # it, so SSIM = (399 + that window's SSIM) / 400, computed here from the formula directly.
    x = np.full((30, 30), 100.0)
    y = x.copy()
    y[0, 0] = 0
    r = np.arange(-5, 6)
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()
    wx, wy = x[:11, :11], y[:11, :11]
    mx, my = (g * wx).sum(), (g * wy).sum()
    vx, vy = (g * wx * wx).sum() - mx**2, (g * wy * wy).sum() - my**2
    cov = (g * wx * wy).sum() - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    corner = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    got = metrics.ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None], data_range=255).item()
    assert got == pytest.approx((399 + corner) / 400, abs=1e-7)


def test_matlab_y_of_black_white_and_primaries():
    rgb = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.uint8)
    x = rgb.T.reshape(1, 3, 1, 5)
    y = metrics.rgb_to_y(x, rounded=False)[0, 0, 0]
    assert y.tolist() == pytest.approx([16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966])
    assert metrics.rgb_to_y(x, rounded=True)[0, 0, 0].tolist() == [16, 235, 81, 145, 41]


def test_pytorch_port_luma_and_gray_luma():
    x = torch.tensor([255, 255, 255], dtype=torch.uint8).reshape(1, 3, 1, 1)
    assert metrics.rgb_to_y_pytorch(x).item() == pytest.approx(16 + 219.859 * 255 / 256)
    gray = torch.tensor([37, 37, 37], dtype=torch.uint8).reshape(1, 3, 1, 1)
    assert metrics.rgb_to_luma(gray, rounded=True).item() == 37


def test_shave_and_errors():
    x = torch.zeros(1, 1, 10, 12)
    assert metrics.shave(x, 2).shape == (1, 1, 6, 8)
    with pytest.raises(ValueError, match="cannot shave"):
        metrics.shave(x, 5)
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5), data_range=1)
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(torch.zeros(1, 1, 10, 40), torch.zeros(1, 1, 10, 40), data_range=1)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    a = torch.randint(0, 256, (2, 3, 50, 60)).double()
    b = (a + torch.randn_like(a) * 5).clamp(0, 255)
    torch.testing.assert_close(metrics.psnr(a.cuda(), b.cuda(), 255).cpu(), metrics.psnr(a, b, 255))
    torch.testing.assert_close(metrics.ssim(a.cuda(), b.cuda(), 255).cpu(), metrics.ssim(a, b, 255), atol=1e-6, rtol=0)


# (R, G, B) whose MATLAB Y, 16 + (65.481 R + 128.553 G + 24.966 B) / 255, is exactly x.5 with
# an even x: round half away from zero (MATLAB) and round half to even disagree on each.
_Y_TIES = [(2, 44, 141), (5, 65, 25), (6, 34, 182)]
# (R, G, B) whose full-range luma (65.481 R + 128.553 G + 24.966 B) / 219 is exactly x.5, x even.
_LUMA_TIES = [(0, 0, 250), (0, 8, 86)]


def _exact(rgb, offset, divisor):
    return offset + Fraction(65481 * rgb[0] + 128553 * rgb[1] + 24966 * rgb[2], 1000) / divisor


@pytest.mark.parametrize("ties, convert, offset, divisor", [
    (_Y_TIES, lambda x: metrics.rgb_to_y(x, rounded=True), 16, 255),
    (_LUMA_TIES, lambda x: metrics.rgb_to_luma(x, rounded=True), 0, 219),
])
def test_rounded_luma_breaks_exact_ties_upwards(ties, convert, offset, divisor):
    exact = [_exact(rgb, offset, divisor) for rgb in ties]
    assert all(v - math.floor(v) == Fraction(1, 2) and math.floor(v) % 2 == 0 for v in exact)  # real ties
    x = torch.tensor(ties, dtype=torch.uint8).T.reshape(1, 3, 1, len(ties))
    assert convert(x)[0, 0, 0].tolist() == [math.floor(v) + 1 for v in exact]


def test_unrounded_luma_is_the_exact_value():
    rgb = [(2, 44, 141), (200, 10, 33), (255, 255, 0)]
    x = torch.tensor(rgb, dtype=torch.uint8).T.reshape(1, 3, 1, 3)
    expected_y = [float(_exact(c, 16, 255)) for c in rgb]
    assert metrics.rgb_to_y(x, rounded=False)[0, 0, 0].tolist() == pytest.approx(expected_y, abs=1e-12)
    expected_luma = [float(_exact(c, 0, 219)) for c in rgb]
    assert metrics.rgb_to_luma(x, rounded=False)[0, 0, 0].tolist() == pytest.approx(expected_luma, abs=1e-12)
    port = [16 + (65.738 * c[0] + 129.057 * c[1] + 25.064 * c[2]) / 256 for c in rgb]
    assert metrics.rgb_to_y_pytorch(x)[0, 0, 0].tolist() == pytest.approx(port, abs=1e-12)


def test_psnr_of_float_images_and_data_range():
    hr = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    sr = hr.clone()
    sr[0, 0, 0, :2] = 0.5  # two of 16 pixels off by 0.5: MSE = 0.5 / 16
    assert metrics.psnr(sr, hr, data_range=1.0).item() == pytest.approx(10 * math.log10(16 / 0.5), abs=1e-12)
    assert metrics.psnr_from_mse(0.0, data_range=255) == math.inf
    assert metrics.psnr_from_mse(4.0, data_range=255) == pytest.approx(10 * math.log10(255**2 / 4), abs=1e-12)


def test_round_half_up_rounds_ties_away_from_zero():
    x = torch.tensor([0.5, 1.5, 2.5, 2.4999, 254.5])
    assert metrics.round_half_up(x).tolist() == [1.0, 2.0, 3.0, 2.0, 255.0]


def test_luma_of_a_non_rgb_image_is_refused():
    with pytest.raises(ValueError, match=r"expected 3 colour channels in dim -3, got shape \(1, 4, 2, 2\)"):
        metrics.rgb_to_y(torch.zeros(1, 4, 2, 2, dtype=torch.uint8), rounded=True)
    with pytest.raises(TypeError, match="rounded luma is defined on uint8 images"):
        metrics.rgb_to_y(torch.zeros(1, 3, 2, 2), rounded=True)


def test_float_input_needs_its_range():
    """A 0..1 image scored as if it were 0..255 gains 20 log10(255) = 48.13 dB, so float input
    has no default range (only uint8 implies 255)."""
    hr = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    sr = torch.full_like(hr, 0.5)  # PSNR 20 log10(1 / 0.5) = 6.02 dB on a 0..1 scale
    for metric in (metrics.psnr, metrics.ssim):
        with pytest.raises(TypeError, match=r"torch.float64/torch.float64 input needs data_range= .*1.0 for 0..1"):
            metric(sr, hr)
        with pytest.raises(TypeError, match="needs data_range"):  # one float image is enough to need it
            metric(sr, hr.to(torch.uint8))
        with pytest.raises(ValueError, match=r"uint8 images span 0..255, so data_range must be 255.*got 1"):
            metric(hr.to(torch.uint8), hr.to(torch.uint8), data_range=1)
        with pytest.raises(ValueError, match="positive number, got 0"):
            metric(sr, hr, data_range=0)
    assert metrics.psnr(sr, hr, data_range=1.0).item() == pytest.approx(20 * math.log10(2), abs=1e-12)
    with pytest.raises(TypeError, match="data_range"):
        metrics.psnr_from_mse(4.0)  # type: ignore[call-arg]


def test_uint8_implies_255_and_ssim_is_range_invariant():
    rng = np.random.default_rng(5)
    a = torch.from_numpy(rng.integers(0, 256, (1, 3, 40, 50), dtype=np.uint8))
    b = torch.from_numpy(np.clip(a.numpy() + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8))
    assert metrics.psnr(a, b).item() == metrics.psnr(a, b, data_range=255).item()
    scaled = metrics.psnr(a.double() / 255, b.double() / 255, data_range=1).item()
    assert metrics.psnr(a, b).item() == pytest.approx(scaled, abs=1e-9)
    # float32 filtering on 0..1 instead of 0..255 values: the same ~2e-7 as the float64 check above
    assert metrics.ssim(a, b).item() == pytest.approx(metrics.ssim(a / 255, b / 255, data_range=1).item(), abs=2e-7)
