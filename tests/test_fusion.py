"""The fused CPU inference form (sr_bench.models.fusion): bit-identical by default, float32-
rounding close with the composed upsampler (opt-in), and used only where it applies."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from sr_bench import models
from sr_bench.inference import prepare_model, super_resolve
from sr_bench.models import fusion
from sr_bench.models.common import MeanShift, ResBlock

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not fusion.fused_ops_available(), reason="this torch has no oneDNN fused convolutions"),
]

QUICK = Path(__file__).resolve().parents[1] / "results" / "weights" / "quick-edsr-baseline-x2.safetensors"


def _random(name: str, scale: int | None, **options) -> nn.Module:
    """A model with non-zero biases everywhere (default init leaves the composed bias trivial)."""
    torch.manual_seed(0)
    m = models.create(name, scale=scale, **options)
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 1 and p.requires_grad:
                p.uniform_(-0.5, 0.5)
    return m


def _pair(m: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(fused with the composed upsampler, unfused, float64 unfused) inference forms of ``m``."""
    return (prepare_model(copy.deepcopy(m), "cpu", compose_upsampler=True),
            prepare_model(copy.deepcopy(m), "cpu", fuse=False), copy.deepcopy(m).double().eval())


@pytest.mark.parametrize(("name", "scale", "options"), [
    ("edsr-baseline", 3, {"filters": 16, "blocks": 3}),
    ("edsr", 2, {"filters": 32, "blocks": 2}),  # res_scale 0.1
    ("mdsr-baseline", None, {"filters": 16, "blocks": 2}),
])
def test_default_cpu_form_is_bit_identical_to_the_layers(name, scale, options):
    """prepare_model's default on the CPU fuses only what gives the same bits, so evaluation
    records made layer by layer recompute exactly (tests/test_committed_results.py)."""
    m = _random(name, scale, **options)
    default = prepare_model(copy.deepcopy(m), "cpu")
    plain = prepare_model(copy.deepcopy(m), "cpu", fuse=False)
    assert default.body[0].cpu_fusion and not default.compose_upsampler
    x = torch.rand(2, 3, 21, 26)
    for s in (2, 3, 4) if scale is None else (scale,):
        with torch.inference_mode():
            assert torch.equal(default(x, s), plain(x, s))


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_fused_convolutions_are_bit_identical(layout):
    torch.manual_seed(1)
    conv = nn.Conv2d(16, 16, 3, padding=1).to(memory_format=layout)
    x = (torch.randn(2, 16, 13, 17) * 50).contiguous(memory_format=layout)
    skip = torch.randn_like(x) * 50
    with torch.inference_mode():
        ref = conv(x)
        assert torch.equal(fusion.conv_relu(conv, x), torch.relu(ref))
        assert torch.equal(fusion.conv_add(conv, x, skip), ref + skip)
        acc = skip.clone()
        assert fusion.conv_add_(conv, x, acc) is acc and torch.equal(acc, ref + skip)


@pytest.mark.parametrize("res_scale", [1.0, 0.1])
def test_fused_blocks_are_bit_identical(res_scale):
    torch.manual_seed(2)
    block = ResBlock(16, res_scale=res_scale).eval().to(memory_format=torch.channels_last)
    shift = MeanShift(255.0, sign=1).eval()
    x = (torch.randn(2, 16, 11, 9) * 30).contiguous(memory_format=torch.channels_last)
    rgb = torch.randn(2, 3, 11, 9) * 100
    with torch.inference_mode():
        plain, plain_shift = block(x), shift(rgb)
        fusion.set_cpu_fusion(block, True)
        fusion.set_cpu_fusion(shift, True)
        assert torch.equal(block(x), plain) and torch.equal(shift(rgb), plain_shift)


