"""Opening a dataset: find it, check it is complete, read HR images and their LR counterparts.

LR images are the MATLAB-made files where the dataset has them; otherwise they are made with
the project's MATLAB-exact bicubic (``sr_bench.resize.downscale``) and cached on disk, keyed by
the HR file's sha256, so a second run reads them back instead of recomputing.

Every LR image is checked against its HR: it must be the HR cropped to a multiple of the scale,
then shrunk by the scale. A wrong LR file is refused by name (scoring it would give a plausible
but meaningless number); a wrong cache entry is made again.
"""

from __future__ import annotations

import errno
import hashlib
import logging
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
from sr_bench.errors import DataError, UsageError
from sr_bench.images import (
    IMAGE_EXTENSIONS,
    UNREAD_IMAGE_EXTENSIONS,
    ImageError,
    atomic_write,
    decode_image,
    file_problem,
    read_image_bytes,
)
from sr_bench.resize import downscale

__all__ = [
    "Dataset", "DatasetImageError", "DatasetNotFound", "ImageRef", "ImageTooSmall", "LRSizeError",
    "SSIM_WINDOW", "cache_dir", "data_root", "expected_lr_shape", "open_dataset", "open_layout",
]

log = logging.getLogger("sr_bench.data")

SSIM_WINDOW = 11  # Wang et al.'s 11x11 Gaussian window, 'valid' filtering (docs/protocol.md section 3)

# decode_image's advice for a corrupt file; right for a registered dataset only (see _decode)
_GENERIC_ADVICE = "download it again (the dataset's MANIFEST.tsv has the expected sha256)"



def generated_lr_source(scale: int, hr_sha256: str) -> str:
    """What a record's data fingerprint says for an LR image sr_bench made from an HR image: every
    command that scores the same images must give the same ``data_sha256``, so it is spelled once."""
    return f"generated-x{scale}-from:{hr_sha256}"

def _save_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)

class DatasetNotFound(DataError, FileNotFoundError):
    """A dataset that is missing or incomplete; the message says where we looked and how to get it.
    ``partial``: some of it was found (an HR folder with the wrong images), not just absent."""

    def __init__(self, message: str, *, partial: bool = False) -> None:
        super().__init__(message)
        self.partial = partial

    def __str__(self) -> str:  # OSError would format (errno, strerror)
        return str(self.args[0])


class DatasetImageError(ImageError, DataError):
    """An image of a dataset that cannot be used (corrupt, wrong size, a broken link): exit 1."""


class LRSizeError(DatasetImageError):
    """An LR file whose size is not its HR's (cropped to a multiple of the scale) / scale."""


class ImageTooSmall(DatasetImageError):
    """An image too small to score: after the border shave, less than the SSIM window is left."""


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """The data root: the argument, else ``$SR_BENCH_DATA``, else None."""
    if root is None:
        root = os.environ.get("SR_BENCH_DATA") or None
    return None if root is None else Path(root).expanduser()


