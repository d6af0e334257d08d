"""The model zoo: registry behaviour, shapes, parameter counts, official key layout and a
reference forward written independently with torch.nn.functional."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from matlab_reference import reference_resize

from sr_bench import models
from sr_bench.models import registry
from sr_bench.models.registry import ModelSpec, register_model
from sr_bench.weights import export_safetensors, load_weights

# ---------------------------------------------------------------------------------------------
# A model registered here, the way a contributor would add one: every registry-parametrised test
# below picks it up (it is removed when this module finishes, so other modules never see it).


class TinySR(torch.nn.Module):
    """conv3x3 -> ReLU -> conv3x3 -> PixelShuffle: the smallest sub-pixel network."""

    def __init__(self, scale: int, filters: int) -> None:
        super().__init__()
        self.scale, self.scales, self.receptive_field = scale, (scale,), 2  # two 3x3 convs at LR
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, filters, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(filters, 3 * scale * scale, 3, padding=1), torch.nn.PixelShuffle(scale),
        )

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        if scale not in (None, self.scale):
            raise ValueError(f"this TinySR serves x{self.scale}; got scale={scale}")
        return self.body(x)


TINY = "test-tiny-sr"
# by hand: conv(3 -> 4) + conv(4 -> 3 s^2), 3x3 kernels with biases
TINY_PARAMS = tuple(3 * 4 * 9 + 4 + 4 * 3 * s * s * 9 + 3 * s * s for s in (2, 3, 4))
if TINY not in models.names():  # a re-import (pytest --import-mode) must not register twice

    @register_model(ModelSpec(name=TINY, family="test", loss="l1", scales=(2, 3, 4), multi_scale=False,
                              receptive_field=2, params=TINY_PARAMS, description="a test model"))
    def tiny_sr(scale: int = 2, *, filters: int = 4) -> TinySR:
        return TinySR(scale, filters)


ALL = models.names()
BUILTIN = [n for n in ALL if n != TINY]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: thread start-up dominates, and on a busy 2-core machine two threads are
    several times slower than one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
    registry._unregister(TINY)

CASES = [(n, s) for n in ALL for s in models.get_spec(n).scales]
# Receptive field and connectivity do not depend on the width: thin versions keep tests fast.
THIN = {"edsr": {"filters": 8}, "edsr-baseline": {"filters": 8}, "mdsr": {"filters": 4},
        "mdsr-baseline": {"filters": 8}, "srresnet": {"filters": 8}, "vdsr": {"filters": 8}, "bicubic": {},
        TINY: {}}


def build(name: str, scale: int, **options) -> torch.nn.Module:
    spec = models.get_spec(name)
    return models.create(name, scale=None if spec.multi_scale else scale, **options)


# ---------------------------------------------------------------------------------------------
# Registry


def test_names_and_patterns():
    assert set(BUILTIN) == {"bicubic", "edsr", "edsr-baseline", "mdsr", "mdsr-baseline", "srresnet", "vdsr"}
    assert TINY in ALL
    assert models.names("edsr*") == ["edsr", "edsr-baseline"]
    assert models.names("*baseline") == ["edsr-baseline", "mdsr-baseline"]
    assert ALL == sorted(ALL)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(models.UnknownModelError, match="did you mean 'edsr-baseline'"):
        models.create("edsr_baseline", scale=2)
    with pytest.raises(models.UnknownModelError, match="registered:"):
        models.get_spec("resnet50")


def test_duplicate_registration_is_an_error():
    spec = models.get_spec("vdsr")
    with pytest.raises(ValueError, match="already registered"):
        register_model(spec)(lambda scale=None: None)


def test_unknown_option_and_missing_scale_are_errors():
    with pytest.raises(TypeError, match="unknown option.*'bn'.*batch_norm"):
        models.create("edsr-baseline", scale=2, bn=True)
    with pytest.raises(ValueError, match="single-scale.*scale="):
        models.create("edsr", scale=None)
    with pytest.raises(ValueError, match="x5"):
        models.create("mdsr", scale=5)
    with pytest.raises(ValueError, match="x5"):
        models.create("edsr-baseline", scale=5)


def test_spec_validation():
    with pytest.raises(ValueError, match="loss"):
        ModelSpec("x", "x", "l3", (2,), False, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one per scale"):
        ModelSpec("x", "x", "l1", (2, 3), False, 1, params=(5,))


def test_unknown_model_error_is_the_shared_lookup_error():
    from sr_bench.lookup import UnknownNameError

    with pytest.raises(UnknownNameError, match="import path"):
        models.get_spec("resnet50")
    assert issubclass(models.UnknownModelError, UnknownNameError) and issubclass(models.UnknownModelError, KeyError)


@pytest.mark.parametrize("name", ALL)
def test_spec_architecture_is_the_factory_defaults(name):
    """A default is written once: the spec's architecture fields are the factory's defaults."""
    import inspect

    spec, params = models.get_spec(name), inspect.signature(models.get_factory(name)).parameters
    for field_name, args in registry.ARCH_ARGUMENTS.items():
        arg = next((a for a in args if a in params), None)
        if arg is not None:
            assert getattr(spec, field_name) == params[arg].default, (field_name, arg)


def test_edsr_baseline_spec_no_longer_disagrees_with_its_factory():
    assert models.get_spec("edsr-baseline").res_scale == 1.0 and models.get_spec("edsr").res_scale == 0.1
    assert models.get_spec("vdsr").blocks == 20 and models.get_spec("srresnet").batch_norm is True
    assert models.get_spec("bicubic").blocks is None and models.get_spec("bicubic").batch_norm is False


def test_a_spec_restating_a_different_default_is_refused():
    spec = ModelSpec("test-disagree", "edsr", "l1", (2,), False, 1, res_scale=None, blocks=8)
    with pytest.raises(ValueError, match=r"blocks=8 but its factory .* defaults to 16"):
        register_model(spec)(lambda scale=2, *, blocks=16: None)
    assert "test-disagree" not in models.names()


@pytest.mark.parametrize("name", ALL)
def test_spec_matches_built_model(name):
    spec = models.get_spec(name)
    with torch.device("meta"):
        m = build(name, spec.scales[0])
    if spec.multi_scale:
        assert m.scales == spec.scales
    assert m.receptive_field == spec.receptive_field
    assert spec.description and spec.loss in ("l1", "l2")


# ---------------------------------------------------------------------------------------------
# Every model: forward / backward at every scale on odd sizes


@pytest.mark.parametrize("name,scale", CASES)
def test_forward_backward_odd_sizes(name, scale):
    torch.manual_seed(0)
    m = build(name, scale, **THIN[name])
    x = torch.rand(2, 3, 7, 9, requires_grad=True)
    y = m(x, scale)
    assert y.shape == (2, 3, 7 * scale, 9 * scale)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for n, p in m.named_parameters():
        if not p.requires_grad:
            assert n.startswith(("sub_mean", "add_mean")), n
            continue
        if name.startswith("mdsr") and n.startswith(("pre_process.", "upsample.")):
            continue  # only the branch of `scale` runs (tested below)
        assert p.grad is not None and torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize("name,scale", CASES)
def test_forward_values_are_shift_equivariant_and_batch_independent(name, scale):
    """Away from the borders (the receptive field), moving the input one LR pixel moves the
    output ``scale`` HR pixels, and no image of a batch affects another."""
    torch.manual_seed(0)
    m = build(name, scale, **THIN[name]).eval()
    rf = m.receptive_field
    w = 2 * rf + 6
    x = torch.rand(2, 3, 4, w, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y, y_shift, y_one = m(x, scale), m(x[..., 1:], scale), m(x[1:], scale)
    assert y.shape == (2, 3, 4 * scale, w * scale)
    inner = y[..., (rf + 1) * scale : (w - rf) * scale]
    torch.testing.assert_close(y_shift[..., rf * scale : (w - 1 - rf) * scale], inner, rtol=0, atol=1e-5)
    torch.testing.assert_close(y_one, y[1:], rtol=0, atol=1e-5)
    assert inner.std() > 1e-3  # not a trivially constant output


@pytest.mark.parametrize("name,scale", CASES)
def test_strict_state_dict_round_trip(name, scale, tmp_path):
    torch.manual_seed(1)
    src = build(name, scale, **THIN[name]).eval()
    torch.manual_seed(2)
    dst = build(name, scale, **THIN[name]).eval()
    x = torch.rand(1, 3, 5, 6)
    has_params = any(True for _ in src.parameters())
    if has_params:
        assert not torch.equal(src(x, scale), dst(x, scale))
        info = load_weights(dst, export_safetensors(src, tmp_path / "w.safetensors"))
        assert info.num_tensors == len(src.state_dict())
    dst.load_state_dict(src.state_dict(), strict=True)
    assert list(dst.state_dict()) == list(src.state_dict())
    assert torch.equal(src(x, scale), dst(x, scale))  # exact: one class, copied weights, the same kernels


@pytest.mark.parametrize("name,scale", [(n, s) for n, s in CASES if n in ("edsr-baseline", "mdsr-baseline")])
def test_default_width_output_range(name, scale):
    """Untrained default models map 0..1 to roughly 0..1 (the 0..255 range is handled inside)."""
    torch.manual_seed(0)
    m = build(name, scale).eval()
    x = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        y = m(x, scale)
    # the mean shift puts an untrained network's output near the DIV2K mean
    assert (y.mean(dim=(0, 2, 3)) - torch.tensor([0.4488, 0.4371, 0.4040])).abs().max() < 0.5


def test_scale_argument_contract():
    single = models.create("edsr-baseline", scale=3, filters=8)
    x = torch.rand(1, 3, 5, 5)
    assert single(x).shape == single(x, 3).shape == (1, 3, 15, 15)
    assert single.scales == (3,)
    with pytest.raises(ValueError, match="x3"):
        single(x, 2)
    for name in ("mdsr-baseline", "vdsr", "bicubic"):
        m = models.create(name, **THIN[name])
        assert m.scales == (2, 3, 4)
        with pytest.raises(ValueError, match="scale"):
            m(x)
    with pytest.raises(ValueError, match="scales"):
        models.create("mdsr-baseline", filters=8)(x, 8)


# ---------------------------------------------------------------------------------------------
# Parameter counts: docs/protocol.md#official-port for the official models, hand counts for the others

def conv_params(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


@pytest.mark.parametrize("name,scale", CASES)
def test_spec_parameter_count_is_the_built_module(name, scale):
    spec = models.get_spec(name)
    with torch.device("meta"):
        m = build(name, scale)
    assert spec.num_params(scale) == sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name,scale", [(n, s) for n, s in CASES if n in ("edsr-baseline", "edsr")]
                         + [("mdsr-baseline", None), ("mdsr", None)])
def test_official_parameter_counts(name, scale):
    """The spec's counts of the official models equal the documented state_dict layout's."""
    spec = models.get_spec(name)
    shapes = official_shapes(spec.family, spec.blocks, spec.filters, (scale,) if scale else (2, 3, 4))
    assert spec.num_params(scale) == sum(math.prod(v) for v in shapes.values())


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_srresnet_parameter_count(scale):
    up = 2 * conv_params(64, 256, 3) if scale == 4 else conv_params(64, 64 * scale * scale, 3)
    expected = (
        2 * conv_params(3, 3, 1)  # mean shifts
        + conv_params(3, 64, 9)  # head 9x9
        + 16 * (2 * conv_params(64, 64, 3) + 2 * 2 * 64)  # blocks with two BNs
        + conv_params(64, 64, 3) + 2 * 64  # body conv + BN
        + up
        + conv_params(64, 3, 9)  # tail 9x9
    )
    m = models.create("srresnet", scale=scale)
    assert sum(p.numel() for p in m.parameters()) == expected == models.get_spec("srresnet").num_params(scale)
    assert 1.35e6 < expected < 1.6e6  # "1.5M" in Table 1


@pytest.mark.parametrize("channels,expected", [(3, 668_227), (1, 665_921)])
def test_vdsr_parameter_count(channels, expected):
    assert expected == conv_params(channels, 64, 3) + 18 * conv_params(64, 64, 3) + conv_params(64, channels, 3)
    m = models.create("vdsr", in_channels=channels)
    assert sum(p.numel() for p in m.parameters()) == expected
    if channels == models.get_spec("vdsr").in_channels:
        assert models.get_spec("vdsr").num_params() == expected


def _reference_bicubic(x: torch.Tensor, s: int) -> torch.Tensor:
    """MATLAB bicubic of a float (1, C, H, W) batch by the independent matrix reference."""
    y = reference_resize(x[0].permute(1, 2, 0).numpy(), float(s))
    return torch.from_numpy(y).permute(2, 0, 1)[None]


def test_bicubic_has_no_parameters_and_is_matlab_bicubic():
    m = models.create("bicubic")
    assert sum(p.numel() for p in m.parameters()) == 0
    for c in (1, 3, 4):
        x = torch.rand(1, c, 9, 7, dtype=torch.float64)
        for s in (2, 3, 4):
            torch.testing.assert_close(m(x, s), _reference_bicubic(x, s), atol=1e-12, rtol=0)


def test_vdsr_is_a_residual_over_bicubic():
    m = models.create("vdsr", in_channels=1)
    with torch.no_grad():
        m.body[-1].weight.zero_()
        m.body[-1].bias.zero_()
    x = torch.rand(1, 1, 8, 11)
    for s in (2, 3, 4):
        torch.testing.assert_close(m(x, s).double(), _reference_bicubic(x.double(), s), atol=1e-5, rtol=0)
    assert list(m.state_dict()) == [f"body.{i}.{p}" for i in range(0, 40, 2) for p in ("weight", "bias")]


# ---------------------------------------------------------------------------------------------
# Official state_dict layout (docs/protocol.md#official-port), built here from the documented names


def official_shapes(family: str, blocks: int, filters: int, scales: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the official port's state_dict, written from the documentation."""
    F_ = filters
    shapes: dict[str, tuple[int, ...]] = {
        "sub_mean.weight": (3, 3, 1, 1), "sub_mean.bias": (3,),
        "add_mean.weight": (3, 3, 1, 1), "add_mean.bias": (3,),
        "head.0.weight": (F_, 3, 3, 3), "head.0.bias": (F_,),
    }

    def conv(prefix, cin, cout, k=3):
        shapes[f"{prefix}.weight"] = (cout, cin, k, k)
        shapes[f"{prefix}.bias"] = (cout,)

    def upsampler(prefix, s):
        if s == 3:
            conv(f"{prefix}.0", F_, 9 * F_)
        else:
            for j in range(int(math.log2(s))):
                conv(f"{prefix}.{2 * j}", F_, 4 * F_)

    for i in range(blocks):
        conv(f"body.{i}.body.0", F_, F_)
        conv(f"body.{i}.body.2", F_, F_)
    conv(f"body.{blocks}", F_, F_)
    if family == "edsr":
        (s,) = scales
        upsampler("tail.0", s)
        conv("tail.1", F_, 3)
    else:
        for k, s in enumerate(scales):
            for b in range(2):
                conv(f"pre_process.{k}.{b}.body.0", F_, F_, 5)
                conv(f"pre_process.{k}.{b}.body.2", F_, F_, 5)
            upsampler(f"upsample.{k}", s)
        conv("tail.0", F_, 3)
    return shapes


