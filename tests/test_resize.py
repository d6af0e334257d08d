"""MATLAB-exact bicubic: against MATLAB's own files, and against an independent dense-matrix
implementation written here from MATLAB's imresize.m description."""

from __future__ import annotations

import csv
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from matlab_reference import matlab_matrix, reference_resize

from sr_bench import imresize
from sr_bench.images import read_image
from sr_bench.resize import downscale, output_size, upscale


def _assert_rounds_like(ours: np.ndarray, exact: np.ndarray) -> None:
    """uint8 ``ours`` equals ``exact`` rounded half up and clipped, except where ``exact`` is a
    tie to within float64 error: there the summation order decides and either side is MATLAB-like."""
    expected = np.clip(np.floor(exact + 0.5), 0, 255)
    tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-9
    mismatch = (ours != expected) & ~(tie & (np.abs(ours - expected) == 1))
    assert not mismatch.any(), f"{mismatch.sum()} outputs differ, e.g. at {np.argwhere(mismatch)[0]}"


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3, 4, 0.6, 1.5])
@pytest.mark.parametrize("shape", [(37, 29, 3), (24, 31)])
def test_matches_independent_matrix_implementation_uint8(scale, shape):
    rng = np.random.default_rng(int(scale * 100) + len(shape))
    img = rng.integers(0, 256, size=shape, dtype=np.uint8)
    H, W = shape[:2]
    oh, ow = math.ceil(H * scale - 1e-9), math.ceil(W * scale - 1e-9)
    # One pass at a time (a scale-1 pass is the identity), each against the dense matrix.
    height_pass = imresize(img, (scale, 1))
    _assert_rounds_like(height_pass, np.einsum("oh,hw...->ow...", matlab_matrix(H, oh, scale), img.astype(float)))
    both = imresize(height_pass, (1, scale))
    _assert_rounds_like(both, np.einsum("pw,hw...->hp...", matlab_matrix(W, ow, scale), height_pass.astype(float)))
    np.testing.assert_array_equal(imresize(img, scale), both)  # height first, as MATLAB


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3, 4, 0.7])
def test_matches_independent_matrix_implementation_float(scale):
    rng = np.random.default_rng(7)
    img = rng.random((23, 34, 3)) * 255
    out = imresize(img, scale)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, reference_resize(img, scale), rtol=0, atol=1e-9)


def test_float32_tensor_stays_float32_and_close_to_float64():
    x = torch.rand(1, 3, 20, 30)
    y32 = imresize(x, 3)
    y64 = imresize(x.double(), 3)
    assert y32.dtype == torch.float32 and y32.shape == (1, 3, 60, 90)
    torch.testing.assert_close(y32.double(), y64, rtol=0, atol=1e-5)


def test_constant_image_is_preserved_exactly():
    img = np.full((30, 45, 3), 123, dtype=np.uint8)
    for s in (1 / 2, 1 / 3, 1 / 4, 2, 3, 4):
        assert (imresize(img, s) == 123).all()


def test_near_tie_outputs_round_like_float64():
    # Few distinct values make many float32 sums land within 1e-3 of x.5: the float64 fix-up
    # must round them as the exact sums say.
    rng = np.random.default_rng(11)
    img = rng.choice(np.array([0, 1, 127, 128, 254, 255], dtype=np.uint8), size=(64, 64))
    for s in (1 / 2, 1 / 3, 1 / 4, 2, 3, 4):
        out = imresize(img, (s, 1))
        _assert_rounds_like(out, matlab_matrix(64, out.shape[0], s) @ img.astype(float))


def test_output_shape_and_sizes():
    img = np.zeros((50, 70), dtype=np.uint8)
    assert imresize(img, output_shape=(25, 35)).shape == (25, 35)
    assert output_size(255, 1 / 3) == 85 and output_size(256, 1 / 3) == 86 and output_size(7, 4) == 28
    assert downscale(np.zeros((13, 10, 3), np.uint8), 4).shape == (3, 2, 3)  # modcrop first
    assert upscale(np.zeros((3, 2), np.uint8), 3).shape == (9, 6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: imresize(np.zeros((4, 4), np.int16), 0.5), "unsupported dtype"),
        (lambda: imresize(np.zeros((0, 4), np.uint8), 0.5), "empty image"),
        (lambda: imresize(np.zeros((4, 4), np.uint8), -1), "positive"),
        (lambda: imresize(np.zeros((4, 4), np.uint8)), "exactly one"),
        (lambda: downscale(np.zeros((3, 8), np.uint8), 4), "smaller than the factor"),
        (lambda: imresize([[1, 2]], 2), "numpy array or torch tensor"),
    ],
)
def test_bad_input_is_refused(call, message):
    with pytest.raises((TypeError, ValueError), match=message):
        call()


