"""Inference: plain forward by default, exact tiling, self-ensemble, out-of-memory retries."""

from __future__ import annotations

import logging

import pytest
import torch
from tolerances import conv_depth_atol
from torch import nn

from sr_bench import models
from sr_bench.inference import (
    MIN_TILE,
    TRANSFORMS,
    bytes_per_lr_pixel,
    forward_tiled,
    geometric_self_ensemble,
    inverse_transform,
    min_tile,
    parse_bytes,
    parse_dtype,
    prepare_model,
    super_resolve,
    tile_for_budget,
    transform,
)
from sr_bench.resize import imresize

THIN = {"edsr": {"filters": 8}, "edsr-baseline": {"filters": 8}, "mdsr": {"filters": 4},
        "mdsr-baseline": {"filters": 8}, "srresnet": {"filters": 8}, "vdsr": {"filters": 8}, "bicubic": {}}
CASES = [(n, s) for n in models.names() for s in models.get_spec(n).scales]


pytestmark = pytest.mark.usefixtures("one_thread")


def build(name, scale, **options):
    torch.manual_seed(0)
    spec = models.get_spec(name)
    m = models.create(name, scale=None if spec.multi_scale else scale, **{**THIN[name], **options})
    with torch.no_grad():  # non-trivial BN statistics, so eval-mode BN is not the identity
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
    return prepare_model(m)


# ---------------------------------------------------------------------------------------------
# Default path is a plain forward


@pytest.mark.parametrize("name", ["edsr-baseline", "mdsr-baseline", "vdsr", "bicubic", "srresnet"])
def test_default_is_exactly_a_plain_forward(name):
    m = build(name, 2)
    lr = torch.rand(1, 3, 13, 10)
    with torch.no_grad():
        ref = m(lr, 2)
    out = super_resolve(m, lr, 2)
    # exact: the promise is one forward on the same values (only the input's memory layout changes,
    # and the channels_last weights pick the same convolution kernels for either layout)
    assert out.dtype == torch.float32 and torch.equal(out, ref)


def test_prepare_model_defaults_and_dtypes():
    m = prepare_model(models.create("edsr-baseline", scale=2, blocks=1, filters=8))
    assert not m.training
    w = m.head[0].weight
    assert w.dtype == torch.float32 and w.is_contiguous(memory_format=torch.channels_last)
    m2 = prepare_model(models.create("edsr-baseline", scale=2, blocks=1, filters=8), channels_last=False)
    assert m2.head[0].weight.is_contiguous()
    plain = models.create("edsr-baseline", scale=2, blocks=1, filters=8).eval()
    m3 = prepare_model(models.create("edsr-baseline", scale=2, blocks=1, filters=8), dtype="bfloat16")
    m3.load_state_dict(plain.state_dict())
    lr = torch.rand(1, 3, 9, 9)
    out = super_resolve(m3, lr, 2)
    assert out.dtype == torch.float32
    with torch.no_grad():
        ref = plain(lr)
    assert (out - ref).abs().max() < 0.05 and not torch.equal(out, ref)  # bf16 is close, not equal
    assert parse_dtype("fp16") is torch.float16
    with pytest.raises(ValueError, match="float32, bfloat16 or float16"):
        parse_dtype("int8")
    with pytest.raises(ValueError, match="float32, bfloat16 or float16"):
        parse_dtype(torch.float64)


def test_input_checks():
    m = build("edsr-baseline", 2)
    with pytest.raises(ValueError, match="serves scales"):
        super_resolve(m, torch.rand(1, 3, 8, 8), 3)
    with pytest.raises(ValueError, match="float"):
        super_resolve(m, torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        super_resolve(m, torch.rand(3, 8, 8), 2)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="move it"):
            super_resolve(m, torch.rand(1, 3, 8, 8, device="cuda"), 2)


# ---------------------------------------------------------------------------------------------
# Tiling


@pytest.mark.parametrize("name,scale", CASES)
def test_tiled_equals_whole_image(name, scale):
    m = build(name, scale)
    rf = m.receptive_field
    tile = min_tile(m)  # the smallest accepted
    lr = torch.rand(1, 3, 11, 2 * rf + 3 * tile + 4)  # odd sizes; interior tiles see cropped context
    whole = super_resolve(m, lr, scale)
    tiled = super_resolve(m, lr, scale, tile=tile)
    assert tiled.shape == whole.shape == (1, 3, 11 * scale, lr.shape[-1] * scale)
    assert (tiled - whole).abs().max() < 1e-4


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_too_little_overlap_is_detected(scale):
    """The control for the test above: overlapping by less than the receptive field breaks it."""
    m = build("edsr-baseline", scale, filters=8)
    rf = m.receptive_field
    lr = torch.rand(1, 3, 9, 2 * rf + 25)
    with torch.no_grad():
        whole = m(lr, scale)
        bad = forward_tiled(lambda x: m(x, scale), lr, scale, tile=8, overlap=1)
        good = forward_tiled(lambda x: m(x, scale), lr, scale, tile=8, overlap=rf)
    assert (bad - whole).abs().max() > 1e-4
    assert (good - whole).abs().max() < 1e-4


