"""BasicSR checkpoints exactly as BasicSR means them, checked against BasicSR's own forward.

``tests/data/basicsr_edsr_f8b2_x2_mean05.pth`` and ``.npz`` were made with BasicSR 1.4.2 itself
(``pip install basicsr==1.4.2`` in a separate environment, torch 2.14.1): two
``basicsr.archs.edsr_arch.EDSR(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, upscale=2,
res_scale=1, img_range=1., rgb_mean=(0.5, 0.5, 0.5))`` built after ``torch.manual_seed(1)`` and
``(2)``, saved as ``{'params': ..., 'params_ema': ...}`` (BasicSR's ``save_network`` layout); the
``.npz`` holds ``lr``, the 16x16 crop ``[100:116, 120:136]`` of Set5 ``LR_bicubic/X2/babyx2.png``,
and each network's output on ``lr / 255`` (float32, ``sr_params`` / ``sr_params_ema``).

Option files follow BasicSR's ``options/train/EDSR/train_EDSR_Mx2.yml`` and
``options/test/EDSR/test_EDSR_Mx2.yml`` (network_g, path.pretrain_network_g / param_key_g,
train.ema_decay, name).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sr_bench import evaluate, models
from sr_bench.errors import DataError, UsageError
from sr_bench.records import read_records
from sr_bench.weights import load_weights
from sr_bench.weights.basicsr_options import read_basicsr_options

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = Path(__file__).parent / "data"
CKPT = DATA / "basicsr_edsr_f8b2_x2_mean05.pth"
GOLDEN = np.load(DATA / "basicsr_edsr_f8b2_x2_mean05.npz")
TINY = {"blocks": 2, "filters": 8}
#: float32 outputs near 1 after ~6 convolutions of at most 72 products: a few ulp; measured 0
ATOL = 1e-5

TRAIN_YML = """\
# general settings (BasicSR options/train/EDSR/train_EDSR_Mx2.yml, with this run's values)
name: EDSR_f8b2_x2_mean05
model_type: SRModel
scale: 2
num_gpu: 0
manual_seed: 10

network_g:
  type: EDSR
  num_in_ch: 3
  num_out_ch: 3
  num_feat: 8
  num_block: 2
  upscale: 2
  res_scale: 1
  img_range: 1.
  rgb_mean: [0.5, 0.5, 0.5]

path:
  pretrain_network_g: ~
  strict_load_g: true
  resume_state: ~

train:
  ema_decay: 0.999
  optim_g:
    type: Adam
    lr: !!float 1e-4
  total_iter: 300000