@pytest.mark.gpu
def test_cuda_matches_cpu():
    x = torch.randint(0, 256, (2, 3, 41, 57), dtype=torch.uint8)
    for s in (1 / 2, 1 / 3, 1 / 4, 2, 3, 4):
        torch.testing.assert_close(imresize(x.cuda(), s).cpu(), imresize(x, s), rtol=0, atol=0)


def test_reproduces_every_matlab_made_lr_file(data_root):
    """All 457 MATLAB-made LR files of the staged benchmarks, bit for bit."""
    rows = list(csv.DictReader(open(data_root / "MANIFEST.tsv"), delimiter="\t"))
    lr_rows = [r for r in rows if "/LR_bicubic/" in r["file"]]
    assert len(lr_rows) == 457
    differing = []
    for r in lr_rows:
        dataset, _, xs, name = r["file"].split("/")
        s = int(xs[1:])
        stem = name[: -len(f"x{s}.png")]
        out = downscale(read_image(data_root / dataset / "HR" / f"{stem}.png"), s)
        ref = read_image(data_root / r["file"])
        if out.shape != ref.shape or (out != ref).any():
            differing.append(r["file"])
    assert differing == []


def _fraction_matrix(in_len: int, out_len: int, scale: Fraction) -> list[list[Fraction]]:
    """imresize's resampling matrix in exact rational arithmetic (Keys a = -0.5, edge
    replication, taps normalised), for exact checks of rounding at ties."""

    def cubic(x: Fraction) -> Fraction:
        ax = abs(x)
        if ax <= 1:
            return Fraction(3, 2) * ax**3 - Fraction(5, 2) * ax**2 + 1
        return -Fraction(1, 2) * ax**3 + Fraction(5, 2) * ax**2 - 4 * ax + 2 if ax <= 2 else Fraction(0)

    shrink = scale < 1
    width = 4 / scale if shrink else Fraction(4)
    rows = []
    for i in range(1, out_len + 1):
        u = i / scale + (1 - 1 / scale) / 2
        left = math.floor(u - width / 2)
        taps = range(left, left + math.ceil(width) + 2)
        w = [scale * cubic(scale * (u - j)) if shrink else cubic(u - j) for j in taps]
        row = [Fraction(0)] * in_len
        for j, wj in zip(taps, w, strict=True):
            row[min(max(j, 1), in_len) - 1] += wj / sum(w)
        rows.append(row)
    return rows


@pytest.mark.parametrize("scale", [Fraction(2), Fraction(1, 2), Fraction(4), Fraction(1, 4)])
@pytest.mark.parametrize("axis", [0, 1])
def test_exact_ties_round_half_away_from_zero(scale, axis):
    """Power-of-two factors have dyadic tap weights, so uint8 inputs give outputs that are exactly
    x.5; MATLAB rounds them up (half away from zero), never to even."""
    rng = np.random.default_rng(5)
    n = 24
    out_len = output_size(n, float(scale))
    # Lines with ties are rare among random ones: pick them out with the float64 matrix (exact
    # for dyadic weights), then check everything in exact rational arithmetic below.
    candidates = rng.integers(0, 256, size=(n, 100_000))
    sums = matlab_matrix(n, out_len, float(scale)) @ candidates
    tie_lines = np.flatnonzero(((sums % 2) == 0.5).any(axis=0))[:8]
    lines = np.concatenate([candidates[:, tie_lines], candidates[:, -4:]], axis=1)
    m = _fraction_matrix(n, out_len, scale)
    exact = [[sum(wj * int(v) for wj, v in zip(row, line, strict=True) if wj) for line in lines.T] for row in m]
    expected = np.array([[min(max(math.floor(v + Fraction(1, 2)), 0), 255) for v in r] for r in exact], np.uint8)
    even_ties = sum(v - math.floor(v) == Fraction(1, 2) and math.floor(v) % 2 == 0 for r in exact for v in r)
    assert even_ties >= 3  # the inputs really contain ties that half-to-even would round down
    img = lines.astype(np.uint8)
    if axis == 0:
        out = imresize(img, (float(scale), 1))
    else:
        out = imresize(np.ascontiguousarray(img.T), (1, float(scale))).T
    np.testing.assert_array_equal(out, expected)


