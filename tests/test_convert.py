"""Foreign checkpoints through the one converter table: every format loads strictly into a tiny
model, the format is said, BasicSR's EDSR computes what BasicSR computes, a round trip through
BasicSR's layout is exact on a real image, and NaN/Inf checkpoints are refused."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tiny_nets import tiny

from sr_bench.images import read_image, to_tensor
from sr_bench.weights import (
    CONVERTERS,
    NonFiniteWeightsError,
    WeightsError,
    export_safetensors,
    load_weights,
    read_state_dict,
    to_format,
)

pytestmark = pytest.mark.usefixtures("one_thread")

DIV2K_MEAN = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)  # BasicSR's EDSR default rgb_mean


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def basicsr_state(blocks, filters, scale, seed=0):
    """A BasicSR EDSR state_dict written from its documented key names (archs/edsr_arch.py)."""
    g = torch.Generator().manual_seed(seed)

    def conv(cin, cout):
        return torch.randn(cout, cin, 3, 3, generator=g) * 0.1, torch.randn(cout, generator=g) * 0.01

    state = {}

    def put(name, cin, cout):
        state[f"{name}.weight"], state[f"{name}.bias"] = conv(cin, cout)

    put("conv_first", 3, filters)
    for i in range(blocks):
        put(f"body.{i}.conv1", filters, filters)
        put(f"body.{i}.conv2", filters, filters)
    put("conv_after_body", filters, filters)
    stages = [3] if scale == 3 else [2] * int(math.log2(scale))
    for j, f in enumerate(stages):
        put(f"upsample.{2 * j}", filters, f * f * filters)
    put("conv_last", filters, 3)
    return state


def basicsr_forward(state, x, scale, blocks, res_scale=1.0, img_range=255.0, rgb_mean=DIV2K_MEAN):
    """BasicSR's EDSR forward, written from its description with functional ops only."""
    def conv(h, name):
        return F.conv2d(h, state[f"{name}.weight"], state[f"{name}.bias"], padding=1)

    mean = torch.as_tensor(rgb_mean, dtype=x.dtype).view(1, 3, 1, 1)
    h = (x - mean) * img_range
    h = conv(h, "conv_first")
    r = h
    for i in range(blocks):
        r = r + res_scale * conv(F.relu(conv(r, f"body.{i}.conv1")), f"body.{i}.conv2")
    r = conv(r, "conv_after_body") + h
    stages = [3] if scale == 3 else [2] * int(math.log2(scale))
    for j, f in enumerate(stages):
        r = F.pixel_shuffle(conv(r, f"upsample.{2 * j}"), f)
    return conv(r, "conv_last") / img_range + mean


# ---------------------------------------------------------------------------------------------
# Every format, written by hand as its tool writes it


def written_as(fmt, state):
    if fmt == "state_dict":
        return state
    if fmt == "sr_bench-checkpoint":
        return {"model": state, "step": 7}
    if fmt == "lightning":
        return {"state_dict": {"model." + k: v for k, v in state.items()}, "epoch": 3, "global_step": 90}
    if fmt == "dataparallel":
        return {"module." + k: v for k, v in state.items()}
    if fmt == "lightning+dataparallel":  # a Lightning module wrapping a DDP model
        return {"state_dict": {"model.module." + k: v for k, v in state.items()}, "epoch": 1}
    if fmt == "compiled":
        return {"_orig_mod." + k: v for k, v in state.items()}
    raise AssertionError(fmt)