@pytest.mark.parametrize(("name", "scale", "options"), [
    ("edsr-baseline", 2, {"filters": 16, "blocks": 2}),
    ("edsr-baseline", 3, {"filters": 16, "blocks": 2}),
    ("edsr-baseline", 4, {"filters": 16, "blocks": 2}),
    ("edsr", 2, {"filters": 32, "blocks": 2}),  # res_scale 0.1
    ("mdsr-baseline", None, {"filters": 16, "blocks": 2}),
])
def test_fused_forward_is_as_close_to_float64_as_the_layers(name, scale, options):
    """The composed upsampler changes float32 rounding only: its distance from a float64 forward
    is of the order of the layer-by-layer float32 forward's (at most 4x; a wrong kernel, bias or
    border would be orders of magnitude off)."""
    fused, plain, exact = _pair(_random(name, scale, **options))
    x = torch.rand(2, 3, 23, 30)
    for s in (2, 3, 4) if scale is None else (scale,):
        with torch.inference_mode():
            ref = exact(x.double(), s)
            err_plain = (plain(x, s) - ref).abs().max().item()
            err_fused = (fused(x, s) - ref).abs().max().item()
        assert 0 < err_fused <= 4 * err_plain, (s, err_fused, err_plain)


def test_fused_forward_with_the_committed_weights():
    """Trained EDSR-baseline x2 on a real photograph: fused and layer-by-layer agree to float32
    rounding, whole image, tiled, and with self-ensemble."""
    from sr_bench.cpu_speed import _lr_crop
    from sr_bench.weights import load_weights

    m = models.create("edsr-baseline", scale=2)
    load_weights(m, str(QUICK))
    fused, plain, exact = _pair(m)
    lr = _lr_crop(40)
    with torch.inference_mode():
        ref = exact(lr.double(), 2)
    err_plain = (super_resolve(plain, lr, 2) - ref).abs().max().item()
    assert (super_resolve(fused, lr, 2) - ref).abs().max().item() <= 4 * err_plain
    tiled = super_resolve(fused, lr, 2, tile=16)
    assert (tiled - ref).abs().max().item() <= 8 * err_plain
    ens = super_resolve(fused, lr, 2, self_ensemble=True)
    assert (ens - super_resolve(plain, lr, 2, self_ensemble=True)).abs().max().item() <= 8 * err_plain


def test_the_border_ring_needs_the_layers():
    """The control for the strips: without recomputing the outermost LR ring by the layers, the
    composed convolution is wrong there (the HR layers' zero padding) and right inside."""
    fused, plain, _ = _pair(_random("edsr-baseline", 2, filters=16, blocks=1))
    x = torch.rand(1, 3, 20, 24)
    with torch.inference_mode():
        ref = plain(x, 2)
        original = fusion._cached_fold
        try:
            fusion._cached_fold = lambda u, t: dataclasses.replace(original(u, t), ring=0)  # type: ignore[assignment]
            no_ring = fused(x, 2)
        finally:
            fusion._cached_fold = original
        good = fused(x, 2)
    diff = (no_ring - ref).abs()
    assert diff[..., 2:-2, 2:-2].max() < 1e-5 < diff.max()
    assert (good - ref).abs().max() < 1e-5


def test_the_composed_kernel_follows_the_weights():
    """The cached kernel is rebuilt when the weights change (in place, by loading, by dtype)."""
    fused, _, _ = _pair(_random("edsr-baseline", 2, filters=8, blocks=1))
    other = prepare_model(_random("edsr-baseline", 2, filters=8, blocks=1).apply(
        lambda mod: torch.nn.init.normal_(mod.weight, std=0.05) if isinstance(mod, nn.Conv2d) else None), "cpu",
        fuse=False)
    x = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        fused(x, 2)  # builds the cache
    fused.load_state_dict(other.state_dict())
    with torch.inference_mode():
        assert (fused(x, 2) - other(x, 2)).abs().max() < 1e-5
        with torch.no_grad():
            fused.tail[1].bias.add_(1.0)
            other.tail[1].bias.add_(1.0)
        assert (fused(x, 2) - other(x, 2)).abs().max() < 1e-5


def _upsampler_calls(model: nn.Module) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    up = model.tail[0]
    up.register_forward_hook(lambda _m, inp, _out: shapes.append(tuple(inp[0].shape[-2:])))
    return shapes


