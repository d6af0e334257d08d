"""The folder layouts BasicSR users already have: ``<Set>/GTmod12`` + ``<Set>/LRbicx<s>/<stem>.png``
(HR cropped to a multiple of 12, LR named like its HR), and everything under ``<root>/datasets``."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sr_bench.data import LRSizeError, open_dataset
from sr_bench.data.__main__ import main
from sr_bench.images import write_image
from sr_bench.resize import downscale

STEMS = ["baby", "bird", "butterfly", "head", "woman"]


def _image(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _gtmod12(root, folder: str, stems=STEMS, scales=(2, 3, 4)) -> dict[str, np.ndarray]:
    """BasicSR's layout: HR cropped to a multiple of 12 (36x48 and up), LR = MATLAB bicubic of it."""
    hrs = {}
    for i, stem in enumerate(stems):
        hr = _image(i, 36 + 12 * (i % 2), 48 + 12 * (i % 3))
        hrs[stem] = hr
        write_image(root / folder / "GTmod12" / f"{stem}.png", hr, compress_level=0)
        for s in scales:
            write_image(root / folder / f"LRbicx{s}" / f"{stem}.png", downscale(hr, s), compress_level=0)
    return hrs


@pytest.mark.parametrize("base", ["", "datasets/"])
def test_basicsr_gtmod12_layout_reads_lr_files_named_like_their_hr(tmp_path, base, caplog):
    hrs = _gtmod12(tmp_path, f"{base}Set5")
    with caplog.at_level(logging.INFO, logger="sr_bench"):
        ds = open_dataset("Set5", tmp_path)
    assert ds.location == str(tmp_path / f"{base}Set5" / "GTmod12") and len(ds) == 5
    assert "cropped to a multiple of 12" in caplog.text  # the user is told scores differ from the paper's HR
    for s in (2, 3, 4):
        assert ds.lr_source(s) == "file"
        lr, _, origin = ds.read_lr(1, s)
        assert origin == "file" and np.array_equal(lr, downscale(hrs["bird"], s))
    assert ds.images[0].lr_path(3) == tmp_path / f"{base}Set5" / "LRbicx3" / "baby.png"


def test_gtmod12_hr_sizes_fit_every_scale_and_a_wrong_lr_is_named(tmp_path):
    """A multiple of 12 is a multiple of 2, 3 and 4: the LR is exactly HR / s, no crop. An LR that
    is not (here made from the uncropped original, one pixel larger) is refused by name."""
    _gtmod12(tmp_path, "Set5", scales=(2, 4))
    original = _image(7, 40, 50)  # not a multiple of 12 (or of 3)
    write_image(tmp_path / "Set5" / "LRbicx3" / "baby.png", downscale(original[:39, :48], 3), compress_level=0)
    ds = open_dataset("Set5", tmp_path)
    assert ds.lr_source(3) == "mixed"  # only baby has an x3 file
    with pytest.raises(LRSizeError, match=r"LRbicx3/baby\.png: LR x3 image is 16x13.*must be 16x12"):
        ds.read_lr(0, 3)


def test_basicsr_names_for_b100_and_the_edsr_layouts_under_datasets(tmp_path):
    stems = [f"{i:06d}" for i in range(100)]
    _gtmod12(tmp_path, "BSDS100", stems=stems, scales=(4,))  # BasicSR's name for B100
    assert open_dataset("B100", tmp_path).location == str(tmp_path / "BSDS100" / "GTmod12")
    for i, stem in enumerate(STEMS):
        hr = _image(i, 30, 26)
        write_image(tmp_path / "datasets" / "Set14" / "HR" / f"{stem}.png", hr, compress_level=0)
        write_image(tmp_path / "datasets" / "Set14" / "LR_bicubic" / "X2" / f"{stem}x2.png", downscale(hr, 2),
                    compress_level=0)
    for i in range(9):
        write_image(tmp_path / "datasets" / "Set14" / "HR" / f"extra{i}.png", _image(10 + i, 30, 26), compress_level=0)
    ds = open_dataset("Set14", tmp_path)
    assert ds.location == str(tmp_path / "datasets" / "Set14" / "HR") and ds.images[0].lr_path(2) is not None


def test_the_staged_layout_wins_over_gtmod12(tmp_path):
    """Two copies of Set5: the one with the paper's HR (cropped only to the scale) is used."""
    _gtmod12(tmp_path, "Set5")
    for i, stem in enumerate(STEMS):
        write_image(tmp_path / "Set5" / "HR" / f"{stem}.png", _image(i, 37, 49), compress_level=0)
    assert open_dataset("Set5", tmp_path).location == str(tmp_path / "Set5" / "HR")


def test_data_check_and_where_know_the_basicsr_layout(tmp_path, capsys):
    _gtmod12(tmp_path, "datasets/Set5")
    assert main(["check", "--data-root", str(tmp_path), "--datasets", "Set5", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "LR files: x2 5, x3 5, x4 5" in out and "datasets/Set5/GTmod12" in out
    (tmp_path / "datasets" / "Set5" / "LRbicx4" / "head.png").write_bytes(b"not a png")
    assert main(["check", "--data-root", str(tmp_path), "--datasets", "Set5", "--no-progress"]) == 1
    assert "LRbicx4/head.png: cannot decode" in capsys.readouterr().out
    assert main(["where", "Set5"]) == 0
    assert "<root>/Set5/GTmod12   LR: <root>/Set5/LRbicx{s}/{stem}.png   (BasicSR's GTmod12" in capsys.readouterr().out