@pytest.mark.parametrize(
    "name,scale,family,blocks,filters",
    [("edsr-baseline", s, "edsr", 16, 64) for s in (2, 3, 4)]
    + [("edsr", s, "edsr", 32, 256) for s in (2, 3, 4)]
    + [("mdsr-baseline", None, "mdsr", 16, 64), ("mdsr", None, "mdsr", 80, 64)],
)
def test_state_dict_has_the_official_keys_and_shapes(name, scale, family, blocks, filters):
    with torch.device("meta"):
        m = models.create(name, scale=scale)
    got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert got == official_shapes(family, blocks, filters, (scale,) if scale else (2, 3, 4))


def random_official_state(family, blocks, filters, scales, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in official_shapes(family, blocks, filters, scales).items():
        state[k] = torch.randn(shape, generator=g) * (0.05 if len(shape) == 4 else 0.01)
    mean = torch.tensor([0.4488, 0.4371, 0.4040]) * 255
    state["sub_mean.weight"] = torch.eye(3).view(3, 3, 1, 1)
    state["sub_mean.bias"] = -mean
    state["add_mean.weight"] = torch.eye(3).view(3, 3, 1, 1)
    state["add_mean.bias"] = mean.clone()
    return state


def reference_forward(state, x, scale, *, blocks, res_scale, family, scales=None):
    """The official forward, written with functional ops only."""
    def conv(h, prefix):
        w = state[f"{prefix}.weight"]
        return F.conv2d(h, w, state[f"{prefix}.bias"], padding=w.shape[-1] // 2)

    def resblock(h, prefix):
        return h + res_scale * conv(F.relu(conv(h, f"{prefix}.body.0")), f"{prefix}.body.2")

    def upsample(h, prefix, s):
        if s == 3:
            return F.pixel_shuffle(conv(h, f"{prefix}.0"), 3)
        for j in range(int(math.log2(s))):
            h = F.pixel_shuffle(conv(h, f"{prefix}.{2 * j}"), 2)
        return h

    h = conv(x * 255.0, "sub_mean")
    h = conv(h, "head.0")
    if family == "mdsr":
        k = scales.index(scale)
        h = resblock(resblock(h, f"pre_process.{k}.0"), f"pre_process.{k}.1")
    r = h
    for i in range(blocks):
        r = resblock(r, f"body.{i}")
    r = conv(r, f"body.{blocks}") + h
    if family == "edsr":
        out = conv(upsample(r, "tail.0", scale), "tail.1")
    else:
        out = conv(upsample(r, f"upsample.{scales.index(scale)}", scale), "tail.0")
    return conv(out, "add_mean") / 255.0


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("res_scale", [1.0, 0.1])
def test_tiny_edsr_loads_official_layout_and_matches_reference(scale, res_scale):
    state = random_official_state("edsr", 3, 8, (scale,), seed=scale)
    m = models.create("edsr-baseline", scale=scale, blocks=3, filters=8, res_scale=res_scale)
    m.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 9, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = m(x)
        want = reference_forward(state, x, scale, blocks=3, res_scale=res_scale, family="edsr")
    assert got.shape == (1, 3, 9 * scale, 7 * scale)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert (got - want).abs().max() < 1e-5 and want.std() > 0.01


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tiny_mdsr_loads_official_layout_and_matches_reference(scale):
    state = random_official_state("mdsr", 2, 8, (2, 3, 4), seed=10 + scale)
    m = models.create("mdsr-baseline", blocks=2, filters=8)
    m.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 8, 11, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = m(x, scale)
        want = reference_forward(state, x, scale, blocks=2, res_scale=1.0, family="mdsr", scales=(2, 3, 4))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_meanshift_matches_official_values():
    m = models.create("edsr-baseline", scale=2)
    mean = torch.tensor([0.4488, 0.4371, 0.4040]) * 255
    torch.testing.assert_close(m.sub_mean.bias, -mean)
    torch.testing.assert_close(m.add_mean.bias, mean)
    assert torch.equal(m.sub_mean.weight, torch.eye(3).view(3, 3, 1, 1))
    assert not m.sub_mean.weight.requires_grad and not m.add_mean.bias.requires_grad


# ---------------------------------------------------------------------------------------------
# MDSR trains only the branch of the scale it ran


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_mdsr_forward_touches_only_its_branch(scale):
    m = models.create("mdsr-baseline", blocks=2, filters=8)
    m(torch.rand(1, 3, 6, 6), scale).mean().backward()
    k = (2, 3, 4).index(scale)
    for i in range(3):
        pre = [p.grad for p in m.pre_process[i].parameters()]
        up = [p.grad for p in m.upsample[i].parameters()]
        if i == k:
            assert all(g is not None and g.abs().sum() > 0 for g in pre + up)
        else:
            assert all(g is None for g in pre + up)
    assert all(p.grad is not None for p in m.body.parameters())
    assert all(p.grad is not None for p in m.tail.parameters())


# ---------------------------------------------------------------------------------------------
# Ablation knobs


def test_ablation_options():
    bn = models.create("edsr-baseline", scale=2, batch_norm=True, blocks=2, filters=8)
    keys = set(bn.state_dict())
    assert "body.0.body.1.running_mean" in keys and "body.0.body.3.weight" in keys
    assert not any(k.startswith("tail.") and "running" in k for k in keys)  # no BN in the upsampler
    plain = models.create("edsr-baseline", scale=2, blocks=2, filters=8)
    assert "body.0.body.1.running_mean" not in set(plain.state_dict())
    scaled = models.create("edsr-baseline", scale=2, res_scale=0.1, blocks=5, filters=12)
    assert [b.res_scale for b in scaled.body[:5]] == [0.1] * 5 and scaled.body[0].body[0].out_channels == 12
    assert len(scaled.body) == 6
    s_nobn = models.create("srresnet", scale=4, batch_norm=False)
    assert not any(isinstance(mm, torch.nn.BatchNorm2d) for mm in s_nobn.modules())
    prelu = models.create("srresnet", scale=2, act="prelu", blocks=1, filters=8)
    assert any(isinstance(mm, torch.nn.PReLU) for mm in prelu.modules())
    with pytest.raises(ValueError, match="relu"):
        models.create("srresnet", scale=2, act="gelu")


def test_srresnet_structure():
    m = models.create("srresnet", scale=4)
    assert m.head[0].kernel_size == (9, 9) and isinstance(m.head[1], torch.nn.ReLU)
    assert m.tail[1].kernel_size == (9, 9)
    assert isinstance(m.body[-1], torch.nn.BatchNorm2d)
    assert sum(isinstance(mm, torch.nn.ReLU) for mm in m.tail.modules()) == 2  # after each shuffle


# ---------------------------------------------------------------------------------------------
# Receptive field: the radius tiling relies on is sufficient (and tight)


@pytest.mark.parametrize("name,scale", CASES)
def test_receptive_field_is_sufficient_and_tight(name, scale):
    """The gradient of one output column reaches exactly the LR columns within the receptive
    field. Weights are made positive so no ReLU cuts a path and nothing cancels (float64)."""
    torch.manual_seed(0)
    m = build(name, scale, **THIN[name]).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.abs_()
    rf = m.receptive_field
    W = 2 * rf + 9
    x = torch.rand(1, 3, 3, W, dtype=torch.float64, requires_grad=True)
    c = W // 2
    m(x, scale)[..., c * scale : (c + 1) * scale].sum().backward()  # the HR columns of LR column c
    cols = torch.nonzero(x.grad.abs().amax(dim=(0, 1, 2)) > 0).flatten()
    lo, hi = cols.min().item(), cols.max().item()
    assert c - rf <= lo and hi <= c + rf  # sufficient: tiles overlapping by rf are exact
    if not models.get_spec(name).multi_scale or scale == 2:  # multi-scale: the max is at x2
        assert lo <= c - rf + 1 or hi >= c + rf - 1  # and not loose by more than a pixel


def test_bicubic_gradient_is_the_adjoint():
    m = models.create("bicubic")
    x = torch.rand(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    for s in (2, 3):
        assert torch.autograd.gradcheck(lambda t, s=s: m(t, s), (x,))


def test_an_unsupported_scale_is_a_usage_error_naming_the_scales(tmp_path, capsys):
    from sr_bench.bench import main as bench_main
    from sr_bench.models.common import UnsupportedScaleError

    with pytest.raises(ValueError, match="edsr-baseline: scale x5"):  # still a ValueError for callers
        models.create("edsr-baseline", scale=5)
    assert UnsupportedScaleError.exit_code == 2
    assert bench_main(["--model", "edsr-baseline", "--scale", "5", "--device", "cpu", "--updates", "1",
                       "--step-updates", "1", "--eval-images", "0", "--peak-tflops", "1",
                       "--out", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "x5" in err and "--scale 2, 3 or 4" in err
    assert not (tmp_path / "b.json").exists()


def test_an_unknown_option_is_still_a_type_error_with_a_usage_exit_code():
    with pytest.raises(TypeError, match="'blockz'") as e:
        models.create("edsr-baseline", scale=2, blockz=3)
    assert getattr(e.value, "exit_code", None) == 2
