"""Comparison figures (sr_bench.figure), checked by reading the PNG back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sr_bench import figure, models
from sr_bench.data import Dataset, open_dataset
from sr_bench.evaluate import evaluate, load_candidates
from sr_bench.images import to_image, to_tensor, write_image
from sr_bench.inference import prepare_model, super_resolve
from sr_bench.records import Record, write_records

SCALE = 4
BOX = (180, 100, 40, 30)  # chelsea is 451x300: 448x300 at x4


def _record(label: str, **kw) -> Record:
    return Record(model=kw.pop("model", "sr-folder"), weights=None, dataset="embedded", scale=SCALE,
                  self_ensemble=False, protocol="paper", psnr=0.0, ssim=0.0, n_images=1,
                  per_image=[{"image": "chelsea", "psnr": 0.0, "ssim": 0.0}], label=label, **kw)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, one_thread):
    tmp = tmp_path_factory.mktemp("figure")
    ds = open_dataset("embedded")
    i = [r.stem for r in ds.images].index("chelsea")
    hr = ds.hr(i)
    lr = ds.lr(i, SCALE)
    # an SR folder (sr_bench layout) holding a noisy copy of the HR
    noisy = np.clip(hr[:300, :448].astype(int) + np.random.default_rng(0).integers(-9, 10, (300, 448, 3)), 0, 255)
    write_image(tmp / "sr" / "embedded" / "x4" / "chelsea.png", noisy.astype(np.uint8))
    # a weights file of an (untrained, seeded) EDSR baseline, as a model record names it
    torch.manual_seed(1)
    net = models.create("edsr-baseline", scale=SCALE)
    torch.save(net.state_dict(), tmp / "net.pt")
    records = [
        _record("my-folder", source="sr-folder", sr_dir=str(tmp / "sr"), model_options={"sr_layout": "sr_bench"}),
        _record("my-net", model="edsr-baseline", weights_source=str(tmp / "net.pt")),
        _record("gone", model="edsr-baseline", weights_source=str(tmp / "missing.pt")),
    ]
    write_records(tmp / "records.jsonl", records)
    out = tmp / "fig.png"
    argv = ["--image", "embedded/chelsea", "--box", *map(str, BOX), "--labels", "bicubic", "my-folder", "my-net",
            "--scale", str(SCALE), "--records", str(tmp / "records.jsonl"), "--out", str(out), "--device", "cpu",
            "--zoom", "5"]
    assert figure.main(argv) == 0
    with torch.inference_mode():
        bicubic = to_image(super_resolve(models.create("bicubic", scale=SCALE), to_tensor(lr), SCALE))
        # through prepare_model, as evaluate runs it (channels_last): the same kernels on the same tensor,
        # so the panel must equal it bit for bit; a plain contiguous forward may pick other convolution
        # kernels, whose float32 rounding can move a value across a uint8 rounding boundary
        edsr = to_image(super_resolve(prepare_model(net), to_tensor(lr), SCALE))
    outputs = {"HR": hr, "bicubic": bicubic, "my-folder": noisy.astype(np.uint8), "my-net": edsr}
    return out, outputs, tmp, ds, i


def test_png_size_and_panels_show_each_output_exactly(setup):
    out, outputs, *_ = setup
    png = np.asarray(Image.open(out).convert("RGB"))
    meta = json.loads(out.with_suffix(".json").read_text())
    assert png.shape[:2] == (meta["size"][1], meta["size"][0])
    assert [p["label"] for p in meta["panels"]] == ["HR", "bicubic", "my-folder", "my-net"]
    x, y, w, h = BOX
    for p in meta["panels"]:
        assert (p["width"], p["height"]) == (w * 5, h * 5)
        shown = png[p["y"]:p["y"] + p["height"], p["x"]:p["x"] + p["width"]]
        want = outputs[p["label"]][y:y + h, x:x + w].repeat(5, axis=0).repeat(5, axis=1)
        np.testing.assert_array_equal(shown, want, err_msg=p["label"])


def test_titles_carry_evaluate_scores(setup):
    out, outputs, tmp, ds, i = setup
    meta = json.loads(out.with_suffix(".json").read_text())
    chelsea = Dataset(ds.spec, [ds.images[i]], ds.location)  # evaluate only that image
    want = evaluate(load_candidates("bicubic", [SCALE], None), chelsea, "paper", progress=False)[0].per_image[0]
    bic = meta["panels"][1]
    assert abs(bic["psnr"] - want["psnr"]) < 1e-9 and abs(bic["ssim"] - want["ssim"]) < 1e-12
    net = load_candidates("edsr-baseline", [SCALE], str(tmp / "net.pt"))
    want = evaluate(net, chelsea, "paper", progress=False)[0].per_image[0]
    assert abs(meta["panels"][3]["psnr"] - want["psnr"]) < 1e-9


def test_box_outside_the_image(setup, capsys):
    *_, tmp, _, _ = setup
    argv = ["--image", "embedded/chelsea", "--box", "440", "0", "16", "16", "--labels", "bicubic", "--scale", "4",
            "--out", str(tmp / "x.png"), "--records", str(tmp / "records.jsonl")]
    assert figure.main(argv) == 2
    err = capsys.readouterr().err
    assert "--box 440 0 16 16" in err and "x 440..456" in err and "448x300" in err and "451x300" in err
    assert not (tmp / "x.png").exists()


def test_unknown_label_names_the_usable_ones(setup, capsys):
    *_, tmp, _, _ = setup
    for label in ("nope", "gone"):  # "gone": its weights file is not on this machine
        argv = ["--image", "embedded/chelsea", "--box", *map(str, BOX), "--labels", label, "--scale", "4",
                "--out", str(tmp / "y.png"), "--records", str(tmp / "records.jsonl")]
        assert figure.main(argv) == 2
        err = capsys.readouterr().err
        assert f"label {label!r} is neither" in err and "usable labels in the records: my-folder, my-net" in err
