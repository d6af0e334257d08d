"""What a network returns is checked before it is scored or written: a float tensor of shape
(N, C, sH, sW) on the input's device with finite values, whole, tiled or self-ensembled; a failure
is one line naming the image. Imported factories and networks that raise or return the wrong
thing are one line with their own message; a network cannot corrupt its input for the next tile."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sr_bench import evaluate, inference, models, upscale
from sr_bench.data import open_dataset
from sr_bench.images import write_image
from sr_bench.inference import NetworkOutputError, prepare_model, super_resolve, super_resolve_modes
from sr_bench.models import external

pytestmark = pytest.mark.usefixtures("one_thread")


class Up(torch.nn.Module):
    """Nearest-neighbour upscaling times a learned scalar, misbehaving one way (``mode``)."""

    receptive_field = 2

    def __init__(self, mode: str = "ok") -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.mode = mode

    def forward(self, x: torch.Tensor, scale: int) -> object:
        y = F.interpolate(x, scale_factor=scale, mode="nearest") * self.w
        bad = {
            "nan": lambda: y * float("nan"),
            "inf": lambda: y - float("inf"),
            "short": lambda: y[..., :-1, :],
            "uint8": lambda: (y * 255).round().to(torch.uint8),
            "int64": lambda: (y * 255).round().long(),
            "bool": lambda: y > 0.5,
            "tuple": lambda: (y, y),
            "dict": lambda: {"out": y},
            "list": lambda: [y],
            "none": lambda: None,
            "3d": lambda: y[0],
            "one-channel": lambda: y[:, :1],
            "batch": lambda: torch.cat([y, y]),
            "meta": lambda: torch.empty(y.shape, device="meta"),
            "float64": lambda: y.double(),
        }
        return bad[self.mode]() if self.mode in bad else y


def _lr(h: int = 24, w: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# Every output is checked, with the image named


@pytest.mark.parametrize("mode, said", [
    ("nan", r"img\.png: the network's output holds 5,760 NaN of 5,760 values \(first at y=0, x=0 of channel 0\)"),
    ("inf", r"img\.png: the network's output holds 5,760 Inf of 5,760 values"),
    ("short", r"img\.png: the network returned shape \(1, 3, 47, 40\) for an input of \(1, 3, 24, 20\); "
              r"expected \(1, 3, 48, 40\)"),
    ("uint8", r"img\.png: the network returned uint8 values; the network must return float in 0\.\.1 "
              r"\(input_range option for 0\.\.255\)"),
    ("int64", r"returned int64 values; the network must return float in 0\.\.1"),
    ("bool", r"returned bool values; the network must return float"),
    ("tuple", r"img\.png: the network returned a tuple of 2 \(Tensor, Tensor\), not a tensor"),
    ("dict", r"returned a dict with keys \['out'\], not a tensor"),
    ("list", r"returned a list of 1 \(Tensor\), not a tensor"),
    ("none", r"returned None, not a tensor"),
    ("3d", r"returned shape \(3, 48, 40\) for an input of \(1, 3, 24, 20\); expected \(1, 3, 48, 40\)"),
    ("one-channel", r"returned shape \(1, 1, 48, 40\) .* expected \(1, 3, 48, 40\) \(x2, the input's batch and "
                    r"channels\)"),
    ("batch", r"returned shape \(2, 3, 48, 40\)"),
    ("meta", r"returned a tensor on meta for an input on cpu"),
])
def test_a_bad_output_is_refused_naming_the_image(mode, said):
    net = prepare_model(Up(mode))
    with pytest.raises(NetworkOutputError, match=said) as e:
        super_resolve(net, _lr(), 2, name="img.png")
    assert "\n" not in str(e.value) and e.value.exit_code == 1


@pytest.mark.parametrize("mode", ["nan", "short", "uint8", "tuple"])
@pytest.mark.parametrize("how", [
    {"tile": 16}, {"self_ensemble": True, "batch_transforms": True}, {"self_ensemble": True, "batch_transforms": False},
    {"self_ensemble": True, "tile": 16},
], ids=["tiled", "ensemble-batched", "ensemble-sequential", "ensemble-tiled"])
def test_tiles_and_self_ensemble_are_checked_too(mode, how):
    with pytest.raises(NetworkOutputError, match=r"^img\.png: the network"):
        super_resolve(prepare_model(Up(mode)), _lr(), 2, name="img.png", **how)


def test_non_finite_values_are_counted_and_located_in_the_image_frame():
    class OneNaN(Up):
        """One NaN in its first forward's first image: the plain forward, or the self-ensemble's
        identity transform (the first of :data:`TRANSFORMS`, batched or not)."""

        calls = 0

        def forward(self, x, scale):
            y = super().forward(x, scale).clone()
            if self.calls == 0:
                y[0, 1, 3, 5] = float("nan")
            self.calls += 1
            return y

    with pytest.raises(NetworkOutputError, match=r"output holds 1 NaN of 5,760 values \(first at y=3, x=5 of "
                                                 r"channel 1\)"):
        super_resolve(prepare_model(OneNaN()), _lr(), 2)
    for batched in (True, False):
        with pytest.raises(NetworkOutputError, match=r"self-ensemble output holds 1 NaN .*y=3, x=5 of channel 1"):
            super_resolve_modes(prepare_model(OneNaN()), _lr(), 2, (True,), batch_transforms=batched)


def test_the_finite_check_is_one_reduction_per_image_not_per_tile(monkeypatch):
    calls = []
    real = inference.check_finite_output
    monkeypatch.setattr(inference, "check_finite_output", lambda outs, dtype: calls.append(len(outs)) or real(outs))
    super_resolve_modes(prepare_model(Up()), _lr(48, 40), 2, (False, True), tile=16)
    assert calls == [2]  # 9 tiles x 8 transforms, both outputs checked in one call


def test_the_advice_for_non_finite_values_depends_on_the_dtype():
    y = {False: torch.full((1, 3, 4, 4), float("inf"))}
    with pytest.raises(NetworkOutputError, match=r"float16 overflows above 65504: run it in float32 or bfloat16"):
        inference.check_finite_output(y, torch.float16)
    with pytest.raises(NetworkOutputError, match=r"diverged, or weights of another model\?"):
        inference.check_finite_output(y, torch.float32)


def test_float64_output_is_scored_as_its_float32_values():
    lr = _lr()
    got = super_resolve(prepare_model(Up("float64")), lr, 2)
    want = super_resolve(prepare_model(Up()), lr, 2)
    assert got.dtype == torch.float32 and torch.equal(got, want)


class HalvesItsInput(Up):
    """Uses its input, then halves it in place (``x -= mean`` style code)."""

    def forward(self, x, scale):
        y = super().forward(x, scale)
        x.mul_(0.5)
        return y


@pytest.mark.parametrize("how", [{}, {"tile": 16}, {"self_ensemble": True, "batch_transforms": False},
                                 {"self_ensemble": True, "tile": 24}])
def test_a_network_that_changes_its_input_in_place_changes_nothing(how):
    """Without channels_last the input is passed as it is: the network must still get its own copy,
    so the caller's image, the next tile and the next transform are untouched."""
    lr = _lr(40, 24)
    before = lr.clone()
    got = super_resolve(prepare_model(HalvesItsInput(), channels_last=False), lr, 2, **how)
    want = super_resolve(prepare_model(Up(), channels_last=False), before, 2, **how)
    assert torch.equal(lr, before) and torch.equal(got, want)