def cache_dir() -> Path:
    """Where generated LR images are cached: ``$SR_BENCH_CACHE`` or ``~/.cache/sr_bench``."""
    env = os.environ.get("SR_BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sr_bench"


def expected_lr_shape(hr_shape: tuple[int, ...], scale: int) -> tuple[int, ...]:
    """The shape of the LR image of an HR image: modcrop to a multiple of ``scale``, then / scale."""
    return (hr_shape[0] // scale, hr_shape[1] // scale, *hr_shape[2:])


def _size(shape: tuple[int, ...]) -> str:
    channels = "" if len(shape) == 2 else f", {shape[2]} channels"
    return f"{shape[1]}x{shape[0]}{channels}" if channels else f"{shape[1]}x{shape[0]} (single-channel)"


def broken_link(path: Path) -> str | None:
    """Why ``path`` is an unusable symlink (a loop or a dangling link), or None."""
    if not path.is_symlink():
        return None
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        return "is a symlink loop"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symlink loop"
        return f"is a symlink to {os.readlink(path)}, which does not exist"
    return None


def _link_error(path: Path, why: str) -> DataError:
    return DataError(f"{path}: {why}; point the link at the real file or folder, or remove it")


@dataclass(frozen=True)
class ImageRef:
    stem: str
    hr_path: Path
    lr_dir: str | None = None  # folder pattern with {s}, absolute
    lr_name: str = "{stem}x{s}.png"

    def lr_candidate(self, scale: int) -> Path | None:
        """Where this image's LR file at ``scale`` would be, whether or not it exists."""
        if self.lr_dir is None:
            return None
        return Path(self.lr_dir.format(s=scale)) / self.lr_name.format(stem=self.stem, s=scale)

    def lr_path(self, scale: int) -> Path | None:
        path = self.lr_candidate(scale)
        if path is None:
            return None
        if (why := broken_link(path)) is not None:
            raise _link_error(path, why)
        if not path.exists():
            return None
        if (why := file_problem(path)) is not None:  # a folder or a FIFO named like the LR file
            raise DatasetImageError(f"{path}: {why}; the LR image must be an image file: replace or remove it")
        return path


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

    def decode(self, data: bytes, path: Path) -> np.ndarray:
        """Decode one of this dataset's files; an unusable file is a :class:`DatasetImageError`
        whose advice fits where the file came from (a registered dataset or the user's folder)."""
        try:
            return decode_image(data, path)
        except ImageError as e:
            message = str(e)
            if ": cannot decode" not in message:  # 16-bit, transparent, CMYK: the message has its fix
                raise DatasetImageError(message) from e
            message = message.replace(f": {_GENERIC_ADVICE}", "")
            if self.spec.registered:
                fix = (f"download {self.name} again ({self.spec.how_to_get or 'see its description'}); "
                       f"`python -m sr_bench.data check` compares every file with the data root's MANIFEST.tsv "
                       f"when it has one")
            else:
                fix = "replace it with a readable copy or remove it from the folder"
            raise DatasetImageError(f"{message}; {fix}") from e

    def read_file(self, path: Path) -> bytes:
        if (why := broken_link(path)) is not None:
            raise _link_error(path, why)
        if (why := file_problem(path)) is not None:  # never block on a FIFO
            raise DatasetImageError(f"{path}: {why}; replace it with the image file or remove it")
        try:
            return read_image_bytes(path)
        except ImageError as e:
            raise DatasetImageError(str(e)) from e

    def read_hr(self, i: int) -> tuple[np.ndarray, str]:
        """HR image i and the sha256 of its file."""
        ref = self.images[i]
        data = self.read_file(ref.hr_path)
        return self.decode(data, ref.hr_path), _sha256(data)

    def hr(self, i: int) -> np.ndarray:
        return self.read_hr(i)[0]

    def check_scorable(self, i: int, hr_shape: tuple[int, ...], scale: int) -> None:
        """Refuse, by name, an image too small for the scale, the border shave and the SSIM window
        (the metrics would fail later with a message that names no file)."""
        border = self.spec.max_shave(scale)
        h, w = (hr_shape[0] // scale) * scale - 2 * border, (hr_shape[1] // scale) * scale - 2 * border
        if min(h, w) >= SSIM_WINDOW:
            return
        need = -(-(SSIM_WINDOW + 2 * border) // scale) * scale  # round up to a multiple of the scale
        raise ImageTooSmall(
            f"{self.images[i].hr_path}: image of size {hr_shape[1]}x{hr_shape[0]} is too small to score at x{scale}: "
            f"after the crop to a multiple of {scale} and a border of {border} pixels, {max(w, 0)}x{max(h, 0)} "
            f"pixels are left, less than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window; use images of at least "
            f"{need}x{need} pixels at this scale, a smaller scale, or remove it from {self.location}"
        )

    def check_lr_file(self, i: int, scale: int, path: Path, lr: np.ndarray, hr_shape: tuple[int, ...]) -> None:
        want = expected_lr_shape(hr_shape, scale)
        if lr.shape == want:
            return
        hr_path = self.images[i].hr_path
        larger = lr.shape[0] > hr_shape[0] or lr.shape[1] > hr_shape[1]
        what = "larger than its HR" if larger else f"not its HR's size / {scale}"
        turned = (lr.shape[1], lr.shape[0], *lr.shape[2:]) == want and lr.shape != want
        hint = (" The two differ by a quarter turn: sr_bench applies EXIF orientation tags, as image viewers do; "
                "is one of them rotated by its tag and the other not?") if turned else ""
        raise LRSizeError(
            f"{path}: LR x{scale} image is {_size(lr.shape)}, {what} {hr_path} ({_size(hr_shape)}); "
            f"it must be {_size(want)} (the HR cropped to a multiple of {scale}, then shrunk {scale} times).{hint} "
            f"Replace it with the matching LR image, or delete it and sr_bench makes it with MATLAB-exact bicubic"
        )

    def read_lr(
        self, i: int, scale: int, hr: np.ndarray | None = None, hr_sha256: str | None = None, *, scoring: bool = True
    ) -> tuple[np.ndarray, str, str]:
        """LR image i at ``scale``: (image, sha256 of its source, "file" | "generated").

        Pass the already-decoded HR (and its hash) to avoid reading it twice. ``scoring``: refuse
        an image too small to score (:meth:`check_scorable`); training passes False, as it only
        needs the LR to exist and leaves out images too small for its patches.
        """
        ref = self.images[i]
        if hr is None or hr_sha256 is None:
            hr, hr_sha256 = self.read_hr(i)
        if scoring:
            self.check_scorable(i, hr.shape, scale)
        elif min(hr.shape[:2]) < scale:
            raise ImageTooSmall(
                f"{ref.hr_path}: image of size {hr.shape[1]}x{hr.shape[0]} is smaller than the scale "
                f"x{scale}; remove it from {self.location} or use a smaller scale"
            )
        path = ref.lr_path(scale)
        if path is not None:
            data = self.read_file(path)
            lr = self.decode(data, path)
            self.check_lr_file(i, scale, path, lr, hr.shape)
            return lr, _sha256(data), "file"
        source = generated_lr_source(scale, hr_sha256)
        want = expected_lr_shape(hr.shape, scale)
        cached = _cache_entry(self.name, scale, ref.stem, hr_sha256)
        if cached is not None and (hit := _read_cached(cached, want)) is not None:
            return hit, source, "generated"
        lr = downscale(hr, scale)
        if cached is not None:
            _write_cached(cached, lr)
        return lr, source, "generated"

    def lr(self, i: int, scale: int) -> np.ndarray:
        return self.read_lr(i, scale)[0]

    def lr_source(self, scale: int) -> str:
        """"file" when every LR image at this scale is a MATLAB-made file, "generated" when none
        is, "mixed" otherwise."""
        have = sum(ref.lr_path(scale) is not None for ref in self.images)
        return "file" if have == len(self.images) else "generated" if have == 0 else "mixed"


def _cache_entry(dataset: str, scale: int, stem: str, hr_sha256: str) -> Path | None:
    """Where the generated LR image of this HR file is cached; None when there is no cache
    (no home folder, or an earlier write in this process found the cache unwritable)."""
    try:
        root = cache_dir()
    except RuntimeError:  # Path.home() without HOME or a passwd entry
        return None
    if root in _UNWRITABLE_CACHES:
        return None
    return root / "lr" / dataset / f"X{scale}" / f"{stem}-{hr_sha256[:16]}.npy"


def _read_cached(cached: Path, want: tuple[int, ...]) -> np.ndarray | None:
    if not cached.is_file():
        return None
    try:
        lr = np.load(cached, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        log.warning("%s: unreadable cache entry; making the LR image again", cached)
        return None
    if lr.shape == want and lr.dtype == np.uint8:
        return lr
    # the entry's name (the HR hash) says nothing about its content: never trust it
    log.warning("%s: cached LR is %s %s, expected %s uint8; making it again", cached, lr.dtype, _size(lr.shape),
                _size(want))
    return None


#: cache folders found unwritable in this process: warned about once, then not tried again
_UNWRITABLE_CACHES: set[Path] = set()


def _write_cached(cached: Path, lr: np.ndarray) -> None:
    """Keep a generated LR image; a cache that cannot be written (full disk, read-only home,
    quota) is a warning, once, and the run goes on without caching."""
    try:
        atomic_write(cached, lambda tmp: _save_array(tmp, lr))
    except OSError as e:  # StorageError: one line naming the path and the errno
        root = cache_dir()
        if root not in _UNWRITABLE_CACHES:
            _UNWRITABLE_CACHES.add(root)
            log.warning("LR cache %s cannot be written (%s); going on without caching the LR images sr_bench makes "
                        "(set SR_BENCH_CACHE to a writable folder to keep them)", root,
                        f"{e.strerror} [{errno.errorcode.get(e.errno or 0, '?')}]" if e.strerror else e)


def _list_images(folder: Path, *, strict_types: bool) -> list[Path]:
    """The image files directly in ``folder`` (hidden files aside), sorted. Refused by name: a
    broken link, an entry named like an image that is not a regular file (a folder, a FIFO),
    two files for one stem (``a.png`` and ``a.jpg``), and with ``strict_types`` (a user's folder)
    an image of a format sr_bench does not read (``a.gif``): skipping it would score a set
    that silently lacks an image."""
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as e:
        raise DataError(f"{folder}: cannot list it ({e.strerror or e}); check its permissions") from None
    files = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS]
    for p in files:
        if (why := broken_link(p)) is not None:
            raise _link_error(p, why)
        if (why := file_problem(p)) is not None:
            raise DatasetImageError(f"{p}: {why}; remove it or rename it so it does not look like an image")
        if not _utf8(p.name):  # its name goes into records, CSV and markdown tables
            shown = p.name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise DatasetImageError(f"{folder}/{shown}: the file name is not valid UTF-8 (a name from another "
                                    f"system's encoding?); rename it, e.g. with `convmv -f latin1 -t utf8`")
    unread = [p for p in entries if p.suffix.lower() in UNREAD_IMAGE_EXTENSIONS] if strict_types else []
    if unread:
        shown = ", ".join(p.name for p in unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5 else "")
        raise DatasetImageError(
            f"{folder}: holds {shown}, of a type sr_bench does not read; it reads {', '.join(IMAGE_EXTENSIONS)}: "
            f"convert it (e.g. to PNG) or move it out of the folder"
        )
    _refuse_shared_stems(files)
    return files


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes kept as surrogates by os.fsdecode
        return False
    return True


def _refuse_shared_stems(files: list[Path]) -> None:
    by_stem: dict[str, list[Path]] = {}
    for p in files:
        by_stem.setdefault(_stem_of(p), []).append(p)
    shared = [group for group in by_stem.values() if len(group) > 1]
    if shared:
        pairs = "; ".join(" and ".join(map(str, group)) for group in shared[:3])
        more = f" (and {len(shared) - 3} more)" if len(shared) > 3 else ""
        raise DatasetImageError(f"{pairs}{more}: two files for one image; keep one of each")


def _stem_of(path: Path) -> str:
    return path.stem


def _from_layout(spec: DatasetSpec, root: Path, layout: Layout) -> Dataset | str:
    """The dataset at this layout, or a one-line reason it is not there."""
    hr_dir = root / layout.hr
    if (why := broken_link(hr_dir)) is not None:
        raise _link_error(hr_dir, why)
    if not hr_dir.is_dir():
        return f"{hr_dir} (not found)"
    files = _list_images(hr_dir, strict_types=False)
    by_stem = {_stem_of(p): p for p in files}
    if spec.stems is not None:
        missing = [s for s in spec.stems if s not in by_stem]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            expected = len(spec.stems)
            return f"{hr_dir} (has {len(files)} images; missing {len(missing)} of the expected {expected}: {shown})"
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
    files = _list_images(hr_dir, strict_types=True)
    if not files:
        raise DatasetNotFound(f"{hr_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    spec = DatasetSpec(name=path.name, kind="benchmark", count=None, layouts=(), description=f"images in {hr_dir}",
                       registered=False)
    return Dataset(spec, [ImageRef(_stem_of(p), p, lr) for p in files], str(hr_dir))


def open_dataset(name: str, root: str | os.PathLike | None = None) -> Dataset:
    """A registered dataset (``Set5``, ``DIV2K``, ``T91``, ``embedded``, ...) found under ``root``
    (default ``$SR_BENCH_DATA``), or a path to a folder of images."""
    if name not in DATASETS:
        path = Path(name).expanduser()
        if (why := broken_link(path)) is not None:
            raise _link_error(path, why)
        if path.is_dir():
            return _folder(path)
        if path.exists():
            raise UsageError(f"dataset {name}: {file_problem(path) or 'is a file'}, not a folder of images; pass the "
                             f"folder that holds the images, or a registered dataset name")
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
    if not base.is_dir():  # a typo or a file: say so, not "looked in <file>/Set5/HR"
        origin = "--data-root" if root is not None else "SR_BENCH_DATA"
        what = "is a file, not a folder" if base.exists() else "does not exist"
        raise DatasetNotFound(f"{name}: the data root {base} ({origin}) {what}; pass the folder that holds "
                              f"{' or '.join(layout.hr for layout in spec.layouts)}. To get it: {spec.how_to_get}.")
    reasons = []
    for layout in spec.layouts:
        found = _from_layout(spec, base, layout)
        if isinstance(found, Dataset):
            if layout.note:
                log.info("%s: %s", found.location, layout.note)
            return found
        reasons.append(found)
    raise DatasetNotFound(
        f"{name}: expected {spec.count} HR images; looked in: {'; '.join(reasons)}. To get it: {spec.how_to_get}.",
        partial=any(not r.endswith("(not found)") for r in reasons),
    )


def open_layout(name: str, root: str | os.PathLike, layout: Layout) -> Dataset:
    """A registered dataset in one given layout under ``root`` (``download`` checks the copy it
    just unpacked, not another copy that an earlier layout would find first)."""
    spec = get_spec(name)
    found = _from_layout(spec, Path(root), layout)
    if isinstance(found, str):
        raise DatasetNotFound(f"{name}: expected {spec.count} HR images; looked in: {found}", partial=True)
    return found