def test_tiled_default_width_edsr_baseline():
    m = prepare_model(models.create("edsr-baseline", scale=3))
    lr = torch.rand(1, 3, 9, 95)
    assert (super_resolve(m, lr, 3, tile=10) - super_resolve(m, lr, 3)).abs().max() < 1e-4


def test_memory_budget_gives_tiles_and_same_result():
    m = build("edsr-baseline", 2)
    bpp = bytes_per_lr_pixel(m, 2)
    # 4 live maps of the largest activation (4F channels at LR for x2) plus the input
    assert bpp == pytest.approx(4 * 4 * 8 * 4 + 3 * 4)
    rf = m.receptive_field
    budget = int((20 + 2 * rf) ** 2 * bpp) + 1
    assert tile_for_budget(m, 2, budget) == 20
    assert tile_for_budget(m, 2, f"{budget / 1e6}MB") == 20
    lr = torch.rand(1, 3, 10, 2 * rf + 50)
    out = super_resolve(m, lr, 2, memory_budget=budget)
    assert (out - super_resolve(m, lr, 2)).abs().max() < 1e-4
    with pytest.raises(ValueError, match="too small"):
        tile_for_budget(m, 2, 1000)
    assert parse_bytes("2GiB") == 2 * 1024**3 and parse_bytes("1.5GB") == 1_500_000_000
    with pytest.raises(ValueError):
        parse_bytes("lots")


class OOMAbove(nn.Module):
    """Nearest x2 upsampling of a 1x1 conv that 'runs out of memory' on inputs above a size."""

    def __init__(self, max_pixels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.max_pixels = max_pixels
        self.receptive_field = 0
        self.scales = (2,)
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x, scale=None):
        self.sizes.append(tuple(x.shape[-2:]))
        if x.shape[-1] * x.shape[-2] > self.max_pixels:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.conv(x).repeat_interleave(2, -1).repeat_interleave(2, -2)


def test_out_of_memory_shrinks_the_tile(caplog):
    m = OOMAbove(max_pixels=40 * 40).eval()
    lr = torch.rand(1, 3, 100, 90)
    with torch.no_grad():
        ref = m.conv(lr).repeat_interleave(2, -1).repeat_interleave(2, -2)
    with caplog.at_level(logging.WARNING, logger="sr_bench.inference"):
        out = super_resolve(m, lr, 2)
    # tiles run the 1x1 convolution on other shapes, so other kernels may sum its 3 terms in another order
    torch.testing.assert_close(out, ref, rtol=0, atol=conv_depth_atol(m))
    assert "out of memory" in caplog.text
    assert m.sizes[0] == (100, 90) and max(h * w for h, w in m.sizes[-4:]) <= 40 * 40
    m2 = OOMAbove(max_pixels=MIN_TILE * MIN_TILE // 4)
    with pytest.raises(torch.OutOfMemoryError):
        super_resolve(m2, lr, 2)


# ---------------------------------------------------------------------------------------------
# Self-ensemble


def test_transforms_are_the_dihedral_group_and_invert():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)  # asymmetric, non-square
    assert len(TRANSFORMS) == 8 and TRANSFORMS[0] == (False, False, False)
    ours = [transform(x, t) for t in TRANSFORMS]
    # independent construction: rotations by 0..3 quarter turns, with and without a flip
    group = [torch.rot90(x if f == 0 else x.flip(-1), k, dims=(-2, -1)) for f in (0, 1) for k in range(4)]
    key = lambda t: (tuple(t.shape), t.flatten().tolist())  # noqa: E731
    assert sorted(map(key, ours)) == sorted(map(key, group))
    assert len({tuple(key(t)[1]) for t in ours}) == 8
    for t in TRANSFORMS:
        assert torch.equal(inverse_transform(transform(x, t), t), x)


