"""Scoring folders of precomputed SR images (sr_bench.sr_folder)."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr_bench import upscale
from sr_bench.cli import DataError, UsageError
from sr_bench.data import open_dataset
from sr_bench.evaluate import evaluate, load_candidates
from sr_bench.images import write_image
from sr_bench.sr_folder import score_sr_folder


def _bicubic_edsr_pytorch_folder(ds_name: str, scales: list[int], root: Path, data_root) -> Path:
    """SR images of sr_bench's own ``upscale`` (bicubic), saved under EDSR-PyTorch's names."""
    ds = open_dataset(ds_name, data_root)
    sr_dir = root / "sr"
    for s in scales:
        lr_dir = root / f"lr{s}"
        for i, ref in enumerate(ds.images):
            write_image(lr_dir / f"{ref.stem}.png", ds.lr(i, s))  # the same LR evaluate feeds
        out = root / f"up{s}"
        argv = [str(lr_dir), "--out", str(out), "--model", "bicubic", "--scale", str(s), "--device", "cpu"]
        assert upscale.main(argv) == 0
        for ref in ds.images:
            dst = sr_dir / f"results-{ds.name}" / f"{ref.stem}_x{s}_SR.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            (out / f"{ref.stem}_x{s}.png").rename(dst)
    return sr_dir


@pytest.fixture(scope="module")
def which_data():
    """Real Set5 when the benchmark images are there, else the photos bundled with scikit-image."""
    root = os.environ.get("SR_BENCH_DATA")
    if root and Path(root, "Set5", "HR").is_dir():
        return "Set5", root
    return "embedded", None


def test_sr_folder_scores_what_evaluate_scores(tmp_path, which_data, one_thread):
    name, data_root = which_data
    sr_dir = _bicubic_edsr_pytorch_folder(name, [2, 3], tmp_path, data_root)
    got = score_sr_folder(sr_dir, label="bicubic-folder", datasets=[name], scales=[2, 3], data_root=data_root,
                          progress=False)
    want = evaluate(load_candidates("bicubic", [2, 3], None), open_dataset(name, data_root), "paper", progress=False)
    assert [(r.dataset, r.scale) for r in got] == [(name, 2), (name, 3)]
    for g, w in zip(got, sorted(want, key=lambda r: r.scale), strict=True):
        assert [p["image"] for p in g.per_image] == [p["image"] for p in w.per_image]
        dpsnr = max(abs(a["psnr"] - b["psnr"]) for a, b in zip(g.per_image, w.per_image, strict=True))
        dssim = max(abs(a["ssim"] - b["ssim"]) for a, b in zip(g.per_image, w.per_image, strict=True))
        assert dpsnr < 1e-6 and dssim < 1e-9
        assert g.data_sha256 == w.data_sha256  # same images, same fingerprint
        assert (g.model, g.weights, g.source, g.label, g.n_images, g.n_expected) == (
            "sr-folder", None, "sr-folder", "bicubic-folder", len(w.per_image), len(w.per_image))
        assert g.model_options["sr_layout"] == "edsr-pytorch"
        assert g.sr_dir == str(sr_dir.resolve())
        # independent: sha256 over "relative path<TAB>file sha256" lines, sorted by path
        files = sorted((sr_dir / f"results-{name}").glob(f"*_x{g.scale}_SR.png"))
        lines = "".join(f"results-{name}/{p.name}\t{hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in files)
        assert g.sr_sha256 == hashlib.sha256(lines.encode()).hexdigest()
    if name == "Set5":  # published bicubic Set5 PSNR (paper protocol): 33.66 / 30.39 dB
        assert [round(r.psnr, 2) for r in got] == pytest.approx([33.66, 30.39], abs=0.011)


# --- layouts and bad input, on the embedded photos with synthetic SR images -----------------------------

def _noisy_sr(hr: np.ndarray, scale: int, seed: int) -> np.ndarray:
    h, w = hr.shape[:2]
    crop = hr[: h - h % scale, : w - w % scale].astype(np.int16)
    noise = np.random.default_rng(seed).integers(-3, 4, crop.shape)
    return np.clip(crop + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def embedded():
    ds = open_dataset("embedded")
    return ds, [ds.hr(i) for i in range(len(ds))]


def _fill(root: Path, embedded, scale: int, pattern: str, label: str = "net") -> dict[str, Path]:
    ds, hrs = embedded
    out = {}
    for i, ref in enumerate(ds.images):
        p = root / pattern.format(dataset=ds.name, scale=scale, stem=ref.stem, label=label)
        write_image(p, _noisy_sr(hrs[i], scale, i))
        out[ref.stem] = p
    return out


def _psnr_y(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """Independent paper-protocol PSNR: MATLAB rgb2ycbcr Y of uint8 input (rounded half up, here in
    integers: 16 + (65.481 R + 128.553 G + 24.966 B) / 255), shave = scale."""
    def y(img):
        img = img.astype(np.int64)
        if img.ndim == 2:
            return img.astype(np.float64)
        num = 65481 * img[..., 0] + 128553 * img[..., 1] + 24966 * img[..., 2] + 16 * 255000 + 127500
        return (num // 255000).astype(np.float64)
    a = y(sr)[scale:-scale, scale:-scale]
    b = y(hr[: sr.shape[0], : sr.shape[1]])[scale:-scale, scale:-scale]
    return float(10 * np.log10(255**2 / np.mean((a - b) ** 2)))


@pytest.mark.parametrize(("pattern", "layout", "cli_pattern"), [
    ("{dataset}/x{scale}/{stem}.png", "sr_bench", None),
    ("visualization/{dataset}/{stem}_{label}.png", "basicsr", None),
    ("{dataset}/x{scale}/{stem}_x{scale}.png", "upscale", None),
    ("mine/{stem}-{scale}.png", "pattern", "mine/{stem}-{scale}.png"),
])
def test_layouts(tmp_path, embedded, pattern, layout, cli_pattern):
    files = _fill(tmp_path, embedded, 3, pattern)
    (rec,) = score_sr_folder(tmp_path, label="net", datasets=["embedded"], scales=[3], pattern=cli_pattern,
                             progress=False)
    assert rec.model_options["sr_layout"] == layout
    ds, hrs = embedded
    want = [_psnr_y(np.asarray(Image.open(files[r.stem])), hrs[i], 3) for i, r in enumerate(ds.images)]
    assert [p["psnr"] for p in rec.per_image] == pytest.approx(want, abs=1e-9)


def test_layout_without_scale_refuses_several_scales(tmp_path, embedded):
    _fill(tmp_path, embedded, 2, "visualization/{dataset}/{stem}_{label}.png")
    with pytest.raises(UsageError, match="one --scales value per run"):
        score_sr_folder(tmp_path, label="net", datasets=["embedded"], scales=[2, 3], progress=False)


def test_bad_pattern(tmp_path):
    with pytest.raises(UsageError, match="unknown placeholder"):
        score_sr_folder(tmp_path, label="n", datasets=["embedded"], scales=[2], pattern="{name}.png", progress=False)


def test_nothing_found_says_where_it_looked(tmp_path):
    where = r"no SR image of embedded x2 .*edsr-pytorch .*results-embedded/astronaut_x2_SR\.png"
    with pytest.raises(DataError, match=where):
        score_sr_folder(tmp_path, label="n", datasets=["embedded"], scales=[2], progress=False)


def test_wrong_size_names_both_files_and_sizes(tmp_path, embedded):
    files = _fill(tmp_path, embedded, 3, "{dataset}/x{scale}/{stem}.png")
    write_image(files["chelsea"], np.zeros((300, 450, 3), np.uint8))  # HR 451x300 -> 450x300 at x3: fine
    write_image(files["coffee"], np.zeros((400, 600, 3), np.uint8))  # HR 600x400 -> 600x399 at x3
    with pytest.raises(DataError) as e:
        score_sr_folder(tmp_path, label="net", datasets=["embedded"], scales=[3], progress=False)
    msg = str(e.value)
    assert "1 problem(s)" in msg and "chelsea" not in msg
    assert f"{files['coffee']} is 600x400" in msg and "coffee.png is 600x400, i.e. 600x399" in msg


def test_missing_listed_together_and_allow_partial(tmp_path, embedded):
    files = _fill(tmp_path, embedded, 2, "{dataset}/x{scale}/{stem}.png")
    files["camera"].unlink()
    files["coffee"].unlink()
    with pytest.raises(DataError, match=r"lacks 2 of 5 SR images: .*camera\.png, .*coffee\.png \(pass --allow-partial"):
        score_sr_folder(tmp_path, label="net", datasets=["embedded"], scales=[2], progress=False)
    (rec,) = score_sr_folder(tmp_path, label="net", datasets=["embedded"], scales=[2], allow_partial=True,
                             progress=False)
    assert (rec.n_images, rec.n_expected, rec.complete) == (3, 5, False)
    assert [p["image"] for p in rec.per_image] == ["astronaut", "chelsea", "motorcycle_left"]


def _png16(path: Path, rgb: np.ndarray) -> None:
    """A 16-bit RGB PNG, written by hand (PIL cannot write one)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    h, w, _ = rgb.shape
    rows = b"".join(b"\0" + rgb[y].astype(">u2").tobytes() for y in range(h))
    head = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    body = chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def test_gray_16bit_and_duplicates_in_one_message(tmp_path, embedded):
    files = _fill(tmp_path, embedded, 2, "{dataset}/x{scale}/{stem}.png")
    ds, hrs = embedded
    sr = _noisy_sr(hrs[0], 2, 0)
    write_image(files["astronaut"], sr[..., 1])  # gray output of an RGB image
    # 16-bit RGB (PIL would silently read it as 8-bit RGB) and 16-bit gray PNGs
    _png16(files["chelsea"], _noisy_sr(hrs[2], 2, 2).astype(np.uint16) * 257)
    Image.fromarray(_noisy_sr(hrs[4], 2, 4)[..., 0].astype(np.uint16) * 257).save(files["motorcycle_left"])
    write_image(files["coffee"].with_suffix(".PNG"), _noisy_sr(hrs[3], 2, 3))  # second file for one image
    with pytest.raises(DataError) as e:
        score_sr_folder(tmp_path, label="net", datasets=["embedded"], scales=[2], progress=False)
    msg = str(e.value)
    assert "4 problem(s)" in msg
    assert f"{files['astronaut']} is gray but the HR" in msg
    assert f"{files['chelsea']}: 16-bit image" in msg and f"{files['motorcycle_left']}: 16-bit image" in msg
    assert "coffee.PNG and" in msg and "coffee.png are all the SR image of embedded/coffee x2; keep one" in msg
    # a gray camera output for the gray camera HR is fine: it is not listed
    assert "camera" not in msg


