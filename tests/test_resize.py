"""MATLAB-exact bicubic: against MATLAB's own files, and against an independent dense-matrix
implementation written here from MATLAB's imresize.m description."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from sr_bench import imresize
from sr_bench.images import read_image
from sr_bench.resize import downscale, output_size, upscale


def _cubic(x):
    ax = np.abs(x)
    return np.where(ax <= 1, 1.5 * ax**3 - 2.5 * ax**2 + 1, np.where(ax <= 2, -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2, 0.0))


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
        for j, wj in zip(taps, w):
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


def test_torch_batched_matches_numpy_per_image():
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, size=(2, 3, 40, 52), dtype=np.uint8)
    out = imresize(torch.from_numpy(imgs), 1 / 4)
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 10, 13)
    for n in range(2):
        expected = imresize(np.ascontiguousarray(imgs[n].transpose(1, 2, 0)), 1 / 4)
        np.testing.assert_array_equal(out[n].permute(1, 2, 0).numpy(), expected)


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
