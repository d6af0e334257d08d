"""Inputs that change or collide: an SR folder changed while it is scored, a folder dataset with
an image sr_bench does not read or two files for one image, and upscale's outputs landing on
its inputs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr_bench import sr_folder
from sr_bench.data import open_dataset
from sr_bench.data.dataset import DatasetImageError
from sr_bench.errors import DataError
from sr_bench.evaluate import main as evaluate_main
from sr_bench.images import read_image, write_image
from sr_bench.sr_folder import score_sr_folder
from sr_bench.train.__main__ import main as train_main
from sr_bench.upscale import main as upscale_main


@pytest.fixture
def ds(tmp_path, textured) -> Path:
    for i in range(3):
        write_image(tmp_path / "ds" / f"im{i}.png", textured(48, 64, i))
    return tmp_path / "ds"


def _sr(tmp_path: Path, textured, n: int = 3) -> Path:
    for i in range(n):
        write_image(tmp_path / "sr" / "ds" / "x2" / f"im{i}.png", textured(48, 64, 10 + i))
    return tmp_path / "sr"


def test_the_stored_sr_hash_is_of_the_bytes_that_were_scored(tmp_path, ds, textured, monkeypatch):
    """Every SR file is replaced right after the first image is scored: the record must hash the
    old bytes of im0 and the new bytes of im1 and im2, the very bytes its scores come from."""
    sr = _sr(tmp_path, textured)
    before = {p.name: p.read_bytes() for p in sorted((sr / "ds" / "x2").iterdir())}
    real, calls = sr_folder.score_image, []

    def score_then_replace(*args, **kwargs):
        row = real(*args, **kwargs)
        calls.append(row)
        if len(calls) == 1:
            for i in range(3):
                write_image(sr / "ds" / "x2" / f"im{i}.png", np.full((48, 64, 3), 40 * i, np.uint8))
        return row

    monkeypatch.setattr(sr_folder, "score_image", score_then_replace)
    record = score_sr_folder(sr, label="X", datasets=[str(ds)], scales=[2], progress=False)[0]
    after = {p.name: p.read_bytes() for p in sorted((sr / "ds" / "x2").iterdir())}
    scored = {"im0.png": before["im0.png"], "im1.png": after["im1.png"], "im2.png": after["im2.png"]}
    h = hashlib.sha256()
    for name, data in sorted(scored.items()):
        h.update(f"ds/x2/{name}\t{hashlib.sha256(data).hexdigest()}\n".encode())
    assert record.sr_sha256 == h.hexdigest()
    assert record.sr_sha256 != sr_folder.sr_fingerprint(sorted((sr / "ds" / "x2").iterdir()), sr)  # not the final
    # and the scores are of those bytes: im1 is now a flat gray image, far from its HR
    assert record.per_image[1]["psnr"] < 15 < record.per_image[0]["psnr"]


def test_an_sr_file_resized_after_the_header_checks_is_refused_by_name(tmp_path, ds, textured, monkeypatch):
    sr = _sr(tmp_path, textured)
    real = sr_folder._check_files

    def check_then_replace(*args, **kwargs):
        real(*args, **kwargs)
        write_image(sr / "ds" / "x2" / "im1.png", np.zeros((10, 10, 3), np.uint8))

    monkeypatch.setattr(sr_folder, "_check_files", check_then_replace)
    with pytest.raises(DataError, match=r"im1\.png: is now 10x10, not the 64x48 its header said"):
        score_sr_folder(sr, label="X", datasets=[str(ds)], scales=[2], progress=False)


def test_an_sr_image_of_a_type_sr_bench_does_not_read_is_named(tmp_path, ds, textured):
    sr = _sr(tmp_path, textured, 2)
    Image.fromarray(textured(48, 64, 12)).save(sr / "ds" / "x2" / "im2.gif")
    with pytest.raises(DataError, match=r"im2\.gif: sr_bench does not read \.gif images .*save the SR image as PNG"):
        score_sr_folder(sr, label="X", datasets=[str(ds)], scales=[2], progress=False)


def test_a_folder_dataset_with_a_gif_is_refused_naming_it_and_what_is_read(ds, textured):
    Image.fromarray(textured(48, 64, 7)).save(ds / "im9.gif")
    with pytest.raises(DatasetImageError) as caught:
        open_dataset(str(ds))
    message = str(caught.value)
    assert message.startswith(f"{ds}: holds im9.gif, of a type sr_bench does not read; it reads .png, .bmp, .jpg")


def test_two_files_for_one_stem_are_refused_naming_both(tmp_path, ds, textured, capsys):
    Image.fromarray(textured(48, 64, 0)).save(ds / "im0.jpg", quality=95)
    with pytest.raises(DatasetImageError, match=r"ds/im0\.jpg and .*ds/im0\.png: two files for one image"):
        open_dataset(str(ds))
    assert evaluate_main(["--model", "bicubic", "--datasets", str(ds), "--scales", "2", "--no-progress",
                          "--records", str(tmp_path / "r.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "two files for one image" in err
    assert not (tmp_path / "r.jsonl").exists()


def test_two_files_for_one_stem_in_a_registered_dataset_are_refused(tmp_path, textured):
    hr = tmp_path / "Set5" / "HR"
    for i, stem in enumerate(("baby", "bird", "butterfly", "head", "woman")):
        write_image(hr / f"{stem}.png", textured(48, 48, i))
    Image.fromarray(textured(48, 48, 0)).save(hr / "baby.jpg", quality=95)
    with pytest.raises(DatasetImageError, match=r"baby\.jpg and .*baby\.png: two files for one image"):
        open_dataset("Set5", tmp_path)


def test_a_dataset_path_that_is_a_file_says_so(tmp_path, textured):
    write_image(tmp_path / "one.png", textured(16, 16, 0))
    with pytest.raises(ValueError, match=r"one\.png: is a file, not a folder of images"):
        open_dataset(str(tmp_path / "one.png"))


def _upscale(*args: str) -> list[str]:
    return ["--model", "bicubic", "--scale", "2", "--device", "cpu", *args]


def test_upscale_refuses_an_out_folder_that_is_an_input_folder(tmp_path, textured, capsys):
    photos = tmp_path / "photos"
    write_image(photos / "a.png", textured(16, 16, 0))
    before = sorted(p.name for p in photos.iterdir())
    assert upscale_main(_upscale(str(photos), "--out", str(photos))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is also an input folder" in err and "--out photos_x2" in err
    assert upscale_main(_upscale(str(photos), "--out", str(photos / "." / ".." / "photos"))) == 2  # any spelling
    capsys.readouterr()
    assert sorted(p.name for p in photos.iterdir()) == before  # nothing written
    assert upscale_main(_upscale(str(photos), "--out", str(photos / "sr"))) == 0  # a subfolder is never read
    assert upscale_main(_upscale(str(photos), "--out", str(photos / "sr"))) == 0  # a second run: the same inputs
    assert sorted(p.name for p in (photos / "sr").iterdir()) == ["a_x2.png"]


def test_upscale_never_writes_an_output_over_an_input(tmp_path, textured, capsys):
    write_image(tmp_path / "a.png", textured(16, 16, 0))
    write_image(tmp_path / "a_x2.png", textured(16, 16, 1))
    kept = (tmp_path / "a_x2.png").read_bytes()
    assert upscale_main(_upscale(str(tmp_path / "a.png"), str(tmp_path / "a_x2.png"), "--out", str(tmp_path))) == 2
    err = capsys.readouterr().err
    assert "a.png's output" in err and "is the input" in err and "overwritten" in err
    assert (tmp_path / "a_x2.png").read_bytes() == kept and not (tmp_path / "a_x2_x2.png").exists()


def test_upscale_refuses_an_output_name_too_long_before_any_work(tmp_path, textured, capsys):
    name = "n" * 250 + ".png"
    write_image(tmp_path / name, textured(8, 8, 0))
    assert upscale_main(_upscale(str(tmp_path / name), "--out", str(tmp_path / "out"))) == 2
    err = capsys.readouterr().err
    assert "has 257 bytes, over the 255 a file name may have; rename the input" in err
    assert not (tmp_path / "out").exists()


def test_upscale_names_and_skips_images_it_does_not_read_in_a_folder(tmp_path, textured, capfd):
    photos = tmp_path / "photos"
    write_image(photos / "a.png", textured(16, 16, 0))
    Image.fromarray(textured(16, 16, 1)).save(photos / "b.gif")
    assert upscale_main(_upscale(str(photos), "--out", str(tmp_path / "out"))) == 0
    assert f"{photos}: skipping b.gif: sr_bench reads .png" in capfd.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x2.png"]


def test_upscale_applies_and_reports_exif_orientation(tmp_path, textured, capfd):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(textured(16, 24, 0)).save(tmp_path / "phone.jpg", quality=95, exif=exif)
    assert upscale_main(_upscale(str(tmp_path / "phone.jpg"), "--out", str(tmp_path / "out"))) == 0
    err = capfd.readouterr().err
    assert "phone.jpg: applied EXIF orientation 6 (rotate 90 clockwise)" in err
    assert read_image(tmp_path / "out" / "phone_x2.png").shape == (48, 32, 3)  # upright: 16 wide, 24 high, x2


def test_an_lr_file_a_quarter_turn_from_its_exif_rotated_hr_says_so(tmp_path, textured):
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "ds" / "HR").mkdir(parents=True)
    Image.fromarray(textured(48, 64, 0)).save(tmp_path / "ds" / "HR" / "a.jpg", quality=95, exif=exif)
    write_image(tmp_path / "ds" / "LR_bicubic" / "X2" / "ax2.png", textured(24, 32, 0))  # stored, not turned
    dataset = open_dataset(str(tmp_path / "ds"))
    with pytest.raises(DatasetImageError, match="differ by a quarter turn: sr_bench applies EXIF orientation"):
        dataset.read_lr(0, 2)


def test_a_dataset_file_name_that_is_not_utf8_is_refused_naming_it(ds, textured):
    """Its name would go into records, the per-image CSV and markdown, which cannot hold it."""
    name = os.fsencode(ds) + b"/caf\xe9.png"
    Image.fromarray(textured(48, 64, 5)).save(os.fsdecode(name), format="PNG")
    with pytest.raises(DatasetImageError, match=r"ds/caf\\xe9\.png: the file name is not valid UTF-8"):
        open_dataset(str(ds))


def test_train_refuses_an_out_folder_that_is_its_data_folder(tmp_path, ds, capsys):
    before = sorted(p.name for p in ds.iterdir())
    args = ["-q", "--model", "edsr-baseline", "--scale", "2", "--profile", "smoke", "--device", "cpu",
            "--no-progress", "--option", "blocks=1", "--option", "filters=8", "--patch-size", "8", "--data", str(ds),
            "--iterations", "1"]
    for out, extra in ((ds, ("--val-data", "embedded")), (tmp_path / "val", ("--val-data", str(tmp_path / "val")))):
        write_image(tmp_path / "val" / "v.png", np.zeros((32, 32, 3), np.uint8))
        assert train_main([*args, *extra, "--out", str(out), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--out {out} is the" in err and "folder of images" in err
    assert sorted(p.name for p in ds.iterdir()) == before