@pytest.mark.parametrize(
    "fmt,said",
    [("state_dict", "state_dict"), ("sr_bench-checkpoint", "sr_bench-checkpoint"), ("lightning", "lightning"),
     ("dataparallel", "dataparallel"), ("lightning+dataparallel", "lightning+dataparallel"),
     ("compiled", "dataparallel")],
)
def test_each_format_loads_strictly_and_is_said(tmp_path, caplog, fmt, said):
    src, dst = tiny(seed=1), tiny(seed=2)
    path = tmp_path / "w.pt"
    torch.save(written_as(fmt, src.state_dict()), path)
    x = torch.rand(1, 3, 6, 5)
    assert not torch.equal(src(x), dst(x))
    with caplog.at_level("INFO", logger="sr_bench.weights"):
        info = load_weights(dst, path)
    assert info.format == said
    assert torch.equal(src(x), dst(x))  # exact: loading copies every value; one class, the same kernels
    assert f"({said}," in caplog.text  # the loader says what it recognised
    if fmt == "lightning":
        assert info.metadata == {"epoch": 3, "global_step": 90} and "stripped the 'model.' prefix" in caplog.text
    if fmt == "dataparallel":
        assert "stripped the 'module.' prefix" in caplog.text


def test_exported_safetensors_and_foreign_layout_inside_safetensors(tmp_path):
    src = tiny(seed=3)
    info = load_weights(tiny(seed=4), export_safetensors(src, tmp_path / "a.safetensors"))
    assert info.format == "safetensors"
    wrapped = {"module." + k: v for k, v in src.state_dict().items()}
    dst = tiny(seed=5)
    path = export_safetensors(wrapped, tmp_path / "b.safetensors")
    assert load_weights(dst, path).format == "safetensors+dataparallel"
    assert same_weights(src, dst)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_basicsr_edsr_computes_what_basicsr_computes(tmp_path, scale):
    state = basicsr_state(blocks=2, filters=8, scale=scale, seed=scale)
    path = tmp_path / "basicsr.pth"
    torch.save({"params": state}, path)
    model = tiny(scale=scale, seed=9)
    assert load_weights(model, path).format == "basicsr+basicsr-edsr"
    x = torch.rand(1, 3, 7, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = model(x), basicsr_forward(state, x, scale, blocks=2)
    assert want.std() > 0.01
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)


def test_basicsr_prefers_params_ema_and_says_so_at_default_verbosity(tmp_path, caplog):
    ema, plain = basicsr_state(2, 8, 2, seed=1), basicsr_state(2, 8, 2, seed=2)
    path = tmp_path / "net_g_latest.pth"
    torch.save({"params": plain, "params_ema": ema}, path)
    model = tiny()
    with caplog.at_level("WARNING", logger="sr_bench.weights"):
        info = load_weights(model, path)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("holds 'params' and 'params_ema': used 'params_ema'" in m and "--param-key params" in m
               and str(path) in m for m in warned), warned
    assert info.metadata["param_key"] == "params_ema"
    assert torch.equal(model.head[0].weight, ema["conv_first.weight"])
    assert torch.equal(model.body[2].bias, ema["conv_after_body.bias"])


@pytest.mark.parametrize("key", ["params", "params_ema"])
def test_param_key_picks_the_entry_without_a_warning(tmp_path, caplog, key):
    states = {"params": basicsr_state(2, 8, 2, seed=1), "params_ema": basicsr_state(2, 8, 2, seed=2)}
    torch.save(states, tmp_path / "net_g.pth")
    model = tiny(rgb_mean=(0.5, 0.5, 0.5))  # options given: no assumption about the mean either
    with caplog.at_level("WARNING", logger="sr_bench.weights"):
        info = load_weights(model, tmp_path / "net_g.pth", param_key=key)
    assert not caplog.records, caplog.text
    assert info.metadata["param_key"] == key
    assert torch.equal(model.head[0].weight, states[key]["conv_first.weight"])


def test_param_key_that_the_file_lacks_or_cannot_use_is_refused(tmp_path):
    torch.save({"params": basicsr_state(2, 8, 2)}, tmp_path / "only.pth")
    with pytest.raises(WeightsError, match=r"only.pth: no entry 'params_ema' \(param key\); .* holds 'params'"):
        load_weights(tiny(), tmp_path / "only.pth", param_key="params_ema")
    torch.save(tiny().state_dict(), tmp_path / "plain.pt")
    with pytest.raises(WeightsError, match="plain.pt: param key 'params' given, but the file holds one state_dict"):
        load_weights(tiny(), tmp_path / "plain.pt", param_key="params")


