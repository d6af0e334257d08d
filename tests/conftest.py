"""Shared fixtures. Real-data tests read $SR_BENCH_DATA (``.ci/run`` points it at
../shared/datasets); without it they skip locally and fail under CI."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
import torch


def _data_root() -> Path | None:
    root = os.environ.get("SR_BENCH_DATA")
    return Path(root) if root and Path(root, "Set5", "HR").is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real benchmark images (Set5, Set14, B100, Urban100, T91)."""
    root = _data_root()
    if root is None:
        message = (
            "the real benchmark images are needed: set SR_BENCH_DATA to a folder with Set5/HR, Set14/HR, "
            "B100/HR, Urban100/HR, T91/HR (e.g. ../shared/datasets)"
        )
        if os.environ.get("CI"):
            pytest.fail(message + f" (SR_BENCH_DATA={os.environ.get('SR_BENCH_DATA')!r})")
        pytest.skip(message)
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Generated LR images go to a per-session temporary cache, never the user's."""
    monkeypatch.setenv("SR_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "sr_bench_cache"))


@pytest.fixture(autouse=True)
def _restore_sr_bench_logger():
    """A command's ``main`` calls ``cli.setup_logging``, which stops the "sr_bench" logger from
    propagating for the rest of the process (module-scoped fixtures call it too); put the logger
    back to its untouched state before and after each test so that ``caplog`` sees its lines."""
    import logging

    def pristine() -> None:
        logger = logging.getLogger("sr_bench")
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
        logger.handlers[:] = []

    pristine()
    yield
    pristine()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        # the marker, not the keyword: keywords also hold the folder names above the test file
        # (a checkout in a folder named gpu would skip every test)
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one intra-op thread (and do not fight other jobs for cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _textured(h: int, w: int, seed: int):
    """A smooth-but-busy RGB uint8 image: misaligned patches differ a lot from aligned ones."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        for _ in range(4):
            fy, fx, ph = rng.uniform(0.05, 0.6, 2).tolist() + [rng.uniform(0, 6.28)]
            img[..., c] += np.sin(fy * yy + fx * xx + ph)
    img = (img - img.min()) / (img.max() - img.min())
    return np.round(img * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def textured():
    """``textured(h, w, seed)`` -> a synthetic photograph-like uint8 image."""
    return _textured


@pytest.fixture(scope="module")
def small_train_folders(tmp_path_factory, textured) -> dict[str, Path]:
    """Three small training images and one validation image, for tiny training runs."""
    from PIL import Image

    root = tmp_path_factory.mktemp("train_folders")
    (root / "train").mkdir()
    (root / "val").mkdir()
    for i, (h, w) in enumerate([(96, 100), (120, 96), (100, 132)]):
        Image.fromarray(textured(h, w, i)).save(root / "train" / f"t{i}.png")
    Image.fromarray(textured(48, 60, 99)).save(root / "val" / "v0.png")
    return {"train": root / "train", "val": root / "val", "cache": root / "cache"}


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: creating a file in ``folder`` (or below) fails with EROFS, as on a read-only
    disk (tests may run as root, where a chmod does not stop writes)."""
    real_mkstemp, real_open = tempfile.mkstemp, os.open
    folders: set[Path] = set()

    def blocked(path) -> bool:
        return any(Path(path).resolve().is_relative_to(f) for f in folders)

    def mkstemp(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's own name
        if dir is not None and blocked(dir):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    def open_(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and blocked(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "open", open_)
    return lambda folder: folders.add(Path(folder).resolve())


@pytest.fixture
def disk_full_for(monkeypatch):
    """``disk_full_for(name)``: fsync of a temp file being written for ``name`` fails with ENOSPC,
    as on a full disk (the data reaches the disk, or fails to, at fsync)."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to tell which file an fsync is for")
    real = os.fsync
    names: set[str] = set()

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if any(Path(path).name.startswith(f".{n}.") and path.endswith(".tmp") for n in names):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return names.add
