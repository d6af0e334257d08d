"""Opening a dataset: find it, check it is complete, read HR images and their LR counterparts.

LR images are the MATLAB-made files where the dataset has them; otherwise they are made with
the project's MATLAB-exact bicubic (``sr_bench.resize.downscale``) and cached on disk, keyed by
the HR file's sha256, so a second run reads them back instead of recomputing.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sr_bench.data.registry import (
    DATASETS,
    EMBEDDED_EVAL,
    EMBEDDED_TRAIN,
    DatasetSpec,
    Layout,
    get_spec,
    skimage_data_dir,
)
from sr_bench.images import IMAGE_EXTENSIONS, ImageError, atomic_write, decode_image
from sr_bench.resize import downscale

__all__ = ["Dataset", "DatasetNotFound", "ImageRef", "open_dataset", "data_root", "cache_dir"]


class DatasetNotFound(FileNotFoundError):
    """A dataset that is missing or incomplete; the message says where we looked and how to get it."""


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """The data root: the argument, else ``$SR_BENCH_DATA``, else None."""
    if root is None:
        root = os.environ.get("SR_BENCH_DATA") or None
    return None if root is None else Path(root).expanduser()


def cache_dir() -> Path:
    """Where generated LR images are cached: ``$SR_BENCH_CACHE`` or ``~/.cache/sr_bench``."""
    env = os.environ.get("SR_BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sr_bench"


@dataclass(frozen=True)
class ImageRef:
    stem: str
    hr_path: Path
    lr_dir: str | None = None  # folder pattern with {s}, absolute
    lr_name: str = "{stem}x{s}.png"

    def lr_path(self, scale: int) -> Path | None:
        if self.lr_dir is None:
            return None
        path = Path(self.lr_dir.format(s=scale)) / self.lr_name.format(stem=self.stem, s=scale)
        return path if path.is_file() else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Dataset:
    """An ordered list of images with their LR counterparts at any integer scale."""

    def __init__(self, spec: DatasetSpec, images: list[ImageRef], location: str):
        self.spec = spec
        self.images = images
        self.location = location

    name = property(lambda self: self.spec.name)
    kind = property(lambda self: self.spec.kind)
    is_benchmark = property(lambda self: self.spec.is_benchmark)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self)} images, {self.location})"

    def read_hr(self, i: int) -> tuple[np.ndarray, str]:
        """HR image i and the sha256 of its file."""
        ref = self.images[i]
        data = ref.hr_path.read_bytes()
        return decode_image(data, ref.hr_path), _sha256(data)

    def hr(self, i: int) -> np.ndarray:
        return self.read_hr(i)[0]

    def read_lr(self, i: int, scale: int, hr: np.ndarray | None = None, hr_sha256: str | None = None) -> tuple[np.ndarray, str, str]:
        """LR image i at ``scale``: (image, sha256 of its source, "file" | "generated").

        Pass the already-decoded HR (and its hash) to avoid reading it twice when the LR
        must be generated.
        """
        ref = self.images[i]
        path = ref.lr_path(scale)
        if path is not None:
            data = path.read_bytes()
            return decode_image(data, path), _sha256(data), "file"
        if hr_sha256 is None:
            hr, hr_sha256 = self.read_hr(i)
        cached = cache_dir() / "lr" / self.name / f"X{scale}" / f"{ref.stem}-{hr_sha256[:16]}.npy"
        if cached.is_file():
            try:
                return np.load(cached, allow_pickle=False), f"generated-x{scale}-from:{hr_sha256}", "generated"
            except (OSError, ValueError):
                pass  # unreadable cache entry: regenerate and overwrite it below
        if hr is None:
            hr = self.hr(i)
        if min(hr.shape[:2]) < scale:
            raise ImageError(
                f"{ref.hr_path}: image of size {hr.shape[1]}x{hr.shape[0]} is smaller than the scale "
                f"x{scale}; remove it from the dataset or use a smaller scale"
            )
        lr = downscale(hr, scale)
        atomic_write(cached, lambda tmp: np.save(open(tmp, "wb"), lr, allow_pickle=False))
        return lr, f"generated-x{scale}-from:{hr_sha256}", "generated"

    def lr(self, i: int, scale: int) -> np.ndarray:
        return self.read_lr(i, scale)[0]

    def lr_source(self, scale: int) -> str:
        """"file" when every LR image at this scale is a MATLAB-made file, "generated" when none
        is, "mixed" otherwise."""
        have = sum(ref.lr_path(scale) is not None for ref in self.images)
        return "file" if have == len(self.images) else "generated" if have == 0 else "mixed"


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _stem_of(path: Path) -> str:
    return path.stem


def _from_layout(spec: DatasetSpec, root: Path, layout: Layout) -> Dataset | str:
    """The dataset at this layout, or a one-line reason it is not there."""
    hr_dir = root / layout.hr
    if not hr_dir.is_dir():
        return f"{hr_dir} (not found)"
    files = _list_images(hr_dir)
    by_stem = {_stem_of(p): p for p in files}
    if spec.stems is not None:
        missing = [s for s in spec.stems if s not in by_stem]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            return f"{hr_dir} (has {len(files)} images; missing {len(missing)} of the expected {len(spec.stems)}: {shown})"
        files = [by_stem[s] for s in spec.stems]
    elif spec.count is not None and len(files) != spec.count:
        return f"{hr_dir} (has {len(files)} images, expected {spec.count})"
    lr_dir = str(root / layout.lr) if layout.lr else None
    images = [ImageRef(_stem_of(p), p, lr_dir, layout.lr_name) for p in files]
    return Dataset(spec, images, str(hr_dir))


def _embedded(spec: DatasetSpec) -> Dataset:
    folder = skimage_data_dir()
    names = EMBEDDED_EVAL if spec.name == "embedded" else EMBEDDED_TRAIN
    images = [ImageRef(Path(n).stem, folder / n) for n in names]
    missing = [str(r.hr_path) for r in images if not r.hr_path.is_file()]
    if missing:
        raise DatasetNotFound(
            f"{spec.name}: scikit-image's bundled photos are missing ({', '.join(missing)}); "
            f"reinstall scikit-image (pip install --force-reinstall scikit-image)"
        )
    return Dataset(spec, images, f"scikit-image {folder}")


def _folder(path: Path) -> Dataset:
    """Any folder of images: ``path/HR`` (+ ``path/LR_bicubic/X<s>``) or a flat folder."""
    if (path / "HR").is_dir():
        hr_dir, lr = path / "HR", str(path / "LR_bicubic" / "X{s}")
    else:
        hr_dir, lr = path, None
    files = _list_images(hr_dir)
    if not files:
        raise DatasetNotFound(f"{hr_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    spec = DatasetSpec(name=path.name, kind="benchmark", count=None, layouts=(), description=f"images in {hr_dir}")
    return Dataset(spec, [ImageRef(_stem_of(p), p, lr) for p in files], str(hr_dir))


def open_dataset(name: str, root: str | os.PathLike | None = None) -> Dataset:
    """A registered dataset (``Set5``, ``DIV2K``, ``T91``, ``embedded``, ...) found under ``root``
    (default ``$SR_BENCH_DATA``), or a path to a folder of images."""
    if name not in DATASETS:
        path = Path(name).expanduser()
        if path.is_dir():
            return _folder(path)
        get_spec(name)  # raises with the list of known names
    spec = DATASETS[name]
    if spec.kind == "embedded" or spec.name == "embedded-train":
        return _embedded(spec)
    base = data_root(root)
    if base is None:
        where = " or ".join(f"DIR/{layout.hr}" for layout in spec.layouts)
        raise DatasetNotFound(
            f"{name}: no data root given. Pass --data-root DIR or set SR_BENCH_DATA=DIR, where {where} "
            f"holds the {spec.count} HR images. To get it: {spec.how_to_get}."
        )
    reasons = []
    for layout in spec.layouts:
        found = _from_layout(spec, base, layout)
        if isinstance(found, Dataset):
            return found
        reasons.append(found)
    raise DatasetNotFound(
        f"{name}: expected {spec.count} HR images; looked in: {'; '.join(reasons)}. To get it: {spec.how_to_get}."
    )