@pytest.mark.parametrize("rgb_mean,img_range", [((0.5, 0.5, 0.5), 1.0), ((0.5, 0.5, 0.5), 255.0),
                                                ((0.4488, 0.4371, 0.4040), 1.0), ((0.3, 0.6, 0.2), 100.0)])
def test_basicsr_mean_and_range_come_from_the_model_options(tmp_path, caplog, rgb_mean, img_range):
    """BasicSR keeps rgb_mean/img_range out of its files: built with them, the model computes
    BasicSR's forward; built without them, it does not, and the loader says what it assumed."""
    state = basicsr_state(blocks=2, filters=8, scale=2, seed=4)
    torch.save({"params": state}, tmp_path / "b.pth")
    x = torch.rand(1, 3, 9, 7, generator=torch.Generator().manual_seed(2))
    want = basicsr_forward(state, x, 2, blocks=2, img_range=img_range, rgb_mean=rgb_mean)
    given, assumed = tiny(rgb_mean=list(rgb_mean), img_range=img_range), tiny()
    with caplog.at_level("WARNING", logger="sr_bench.weights"):
        load_weights(given, tmp_path / "b.pth")
    assert not caplog.records, caplog.text
    with caplog.at_level("WARNING", logger="sr_bench.weights"):
        load_weights(assumed, tmp_path / "b.pth")
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "assumed rgb_mean=(0.4488, 0.4371, 0.4040) and img_range=255 (BasicSR's EDSR defaults)" in warning
    assert "--option rgb_mean=R,G,B --option img_range=N" in warning and "--basicsr-options" in warning
    with torch.no_grad():
        got, wrong = given(x), assumed(x)
    # float32: (x - mean) * r vs x * r - r * mean, then ~20 layers of 8-wide sums: a few ulp of 255
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)
    assert (wrong - want).abs().max() > 0.02  # more than 5 levels of 255 off: the defaults are not these values


@pytest.mark.parametrize("given,said", [
    ({}, "assumed rgb_mean=(0.4488, 0.4371, 0.4040) and img_range=255 ("),
    ({"rgb_mean": [0.5, 0.5, 0.5]}, "assumed img_range=255 ("),
    ({"img_range": 1}, "assumed rgb_mean=(0.4488, 0.4371, 0.4040) ("),
    ({"rgb_range": 255, "rgb_mean": "0.4488,0.4371,0.4040"}, None),  # both stated, even at the defaults
])
def test_the_warning_names_exactly_the_values_not_given(tmp_path, caplog, given, said):
    torch.save({"params": basicsr_state(2, 8, 2)}, tmp_path / "b.pth")
    with caplog.at_level("WARNING", logger="sr_bench.weights"):
        load_weights(tiny(**given), tmp_path / "b.pth", model_options=given)
    warned = [r.getMessage() for r in caplog.records]
    assert (warned == []) if said is None else (len(warned) == 1 and said in warned[0]), warned


def test_mean_options_are_checked():
    with pytest.raises(ValueError, match=r"rgb_mean='0.5,0.5': expected three numbers in 0..1"):
        tiny(rgb_mean="0.5,0.5")
    with pytest.raises(ValueError, match=r"rgb_mean=\[128, 128, 128\]: expected three numbers in 0..1"):
        tiny(rgb_mean=[128, 128, 128])
    with pytest.raises(ValueError, match="img_range=0: expected a positive number"):
        tiny(img_range=0)
    with pytest.raises(ValueError, match="rgb_range=2 and img_range=1 disagree"):
        tiny(rgb_range=2, img_range=1)
    text = tiny(rgb_mean="0.5,0.25,0.125", rgb_range=1)  # the command-line form of the value
    assert text.sub_mean.bias.tolist() == [-0.5, -0.25, -0.125] and text.rgb_range == 1.0