"""


def lr_batch() -> torch.Tensor:
    return torch.from_numpy(GOLDEN["lr"]).permute(2, 0, 1)[None].float() / 255


def run(model: torch.nn.Module) -> np.ndarray:
    with torch.no_grad():
        return model(lr_batch())[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("key", ["params", "params_ema"])
def test_equals_basicsr_forward_exactly_when_the_options_are_given(key, caplog):
    model = models.create("edsr-baseline", scale=2, **TINY, rgb_mean=[0.5, 0.5, 0.5], img_range=1)
    with caplog.at_level("WARNING", logger="sr_bench"):
        info = load_weights(model, CKPT, param_key=key, model_options={"rgb_mean": [0.5] * 3, "img_range": 1})
    assert not caplog.records and info.format == "basicsr+basicsr-edsr"
    got, want = run(model), GOLDEN[f"sr_{key}"]
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    assert np.array_equal(np.round(got * 255).clip(0, 255), np.round(want * 255).clip(0, 255))  # the PNG BasicSR saves


def test_without_the_options_it_warns_and_is_far_off(caplog):
    model = models.create("edsr-baseline", scale=2, **TINY)
    with caplog.at_level("WARNING", logger="sr_bench"):
        load_weights(model, CKPT)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2, said  # which entry, and which mean/range
    assert "used 'params_ema'" in said[0] and "--param-key params" in said[0]
    assert "assumed rgb_mean=(0.4488, 0.4371, 0.4040) and img_range=255" in said[1]
    off = np.abs(run(model) - GOLDEN["sr_params_ema"]).max() * 255
    assert off > 20  # levels of 255 (measured 58.8)


def _write(tmp_path: Path, text: str, name: str = "train.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_options_file_gives_model_options_scale_and_param_key(tmp_path):
    net = read_basicsr_options(_write(tmp_path, TRAIN_YML))
    assert (net.model, net.scale, net.name, net.weights) == ("edsr-baseline", 2, "EDSR_f8b2_x2_mean05", None)
    assert net.options == {"blocks": 2, "filters": 8, "res_scale": 1.0, "rgb_mean": [0.5, 0.5, 0.5], "img_range": 1.0}
    assert net.param_key == "params_ema" and "ema_decay" in net.param_key_why  # what its validation ran
    test_yml = TRAIN_YML.replace("pretrain_network_g: ~", f"pretrain_network_g: {CKPT}").replace(
        "  ema_decay: 0.999\n", "")
    net = read_basicsr_options(_write(tmp_path, test_yml, "test.yml"))
    assert (net.weights, net.param_key) == (str(CKPT), "params")  # BasicSR's loader default
    net = read_basicsr_options(_write(tmp_path, test_yml.replace("strict_load_g: true", "param_key_g: params_ema"),
                                      "key.yml"))
    assert net.param_key == "params_ema" and net.param_key_why == "path.param_key_g"
    paper = TRAIN_YML.replace("num_feat: 8", "num_feat: 256").replace("num_block: 2", "num_block: 32").replace(
        "res_scale: 1", "res_scale: 0.1")
    assert read_basicsr_options(_write(tmp_path, paper, "edsr.yml")).model == "edsr"


@pytest.mark.parametrize("change,error,match", [
    (("type: EDSR", "type: SwinIR"), DataError, "network_g.type is 'SwinIR'; sr_bench reads BasicSR's EDSR only"),
    (("num_in_ch: 3", "num_in_ch: 1"), DataError, "network_g.num_in_ch is 1"),
    (("upscale: 2", "upscale: 4"), DataError, "scale is 2 but network_g.upscale is 4"),
    (("res_scale: 1", "res_scale: 1\n  window: 8"), DataError, "network_g has window, which BasicSR's EDSR"),
    (("rgb_mean: [0.5, 0.5, 0.5]", "rgb_mean: 0.5"), DataError, "network_g.rgb_mean is 0.5, not three numbers"),
    (("network_g:", "net_g:"), DataError, "no network_g section"),
    (("name: EDSR", "name: [EDSR"), DataError, r"not valid YAML at line 3 \(expected ',' or '\]'"),
])
def test_bad_options_files_are_refused_naming_the_field(tmp_path, change, error, match):
    with pytest.raises(error, match=match):
        read_basicsr_options(_write(tmp_path, TRAIN_YML.replace(*change)))


def test_missing_file_and_missing_pyyaml(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="nope.yml: no such file"):
        read_basicsr_options(tmp_path / "nope.yml")
    monkeypatch.setitem(__import__("sys").modules, "yaml", None)  # as if PyYAML were not installed
    with pytest.raises(UsageError, match="needs PyYAML: pip install pyyaml"):
        read_basicsr_options(_write(tmp_path, TRAIN_YML))


def test_evaluate_with_the_options_file_equals_explicit_options(tmp_path, data_root, capsys):
    weights = tmp_path / "experiments" / "EDSR_f8b2_x2_mean05" / "models" / "net_g_latest.pth"
    weights.parent.mkdir(parents=True)
    shutil.copy(CKPT, weights)
    yml = _write(tmp_path, TRAIN_YML)
    records = str(tmp_path / "records.jsonl")
    common = ["--datasets", "Set5", "--data-root", str(data_root), "--records", records, "--no-progress"]
    assert evaluate.main(["--basicsr-options", str(yml), *common]) == 2  # a training file names no weights
    assert "--weights experiments/EDSR_f8b2_x2_mean05/models/net_g_latest.pth" in capsys.readouterr().err
    assert evaluate.main(["--basicsr-options", str(yml), "--weights", str(weights), *common]) == 0
    assert "assumed" not in capsys.readouterr().err  # everything was stated
    explicit = ["--model", "edsr-baseline", "--weights", str(weights), "--option", "blocks=2", "--option", "filters=8",
                "--option", "rgb_mean=0.5,0.5,0.5", "--option", "img_range=1", "--param-key", "params_ema",
                "--scales", "2", "--label", "explicit"]
    assert evaluate.main([*explicit, *common]) == 0
    by_label = {r.label: r for r in read_records(records)}
    from_file, given = by_label["EDSR_f8b2_x2_mean05"], by_label["explicit"]  # the run's name is the label
    assert from_file.model_options["rgb_mean"] == [0.5, 0.5, 0.5] and from_file.model_options["img_range"] == 1.0
    assert from_file.model_options["param_key"] == given.model_options["param_key"] == "params_ema"
    assert [p["psnr"] for p in from_file.per_image] == [p["psnr"] for p in given.per_image]
    assert evaluate.main(["--basicsr-options", str(yml), "--weights", str(weights), "--scales", "4", *common]) == 2
    assert "describes an x2 network" in capsys.readouterr().err


def test_another_entry_under_the_same_label_is_refused(tmp_path, data_root, capsys):
    records = str(tmp_path / "records.jsonl")
    base = ["--model", "edsr-baseline", "--weights", str(CKPT), "--option", "blocks=2", "--option", "filters=8",
            "--option", "rgb_mean=[0.5,0.5,0.5]", "--option", "img_range=1", "--scales", "2", "--datasets", "Set5",
            "--data-root", str(data_root), "--records", records, "--label", "mine", "--no-progress"]
    assert evaluate.main([*base, "--param-key", "params"]) == 0
    assert evaluate.main([*base, "--param-key", "params_ema"]) == 2
    assert "label 'mine' already holds other results" in capsys.readouterr().err