def test_fusion_applies_only_on_cpu_eval_without_autograd():
    m = prepare_model(_random("edsr-baseline", 2, filters=8, blocks=1), "cpu", compose_upsampler=True)
    x = torch.rand(1, 3, 16, 20)
    calls = _upsampler_calls(m)
    with torch.inference_mode():
        m(x, 2)
    assert (16, 20) not in calls and calls  # composed: the layers see only the border strips
    calls.clear()
    out = m(x, 2)  # autograd on: the layers
    assert out.requires_grad and calls == [(16, 20)]
    calls.clear()
    with torch.no_grad():
        m.train()(x, 2)
    assert calls == [(16, 20)]
    off = prepare_model(_random("edsr-baseline", 2, filters=8, blocks=1), "cpu", fuse=False, compose_upsampler=True)
    assert not off.body[0].cpu_fusion and not off.compose_upsampler
    assert not prepare_model(_random("edsr-baseline", 2, filters=8, blocks=1), "meta").body[0].cpu_fusion
    calls = _upsampler_calls(default := prepare_model(_random("edsr-baseline", 2, filters=8, blocks=1), "cpu"))
    with torch.inference_mode():
        default(x, 2)
    assert calls == [(16, 20)]  # a hook on the upsampler: the default form runs its layers on the whole image


def test_upsampler_with_an_activation_is_not_composed():
    """SRResNet's upsampler has an activation after each shuffle: not linear, so no fold."""
    from sr_bench.models.common import Upsampler

    assert fusion.fold_upsampler(Upsampler(2, 8, act="relu"), nn.Conv2d(8, 3, 3, padding=1)) is None
    assert fusion.fold_upsampler(Upsampler(2, 8), nn.Conv2d(8, 3, 3, padding=1)) is not None


def test_bfloat16_fused_forward_stays_close():
    """bfloat16 (opt-in) runs the fused form too; it stays within bf16 rounding of float32."""
    if not fusion._bf16_supported():
        pytest.skip("no native bf16 in oneDNN on this CPU")
    m = _random("edsr-baseline", 2, filters=16, blocks=2)
    lr = torch.rand(1, 3, 20, 20)
    half = super_resolve(prepare_model(copy.deepcopy(m), "cpu", "bfloat16", compose_upsampler=True), lr, 2)
    full = super_resolve(prepare_model(copy.deepcopy(m), "cpu"), lr, 2)
    assert half.dtype == torch.float32 and 0 < (half - full).abs().max() < 0.05


