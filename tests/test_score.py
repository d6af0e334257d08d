"""``sr_bench.score``: the one-call metric, against BasicSR's numbers and its own refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

import sr_bench
from sr_bench import ImageScore
from sr_bench.protocols import get_protocol
from sr_bench.resize import imresize

# BasicSR 1.4.2 basicsr.metrics.psnr_ssim.calculate_psnr / calculate_ssim (crop_border=scale,
# test_y_channel=True, input_order="HWC", images read with cv2.imread as BGR uint8), and pyiqa
# 0.1.16 create_metric("psnr", test_y_channel=True, color_space="ycbcr", crop_border=scale, eps=0)
# on float64 RGB 0..1 tensors, both run on 2026-12-03 in a separate virtual environment (torch
# 2.14.1, torchvision 0.29.1) on Set5's MATLAB LR files enlarged with sr_bench's bicubic model
# (imresize(lr, s), uint8) against the HR image cropped to the SR size.
# (image, scale): (BasicSR PSNR, BasicSR SSIM, pyiqa PSNR)
BASICSR_SET5_BICUBIC = {
    ("baby", 2): (37.07839242031423, 0.9523370416242726, 37.07839272672155),
    ("baby", 3): (33.924964696319094, 0.9047721300698458, 33.92496504348346),
    ("baby", 4): (31.784533758071042, 0.8575364876395211, 31.784534095574713),
    ("bird", 2): (36.82241797830721, 0.9724899417435763, 36.82241821023101),
    ("bird", 3): (32.58784454368474, 0.926288803958982, 32.587844897857025),
    ("bird", 4): (30.183972731459306, 0.8735743554685237, 30.183973059633153),
    ("butterfly", 2): (27.437423425959153, 0.9157916454822927, 27.43742356225325),
    ("butterfly", 3): (24.04013058352887, 0.8222312266269811, 24.04013071045565),
    ("butterfly", 4): (22.101045788842466, 0.7374567697747386, 22.101045903493365),
    ("head", 2): (34.88210204136771, 0.8629608629374993, 34.88210220571121),
    ("head", 3): (32.90294846586294, 0.800948598853715, 32.90294871792797),
    ("head", 4): (31.613453033590815, 0.7546130238347796, 31.613453363517646),
    ("woman", 2): (32.15040122969668, 0.9478555707821508, 32.150401395683915),
    ("woman", 3): (28.56784025010827, 0.890292655863421, 28.567840510258474),
    ("woman", 4): (26.46816968906395, 0.832499073847434, 26.46816994140551),
}
# sr_bench's SSIM filters in float32: measured within 5e-7 of a float64 SSIM on these 15 images
# (tests/test_metrics.py: 2e-7 on random ones); BasicSR's is float64 (within 3e-9 of scikit-image).
SSIM_TOL = 1e-6
PSNR_TOL = 1e-6  # dB: the request's bound; measured worst 2.4e-7 against BasicSR, 1.6e-7 against pyiqa


@pytest.mark.data
def test_basicsr_protocol_equals_basicsr_and_pyiqa_on_set5(data_root):
    from sr_bench.data import open_dataset

    ds = open_dataset("Set5", data_root)
    seen = set()
    for i, ref in enumerate(ds.images):
        hr = ds.read_hr(i)[0]
        for s in (2, 3, 4):
            sr = imresize(ds.lr(i, s), s)
            got = sr_bench.score(sr, hr, s, protocol="basicsr")  # HR is cropped to the SR size
            basicsr_psnr, basicsr_ssim, pyiqa_psnr = BASICSR_SET5_BICUBIC[(ref.stem, s)]
            assert got.psnr == pytest.approx(basicsr_psnr, abs=PSNR_TOL), (ref.stem, s)
            assert got.psnr == pytest.approx(pyiqa_psnr, abs=PSNR_TOL), (ref.stem, s)
            assert got.ssim == pytest.approx(basicsr_ssim, abs=SSIM_TOL), (ref.stem, s)
            assert (got.protocol, got.scale, got.shave) == ("basicsr", s, s)
            seen.add((ref.stem, s))
    assert seen == set(BASICSR_SET5_BICUBIC)


def _basicsr_formula(sr: np.ndarray, hr: np.ndarray, crop: int) -> tuple[float, float]:
    """BasicSR's documented recipe in float64, written from the formulas: Y = 16 + (65.481 R +
    128.553 G + 24.966 B) / 255 unrounded, crop ``crop`` pixels, PSNR on 255, SSIM (Gaussian 11,
    sigma 1.5, valid window) by scikit-image."""
    def y(img):
        return 16 + img.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255

    a, b = y(sr)[crop:-crop, crop:-crop], y(hr)[crop:-crop, crop:-crop]
    psnr = 10 * math.log10(255**2 / np.mean((a - b) ** 2))
    ssim = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    return psnr, ssim


def _pair(seed: int = 0, size: tuple[int, int] = (48, 40)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(np.int64) + rng.integers(-12, 13, hr.shape), 0, 255).astype(np.uint8)
    return sr, hr


def test_basicsr_protocol_equals_the_formula_computed_independently():
    sr, hr = _pair()
    psnr, ssim = _basicsr_formula(sr, hr, 3)
    got = sr_bench.score(sr, hr, 3, protocol="basicsr")
    assert got.psnr == pytest.approx(psnr, abs=1e-9)  # float64 both sides, MSE over 1428 pixels
    assert got.ssim == pytest.approx(ssim, abs=SSIM_TOL)


def test_paper_protocol_is_the_default_and_scores_rounded_y():
    sr, hr = _pair(1)
    got = sr_bench.score(sr, hr, 2)
    assert got == sr_bench.score(sr, hr, 2, protocol="paper")
    assert got.psnr == get_protocol("paper").score(sr, hr, 2, True).psnr
    # the rounded MATLAB Y by hand (integer arithmetic), shave 2
    def y(img):
        r, g, b = (img[..., c].astype(np.int64) for c in range(3))
        return ((65481 * r + 128553 * g + 24966 * b + 16000 * 255 + 127500) // 255000)[2:-2, 2:-2]

    mse = np.mean((y(sr) - y(hr)).astype(np.float64) ** 2)
    assert got.psnr == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)
    assert got.psnr != pytest.approx(sr_bench.score(sr, hr, 2, protocol="basicsr").psnr, abs=1e-3)


def test_every_layout_and_dtype_of_one_image_scores_the_same():
    """uint8 and float (k / 255, which quantises back to k), numpy HWC and torch CHW / 1CHW."""
    sr, hr = _pair(2)
    expected = sr_bench.score(sr, hr, 3)
    t_sr, t_hr = torch.from_numpy(sr).permute(2, 0, 1), torch.from_numpy(hr).permute(2, 0, 1)
    variants = {
        "torch CHW uint8": (t_sr, t_hr),
        "torch 1CHW uint8": (t_sr[None], t_hr[None]),
        "torch float32 0..1": (t_sr.float() / 255, t_hr.float() / 255),
        "numpy float64 0..1": (sr / 255.0, hr / 255.0),
        "mixed numpy and torch": (sr, t_hr),
    }
    for name, (a, b) in variants.items():
        assert sr_bench.score(a, b, 3) == expected, name


def test_a_read_only_array_scores_without_a_warning():
    """np.asarray of a PIL image is read-only; wrapping it in a tensor would warn."""
    import warnings

    sr, hr = _pair(12)
    sr.flags.writeable = hr.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sr_bench.score(sr, hr, 2) == sr_bench.score(sr.copy(), hr.copy(), 2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_holds_every_k_over_255_closely_enough(dtype):
    """k / 255 in 8 (bfloat16) or 11 (float16) significant bits is off by at most 2^-9 relative,
    so x 255 lands within 0.5 of k and quantises back to k: the same score as uint8."""
    sr, hr = _pair(11)
    low = torch.from_numpy(sr).permute(2, 0, 1).to(dtype) / 255
    assert (low.double() * 255 != torch.from_numpy(sr).permute(2, 0, 1)).any()  # the values are not exact
    assert sr_bench.score(low, hr, 2) == sr_bench.score(sr, hr, 2)
    every = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    assert sr_bench.score(every.to(dtype) / 255, every, 1).psnr == math.inf


def test_float_images_are_quantised_as_evaluate_quantises_model_output():
    """A float SR image scores as the uint8 image it would be saved as: x 255, clip, round half up."""
    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, (40, 40), dtype=np.uint8)
    sr_float = np.clip(hr / 255 + rng.normal(0, 0.02, hr.shape), 0, 1)
    quantised = np.floor(sr_float * 255 + 0.5).astype(np.uint8)  # float64 here; float32 in the code
    near_tie = np.abs(sr_float * 255 % 1 - 0.5) < 1e-3  # where float32 and float64 could round apart
    quantised[near_tie] = hr[near_tie]
    sr_float[near_tie] = hr[near_tie] / 255
    assert sr_bench.score(sr_float, hr, 2) == sr_bench.score(quantised, hr, 2)
    assert sr_bench.score(np.full_like(hr, 0.5 / 255, dtype=np.float64), hr, 2) == sr_bench.score(
        np.full_like(hr, 1), hr, 2)  # a tie rounds up, as MATLAB's round does


def test_gray_images_and_rgb_output_of_a_gray_image():
    rng = np.random.default_rng(4)
    hr = rng.integers(0, 256, (30, 30), dtype=np.uint8)
    sr = np.clip(hr.astype(np.int64) + rng.integers(-6, 7, hr.shape), 0, 255).astype(np.uint8)
    gray = sr_bench.score(sr, hr, 2)
    mse = np.mean((sr[2:-2, 2:-2].astype(np.float64) - hr[2:-2, 2:-2]) ** 2)
    assert gray.psnr == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)  # the channel is Y
    assert sr_bench.score(np.repeat(sr[..., None], 3, axis=2), hr, 2) == gray  # R = G = B: full-range luma
    assert sr_bench.score(sr[..., None], torch.from_numpy(hr)[None], 2) == gray  # (H, W, 1) and (1, H, W)


def test_hr_is_cropped_to_a_modcropped_sr_and_other_sizes_are_refused():
    sr, hr = _pair(5, (48, 40))
    big = np.zeros((50, 41, 3), dtype=np.uint8)  # 50 % 3 = 2 and 41 % 3 = 2: modcrop gives 48x39
    big[:48, :40] = hr
    assert sr_bench.score(sr[:, :39], big, 3) == sr_bench.score(sr[:, :39], hr[:, :39], 3)
    with pytest.raises(ValueError, match=r"SR is 40x48 but HR is 41x50; .*\(39x48\)"):
        sr_bench.score(sr, big, 3)  # 40 columns is not 41's modcrop at x3
    with pytest.raises(ValueError, match="SR is 40x48 but HR is 40x46"):
        sr_bench.score(sr, hr[:46], 3)  # SR larger than HR


@pytest.mark.parametrize("make, message", [
    (lambda sr: sr * 255.0, r"values in 0\.\.255; float images must be in 0\.\.1 \(uint8 .*\): divide it by 255"),
    (lambda sr: sr * 1.02 - 0.01, r"values in -0\.01\.\.1\.01.*clamp it first \(\.clamp\(0, 1\)"),
    (lambda sr: np.where(sr > 0.5, np.nan, sr), "holds NaN or Inf"),
])
def test_a_float_image_outside_0_1_is_refused_with_its_range_and_the_fix(make, message):
    sr, hr = _pair(6)
    with pytest.raises(ValueError, match=f"score: sr is a float image with {message}" if "values" in message
                       else message):
        sr_bench.score(make(sr / 255.0), hr, 2)


def test_the_filed_example_a_0_1_image_is_scored_on_its_own_range():
    """A 0..1 image whose PSNR is 5.89 dB scored 54.02 dB by psnr() with its 255 default."""
    hr = torch.zeros(1, 3, 32, 32)
    sr = torch.full_like(hr, 0.5075)  # MSE 0.2576 on 0..1: 5.89 dB
    assert 10 * math.log10(1 / 0.5075**2) == pytest.approx(5.89, abs=0.005)
    got = sr_bench.score(sr, hr, 2, protocol="basicsr")
    quantised = math.floor(0.5075 * 255 + 0.5)  # 129
    y_diff = quantised * (65.481 + 128.553 + 24.966) / 255
    assert got.psnr == pytest.approx(20 * math.log10(255 / y_diff), abs=1e-9)
    assert got.psnr < 10


@pytest.mark.parametrize("sr, message, error", [
    (np.zeros((8, 8, 3), dtype=np.int64), "sr is torch.int64; pass uint8", TypeError),
    (np.zeros((8, 8, 3), dtype=np.uint16), "sr is torch.uint16", TypeError),
    (torch.zeros(2, 3, 48, 40, dtype=torch.uint8), r"a batch of 2 images .*loop over the batch", ValueError),
    (np.zeros((48, 40, 4), dtype=np.uint8), r"read as 4 channels; drop the alpha channel", ValueError),
    (torch.zeros(48, 40, 3, dtype=torch.uint8), r"read as 48 channels \(an \(H, W, C\) torch tensor", ValueError),
    (np.zeros((1, 48, 40, 3), dtype=np.uint8), r"shape \(1, 48, 40, 3\); expected one image: numpy", ValueError),
    (np.zeros((0, 40, 3), dtype=np.uint8), "sr is empty", ValueError),
    ([[1, 2], [3, 4]], "sr must be a numpy array or a torch tensor, got list", TypeError),
])
def test_inputs_that_do_not_fit_are_refused(sr, message, error):
    _, hr = _pair(7)
    with pytest.raises(error, match=message):
        sr_bench.score(sr, hr, 2)


def test_scale_protocol_and_channel_mismatch_errors():
    sr, hr = _pair(8)
    for scale in (0, 2.0, True):
        with pytest.raises(ValueError, match=f"scale must be a whole number >= 1, got {scale!r}"):
            sr_bench.score(sr, hr, scale)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match=r"did you mean 'basicsr'\?"):
        sr_bench.score(sr, hr, 2, protocol="basicrs")
    with pytest.raises(ValueError, match="SR has 1 channel but HR has 3"):
        sr_bench.score(sr[..., 0], hr, 2)
    with pytest.raises(ValueError, match="cannot shave 20 pixels from an image of size 48x40"):
        sr_bench.score(sr, hr, 20)


def test_div2k_scoring_and_the_result_record():
    sr, hr = _pair(9, (60, 60))
    got = sr_bench.score(sr, hr, 2, benchmark=False)  # paper: RGB, shave 2 + 6
    mse = np.mean((sr[8:-8, 8:-8].astype(np.float64) - hr[8:-8, 8:-8]) ** 2)
    assert got.psnr == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)
    assert got == ImageScore(got.psnr, got.ssim, "paper", 2, 8)
    assert sr_bench.score(sr, hr, 2, protocol=get_protocol("basicsr"), benchmark=False).shave == 2
    assert math.isinf(sr_bench.score(hr, hr, 4).psnr) and sr_bench.score(hr, hr, 4).ssim == pytest.approx(1.0)


@pytest.mark.gpu
def test_cuda_tensors_score_as_on_the_cpu():
    sr, hr = _pair(10)
    cpu = sr_bench.score(sr, hr, 2, protocol="basicsr")
    t_sr = torch.from_numpy(sr).permute(2, 0, 1).cuda()
    got = sr_bench.score(t_sr.float() / 255, torch.from_numpy(hr).permute(2, 0, 1).cuda(), 2, protocol="basicsr")
    assert got.psnr == pytest.approx(cpu.psnr, abs=1e-9)
    assert got.ssim == pytest.approx(cpu.ssim, abs=1e-6)  # float32 filtering on another device
