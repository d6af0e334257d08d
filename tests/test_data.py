"""The dataset registry: layouts, completeness checks, LR files versus generated-and-cached LR."""

from __future__ import annotations

import numpy as np
import pytest

import sr_bench.data.dataset as dataset_module
from sr_bench.data import DATASETS, DatasetNotFound, open_dataset
from sr_bench.data.registry import EMBEDDED_EVAL, EMBEDDED_TRAIN
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


def test_unknown_name_lists_known(tmp_path):
    with pytest.raises(KeyError, match="known: Set5, Set14"):
        open_dataset("Set6", tmp_path)


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
    np.testing.assert_array_equal(lr, downscale(ds.hr(0), 3))
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
    with pytest.raises(ImageError, match=r"tiny\.png: image of size 3x3 is smaller than the scale x4"):
        open_dataset(str(folder)).read_lr(0, 4)


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

    assert main(["check", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "ok       Set5" in out and "missing  DIV2K " in out and "x4 file" in out
    assert main(["where", "DIV2K"]) == 0
    assert "<root>/DIV2K/DIV2K_valid_HR" in capsys.readouterr().out


def test_download_verifies_checksum_and_counts(tmp_path, monkeypatch):
    """The download path with a local archive standing in for the official one."""
    import hashlib
    import tarfile

    import sr_bench.data.__main__ as cli

    src = tmp_path / "src"
    for i in range(5):
        write_image(src / "benchmark" / "Set5" / "HR" / f"im{i}.png", _tiny(i), compress_level=0)
    archive = tmp_path / "benchmark.tar"
    with tarfile.open(archive, "w") as t:
        t.add(src / "benchmark", arcname="benchmark")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(cli.ARCHIVES, "Set5", (archive.as_uri(),))
    monkeypatch.setattr(cli, "BENCHMARK_URL", archive.as_uri())
    root = tmp_path / "data"
    with pytest.raises(SystemExit, match="does not match --sha256"):
        cli.main(["download", "Set5", "--root", str(root), "--sha256", "0" * 64])
    assert not (root / "benchmark").exists()  # nothing unpacked from an unverified archive
    assert cli.main(["download", "Set5", "--root", str(root), "--sha256", digest]) == 0
    assert len(open_dataset("Set5", root)) == 5
    assert digest in (root / "DOWNLOADS.tsv").read_text()