def test_tiny_images_use_the_layers():
    """Below 2 x (ring + radius) LR pixels the strips would cover the image: layers throughout."""
    fused, plain, _ = _pair(_random("edsr-baseline", 2, filters=8, blocks=1))
    x = torch.rand(1, 3, 5, 40)
    with torch.inference_mode():
        assert torch.equal(fused(x, 2), plain(x, 2))
    assert fusion.fusable_conv(nn.Conv2d(8, 8, 3, padding=1))
    assert not fusion.fusable_conv(nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"))


def test_flop_counting_sees_the_layers():
    """FLOP counting (a dispatch mode) knows aten convolutions, not oneDNN's fused ops: under it
    a prepared model runs its layers, so the count is the same as the unprepared model's."""
    from sr_bench.flops import count_flops

    m = _random("edsr-baseline", 2, filters=8, blocks=2)
    prepared = prepare_model(copy.deepcopy(m), "cpu", compose_upsampler=True)
    assert count_flops(prepared, 2, 12, 12) == count_flops(m, 2, 12, 12) > 0


# --------------------------------------------------------------------------------------------
# The default form's memory savers: blocks written in place, the upsampler in bands of rows


def _cl(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("res_scale", [1.0, 0.1])
def test_a_block_written_in_place_gives_the_layers_bits(res_scale):
    """ResBlock.forward_ writes the block's output over its input, with the bits of the layers."""
    torch.manual_seed(3)
    block = ResBlock(16, res_scale=res_scale).eval().to(memory_format=torch.channels_last)
    x = _cl(torch.randn(2, 16, 11, 9) * 30)
    with torch.inference_mode():
        plain = block(x)
        fusion.set_cpu_fusion(block, True)
        own = x.clone()
        out = block.forward_(own)
    assert out.data_ptr() == own.data_ptr() and torch.equal(out, plain)


def test_the_in_place_body_leaves_its_input_and_what_hooks_keep():
    """The body's input (the head's output, also the global skip) is never written over, and a
    hook on a block makes the body run block by block, so the outputs it keeps stay as they were."""
    from sr_bench.models.edsr import _fused_body_with_skip

    m = prepare_model(_random("edsr-baseline", 2, filters=16, blocks=3), "cpu")
    x = _cl(torch.randn(1, 16, 12, 10) * 30)
    kept: list[torch.Tensor] = []
    with torch.inference_mode():
        with fusion.cpu_fusion_disabled(m):
            want = m.body(x) + x
            want_block1 = m.body[1](m.body[0](x))
        before = x.clone()
        assert torch.equal(_fused_body_with_skip(m.body, x), want) and torch.equal(x, before)
        m.body[1].register_forward_hook(lambda _m, _i, out: kept.append(out))
        assert torch.equal(_fused_body_with_skip(m.body, x), want) and torch.equal(x, before)
    assert len(kept) == 1 and torch.equal(kept[0], want_block1)


@pytest.mark.parametrize(("scale", "tail_kernel"), [(2, 3), (3, 3), (2, 5)])
@pytest.mark.parametrize("rows", [1, 2, 5, 64])
def test_the_banded_upsampler_gives_the_layers_bits(scale, tail_kernel, rows):
    """Row bands (seams at every band, bands of unequal height, a single band; batch of 2; a
    5x5 tail with a 4-row carry) give the bits of tail(upsampler(x)) on the whole map."""
    from sr_bench.models.common import Upsampler

    torch.manual_seed(4)
    up = Upsampler(scale, 16).to(memory_format=torch.channels_last)
    tail = nn.Conv2d(16, 3, tail_kernel, padding=tail_kernel // 2).to(memory_format=torch.channels_last)
    x = _cl(torch.randn(2, 16, 23, 17) * 10)
    if scale * rows < tail_kernel - 1:
        rows = 2
    with torch.inference_mode():
        want = tail(up(x))
        got = fusion._bands(up[0], scale, tail, x, rows)
    assert got.is_contiguous(memory_format=torch.channels_last) and torch.equal(got, want)


def test_the_banded_upsampler_with_the_committed_weights():
    """The trained EDSR-baseline x2 on a real photograph: its body's features through the
    upsampler and tail in bands of 8 rows give the layers' bits, and so does the whole default
    forward (the image in one band) against prepare_model(fuse=False)."""
    from sr_bench.cpu_speed import _lr_crop
    from sr_bench.weights import load_weights

    m = models.create("edsr-baseline", scale=2)
    load_weights(m, str(QUICK))
    default, plain = prepare_model(copy.deepcopy(m), "cpu"), prepare_model(copy.deepcopy(m), "cpu", fuse=False)
    lr = _lr_crop(40)
    with torch.inference_mode():
        feats = plain.body(plain.head(plain.sub_mean(_cl(lr) * 255)))
        assert torch.equal(fusion._bands(default.tail[0][0], 2, default.tail[1], feats, 8), plain.tail(feats))
    assert torch.equal(super_resolve(default, lr, 2), super_resolve(plain, lr, 2))


def test_the_bands_step_aside_where_they_do_not_apply():
    """x4 (two shuffles), an input not in channels_last, and a hooked tail run the layers."""
    from sr_bench.models.common import Upsampler

    tail = nn.Conv2d(8, 3, 3, padding=1).to(memory_format=torch.channels_last)
    x = _cl(torch.randn(1, 8, 9, 7))
    assert fusion._single_stage(Upsampler(4, 8), tail) is None
    assert fusion._single_stage(Upsampler(2, 8), tail) is not None
    assert fusion._single_stage(Upsampler(2, 8, act="relu"), tail) is None
    up = Upsampler(2, 8).to(memory_format=torch.channels_last)
    seen: list[tuple[int, ...]] = []
    tail.register_forward_hook(lambda _m, inp, _o: seen.append(tuple(inp[0].shape[-2:])))
    with torch.inference_mode():
        assert torch.equal(fusion.project_in_bands(up, tail, x, rows=2), tail(up(x)))
    assert seen == [(18, 14), (18, 14)]  # the layers, on the whole map, both times
    assert fusion.bands_exact()
