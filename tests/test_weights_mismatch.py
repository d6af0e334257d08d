"""A checkpoint that does not fit is explained by what differs: the key names (at most five, then
a count), the shapes, the kinds of number; a whole other architecture is named only when the
suggested model has exactly the checkpoint's keys and shapes. Integer-typed weights are refused."""

from __future__ import annotations

import pytest
import torch
from tiny_nets import meta, tiny

from sr_bench.weights import (
    WeightsMismatchError,
    check_state_dict,
    describe_state_dict,
    key_differences,
    load_weights,
    partial_load,
)
from sr_bench.weights.describe import suggest_create

pytestmark = pytest.mark.usefixtures("one_thread")


def _refusal(model, state) -> str:
    with pytest.raises(WeightsMismatchError) as e:
        check_state_dict(model, state, what="checkpoint x.pt")
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------------------------
# Kinds of number


def test_integer_typed_weights_are_refused_naming_the_tensors(tmp_path):
    good = tiny().state_dict()
    path = tmp_path / "int.pt"
    torch.save({k: (v * 100).round().long() for k, v in good.items()}, path)
    model = tiny(seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsMismatchError) as e:
        load_weights(model, path)
    msg = str(e.value)
    n = len(good)
    assert msg.startswith(f"checkpoint int.pt: {n} tensor(s) of another kind: sub_mean.weight int64 vs model "
                          f"float32, sub_mean.bias int64 vs model float32, head.0.weight int64 vs model float32 and "
                          f"{n - 3} more; weights cast to integers have lost their values")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing loaded


def test_one_bool_tensor_is_refused_and_float16_weights_load():
    good = tiny().state_dict()
    msg = _refusal(tiny(), {**good, "tail.1.bias": good["tail.1.bias"] > 0})
    assert "1 tensor(s) of another kind: tail.1.bias bool vs model float32" in msg
    model = tiny(seed=3)
    check_state_dict(model, {k: v.half() for k, v in good.items()})  # another float type converts: accepted
    model.load_state_dict({k: v.half() for k, v in good.items()})
    assert torch.equal(model.state_dict()["head.0.weight"], good["head.0.weight"].half().float())


def test_a_partial_load_refuses_integer_weights_too():
    x2 = tiny(scale=2).state_dict()
    with pytest.raises(WeightsMismatchError, match=r"both are 2 residual blocks.*tensor\(s\) of another kind: "
                                                   r"sub_mean.weight int64"):
        partial_load(tiny(scale=2), {k: v.long() for k, v in x2.items()})


def test_a_model_with_an_integer_buffer_loads_its_own_weights():
    class Counted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)
            self.register_buffer("steps", torch.tensor(7))

    src, dst = Counted(), Counted()
    check_state_dict(dst, src.state_dict())
    assert key_differences(dst.state_dict(), {**src.state_dict(), "steps": torch.tensor(7.0)}).kind == ["steps"]


# ---------------------------------------------------------------------------------------------
# Keys and shapes: named, no guess


def test_an_extra_key_is_named_and_the_architecture_described_once():
    msg = _refusal(tiny(), {**tiny().state_dict(), "extra.weight": torch.zeros(2)})
    assert msg == ("checkpoint x.pt does not fit the model (2 residual blocks x 8 filters, x2 upsampler (EDSR-style, "
                   "no BN)) [1 unexpected key(s), not in the model: extra.weight]")


def test_a_missing_key_is_named_without_a_guess_at_the_block_count():
    state = meta("edsr-baseline", scale=2).state_dict()
    del state["body.3.body.0.weight"]  # what describe_state_dict counts blocks by: 15 of them now
    assert describe_state_dict(state).blocks == 15 and suggest_create(describe_state_dict(state)) is not None
    msg = _refusal(meta("edsr-baseline", scale=2), state)
    assert "blocks=" not in msg and "did you mean" not in msg and "15" not in msg
    assert msg.endswith("[1 model key(s) missing from the checkpoint: body.3.body.0.weight]")


def test_a_5x5_head_is_a_shape_difference_not_srresnet():
    good = tiny().state_dict()
    state = {**good, "head.0.weight": torch.zeros(8, 3, 5, 5)}
    assert describe_state_dict(state).family == "edsr"
    msg = _refusal(tiny(), state)
    assert "SRResNet" not in msg and "srresnet" not in msg
    assert msg.endswith("[1 other shape(s): head.0.weight (8, 3, 5, 5) vs model (8, 3, 3, 3)]")


def test_many_differences_name_five_then_count():
    good = tiny().state_dict()
    state = {k: v for k, v in good.items() if not k.startswith("body.")}
    msg = _refusal(tiny(), state)
    gone = [k for k in good if k.startswith("body.")]
    assert f"[{len(gone)} model key(s) missing from the checkpoint: {', '.join(gone[:5])} and {len(gone) - 5} more]" \
        in msg


def test_a_whole_other_architecture_is_still_named_with_a_suggestion_that_fits():
    msg = _refusal(meta("edsr-baseline", scale=2), meta("edsr", scale=4).state_dict())
    assert msg.startswith("checkpoint x.pt has 32 residual blocks x 256 filters, x4 upsampler (EDSR-style, no BN); "
                          "the model has 16 residual blocks x 64 filters, x2 upsampler (EDSR-style, no BN): did you "
                          "mean create('edsr', scale=4)?")
    assert len(msg) < 600  # one example key per kind of difference, not a wall of keys
    msg = _refusal(meta("edsr-baseline", scale=4), meta("srresnet", scale=4).state_dict())
    assert "SRResNet-style" in msg and "create('srresnet', scale=4)" in msg


def test_a_partial_load_with_the_same_architecture_describes_it_once():
    x2 = tiny(scale=2).state_dict()
    del x2["body.0.body.0.bias"]
    with pytest.raises(WeightsMismatchError) as e:
        partial_load(tiny(scale=4), x2)
    msg = str(e.value)
    assert msg.count("residual blocks") == 2  # the x2 checkpoint and the x4 model differ in their upsamplers
    assert "1 model key(s) missing from the checkpoint: body.0.body.0.bias" in msg
    x4 = tiny(scale=4).state_dict()
    del x4["body.0.body.0.bias"]
    with pytest.raises(WeightsMismatchError) as e:
        partial_load(tiny(scale=4), x4)
    assert str(e.value).count("residual blocks") == 1 and "both are" in str(e.value)