def test_round_trip_through_basicsr_is_exact_on_a_real_image(tmp_path, data_root):
    src = tiny(scale=3, seed=11, res_scale=0.1)
    path = tmp_path / "as_basicsr.pth"
    saved = to_format(src.state_dict(), "basicsr+basicsr-edsr")
    assert set(saved) == {"params"} and "conv_after_body.weight" in saved["params"]
    assert not any(k.startswith(("sub_mean", "add_mean")) for k in saved["params"])  # BasicSR keeps the mean outside
    torch.save(saved, path)
    dst = tiny(scale=3, seed=12, res_scale=0.1)
    assert load_weights(dst, path).format == "basicsr+basicsr-edsr"
    lr = to_tensor(read_image(sorted((data_root / "Set5" / "HR").iterdir())[0]))[..., :40, :48]
    with torch.no_grad():
        assert torch.equal(src(lr), dst(lr))


@pytest.mark.parametrize("fmt", [c for c in CONVERTERS.names() if CONVERTERS.get(c).from_sr_bench is not None])
def test_every_writable_format_round_trips(tmp_path, fmt):
    fmt = "basicsr+basicsr-edsr" if fmt in ("basicsr", "basicsr-edsr") else fmt
    src, dst = tiny(seed=13), tiny(seed=14)
    torch.save(to_format(src.state_dict(), fmt), tmp_path / "w.pt")
    assert load_weights(dst, tmp_path / "w.pt").format == fmt
    assert same_weights(src, dst)


def test_basicsr_cannot_hold_another_mean():
    m = tiny()
    with torch.no_grad():
        m.sub_mean.bias.zero_()
    with pytest.raises(WeightsError, match="sub_mean.bias differs from the DIV2K mean"):
        to_format(m.state_dict(), "basicsr+basicsr-edsr")


def test_a_network_with_basicsr_names_gets_them_unchanged(tmp_path):
    """Converting stops when the keys already fit the model (e.g. BasicSR's own class via --model)."""

    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_first = torch.nn.Conv2d(3, 4, 3)
            self.conv_after_body = torch.nn.Conv2d(4, 4, 3)
            self.conv_last = torch.nn.Conv2d(4, 3, 3)

    src, dst = Named(), Named()
    torch.save({"params_ema": src.state_dict()}, tmp_path / "n.pth")
    assert load_weights(dst, tmp_path / "n.pth").format == "basicsr"
    assert torch.equal(dst.conv_last.weight, src.conv_last.weight)


def test_unknown_container_lists_the_formats(tmp_path):
    torch.save({"weights": {"a": torch.ones(1)}, "epoch": 1}, tmp_path / "x.pt")
    with pytest.raises(WeightsError, match="not a state_dict.*basicsr.*lightning"):
        read_state_dict(tmp_path / "x.pt")


# ---------------------------------------------------------------------------------------------
# Non-finite weights


def test_nan_and_inf_are_refused_naming_tensors_and_file(tmp_path):
    state = tiny().state_dict()
    state["body.0.body.0.weight"][0, 0, 0, 0] = float("nan")
    state["tail.1.bias"][1] = float("inf")
    path = tmp_path / "diverged.pt"
    torch.save({"model": state, "step": 5}, path)
    model = tiny(seed=1)
    before = model.head[0].weight.clone()
    with pytest.raises(NonFiniteWeightsError) as e:
        load_weights(model, path)
    msg = str(e.value)
    assert str(path) in msg and "2 tensor(s) hold NaN or Inf" in msg
    assert "body.0.body.0.weight" in msg and "tail.1.bias" in msg and "head.0.weight" not in msg
    assert torch.equal(model.head[0].weight, before)  # nothing loaded
    assert NonFiniteWeightsError.exit_code == 1


def test_many_non_finite_tensors_show_the_first_few_and_the_count(tmp_path):
    state = {f"t{i}": torch.full((2,), float("nan")) for i in range(8)}
    state["ok"] = torch.ones(2)
    state["steps"] = torch.tensor([3])  # integer tensors are never non-finite
    export_safetensors(state, tmp_path / "bad.safetensors")
    with pytest.raises(NonFiniteWeightsError, match=r"8 tensor\(s\).*t0, t1, t2, t3, t4 and 3 more"):
        read_state_dict(tmp_path / "bad.safetensors")
