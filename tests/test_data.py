"""The dataset registry: layouts, completeness checks, LR files versus generated-and-cached LR."""

from __future__ import annotations

import numpy as np
import pytest
from matlab_reference import reference_resize

import sr_bench.data.dataset as dataset_module
from sr_bench.cli import DataError
from sr_bench.data import (
    DATASETS,
    DatasetNotFound,
    DatasetSpec,
    ImageTooSmall,
    LRSizeError,
    benchmark_names,
    dataset_order,
    evaluation_sets,
    get_spec,
    open_dataset,
    register,
    table3_datasets,
    training_sets,
)
from sr_bench.data.registry import EMBEDDED_EVAL, EMBEDDED_TRAIN, Layout
from sr_bench.images import ImageError, write_image
from sr_bench.resize import downscale


def _tiny(seed: int, h: int = 24, w: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def div2k_root(tmp_path):
    """The official DIV2K validation layout with tiny images, and official-style LR files for x2."""
    hr = tmp_path / "DIV2K" / "DIV2K_valid_HR"
    lr = tmp_path / "DIV2K" / "DIV2K_valid_LR_bicubic" / "X2"
    for i in range(801, 901):
        img = _tiny(i)
        write_image(hr / f"{i:04d}.png", img, compress_level=0)
        write_image(lr / f"{i:04d}x2.png", downscale(img, 2), compress_level=0)
    return tmp_path


def test_div2k_official_layout(div2k_root):
    ds = open_dataset("DIV2K", div2k_root)
    assert len(ds) == 100 and ds.images[0].stem == "0801" and ds.images[-1].stem == "0900"
    assert ds.kind == "div2k" and not ds.is_benchmark
    assert ds.lr_source(2) == "file" and ds.lr_source(3) == "generated"
    ten = open_dataset("DIV2K-val10", div2k_root)
    assert [r.stem for r in ten.images] == [f"{i:04d}" for i in range(801, 811)]


def test_partial_dataset_says_where_what_and_how(div2k_root):
    (div2k_root / "DIV2K" / "DIV2K_valid_HR" / "0850.png").unlink()
    with pytest.raises(DatasetNotFound) as e:
        open_dataset("DIV2K", div2k_root)
    msg = str(e.value)
    assert "DIV2K_valid_HR (has 99 images; missing 1 of the expected 100: 0850)" in msg
    assert "data.vision.ee.ethz.ch" in msg and "DIV2K_valid_HR.zip" in msg


def test_benchmark_archive_layout_and_count_check(tmp_path):
    for i in range(5):
        write_image(tmp_path / "benchmark" / "Set5" / "HR" / f"im{i}.png", _tiny(i), compress_level=0)
    ds = open_dataset("Set5", tmp_path)
    assert len(ds) == 5 and ds.is_benchmark and "benchmark/Set5/HR" in ds.location
    (tmp_path / "benchmark" / "Set5" / "HR" / "im0.png").unlink()
    with pytest.raises(DatasetNotFound, match=r"has 4 images, expected 5.*benchmark\.tar"):
        open_dataset("Set5", tmp_path)


def test_no_root_names_the_variable_and_the_source(monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)
    with pytest.raises(DatasetNotFound, match=r"Set14: no data root given\. Pass --data-root DIR or set SR_BENCH_DATA"):
        open_dataset("Set14")


def test_unknown_name_suggests_and_is_a_usage_error(tmp_path):
    with pytest.raises(KeyError, match=r"unknown dataset 'Set6'; did you mean 'Set5'.*Set14.*a folder of images") as e:
        open_dataset("Set6", tmp_path)
    assert e.value.exit_code == 2  # bad usage under the cli error policy, not a traceback


def test_any_folder_of_images(tmp_path):
    flat = tmp_path / "mine"
    for i in range(3):
        write_image(flat / f"p{i}.png", _tiny(i), compress_level=0)
    (flat / "notes.txt").write_text("ignored")
    ds = open_dataset(str(flat))
    assert len(ds) == 3 and ds.name == "mine" and ds.lr_source(4) == "generated"


def test_generated_lr_is_matlab_bicubic_and_cached(tmp_path, monkeypatch):
    folder = tmp_path / "set"
    write_image(folder / "a.png", _tiny(1, 27, 33), compress_level=0)
    ds = open_dataset(str(folder))
    calls = []
    real = dataset_module.downscale
    monkeypatch.setattr(dataset_module, "downscale", lambda img, s: calls.append(s) or real(img, s))
    lr, _, origin = ds.read_lr(0, 3)
    assert origin == "generated" and calls == [3]
    # the independent matrix reference, exact but for float rounding at .5 ties (at most 1 there)
    expected = reference_resize(ds.hr(0), 1 / 3).astype(int)
    assert lr.shape == expected.shape and np.abs(lr.astype(int) - expected).max() <= 1
    assert (lr.astype(int) != expected).mean() < 0.01
    again, _, _ = ds.read_lr(0, 3)
    assert calls == [3]  # the second read comes from the cache
    np.testing.assert_array_equal(again, lr)
    # a changed HR file gets a new cache entry (keyed by its sha256), not the stale one
    write_image(folder / "a.png", _tiny(2, 27, 33), compress_level=0)
    ds.read_lr(0, 3)
    assert calls == [3, 3]


def test_image_smaller_than_scale_is_refused_by_name(tmp_path):
    folder = tmp_path / "small"
    write_image(folder / "tiny.png", _tiny(0, 3, 3), compress_level=0)
    with pytest.raises(ImageError, match=r"tiny\.png: image of size 3x3 is too small to score at x4") as e:
        open_dataset(str(folder)).read_lr(0, 4)
    assert e.value.exit_code == 1


@pytest.mark.parametrize("h, w, scale, ok", [
    (16, 40, 2, True),   # 16 - 2*2 = 12 rows left >= 11
    (15, 40, 2, False),  # modcrop to 14, 14 - 4 = 10 < 11: SSIM's 'valid' window does not fit
    (20, 20, 4, True),   # 20 - 8 = 12
    (19, 40, 4, False),  # modcrop to 16, 16 - 8 = 8
])
def test_image_too_small_for_shave_and_ssim_window(tmp_path, h, w, scale, ok):
    folder = tmp_path / "photos"
    write_image(folder / "shot.png", _tiny(0, h, w), compress_level=0)
    ds = open_dataset(str(folder))
    if ok:
        assert ds.read_lr(0, scale)[0].shape == (h // scale, w // scale, 3)
        return
    with pytest.raises(ImageTooSmall) as e:
        ds.read_lr(0, scale)
    msg = str(e.value)
    assert "shot.png" in msg and f"{w}x{h}" in msg and "11x11 SSIM window" in msg and "remove it from" in msg


def test_div2k_images_need_room_for_the_wider_border(tmp_path):
    """DIV2K is scored with shave = scale + 6: a 26-pixel image is too small at x2 (26 - 16 = 10)."""
    hr = tmp_path / "DIV2K" / "DIV2K_valid_HR"
    for i in range(801, 901):
        write_image(hr / f"{i:04d}.png", _tiny(i, 26, 40), compress_level=0)
    with pytest.raises(ImageTooSmall, match=r"0801\.png: image of size 40x26 .* border of 8 pixels"):
        open_dataset("DIV2K", tmp_path).read_lr(0, 2)


def test_embedded_sets_need_no_root_and_are_disjoint(monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)
    ev, tr = open_dataset("embedded"), open_dataset("embedded-train")
    assert len(ev) == len(EMBEDDED_EVAL) == 5 and len(tr) == len(EMBEDDED_TRAIN)
    assert not {r.stem for r in ev.images} & {r.stem for r in tr.images}
    assert ev.hr(1).ndim == 2  # camera is single-channel: the gray path is exercised by default
    assert ev.is_benchmark


@pytest.mark.parametrize("name, count, lr", [("Set5", 5, "file"), ("Set14", 14, "file"), ("B100", 100, "file"),
                                             ("Urban100", 100, "generated"), ("T91", 91, "generated")])
def test_real_datasets_are_complete(data_root, name, count, lr):
    ds = open_dataset(name, data_root)
    assert len(ds) == count == DATASETS[name].count
    assert ds.lr_source(2) == lr
    if name == "Urban100":
        assert ds.lr_source(4) == "file"


def test_data_cli_check_and_where(data_root, capsys):
    from sr_bench.data.__main__ import main

    assert main(["check", "--data-root", str(data_root), "--datasets", "Set5", "--no-progress"]) == 0
    out = capsys.readouterr().out
    # 5 HR + 15 LR files, each hash compared with the real MANIFEST.tsv
    assert "ok       Set5" in out and "LR files: x2 5, x3 5, x4 5; sha256 20 verified" in out
    assert main(["where", "DIV2K"]) == 0
    assert "<root>/DIV2K/DIV2K_valid_HR" in capsys.readouterr().out


# ---- 11.4: every LR image is checked against its HR ----

def _pair_folder(tmp_path, hr_hw, lr_hw, scale=2):
    """A user folder with one HR image and one LR file of the given (height, width)."""
    folder = tmp_path / "pairs"
    write_image(folder / "HR" / "p.png", _tiny(0, *hr_hw), compress_level=0)
    write_image(folder / "LR_bicubic" / f"X{scale}" / f"px{scale}.png", _tiny(1, *lr_hw), compress_level=0)
    return folder


def test_lr_file_of_the_wrong_size_is_refused_naming_both_files(tmp_path):
    folder = _pair_folder(tmp_path, (96, 120), (40, 50))  # the 40x50 LR for a 96x120 HR that scored 10.98 dB
    with pytest.raises(LRSizeError) as e:
        open_dataset(str(folder)).read_lr(0, 2)
    msg = str(e.value)
    assert str(folder / "LR_bicubic" / "X2" / "px2.png") in msg and str(folder / "HR" / "p.png") in msg
    assert "is 50x40, 3 channels" in msg and "(120x96, 3 channels)" in msg and "must be 60x48" in msg
    assert "delete it and sr_bench makes it" in msg and e.value.exit_code == 1


def test_lr_file_larger_than_its_hr_says_so(tmp_path):
    folder = _pair_folder(tmp_path, (96, 120), (100, 130))
    with pytest.raises(LRSizeError, match=r"px2\.png: LR x2 image is 130x100, 3 channels, larger than its HR .*p\.png"):
        open_dataset(str(folder)).read_lr(0, 2)


def test_lr_file_matching_the_modcropped_hr_is_used(tmp_path):
    folder = _pair_folder(tmp_path, (97, 121), (48, 60))  # floor(97 / 2) = 48, floor(121 / 2) = 60
    lr, _, origin = open_dataset(str(folder)).read_lr(0, 2)
    assert origin == "file" and lr.shape == (48, 60, 3)
    np.testing.assert_array_equal(lr, _tiny(1, 48, 60))


def test_gray_lr_for_a_colour_hr_is_refused(tmp_path):
    folder = tmp_path / "pairs"
    write_image(folder / "HR" / "p.png", _tiny(0, 24, 20), compress_level=0)
    write_image(folder / "LR_bicubic" / "X2" / "px2.png", _tiny(1, 12, 10)[..., 0], compress_level=0)
    with pytest.raises(LRSizeError, match=r"is 10x12 \(single-channel\), not its HR's size / 2"):
        open_dataset(str(folder)).read_lr(0, 2)


def test_wrong_shape_cache_entry_is_made_again_and_logged(tmp_path, caplog):
    import logging

    folder = tmp_path / "set_stale"
    write_image(folder / "a.png", _tiny(1, 27, 33), compress_level=0)
    ds = open_dataset(str(folder))
    first, source, _ = ds.read_lr(0, 3)
    [entry] = list(dataset_module.cache_dir().glob(f"lr/set_stale/X3/a-{source.rsplit(':', 1)[1][:16]}.npy"))
    np.save(entry, np.zeros((5, 5, 3), np.uint8))  # a stale entry under the same name (same HR hash)
    logger = logging.getLogger("sr_bench.data")
    logger.addHandler(caplog.handler)
    try:
        again, source_again, origin = ds.read_lr(0, 3)
    finally:
        logger.removeHandler(caplog.handler)
    assert again.shape == (9, 11, 3) and origin == "generated" and source_again == source
    np.testing.assert_array_equal(again, first)
    assert np.load(entry).shape == (9, 11, 3)  # the cache holds the right image again
    assert any("making it again" in r.getMessage() and str(entry) in r.getMessage() for r in caplog.records)


# ---- error policy: broken links and corrupt files are named, with the right advice ----

def test_symlink_loop_in_a_dataset_folder_is_named(tmp_path):
    folder = tmp_path / "mine"
    write_image(folder / "a.png", _tiny(0), compress_level=0)
    (folder / "loop.png").symlink_to("loop.png")
    with pytest.raises(DataError, match=r"mine/loop\.png: is a symlink loop; point the link at the real file"):
        open_dataset(str(folder))


def test_symlink_loop_as_a_dataset_hr_folder_is_named(tmp_path):
    (tmp_path / "Set5").mkdir()
    (tmp_path / "Set5" / "HR").symlink_to("HR")
    with pytest.raises(DataError, match=r"Set5/HR: is a symlink loop"):
        open_dataset("Set5", tmp_path)


def test_corrupt_file_advice_depends_on_where_it_came_from(tmp_path):
    for i in range(5):
        write_image(tmp_path / "Set5" / "HR" / f"im{i}.png", _tiny(i), compress_level=0)
    (tmp_path / "Set5" / "HR" / "im3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(DataError) as registered:
        open_dataset("Set5", tmp_path).read_hr(3)
    assert "im3.png: cannot decode" in str(registered.value) and "download Set5 again" in str(registered.value)
    assert "MANIFEST.tsv" in str(registered.value) and registered.value.exit_code == 1
    with pytest.raises(DataError) as own:
        open_dataset(str(tmp_path / "Set5")).read_hr(3)
    msg = str(own.value)
    assert "im3.png: cannot decode" in msg and "remove it from the folder" in msg
    assert "download" not in msg and "MANIFEST" not in msg  # a user's photos have no manifest to download


# ---- 12.1: a dataset is one registration ----

def test_registry_drives_the_dataset_lists():
    assert benchmark_names() == ["Set5", "Set14", "B100", "Urban100", "Manga109"]
    assert benchmark_names(published=True) == ["Set5", "Set14", "B100", "Urban100"]
    assert dataset_order() == ("Set5", "Set14", "B100", "Urban100", "Manga109", "DIV2K", "DIV2K-val10", "embedded")
    assert table3_datasets(published=True) == ["Set5", "Set14", "B100", "Urban100", "DIV2K"]
    assert training_sets() == ["DIV2K-train", "T91", "embedded-train"]
    assert evaluation_sets() == ["Set5", "Set14", "B100", "Urban100", "Manga109", "DIV2K"]
    assert evaluation_sets(published=True) == ["Set5", "Set14", "B100", "Urban100", "DIV2K"]
    assert DATASETS["Set5"] is get_spec("Set5") and "Manga109" in DATASETS


def test_a_new_registration_reaches_every_list(tmp_path, monkeypatch):
    monkeypatch.setattr(DATASETS, "_items", dict(DATASETS._items))  # undone after the test
    register(DatasetSpec("Sun80", "benchmark", 2, (Layout("Sun80/HR", None),), in_table3=True, order=45))
    assert benchmark_names()[4] == "Sun80" and dataset_order()[4] == "Sun80"
    for i in range(2):
        write_image(tmp_path / "Sun80" / "HR" / f"s{i}.png", _tiny(i), compress_level=0)
    assert len(open_dataset("Sun80", tmp_path)) == 2


def test_kind_is_checked_at_registration():
    with pytest.raises(ValueError, match="kind 'benchmarks' is not one of benchmark, div2k"):
        DatasetSpec("X", "benchmarks", 1, ())  # type: ignore[arg-type]


# ---- Manga109: HR only; LR made with sr_bench's MATLAB-exact bicubic ----

@pytest.mark.parametrize("layout", ["Manga109/HR", "benchmark/Manga109/HR"])
def test_manga109_layouts_with_generated_lr(tmp_path, layout):
    for i in range(109):  # the real count: the completeness check is not relaxed for the test
        write_image(tmp_path / layout / f"Title{i:03d}.png", _tiny(i, 26, 18), compress_level=0)
    ds = open_dataset("Manga109", tmp_path)
    assert len(ds) == 109 and ds.location.endswith(layout) and ds.lr_source(2) == "generated"
    assert ds.is_benchmark and ds.spec.max_shave(4) == 4  # scored like Set5: Y channel, shave = scale
    lr, _, origin = ds.read_lr(5, 2)
    assert origin == "generated" and lr.shape == (13, 9, 3)
    (tmp_path / layout / "Title000.png").unlink()
    with pytest.raises(DatasetNotFound, match=r"has 108 images, expected 109.*manga109\.org"):
        open_dataset("Manga109", tmp_path)


def test_training_reads_skip_the_scoring_size_check(tmp_path):
    """Training leaves out images too small for its patches; only an image below the scale fails."""
    folder = tmp_path / "train"
    write_image(folder / "small.png", _tiny(0, 12, 12), compress_level=0)
    write_image(folder / "speck.png", _tiny(1, 3, 3), compress_level=0)
    ds = open_dataset(str(folder))
    with pytest.raises(ImageTooSmall):
        ds.read_lr(0, 2)
    assert ds.read_lr(0, 2, scoring=False)[0].shape == (6, 6, 3)
    with pytest.raises(ImageTooSmall, match=r"speck\.png: image of size 3x3 is smaller than the scale x4"):
        ds.read_lr(1, 4, scoring=False)


def test_download_of_a_set_without_an_archive_says_how_to_get_it(tmp_path, capsys):
    from sr_bench.data.__main__ import main

    assert main(["download", "Manga109", "--data-root", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: download Manga109: no official archive") and "manga109.org" in err
    assert not (tmp_path / "d").exists()


def test_sixteen_bit_file_keeps_its_own_fix_and_exits_1(tmp_path):
    from PIL import Image

    folder = tmp_path / "deep"
    Image.fromarray(np.full((20, 20), 4000, np.uint16)).save(folder.mkdir() or folder / "d.png")
    with pytest.raises(DataError) as e:
        open_dataset(str(folder)).read_hr(0)
    assert "d.png: 16-bit PNG" in str(e.value) and "remove it from the folder" not in str(e.value)
    assert e.value.exit_code == 1


def test_unreadable_cache_entry_is_made_again(tmp_path):
    folder = tmp_path / "set_unreadable"  # the cache is per session: a name of its own
    write_image(folder / "a.png", _tiny(3, 21, 30), compress_level=0)
    ds = open_dataset(str(folder))
    first = ds.lr(0, 3)
    [entry] = list(dataset_module.cache_dir().glob("lr/set_unreadable/X3/a-*.npy"))
    entry.write_bytes(b"not a numpy file")
    np.testing.assert_array_equal(ds.lr(0, 3), first)
    assert np.load(entry).shape == (7, 10, 3)
