"""The upscale CLI on a user's own images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matlab_reference import reference_resize

from sr_bench import models
from sr_bench.download import DownloadError
from sr_bench.images import quantize, read_image, to_tensor, write_image
from sr_bench.inference import prepare_model, super_resolve
from sr_bench.upscale import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (8, 7), dtype=np.uint8)
    d = tmp_path / "in"
    write_image(d / "rgb.png", rgb)
    write_image(d / "gray.png", gray)
    return d, rgb, gray


def expected_bicubic(img: np.ndarray, s: int) -> np.ndarray:
    """The independent float64 MATLAB bicubic, quantised half up as sr_bench's outputs are."""
    y = reference_resize(img.astype(np.float64) / 255.0, float(s))
    return np.clip(np.floor(255.0 * y + 0.5), 0, 255).astype(np.uint8)


def test_bicubic_on_a_folder(images, tmp_path, capsys):
    d, rgb, gray = images
    out = tmp_path / "out"
    assert main(["--model", "bicubic", "--scale", "3", str(d), "--out", str(out), "--device", "cpu"]) == 0
    got_rgb, got_gray = read_image(out / "rgb_x3.png"), read_image(out / "gray_x3.png")
    assert got_rgb.shape == (27, 39, 3) and got_gray.shape == (24, 21)  # gray in, gray out
    # float32 vs float64 resampling may flip a rounding now and then
    assert np.abs(got_rgb.astype(int) - expected_bicubic(rgb, 3)).max() <= 1
    assert np.abs(got_gray.astype(int) - expected_bicubic(gray, 3)).max() <= 1
    assert "rgb.png (13x9) -> " in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["gray_x3.png", "rgb_x3.png"]  # no temp files


def test_weights_file_and_self_ensemble(images, tmp_path):
    d, rgb, _ = images
    torch.manual_seed(0)
    net = models.create("edsr-baseline", scale=2)
    path = tmp_path / "mine.pt"
    torch.save({"model": net.state_dict(), "step": 5}, path)
    out = tmp_path / "out"
    argv = ["--model", "edsr-baseline", "--weights", str(path), "--scale", "2", str(d / "rgb.png"),
            "--out", str(out), "--self-ensemble", "--tile", "5", "--device", "cpu"]
    assert main(argv) == 0
    got = read_image(out / "rgb_x2.png")
    ref = super_resolve(prepare_model(net), to_tensor(rgb), 2, self_ensemble=True)
    want = quantize(ref)[0].permute(1, 2, 0).numpy()
    assert got.shape == (18, 26, 3) and np.abs(got.astype(int) - want).max() <= 1


def test_scale_is_implied_by_weights_and_conflicts_are_errors(images, tmp_path, monkeypatch, capsys):
    d, _, _ = images

    def offline(urls, dest, **kwargs):  # sr_bench.download.fetch with no network
        error = DownloadError("offline")
        error.failures = tuple(f"{u}: cannot connect (offline)" for u in urls)
        raise error

    monkeypatch.setattr("sr_bench.weights.files.fetch", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    # a download that fails is a data error (exit 1): one line naming the file and the way round it
    assert main(["--weights", "edsr-baseline-x4", str(d), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert "edsr_baseline_x4-6b446fab.pt" in err and "--weights /path/to/" in err
    assert main(["--weights", "edsr-x4", "--scale", "2", str(d), "--out", str(tmp_path / "o")]) == 2
    assert "x4 model" in capsys.readouterr().err
    assert main(["--model", "vdsr", "--weights", "edsr-x4", str(d), "--out", str(tmp_path / "o")]) == 2
    assert "is for 'edsr'" in capsys.readouterr().err


def test_models_without_published_weights_need_a_file(images, tmp_path, capsys):
    d, _, _ = images
    assert main(["--model", "srresnet", "--scale", "4", str(d), "--out", str(tmp_path / "o")]) == 2
    assert "no published weights" in capsys.readouterr().err
    assert main(["--model", "mdsr", str(d), "--out", str(tmp_path / "o")]) == 2
    assert "--scale" in capsys.readouterr().err


def test_bad_inputs(images, tmp_path, capsys):
    d, _, _ = images
    missing = str(tmp_path / "missing.png")
    assert main(["--model", "bicubic", "--scale", "2", missing, "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    other = tmp_path / "other"
    write_image(other / "rgb.png", np.zeros((4, 4, 3), np.uint8))
    assert main(["--model", "bicubic", "--scale", "2", str(d), str(other), "--out", str(tmp_path / "o")]) == 2
    assert "collide" in capsys.readouterr().err


def test_tile_zero_or_negative_fails_in_argparse_before_any_image_is_read(tmp_path, capsys):
    missing = tmp_path / "never-read.png"  # would be "no such file" if the images were looked at
    for bad in ("0", "-3"):
        with pytest.raises(SystemExit) as e:
            main(["--model", "bicubic", "--scale", "2", str(missing), "--out", str(tmp_path / "o"), "--tile", bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "--tile" in err and "no such file" not in err


def test_tile_one_is_raised_to_the_minimum(images, tmp_path, capsys, monkeypatch):
    d, rgb, _ = images
    calls = []
    import sr_bench.inference as inference

    real = inference.forward_tiled
    monkeypatch.setattr(inference, "forward_tiled",
                        lambda fn, x, *a, **k: calls.append(x.shape) or real(fn, x, *a, **k))
    out = tmp_path / "out"
    assert main(["--model", "bicubic", "--scale", "2", str(d / "rgb.png"), "--out", str(out), "--tile", "1"]) == 0
    # 9x13 fits one 16-pixel tile: one whole-image forward, not 9 x 13 = 117 tiles
    assert calls == [] and "below this model's receptive field" in capsys.readouterr().err
    assert np.abs(read_image(out / "rgb_x2.png").astype(int) - expected_bicubic(rgb, 2)).max() <= 1


def test_bicubic_serves_any_integer_scale(images, tmp_path):
    d, rgb, _ = images
    out = tmp_path / "out"
    assert main(["--model", "bicubic", "--scale", "5", str(d / "rgb.png"), "--out", str(out)]) == 0
    got = read_image(out / "rgb_x5.png")
    assert got.shape == (45, 65, 3) and np.abs(got.astype(int) - expected_bicubic(rgb, 5)).max() <= 1


def test_user_errors_are_one_line(images, tmp_path, capsys):
    d, _, _ = images
    assert main(["--model", "edsr-basline", "--scale", "2", str(d), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'edsr-baseline'" in err
    assert main(["--model", "edsr", "--scale", "5", str(d), "--out", str(tmp_path / "o")]) == 2
    assert "edsr serves x2/x3/x4" in capsys.readouterr().err


def test_fixy_upscale_symlink_loop_and_out_file(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "good.png", np.zeros((8, 8, 3), np.uint8))
    (src / "loopa.png").symlink_to(src / "loopb.png")
    (src / "loopb.png").symlink_to(src / "loopa.png")
    rc = main(["--model", "bicubic", "--scale", "2", str(src), "--out", str(tmp_path / "sr")])
    err = capsys.readouterr().err
    assert rc == 1 and "loopa.png" in err and "symlink loop" in err
    assert not (tmp_path / "sr").exists()
    out_file = tmp_path / "taken.txt"
    out_file.write_text("")
    rc = main(["--model", "bicubic", "--scale", "2", str(src / "good.png"), "--out", str(out_file)])
    err = capsys.readouterr().err
    assert rc == 2 and str(out_file) in err and "Traceback" not in err
