"""Decoding hostile image files: decompression bombs refused from their header, EXIF orientation
applied as viewers apply it, animations refused, FIFOs and folders named like images refused
without blocking, empty files named as empty."""

from __future__ import annotations

import io
import os
import signal
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from sr_bench.errors import UsageError
from sr_bench.images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    ImageTooLarge,
    decode_image,
    decode_oriented,
    read_header,
    read_image,
    set_max_pixels,
)
from sr_bench.upscale import main as upscale_main


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_header(path: Path, width: int, height: int) -> Path:
    """A gray PNG whose header declares width x height, with one compressed row of data: enough
    for every reader that looks at the header first (a real bomb of 30000x30000 is 875 KB)."""
    idat = zlib.compress(b"\x00" * (width + 1))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


@pytest.fixture(autouse=True)
def _default_limit(monkeypatch):
    monkeypatch.delenv("SR_BENCH_MAX_PIXELS", raising=False)
    set_max_pixels(None)
    yield
    set_max_pixels(None)


def test_a_decompression_bomb_is_refused_from_its_header_with_the_way_to_raise_the_limit(tmp_path):
    bomb = bomb_header(tmp_path / "bomb.png", 30000, 30000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not surface either
        for read in (read_image, read_header, lambda p: decode_image(p.read_bytes(), p)):
            with pytest.raises(ImageTooLarge) as caught:
                read(bomb)
            message = str(caught.value)
            assert message.startswith(f"{bomb}: 30000x30000 is 900,000,000 pixels, above the limit of 178,956,970")
            assert "SR_BENCH_MAX_PIXELS=900000000" in message and "--max-pixels 900000000" in message
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS // 2  # PIL's own setting is left as it was


def test_the_pixel_limit_is_exact_and_can_be_lowered_and_raised_past_pils(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setenv("SR_BENCH_MAX_PIXELS", "100")
    assert read_image(tmp_path / "a.png").shape == (10, 10)  # 100 pixels: at the limit, read
    monkeypatch.setenv("SR_BENCH_MAX_PIXELS", "99")
    with pytest.raises(ImageTooLarge, match="10x10 is 100 pixels, above the limit of 99"):
        read_image(tmp_path / "a.png")
    set_max_pixels(100)  # the command-line option wins over the environment
    assert read_image(tmp_path / "a.png").shape == (10, 10)
    set_max_pixels(None)
    # raised past PIL's own refusal (twice its MAX_IMAGE_PIXELS): PIL's check does not stand in the way
    monkeypatch.setenv("SR_BENCH_MAX_PIXELS", str(10**12))
    assert read_header(bomb_header(tmp_path / "bomb.png", 30000, 30000)).size == (30000, 30000)
    monkeypatch.setenv("SR_BENCH_MAX_PIXELS", "lots")
    with pytest.raises(UsageError, match="SR_BENCH_MAX_PIXELS='lots': expected a whole number"):
        read_image(tmp_path / "a.png")


def test_upscale_refuses_a_bomb_in_one_line_and_max_pixels_raises_the_limit(tmp_path, capsys):
    bomb = bomb_header(tmp_path / "bomb.png", 30000, 30000)
    args = ["--model", "bicubic", "--scale", "2", str(bomb), "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert upscale_main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {bomb}: 30000x30000") and "Traceback" not in err
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "small.png")
    small = ["--model", "bicubic", "--scale", "2", str(tmp_path / "small.png"), "--out", str(tmp_path / "out"),
             "--device", "cpu"]
    assert upscale_main([*small, "--max-pixels", "19"]) == 1
    assert "5x4 is 20 pixels, above the limit of 19" in capsys.readouterr().err
    assert upscale_main([*small, "--max-pixels", "20"]) == 0
    assert not (tmp_path / "out" / "bomb_x2.png").exists()


def _with_orientation(image: np.ndarray, orientation: int, fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    options = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}.get(fmt, {})
    Image.fromarray(image).save(buf, format=fmt, exif=exif, **options)
    return buf.getvalue()


#: what each EXIF orientation asks a viewer to do to the stored pixels (EXIF 2.3, tag 0x0112)
SHOWN = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
         5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
         8: Image.Transpose.ROTATE_90}


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_exif_orientation_shows_the_picture_as_viewers_do(fmt):
    """Lossless formats: the decoded pixels are the stored ones moved as the tag says (PIL applies
    a TIFF's tag itself while loading; it must not be applied twice)."""
    image = np.random.default_rng(1).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    for orientation, method in SHOWN.items():
        want = image if method is None else np.asarray(Image.fromarray(image).transpose(method))
        got, applied = decode_oriented(_with_orientation(image, orientation, fmt), f"x.{fmt.lower()}")
        assert applied == orientation
        np.testing.assert_array_equal(got, want)


def test_a_jpegs_orientation_is_applied_as_pil_exif_transpose_does():
    image = np.random.default_rng(1).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    for orientation in SHOWN:
        data = _with_orientation(image, orientation, "JPEG")
        with Image.open(io.BytesIO(data)) as im:
            want = np.asarray(ImageOps.exif_transpose(im))
        got, applied = decode_oriented(data, "x.jpg")
        assert applied == orientation
        np.testing.assert_array_equal(got, want)
        assert got.shape == ((16, 8, 3) if orientation >= 5 else (8, 16, 3))


