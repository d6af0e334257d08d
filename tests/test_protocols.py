"""Each named protocol pinned on inputs whose PSNR is computable by hand, and on real images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sr_bench.data import open_dataset
from sr_bench.protocols import PROTOCOLS, get_protocol
from sr_bench.resize import imresize


def _rgb(h, w, rgb):
    return np.broadcast_to(np.asarray(rgb, np.uint8), (h, w, 3)).copy()


def _psnr(err):
    return 20 * math.log10(255 / err)


HR_RGB = (120, 60, 200)
DELTA = 6  # SR = HR + 6 in the red channel


@pytest.mark.parametrize(
    "protocol, expected",
    [
        # MATLAB rgb2ycbcr, rounded to uint8: Y(HR) = 96.64 -> 97, Y(SR) = 98.18 -> 98
        ("paper", _psnr(1)),
        ("vdsr", _psnr(1)),
        # unrounded luma: the difference is the red weight times 6
        ("pytorch", _psnr(65.738 / 256 * DELTA)),
        ("basicsr", _psnr(65.481 / 255 * DELTA)),
    ],
)
def test_benchmark_luma_psnr_by_hand(protocol, expected):
    hr = _rgb(24, 24, HR_RGB)
    sr = _rgb(24, 24, (HR_RGB[0] + DELTA, HR_RGB[1], HR_RGB[2]))
    score = get_protocol(protocol).score(sr, hr, scale=2, benchmark=True)
    assert score.psnr == pytest.approx(expected, abs=1e-9)
    assert score.ssim < 1.0


def test_div2k_is_rgb_with_scale_plus_six_shave_for_paper_and_pytorch():
    hr = _rgb(40, 40, HR_RGB)
    sr = hr.copy()
    sr[..., 0] += DELTA  # a uniform red error: RGB MSE = 36 / 3
    for name in ("paper", "pytorch"):
        assert get_protocol(name).score(sr, hr, 2, benchmark=False).psnr == pytest.approx(_psnr(math.sqrt(12)))
    # An error only in the band between 2 and 8 pixels from the border: seen with shave = 2
    # (benchmarks), shaved away with shave = 2 + 6 (DIV2K).
    band = hr.copy()
    band[2:8, 2:38] += 10
    paper = get_protocol("paper")
    assert math.isinf(paper.score(band, hr, 2, benchmark=False).psnr)
    assert not math.isinf(paper.score(band, hr, 2, benchmark=True).psnr)


def test_single_channel_images_as_y_versus_replicated():
    hr = np.full((24, 24), 90, np.uint8)
    sr = hr + np.uint8(4)
    paper = get_protocol("paper").score(sr, hr, 2, True).psnr
    pytorch = get_protocol("pytorch").score(sr, hr, 2, True).psnr
    basicsr = get_protocol("basicsr").score(sr, hr, 2, True).psnr
    assert paper == pytest.approx(_psnr(4))
    # the port replicates gray to RGB, so the error is scaled by the luma weights' sum
    assert pytorch - paper == pytest.approx(-20 * math.log10((65.738 + 129.057 + 25.064) / 256))  # +1.32 dB
    assert basicsr - paper == pytest.approx(-20 * math.log10(219 / 255))


def test_rgb_output_of_a_gray_image_is_compared_on_one_channel():
    hr = np.full((24, 24), 90, np.uint8)
    sr = _rgb(24, 24, (94, 94, 94))  # an RGB network's output for a gray input
    assert get_protocol("paper").score(sr, hr, 2, True).psnr == pytest.approx(_psnr(4))


def test_hr_is_cropped_to_the_sr_size():
    hr = _rgb(25, 27, HR_RGB)
    hr[24:, :] = 0  # rows beyond LR size x scale must not count
    hr[:, 26:] = 0
    sr = _rgb(24, 26, HR_RGB)
    assert math.isinf(get_protocol("paper").score(sr, hr, 2, True).psnr)
    with pytest.raises(ValueError, match="larger than the HR"):
        get_protocol("paper").score(_rgb(30, 30, HR_RGB), hr, 2, True)


def test_vdsr_protocol_feeds_float_y_of_the_modcropped_hr():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (31, 22, 3), dtype=np.uint8)
    proto = get_protocol("vdsr")
    ref = proto.reference(hr, benchmark=True)
    x = proto.model_input(ref, None, 3)
    y = np.floor(16 + 65.481 / 255 * hr[..., 0] + 128.553 / 255 * hr[..., 1] + 24.966 / 255 * hr[..., 2] + 0.5)
    assert x.dtype == np.float64 and x.shape == (10, 7)
    np.testing.assert_allclose(x, imresize(y[:30, :21], 1 / 3), atol=1e-9)


def test_unknown_protocol_lists_the_known_ones():
    with pytest.raises(KeyError, match="paper, vdsr, pytorch, basicsr"):
        get_protocol("matlab")
    assert set(PROTOCOLS) == {"paper", "vdsr", "pytorch", "basicsr"}


def test_quantised_input_is_required():
    with pytest.raises(TypeError, match="quantise"):
        get_protocol("paper").score(np.zeros((24, 24, 3), np.float32), _rgb(24, 24, HR_RGB), 2, True)


def test_set14_bridge_port_gain_on_real_data(data_root):
    """PROTOCOL.md: the port's replication gains about +1.32 dB on a single-channel image."""
    ds = open_dataset("Set14", data_root)
    i = [r.stem for r in ds.images].index("bridge")
    hr = ds.hr(i)
    lr = ds.lr(i, 2)
    assert hr.ndim == 2 and lr.ndim == 2
    sr = np.clip(np.floor(imresize(lr.astype(np.float64), 2) + 0.5), 0, 255).astype(np.uint8)
    gain = get_protocol("pytorch").score(sr, hr, 2, True).psnr - get_protocol("paper").score(sr, hr, 2, True).psnr
    assert gain == pytest.approx(1.32, abs=0.01)