def test_user_folder_is_recorded_by_its_path(tmp_path, textured):
    hr_dir = tmp_path / "myset"
    for k, name in enumerate(["a", "b"]):
        write_image(hr_dir / f"{name}.png", textured(48, 62, k))
    for k, name in enumerate(["a", "b"]):
        write_image(tmp_path / "sr" / "myset" / "x2" / f"{name}.png", _noisy_sr(textured(48, 62, k), 2, k))
    (rec,) = score_sr_folder(tmp_path / "sr", label="net", datasets=[str(hr_dir)], scales=[2], progress=False)
    assert rec.dataset == str(hr_dir.resolve())  # a user folder named like a benchmark is never taken for it
    assert (rec.n_images, rec.n_expected) == (2, 2)


# --- BasicSR's visualization folders: the suffix is its run's name, not sr_bench's label -----------------------


def test_basicsr_suffix_other_than_the_label_is_taken_when_it_is_the_only_one(tmp_path, embedded):
    files = _fill(tmp_path, embedded, 2, "visualization/{dataset}/{stem}_{label}.png", label="EDSR_Mx2_f64b16")
    (rec,) = score_sr_folder(tmp_path, label="MyEDSR", datasets=["embedded"], scales=[2], progress=False)
    assert rec.model_options == {"sr_layout": "basicsr",
                                 "sr_pattern": "visualization/{dataset}/{stem}_EDSR_Mx2_f64b16.png"}
    ds, hrs = embedded
    want = [_psnr_y(np.asarray(Image.open(files[r.stem])), hrs[i], 2) for i, r in enumerate(ds.images)]
    assert [p["psnr"] for p in rec.per_image] == pytest.approx(want, abs=1e-9)
    # the stored pattern finds the same files again (what compare's evaluate command passes)
    (again,) = score_sr_folder(tmp_path, label="MyEDSR", datasets=["embedded"], scales=[2], progress=False,
                               pattern=rec.model_options["sr_pattern"])
    assert again.sr_sha256 == rec.sr_sha256 and again.psnr == rec.psnr