def test_the_header_size_is_the_size_after_orientation(tmp_path):
    path = tmp_path / "phone.jpg"
    path.write_bytes(_with_orientation(np.zeros((6, 10, 3), np.uint8), 6, "JPEG"))
    head = read_header(path)
    assert (head.size, head.orientation) == ((6, 10), 6)
    assert read_image(path).shape == (10, 6, 3)


def test_a_broken_exif_block_only_loses_the_tag(tmp_path):
    image = np.random.default_rng(2).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f")  # IFD offset past end
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor PIL's "Corrupt EXIF data" on stderr
        got, applied = decode_oriented(buf.getvalue())
    assert applied == 1
    np.testing.assert_array_equal(got, image)


def test_animations_and_multi_page_files_are_refused_by_frame_count(tmp_path):
    frames = [Image.fromarray(np.full((4, 4, 3), v, np.uint8)) for v in (0, 80, 160)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    for name in ("anim.png", "pages.tif"):
        with pytest.raises(ImageError, match=f"{name}: has 3 frames"):
            read_image(tmp_path / name)
    frames[0].save(tmp_path / "one.png", save_all=True)  # a one-frame APNG is a picture
    assert read_image(tmp_path / "one.png").shape == (4, 4, 3)


def test_a_phones_mpo_jpeg_is_read_as_its_primary_picture(tmp_path):
    primary = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(primary).save(tmp_path / "photo.jpg", format="MPO", save_all=True, quality=95,
                                  append_images=[Image.fromarray(np.zeros((8, 8, 3), np.uint8))])
    with Image.open(tmp_path / "photo.jpg") as im:
        assert im.format == "MPO" and im.n_frames == 2
        want = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(read_image(tmp_path / "photo.jpg"), want)


def _alarm(seconds: int):
    def fail(*_):
        raise AssertionError(f"blocked for {seconds} s: a FIFO was opened for reading")
    signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)


def test_a_fifo_or_folder_named_like_an_image_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "baby.png")
    (tmp_path / "dir.png").mkdir()
    _alarm(20)
    try:
        with pytest.raises(ImageError, match=r"baby\.png: is a FIFO, not a regular file"):
            read_image(tmp_path / "baby.png")
        with pytest.raises(ImageError, match=r"baby\.png: is a FIFO"):
            read_header(tmp_path / "baby.png")
        with pytest.raises(ImageError, match=r"dir\.png: is a folder, not an image file"):
            read_image(tmp_path / "dir.png")
        os.symlink("/dev/zero", tmp_path / "zero.png")  # read_bytes would never end
        with pytest.raises(ImageError, match=r"zero\.png: is a device, not a regular file"):
            read_image(tmp_path / "zero.png")
    finally:
        signal.alarm(0)


def test_an_empty_file_is_named_empty(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.png: cannot decode \(the file is empty\)") as caught:
        read_image(tmp_path / "empty.png")
    assert "BytesIO" not in str(caught.value)
    (tmp_path / "junk.png").write_bytes(b"plain text, not a picture")
    with pytest.raises(ImageError, match=r"junk\.png: cannot decode \(not an image format sr_bench can read\)"):
        read_image(tmp_path / "junk.png")


def _png(ihdr: bytes, raw: bytes) -> bytes:
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw))
            + _chunk(b"IEND", b""))


def test_a_png_whose_image_data_ends_early_is_refused_not_zero_filled():
    # a complete zlib stream holding 2 of 10 rows: PIL alone decodes it, the last 8 rows zeros
    short = _png(struct.pack(">IIBBBBB", 10, 10, 8, 0, 0, 0, 0), b"".join(b"\x00" + bytes([200] * 10)
                                                                         for _ in range(2)))
    with Image.open(io.BytesIO(short)) as im:
        assert np.asarray(im)[9, 0] == 0  # what PIL makes of it
    with pytest.raises(ImageError, match=r"short\.png: cannot decode \(its image data ends after 22 of the 110 bytes"):
        decode_image(short, "short.png")


@pytest.mark.parametrize("shape", [(13, 17, 3), (13, 17), (1, 1, 3), (2, 3), (9, 1)])
def test_interlaced_pngs_pass_the_data_check(shape):
    """An Adam7 PNG built by hand (PIL cannot write one): every pass's rows, filter type 0."""
    image = np.random.default_rng(4).integers(0, 256, shape, dtype=np.uint8)
    h, w = shape[:2]
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)):
        sub = image[y0::dy, x0::dx]
        if sub.shape[0] and sub.shape[1]:
            raw += b"".join(b"\x00" + row.tobytes() for row in sub)
    data = _png(struct.pack(">IIBBBBB", w, h, 8, 2 if len(shape) == 3 else 0, 0, 0, 1), raw)
    np.testing.assert_array_equal(decode_image(data, "adam7.png"), image)


def test_a_file_larger_than_any_image_within_the_limit_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setenv("SR_BENCH_MAX_PIXELS", "1000")  # 8,000 bytes + 64 MiB of slack
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.truncate(8 * 1000 + (64 << 20) + 1)  # sparse: nothing is written
    with pytest.raises(ImageTooLarge, match=r"huge\.png: is 67,116,865 bytes, more than an image of at most 1,000 "
                                            r"pixels can take \(67,116,864\)"):
        read_image(huge)