def test_self_ensemble_matches_an_independent_rot90_implementation():
    torch.manual_seed(0)
    m = build("edsr-baseline", 2, blocks=2)
    lr = torch.rand(1, 3, 9, 14)
    out = super_resolve(m, lr, 2, self_ensemble=True)
    outs = []
    with torch.no_grad():
        for flip in (False, True):
            for k in range(4):
                xi = torch.rot90(lr.flip(-1) if flip else lr, k, dims=(-2, -1))
                yi = torch.rot90(m(xi.contiguous(), 2), -k, dims=(-2, -1))
                outs.append(yi.flip(-1) if flip else yi)
    ref = torch.stack(outs).mean(0)
    assert (out - ref).abs().max() < 1e-5
    assert (out - super_resolve(m, lr, 2)).abs().max() > 1e-3  # a non-equivariant model changes


def test_self_ensemble_is_exact_for_an_equivariant_model():
    class Pointwise(nn.Module):
        scales = (3,)
        receptive_field = 0

        def forward(self, x, scale=None):
            return (0.5 * x + 0.25).repeat_interleave(3, -1).repeat_interleave(3, -2)

    lr = torch.randint(0, 256, (1, 3, 7, 10)).float() / 256  # dyadic: every sum is exact
    m = Pointwise()
    assert torch.equal(super_resolve(m, lr, 3, self_ensemble=True), super_resolve(m, lr, 3))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_self_ensemble_of_bicubic_is_bicubic(scale):
    """MATLAB bicubic is symmetric: flips and transposes commute with it (up to float rounding)."""
    m = models.create("bicubic")
    lr = torch.rand(1, 3, 9, 13)
    out = geometric_self_ensemble(lambda x: m(x, scale), lr)
    assert (out - imresize(lr, float(scale))).abs().max() < 1e-6


def test_self_ensemble_with_tiles():
    m = build("edsr-baseline", 3, blocks=2)
    rf = m.receptive_field
    lr = torch.rand(1, 3, 2 * rf + 9, 2 * rf + 14)
    a = super_resolve(m, lr, 3, self_ensemble=True)
    b = super_resolve(m, lr, 3, self_ensemble=True, tile=8)
    assert (a - b).abs().max() < 1e-4


# ---------------------------------------------------------------------------------------------
# CUDA (skipped without a device)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cuda_matches_cpu(dtype):
    torch.manual_seed(0)
    cpu = models.create("edsr-baseline", scale=3, blocks=4, filters=16).eval()
    gpu = prepare_model(models.create("edsr-baseline", scale=3, blocks=4, filters=16), "cuda", dtype)
    gpu.load_state_dict(cpu.state_dict())
    lr = torch.rand(1, 3, 40, 37)
    out = super_resolve(gpu, lr.cuda(), 3, self_ensemble=True, tile=16).cpu()
    out_ref = super_resolve(prepare_model(cpu), lr, 3, self_ensemble=True)
    assert out.dtype == torch.float32
    tol = 1e-4 if dtype == "float32" else 3e-2  # TF32 / half precision
    assert (out - out_ref).abs().max() < tol


@pytest.mark.gpu
@needs_cuda
def test_cuda_memory_budget_and_bytes_per_pixel():
    m = prepare_model(models.create("edsr-baseline", scale=2), "cuda")
    torch.cuda.reset_peak_memory_stats()
    lr = torch.rand(1, 3, 96, 96, device="cuda")
    base = torch.cuda.memory_allocated()
    super_resolve(m, lr, 2)
    peak = torch.cuda.max_memory_allocated() - base
    # the estimate is of the right order (cuDNN workspaces come on top of activations)
    est = bytes_per_lr_pixel(m, 2) * 96 * 96
    assert est / 8 <= peak <= est * 3


def test_both_modes_share_the_identity_forward():
    from sr_bench.inference import super_resolve_modes

    torch.manual_seed(0)
    model = prepare_model(models.create("edsr-baseline", scale=2, blocks=1, filters=8))
    calls = []
    forward = model.forward
    model.forward = lambda x, scale=None: calls.append(1) or forward(x, scale)
    x = torch.rand(1, 3, 9, 13)
    both = super_resolve_modes(model, x, 2, (False, True), batch_transforms=False)
    assert len(calls) == 8
    # bit-exact where the code promises it: the plain output IS the identity transform's forward
    # (the same batch-1 forward), and a sequential ensemble sums the same 8 outputs in TRANSFORMS order
    assert torch.equal(both[False], super_resolve(model, x, 2))
    assert torch.equal(both[True], super_resolve(model, x, 2, self_ensemble=True, batch_transforms=False))
    # the batched ensemble (what the memory budget picks here) runs the forwards as batches of 4:
    # other convolution kernels, so equal only up to float32 rounding through the network's convolutions
    # (8 convolutions, the mean shifts included, of up to 8 x 3 x 3 = 72 terms: 2 * 8 * sqrt(72) * eps = 1.6e-5;
    # measured 8.9e-8 with oneDNN limited to SSE4.1; dropping one transform from the mean gives 4.6e-2)
    batched = super_resolve(model, x, 2, self_ensemble=True, batch_transforms=True)
    torch.testing.assert_close(both[True], batched, rtol=0, atol=conv_depth_atol(model))


