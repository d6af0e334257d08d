"""Each named protocol pinned on inputs whose PSNR is computable by hand, and on real images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sr_bench.data import open_dataset
from sr_bench.lookup import UnknownNameError
from sr_bench.protocols import PROTOCOLS, Div2k, Gray, Luma, Protocol, get_protocol
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
    with pytest.raises(KeyError, match=r"did you mean 'paper'\?.*basicsr, paper, pytorch, vdsr"):
        get_protocol("papr")
    with pytest.raises(UnknownNameError, match="unknown protocol 'matlab'"):
        PROTOCOLS["matlab"]
    assert list(PROTOCOLS) == ["paper", "vdsr", "pytorch", "basicsr"]  # argparse choices keep this order
    assert "pytorch" in PROTOCOLS and "matlab" not in PROTOCOLS
    assert PROTOCOLS["basicsr"] is get_protocol("basicsr")


@pytest.mark.parametrize("field, value", [("luma", "y_rouned"), ("gray", "as-y"), ("div2k", "RGB"), ("luma", None)])
def test_a_misspelt_setting_is_refused_at_construction(field, value):
    settings = {"luma": "y_rounded", "gray": "as_y", "div2k": "rgb", field: value}
    with pytest.raises(ValueError, match=f"protocol 'mine': {field}={value!r} is not one of"):
        Protocol("mine", "a typo", **settings)


def test_settings_are_enums_and_strings_are_accepted():
    p = Protocol("mine", "strings", luma="y_float", gray="replicate", div2k="luma")
    assert p.luma is Luma.Y_FLOAT and p.gray is Gray.REPLICATE and p.div2k is Div2k.LUMA
    assert get_protocol("paper").luma is Luma.Y_ROUNDED and get_protocol("pytorch").luma is Luma.Y_PYTORCH


def _ringed(size, inner, ring, ring_width):
    """(HR, SR): a flat RGB HR and an SR with red error ``ring`` within ``ring_width`` pixels of
    the border and ``inner`` elsewhere, so every shave width gives another PSNR."""
    hr = _rgb(size, size, HR_RGB)
    sr = hr.copy()
    sr[..., 0] += np.uint8(ring)
    sr[ring_width:-ring_width, ring_width:-ring_width, 0] = HR_RGB[0] + inner
    return hr, sr


def _mse(size, shave, inner, ring, ring_width, weight):
    """MSE of ``weight`` x the red error over the region left by ``shave`` (hand count)."""
    side = size - 2 * shave
    inner_side = size - 2 * ring_width
    n_inner = inner_side**2
    return (weight**2) * (n_inner * inner**2 + (side**2 - n_inner) * ring**2) / side**2


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_div2k_shave_is_scale_plus_six_for_paper_and_pytorch(scale):
    # Errors 2 (interior) and 9 (a 12-pixel ring): shave s + 6 keeps 12 - s - 6 ring pixels.
    hr, sr = _ringed(48, 2, 9, 12)
    expected = 10 * math.log10(255**2 / _mse(48, scale + 6, 2, 9, 12, 1 / math.sqrt(3)))
    for name in ("paper", "pytorch"):
        assert get_protocol(name).score(sr, hr, scale, benchmark=False).psnr == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("name, weight", [("pytorch", 65.738 / 256), ("basicsr", 65.481 / 255)])
@pytest.mark.parametrize("scale", [2, 4])
def test_benchmark_shave_is_scale(name, weight, scale):
    hr, sr = _ringed(40, 3, 11, 6)
    expected = 10 * math.log10(255**2 / _mse(40, scale, 3, 11, 6, weight))
    assert get_protocol(name).score(sr, hr, scale, benchmark=True).psnr == pytest.approx(expected, abs=1e-9)


def test_basicsr_and_vdsr_score_div2k_as_benchmarks():
    hr, sr = _ringed(40, 3, 11, 6)
    for name, weight in (("basicsr", 65.481 / 255),):
        expected = 10 * math.log10(255**2 / _mse(40, 2, 3, 11, 6, weight))
        assert get_protocol(name).score(sr, hr, 2, benchmark=False).psnr == pytest.approx(expected, abs=1e-9)
    assert get_protocol("vdsr").shave(2, benchmark=False) == 2 and get_protocol("paper").shave(2, False) == 8


def test_quantised_input_is_required():
    with pytest.raises(TypeError, match="quantise"):
        get_protocol("paper").score(np.zeros((24, 24, 3), np.float32), _rgb(24, 24, HR_RGB), 2, True)


def test_set14_bridge_port_gain_on_real_data(data_root):
    """docs/protocol.md#luma: the port's replication gains about +1.32 dB on a single-channel image."""
    ds = open_dataset("Set14", data_root)
    i = [r.stem for r in ds.images].index("bridge")
    hr = ds.hr(i)
    lr = ds.lr(i, 2)
    assert hr.ndim == 2 and lr.ndim == 2
    sr = np.clip(np.floor(imresize(lr.astype(np.float64), 2) + 0.5), 0, 255).astype(np.uint8)
    gain = get_protocol("pytorch").score(sr, hr, 2, True).psnr - get_protocol("paper").score(sr, hr, 2, True).psnr
    assert gain == pytest.approx(1.32, abs=0.01)


def test_setting_values_are_the_documented_names():
    assert [m.value for m in Luma] == ["y_rounded", "y_float", "y_pytorch"]
    assert [m.value for m in Gray] == ["as_y", "replicate"] and [m.value for m in Div2k] == ["rgb", "luma"]
    assert [p.y_first for p in PROTOCOLS.values()] == [False, True, False, False]  # only vdsr feeds float Y
    with pytest.raises(ValueError) as refused:
        Protocol("mine", "a typo", luma="y_rouned", gray="as_y", div2k="rgb")
    assert str(refused.value) == "protocol 'mine': luma='y_rouned' is not one of 'y_rounded', 'y_float', 'y_pytorch'"
