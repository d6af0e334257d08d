"""Reading images: every kind of bad input is converted losslessly or refused, naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sr_bench.images import ImageError, as_batch, quantize, read_image, to_image, to_tensor, write_image


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)


def test_rgb_and_gray_round_trip(tmp_path, rgb):
    write_image(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)
    write_image(tmp_path / "g.png", rgb[..., 0])
    g = read_image(tmp_path / "g.png")
    assert g.shape == (9, 11) and (g == rgb[..., 0]).all()


def test_palette_is_expanded_losslessly(tmp_path, rgb):
    pal = Image.fromarray(rgb).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))


def test_opaque_alpha_is_dropped_and_transparency_refused(tmp_path, rgb):
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(read_image(tmp_path / "opaque.png"), rgb)
    rgba[0, 0, 3] = 10
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    with pytest.raises(ImageError, match=r"clear\.png.*transparent"):
        read_image(tmp_path / "clear.png")


def test_sixteen_bit_is_refused(tmp_path):
    Image.fromarray(np.full((5, 5), 40000, np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(ImageError, match=r"deep\.png: 16-bit"):
        read_image(tmp_path / "deep.png")


def test_corrupt_and_truncated_files_name_the_file(tmp_path, rgb):
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match=r"junk\.png: cannot decode"):
        read_image(tmp_path / "junk.png")
    write_image(tmp_path / "full.png", rgb)
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.png: cannot decode.*corrupt or truncated"):
        read_image(tmp_path / "cut.png")


def test_unknown_extension_and_missing_file(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.gif")
    with pytest.raises(ImageError, match=r"a\.gif: unknown image extension"):
        read_image(tmp_path / "a.gif")
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_cmyk_is_refused(tmp_path, rgb):
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg")
    with pytest.raises(ImageError, match=r"c\.jpg: unsupported image mode 'CMYK'"):
        read_image(tmp_path / "c.jpg")


def test_write_is_atomic(tmp_path, rgb, monkeypatch):
    def fail(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        write_image(tmp_path / "x.png", rgb)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary


def test_tensor_conversions_and_quantisation(rgb):
    t = to_tensor(rgb)
    assert t.shape == (1, 3, 9, 11) and t.dtype.is_floating_point
    np.testing.assert_array_equal(to_image(t), rgb)
    assert as_batch(rgb[..., 0]).shape == (1, 1, 9, 11)
    import torch

    x = torch.tensor([-0.1, 0.5 / 255, 1.5 / 255, 254.5 / 255, 1.2])
    assert quantize(x).tolist() == [0, 1, 2, 255, 255]  # half up, clipped


def test_written_files_are_world_readable(tmp_path, rgb):
    import os
    import stat

    path = write_image(tmp_path / "p.png", rgb)
    assert os.stat(path).st_mode & stat.S_IROTH


def test_a_killed_atomic_write_leaves_a_temp_that_the_next_write_of_the_same_target_removes(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from sr_bench.images import _host_tag, atomic_write

    target = tmp_path / "ckpt.pt"
    child = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from sr_bench.images import atomic_write\n"
        "def write(tmp):\n"
        "    Path(tmp).write_bytes(b'half a checkpoint')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "atomic_write(sys.argv[1], write)\n"
    )
    proc = subprocess.run([sys.executable, "-c", child, str(target)], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".ckpt.pt.") and not target.exists()

    tag, dead = _host_tag(), 2**22 + 12345  # above the default pid_max (4194304): no such process
    keep = {
        f".ckpt.pt.{tag}.{os.getpid()}.abcdefgh.tmp",  # this process: maybe being written right now
        f".ckpt.pt.{tag}.{os.getppid()}.abcdefgh.tmp",  # a live writer
        ".ckpt.pt.qwertyui.tmp",  # an older-style name, fresh: its writer may be alive
        f".ckpt.pt.bak.{tag}.{dead}.abcdefgh.tmp",  # another target's (ckpt.pt.bak)
        "notes.txt",
    }
    gone = {f".ckpt.pt.{tag}.{dead}.zxcvbnma.tmp", ".ckpt.pt.oldstyle.tmp"}
    for name in keep | gone:
        (tmp_path / name).write_bytes(b"x")
    old = time.time() - 3600
    os.utime(tmp_path / ".ckpt.pt.oldstyle.tmp", (old, old))  # untouched for an hour: stale

    atomic_write(target, lambda tmp: tmp.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole"
    assert {p.name for p in tmp_path.iterdir()} == keep | {"ckpt.pt"}


def test_fixy_atomic_write_refuses_folder(tmp_path):
    from sr_bench.images import OutputIsFolderError, atomic_write

    with pytest.raises(OutputIsFolderError, match="is a folder") as e:
        atomic_write(tmp_path, lambda tmp: tmp.write_text("x"))
    assert e.value.exit_code == 2 and str(tmp_path) in str(e.value)
    assert list(tmp_path.iterdir()) == []