# ---------------------------------------------------------------------------------------------
# Batched self-ensemble and the smallest tile


def _counting(model):
    """The model, recording the batch size of every forward."""
    batches = []
    forward = model.forward
    model.forward = lambda x, scale=None: batches.append(x.shape[0]) or forward(x, scale)
    return batches


@pytest.mark.parametrize("shape", [(12, 12), (9, 14)])
def test_batched_self_ensemble_equals_sequential(shape, one_thread):
    torch.manual_seed(0)
    m = build("edsr-baseline", 2, blocks=2)
    batches = _counting(m)
    lr = torch.rand(1, 3, *shape)
    seq = super_resolve(m, lr, 2, self_ensemble=True, batch_transforms=False)
    assert batches == [1] * 8
    batches.clear()
    bat = super_resolve(m, lr, 2, self_ensemble=True, batch_transforms=True)
    # square: all 8 transforms share a shape; otherwise the 4 transposed ones have the other shape
    assert batches == ([8] if shape[0] == shape[1] else [4, 4])
    assert (bat - seq).abs().max() <= 1e-5
    # and both are the mean of the 8 transformed forwards, built here with rot90 instead
    with torch.no_grad():
        ins = [torch.rot90(lr.flip(-1) if f else lr, k, dims=(-2, -1)).contiguous() for f in (False, True)
               for k in range(4)]
        outs = [torch.rot90(m(x, 2), -(i % 4), dims=(-2, -1)) for i, x in enumerate(ins)]
    ref = torch.stack([o.flip(-1) if i >= 4 else o for i, o in enumerate(outs)]).mean(0)
    assert (bat - ref).abs().max() <= 1e-5


def test_self_ensemble_batches_when_the_budget_allows_else_runs_one_by_one(one_thread):
    m = build("edsr-baseline", 2, blocks=1)
    lr = torch.rand(1, 3, 10, 10)
    per_pixel = bytes_per_lr_pixel(m, 2)
    batches = _counting(m)
    # 8 transforms x 100 LR pixels x the model's estimated bytes per pixel, just above and below
    super_resolve(m, lr, 2, self_ensemble=True, memory_budget=int(8 * 100 * per_pixel * 1.01), tile=16)
    assert batches[-1:] == [8] and len(batches) <= 2  # (the first call may run the size probe)
    batches.clear()
    super_resolve(m, lr, 2, self_ensemble=True, memory_budget=int(8 * 100 * per_pixel * 0.99), tile=16)
    assert batches == [1] * 8


def test_a_tile_below_the_receptive_field_is_raised_with_a_warning(caplog, one_thread):
    m = build("edsr-baseline", 2, blocks=1)
    batches = _counting(m)
    lr = torch.rand(1, 3, 24, 30)
    with caplog.at_level("WARNING", logger="sr_bench.inference"):
        out = super_resolve(m, lr, 2, tile=1)
    # tile 1 would be 24 x 30 = 720 forwards; raised to 16 (the receptive field is smaller) it is 2 x 2
    assert m.receptive_field < 16 and min_tile(m) == 16 and len(batches) == 4
    assert min_tile(build("edsr-baseline", 2)) == 36  # 16 blocks: the receptive field is larger than 16
    assert "below this model's receptive field" in caplog.text
    assert (out - super_resolve(m, lr, 2)).abs().max() < 1e-4
    with pytest.raises(ValueError, match="positive"):
        super_resolve(m, lr, 2, tile=0)


def test_resolve_device_refuses_bad_strings_and_missing_cuda(monkeypatch):
    import argparse

    from sr_bench.inference import DeviceError, memory_size_arg, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match="'tpu9'.*cuda:N") as e:
        resolve_device("tpu9")
    assert e.value.exit_code == 2 and isinstance(e.value, ValueError)
    with pytest.raises(DeviceError, match="no usable CUDA device; use --device cpu"):
        resolve_device("cuda:0")
    assert memory_size_arg("512MiB") == "512MiB"
    with pytest.raises(argparse.ArgumentTypeError, match="'4XB'"):
        memory_size_arg("4XB")