# ---------------------------------------------------------------------------------------------
# Through the commands: one line naming the image, exit 1, nothing written

MODULE = "sr_bench_test_hostile_net"
NETWORK = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F


    class Up(torch.nn.Module):
        def __init__(self, scale=2, mode="ok"):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))
            self.scale, self.mode = scale, mode

        def forward(self, x):
            y = F.interpolate(x, scale_factor=self.scale, mode="nearest") * self.w
            if self.mode == "raises":
                raise RuntimeError("mat1 and mat2 shapes\\ncannot be multiplied")
            return {"nan": y * float("nan"), "short": y[..., :-1, :]}.get(self.mode, y)


    def build(scale=2, mode="ok"):
        return Up(scale, mode)


    def build_nan(scale=2):
        return Up(scale, "nan")


    def raises(scale=2):
        raise ValueError("width must be even")


    def needs_width(width, scale=2):
        return Up(scale)


    def returns_str(scale=2):
        return "not a network"


    def returns_class(scale=2):
        return Up


    def chatty(scale=2):
        print("building the network, chattily")
        return Up(scale)
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / f"{MODULE}.py").write_text(NETWORK)
    (tmp_path / "sr_bench_test_broken_import.py").write_text("raise RuntimeError('CUDA_HOME is not set')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in (MODULE, "sr_bench_test_broken_import"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield MODULE
    for name in (MODULE, "sr_bench_test_broken_import"):
        sys.modules.pop(name, None)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_image(folder / f"{name}.png", rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
    return folder


def _evaluate(capsys, tmp_path, images, model: str, *extra: str) -> tuple[int, str, str]:
    code = evaluate.main(["--model", model, "--weights", "random", "--datasets", str(images), "--scales", "2",
                          "--no-progress", "--records", str(tmp_path / "out" / "r.jsonl"), *extra])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.parametrize("mode, extra, said", [
    ("nan", (), "the network's output holds 5,760 NaN of 5,760 values"),
    ("short", (), "the network returned shape (1, 3, 47, 40) for an input of (1, 3, 24, 20)"),
    ("nan", ("--tile", "16", "--option", "receptive_field=2"), "the network's output holds 5,760 NaN"),
    # the first tile: 16 x 16 LR pixels plus 2 of overlap where the image goes on
    ("short", ("--tile", "16", "--option", "receptive_field=2"), "returned shape (1, 3, 27, 24) for an input of "
                                                                 "(1, 3, 14, 12)"),
    ("nan", ("--self-ensemble",), "the network's self-ensemble output holds 5,760 NaN"),
    ("short", ("--self-ensemble",), "returned shape (4, 3, 47, 40) for an input of (4, 3, 24, 20)"),  # 4 at once
], ids=["nan", "short", "nan-tiled", "short-tiled", "nan-ensemble", "short-ensemble"])
def test_evaluate_names_the_model_and_image_and_records_nothing(user_module, images, tmp_path, capsys, mode, extra,
                                                                 said):
    code, _, err = _evaluate(capsys, tmp_path, images, f"{MODULE}:build", "--option", f"mode={mode}", *extra)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith(f"error: {MODULE}:build x2 on {images / 'a.png'}: ")
    assert said in lines[0]
    assert not (tmp_path / "out" / "r.jsonl").exists()


def test_upscale_names_the_file_and_writes_no_image(user_module, images, tmp_path, capsys):
    torch.save({"w": torch.ones(1)}, tmp_path / "w.pt")
    code = upscale.main(["--model", f"{MODULE}:build_nan", "--weights", str(tmp_path / "w.pt"), "--scale", "2",
                         str(images / "a.png"), "--out", str(tmp_path / "sr")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"error: {MODULE}:build_nan x2 on {images / 'a.png'}: the network's output holds 23,040 NaN" in err
    assert not (tmp_path / "sr" / "a_x2.png").exists()


def test_validation_during_training_refuses_a_nan_network_by_name(images):
    """``evaluate_model`` (the trainer's validation) runs the same check."""
    with pytest.raises(NetworkOutputError, match=r"model x2 on .*a\.png: the network's output holds"):
        evaluate.evaluate_model(prepare_model(Up("nan")), open_dataset(str(images)), [2])


# ---------------------------------------------------------------------------------------------
# Imported factories and networks whose own code fails


def test_a_factory_that_raises_is_one_line_with_its_message(user_module, images, tmp_path, capsys):
    code, _, err = _evaluate(capsys, tmp_path, images, f"{MODULE}:raises")
    assert code == 1 and err.strip().splitlines()[-1] == (
        f"error: factory {MODULE}:raises raised ValueError: width must be even; run with --debug for its traceback")
    with pytest.raises(external.ExternalCodeError) as e:  # --debug: the traceback, back to the user's own error
        evaluate.main(["--debug", "--model", f"{MODULE}:raises", "--weights", "random", "--datasets", str(images),
                       "--scales", "2", "--records", str(tmp_path / "r.jsonl")])
    assert isinstance(e.value.__cause__, ValueError)


@pytest.mark.parametrize("factory, said", [
    ("returns_str", "returned str, not a torch.nn.Module instance"),
    ("returns_class", "returned the class Up, not a torch.nn.Module instance"),
])
def test_a_factory_that_returns_no_network_names_what_it_returned(user_module, images, tmp_path, capsys, factory,
                                                                    said):
    code, _, err = _evaluate(capsys, tmp_path, images, f"{MODULE}:{factory}")
    assert code == 1 and f"error: factory {MODULE}:{factory} {said}" in err and err.count("error:") == 1


def test_a_factory_argument_not_given_is_a_usage_error(user_module, images, tmp_path, capsys):
    code, _, err = _evaluate(capsys, tmp_path, images, f"{MODULE}:needs_width")
    assert code == 2 and "missing a required argument: 'width'" in err and "pass --option width=VALUE" in err


def test_a_module_that_raises_on_import_is_one_line(user_module, images, tmp_path, capsys):
    code, _, err = _evaluate(capsys, tmp_path, images, "sr_bench_test_broken_import:build")
    assert code == 1 and err.count("error:") == 1
    assert ("importing module 'sr_bench_test_broken_import' raised RuntimeError: CUDA_HOME is not set; run with "
            "--debug") in err


def test_a_typo_in_the_attribute_suggests_the_names_there(user_module):
    with pytest.raises(external.ExternalModelError, match=r"no attribute 'biuld'; did you mean 'build'"):
        models.get_spec(f"{MODULE}:biuld")


def test_a_forward_that_raises_names_the_network_and_the_image(user_module, images, tmp_path, capsys):
    code, _, err = _evaluate(capsys, tmp_path, images, f"{MODULE}:build", "--option", "mode=raises")
    assert code == 1 and err.count("error:") == 1
    assert (f"error: {MODULE}:build x2 on {images / 'a.png'}: network {MODULE}:build raised RuntimeError: mat1 and "
            f"mat2 shapes cannot be multiplied; run with --debug for its traceback") in err


def test_what_a_factory_prints_goes_to_stderr(user_module, images, tmp_path, capsys):
    code, out, err = _evaluate(capsys, tmp_path, images, f"{MODULE}:chatty")
    assert code == 0 and "chattily" not in out and "chattily" in err and out.startswith("| label")


# ---------------------------------------------------------------------------------------------
# A data root that is a file is named as one


def test_a_data_root_that_is_a_file_or_nothing_says_so(tmp_path, monkeypatch):
    afile = tmp_path / "datasets.tar"
    afile.write_bytes(b"")
    monkeypatch.setenv("SR_BENCH_DATA", str(afile))
    with pytest.raises(FileNotFoundError, match=rf"Set5: the data root {afile} \(SR_BENCH_DATA\) is a file, not a "
                                                rf"folder; pass the folder that holds Set5/HR"):
        open_dataset("Set5")
    with pytest.raises(FileNotFoundError, match=r"the data root .*nowhere \(--data-root\) does not exist.*To get it"):
        open_dataset("Set5", tmp_path / "nowhere")