def test_two_basicsr_suffixes_are_refused_listing_them(tmp_path, embedded):
    _fill(tmp_path, embedded, 2, "visualization/{dataset}/{stem}_{label}.png", label="runA")
    _fill(tmp_path, embedded, 2, "visualization/{dataset}/{stem}_{label}.png", label="runB")
    with pytest.raises(DataError) as e:
        score_sr_folder(tmp_path, label="MyEDSR", datasets=["embedded"], scales=[2], progress=False)
    msg, n = str(e.value), len(embedded[0])
    assert f"under 2 suffixes ('runA' ({n} of {n} images), 'runB' ({n} of {n} images))" in msg
    assert "--label SUFFIX" in msg and "allow-partial" not in msg
    (rec,) = score_sr_folder(tmp_path, label="runB", datasets=["embedded"], scales=[2], progress=False)
    assert rec.model_options["sr_pattern"] == "visualization/{dataset}/{stem}_{label}.png"  # the label is the suffix


def test_basicsr_suffix_goes_with_the_longest_stem(tmp_path, textured):
    """Stems ``a`` and ``a_b``: ``a_b_run.png`` is ``a_b`` with suffix ``run``, not ``a`` with ``b_run``."""
    hr_dir = tmp_path / "pair"
    for i, stem in enumerate(("a", "a_b")):
        write_image(hr_dir / f"{stem}.png", textured(32, 32, i))
    sr = tmp_path / "sr" / "visualization" / "pair"
    for stem in ("a", "a_b"):
        write_image(sr / f"{stem}_run.png", np.asarray(Image.open(hr_dir / f"{stem}.png")))
    (rec,) = score_sr_folder(tmp_path / "sr", label="x", datasets=[str(hr_dir)], scales=[2], progress=False)
    assert rec.model_options["sr_pattern"].endswith("{stem}_run.png") and rec.n_images == 2
