"""``python -m sr_bench.data check`` decodes every file, checks LR sizes and the manifest's sha256,
and exits 1 on bad data, 2 on bad usage."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from sr_bench.data.__main__ import main
from sr_bench.images import write_image


def _image(seed: int, h: int = 24, w: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def root(tmp_path):
    """A staged Set5 with x2 LR files (any 12x10 image is the right size) and a MANIFEST.tsv
    whose hashes are computed here with hashlib, independently of the code under test."""
    rows = ["dataset\tfile\tsha256\twidth\theight\tmode\tsource"]
    for i, stem in enumerate(["baby", "bird", "butterfly", "head", "woman"]):
        pair = ((f"Set5/HR/{stem}.png", _image(i)), (f"Set5/LR_bicubic/X2/{stem}x2.png", _image(i + 9, 12, 10)))
        for rel, img in pair:
            write_image(tmp_path / rel, img, compress_level=0)
            digest = hashlib.sha256((tmp_path / rel).read_bytes()).hexdigest()
            rows.append(f"Set5\t{rel}\t{digest}\t{img.shape[1]}\t{img.shape[0]}\tRGB\ttest")
    (tmp_path / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    return tmp_path


def _check(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["check", "--no-progress", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_good_data_passes_with_a_summary(root, capsys):
    code, out, _ = _check(capsys, "--data-root", str(root))
    assert code == 0
    assert "ok       Set5" in out and "5 images  LR files: x2 5; sha256 10 verified" in out
    assert "missing  Urban100" in out and "1 dataset(s) ok, 0 with problems" in out


def test_random_bytes_image_fails_by_name(root, capsys):
    (root / "Set5/HR/baby.png").write_bytes(np.random.default_rng(0).bytes(2000))
    code, out, _ = _check(capsys, "--data-root", str(root))
    assert code == 1
    assert "BAD      Set5" in out and "Set5/HR/baby.png: cannot decode" in out
    assert "Set5/HR/baby.png: sha256" not in out  # undecodable: reported once, as undecodable


def test_changed_but_decodable_file_fails_on_its_sha256(root, capsys):
    path = root / "Set5/LR_bicubic/X2/birdx2.png"
    write_image(path, _image(10, 12, 10), compress_level=9)  # same pixels, other bytes
    code, out, _ = _check(capsys, "--data-root", str(root))
    assert code == 1 and "birdx2.png: sha256" in out and "MANIFEST.tsv" in out
    assert "sha256 9 verified" in out


def test_wrong_lr_size_fails_naming_both_files(root, capsys):
    write_image(root / "Set5/LR_bicubic/X2/headx2.png", _image(3, 10, 10), compress_level=0)
    code, out, _ = _check(capsys, "--data-root", str(root), "--datasets", "Set5")
    assert code == 1
    assert "headx2.png: LR x2 image is 10x10, 3 channels" in out and "Set5/HR/head.png (20x24" in out


def test_file_listed_in_the_manifest_but_missing(root, capsys):
    (root / "Set5/LR_bicubic/X2/womanx2.png").unlink()
    code, out, _ = _check(capsys, "--data-root", str(root))
    assert code == 1 and "1 file(s) listed in" in out and "Set5/LR_bicubic/X2/womanx2.png" in out


def test_incomplete_dataset_is_a_problem(root, capsys):
    (root / "Set5/HR/woman.png").unlink()
    code, out, _ = _check(capsys, "--data-root", str(root))
    assert code == 1 and "has 4 images, expected 5" in out


def test_bad_usage_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)
    assert _check(capsys)[0] == 2
    code, _, err = _check(capsys, "--data-root", str(tmp_path / "nowhere"))
    assert code == 2 and err.startswith("error: --data-root") and "nowhere: no such folder" in err
    code, _, err = _check(capsys, "--data-root", str(tmp_path), "--datasets", "Set6")
    assert code == 2 and "did you mean 'Set5'" in err and "Traceback" not in err


def test_empty_root_exits_1(tmp_path, capsys):
    code, out, _ = _check(capsys, "--data-root", str(tmp_path))
    assert code == 1 and "no dataset found under" in out


def test_real_data_set5_verifies_against_the_real_manifest(data_root, capsys):
    code, out, _ = _check(capsys, "--data-root", str(data_root), "--datasets", "Set5")
    assert code == 0 and "LR files: x2 5, x3 5, x4 5; sha256 20 verified" in out


def test_symlink_loop_in_a_dataset_folder_is_reported(root, capsys):
    (root / "Set5/HR/extra.png").symlink_to("extra.png")
    code, out, _ = _check(capsys, "--data-root", str(root))
    assert code == 1 and "Set5/HR/extra.png: is a symlink loop; point the link at the real file" in out