def test_batched_tensor_matches_exact_rational_result():
    """A (2, 3, H, W) uint8 batch against the exact rational computation, pass by pass."""
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, size=(2, 3, 12, 16), dtype=np.uint8)
    mh, mw = _fraction_matrix(12, 3, Fraction(1, 4)), _fraction_matrix(16, 4, Fraction(1, 4))

    def rounded(v: Fraction) -> int:
        return min(max(math.floor(v + Fraction(1, 2)), 0), 255)

    expected = np.zeros((2, 3, 3, 4), np.uint8)
    for n in range(2):
        for c in range(3):
            plane = imgs[n, c].astype(int)
            tall = [[rounded(sum(w * int(plane[h, x]) for h, w in enumerate(row))) for x in range(16)] for row in mh]
            for o, col in enumerate(mw):
                for y in range(3):
                    expected[n, c, y, o] = rounded(sum(w * tall[y][x] for x, w in enumerate(col)))
    out = imresize(torch.from_numpy(imgs), 1 / 4)
    assert out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), expected)



@pytest.mark.parametrize("scale_hw", [(1 / 10, 1 / 2), (1 / 2, 1 / 10), (1 / 8, 1 / 3), (1 / 3, 1 / 2), (2, 1 / 3)])
def test_mixed_factors_and_float64_passes_match_the_matrix_implementation(scale_hw):
    """Unequal factors run the width pass first when it shrinks more, and a shrink by 10 has 40
    taps, too many for float32: that pass runs in float64, the other in float32, so the height
    pass cannot write into the width pass's buffer. Each pass against the dense float64 matrix."""
    rng = np.random.default_rng(13)
    img = rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
    sh, sw = scale_hw
    oh, ow = output_size(48, sh), output_size(40, sw)
    tall = np.einsum("oh,hwc->owc", matlab_matrix(48, oh, sh), img.astype(float))
    wide = np.einsum("pw,hwc->hpc", matlab_matrix(40, ow, sw), img.astype(float))
    if sh <= sw:  # MATLAB's order: the smaller scale first
        expected = np.einsum("pw,hwc->hpc", matlab_matrix(40, ow, sw), np.clip(np.floor(tall + 0.5), 0, 255))
    else:
        expected = np.einsum("oh,hwc->owc", matlab_matrix(48, oh, sh), np.clip(np.floor(wide + 0.5), 0, 255))
    out = imresize(img, scale_hw)
    _assert_rounds_like(out, expected)
    planes = imresize(torch.from_numpy(img).permute(2, 0, 1).contiguous(), scale_hw)  # CHW: one channel at a time
    np.testing.assert_array_equal(planes.permute(1, 2, 0).numpy(), out)


def test_reduced_precision_matmul_setting_does_not_change_results():
    """torch.set_float32_matmul_precision("medium") lets float32 products run in bfloat16 (AMX
    CPUs) or TF32; imresize must still compute in float32, and leave the setting as it was."""
    rng = np.random.default_rng(17)
    img = rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    expected = {s: imresize(img, s) for s in (1 / 3, 1 / 4, 3)}
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        for s, ref in expected.items():
            np.testing.assert_array_equal(imresize(img, s), ref)
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_power_of_two_factors_are_exact(factor):
    """The premise of the plain rounding for power-of-two factors: dyadic taps whose sums with
    uint8 values are exact in every float the plan says (float32 for x2 and x4; a shrink by 8
    needs more than float32's 24 bits, so only float64), checked on the plan's own matrix
    against exact rational sums of random lines: any rounding in the product would show."""
    from sr_bench.resize import _band

    for scale in (1 / factor, float(factor)):
        band = _band(40, output_size(40, scale), scale)
        exact_in = [d for d in (torch.float32, torch.float64) if band.exact_in(d)]
        assert exact_in == ([torch.float64] if scale == 1 / 8 else [torch.float32, torch.float64])
        lines = np.random.default_rng(factor).integers(0, 256, size=(band.matrix.shape[1], 300))
        exact = [[sum(Fraction(float(a)) * int(b) for a, b in zip(row, col, strict=True)) for col in lines.T]
                 for row in band.matrix[:3]]
        for dtype in exact_in:
            got = torch.as_tensor(band.matrix, dtype=dtype) @ torch.as_tensor(lines, dtype=dtype)
            np.testing.assert_array_equal(got[:3].double().numpy(), np.array(exact, dtype=np.float64))
    assert not _band(40, 14, 1 / 3).exact_in(torch.float64)  # thirds are not dyadic
    assert not _band(40, 120, 3.0).exact_in(torch.float64)
