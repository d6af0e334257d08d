"""``python -m sr_bench.data check``: decode every file of every dataset under the data root.

Counting files proves nothing: a truncated or random-bytes PNG counts like a good one. So each
HR and LR image is decoded (with PIL, as every command reads it), each LR is checked against its
HR's size, and where the data root has a ``MANIFEST.tsv`` (columns ``dataset, file, sha256,
width, height, ...``, ``file`` relative to the root) every listed file must exist with that
sha256 and size. Images are checked on a pool of 2 threads: decoding dominates and PIL/zlib
release the GIL while they work.

:func:`write_manifest` writes that file (``download`` calls it after unpacking): rows are merged
into an existing manifest by file, its other rows and columns kept, and the file is replaced in
one rename.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sr_bench.data.dataset import Dataset, DatasetImageError, DatasetNotFound, ImageRef, open_dataset
from sr_bench.data.registry import DATASETS
from sr_bench.errors import DataError, UsageError
from sr_bench.images import atomic_write

__all__ = [
    "MANIFEST_COLUMNS", "DatasetReport", "Manifest", "ManifestRow", "check_dataset", "check_root", "dataset_files",
    "manifest_row", "read_manifest", "write_manifest",
]

log = logging.getLogger("sr_bench.data")

MANIFEST = "MANIFEST.tsv"
MANIFEST_COLUMNS = ("dataset", "file", "sha256", "width", "height", "mode", "source")
THREADS = 2


@dataclass(frozen=True)
class ManifestRow:
    dataset: str
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class Manifest:
    """A data root's MANIFEST.tsv: {file relative to the root: row}."""

    path: Path
    rows: dict[str, ManifestRow]

    @property
    def root(self) -> Path:
        return self.path.parent

    def relative(self, file: Path) -> str | None:
        return file.relative_to(self.root).as_posix() if file.is_relative_to(self.root) else None


@dataclass
class DatasetReport:
    """What ``check`` found for one dataset."""

    name: str
    status: str = "ok"  # "ok" | "missing" (absent, not asked for) | "bad"
    location: str = ""
    images: int = 0
    lr_files: dict[int, int] = field(default_factory=dict)  # scale -> LR files found and checked
    verified: int = 0  # files whose sha256 matched the manifest
    problems: list[str] = field(default_factory=list)
    note: str = ""

    def summary(self) -> str:
        if self.status == "missing":
            return f"  missing  {self.name:14s} {self.note}"
        lr = ", ".join(f"x{s} {n}" for s, n in sorted(self.lr_files.items())) or "none (generated when needed)"
        sha = f"; sha256 {self.verified} verified" if self.verified else ""
        head = "ok      " if not self.problems else "BAD     "
        line = f"  {head} {self.name:14s} {self.images:4d} images  LR files: {lr}{sha}  {self.location}"
        if self.note:
            line += f"  ({self.note})"
        return "\n".join([line] + [f"      - {p}" for p in self.problems])


def read_manifest(root: Path) -> Manifest | None:
    """``<root>/MANIFEST.tsv``, or None when there is none."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    rows: dict[str, ManifestRow] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"dataset", "file", "sha256", "width", "height"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}: no column(s) {', '.join(sorted(missing))} in the header line; "
                            f"a manifest has dataset, file, sha256, width, height (tab-separated)")
        for line, row in enumerate(reader, start=2):
            try:
                rows[row["file"]] = ManifestRow(row["dataset"], row["sha256"].lower(), int(row["width"]),
                                                int(row["height"]))
            except (TypeError, ValueError, AttributeError):
                raise DataError(f"{path}, line {line}: malformed row {row!r}; fix or delete that line") from None
    return Manifest(path, rows)


def _lr_scales(ref: ImageRef) -> list[int]:
    """The scales that have an LR folder next to this image's HR folder (``X2``, ``X3``, ...)."""
    if ref.lr_dir is None:
        return []
    pattern = Path(ref.lr_dir)
    prefix, _, suffix = pattern.name.partition("{s}")
    name = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + "$")
    if not pattern.parent.is_dir():
        return []
    return sorted(int(m.group(1)) for d in pattern.parent.iterdir() if d.is_dir() and (m := name.match(d.name)))


@dataclass
class _ImageResult:
    problems: list[str] = field(default_factory=list)
    lr_scales: list[int] = field(default_factory=list)
    checked: dict[Path, str] = field(default_factory=dict)  # file -> sha256, for the manifest


def _check_file(ds: Dataset, path: Path, manifest: Manifest | None, out: _ImageResult) -> np.ndarray | None:
    """Read, hash and decode one file; compare with its manifest row. Returns the image or None."""
    try:
        data = ds.read_file(path)
        img = ds.decode(data, path)
    except DataError as e:
        out.problems.append(str(e))
        return None
    digest = hashlib.sha256(data).hexdigest()
    out.checked[path] = digest
    if manifest is None or (rel := manifest.relative(path)) is None or (row := manifest.rows.get(rel)) is None:
        return img
    if row.sha256 != digest:
        out.problems.append(f"{path}: sha256 {digest[:16]}... is not the {row.sha256[:16]}... in {manifest.path}; "
                            f"the file changed or is corrupt: restore it from its source")
    elif (row.width, row.height) != (img.shape[1], img.shape[0]):
        out.problems.append(f"{path}: {img.shape[1]}x{img.shape[0]}, but {manifest.path} says "
                            f"{row.width}x{row.height}; restore the file from its source")
    return img


def _check_image(ds: Dataset, i: int, manifest: Manifest | None) -> _ImageResult:
    out = _ImageResult()
    ref = ds.images[i]
    hr = _check_file(ds, ref.hr_path, manifest, out)
    for s in _lr_scales(ref):
        try:
            path = ref.lr_path(s)
        except DataError as e:  # a broken link where the LR file should be
            out.problems.append(str(e))
            continue
        if path is None:
            continue
        out.lr_scales.append(s)
        lr = _check_file(ds, path, manifest, out)
        if lr is not None and hr is not None:
            try:
                ds.check_lr_file(i, s, path, lr, hr.shape)
            except DatasetImageError as e:
                out.problems.append(str(e))
    return out


def check_dataset(ds: Dataset, manifest: Manifest | None, progress: bool = False) -> DatasetReport:
    """Decode and verify every file of one opened dataset."""
    from tqdm import tqdm

    report = DatasetReport(ds.name, location=ds.location, images=len(ds))
    checked: dict[Path, str] = {}
    with ThreadPoolExecutor(THREADS) as pool:
        results = pool.map(lambda i: _check_image(ds, i, manifest), range(len(ds)))
        for result in tqdm(results, total=len(ds), desc=f"check {ds.name}", unit="img", disable=not progress,
                           leave=False):
            report.problems += result.problems
            for s in result.lr_scales:
                report.lr_files[s] = report.lr_files.get(s, 0) + 1
            checked.update(result.checked)
    if manifest is not None:
        _compare_with_manifest(report, manifest, checked)
    if report.problems:
        report.status = "bad"
    return report


def _compare_with_manifest(report: DatasetReport, manifest: Manifest, checked: dict[Path, str]) -> None:
    """Count verified files; a listed file of this dataset that is gone is a problem."""
    rows = manifest.rows
    here = {rel: sha for p, sha in checked.items() if (rel := manifest.relative(p)) is not None}
    report.verified = sum(1 for f, sha in here.items() if f in rows and rows[f].sha256 == sha)
    listed = [f for f, row in rows.items() if row.dataset == report.name]
    absent = sorted(f for f in listed if f not in here and not (manifest.root / f).is_file())
    if absent:
        shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
        report.problems.append(f"{len(absent)} file(s) listed in {manifest.path} are missing: {shown}; "
                               f"restore them from their source")
    unlisted = len([f for f in here if f not in rows])
    if unlisted:
        report.note = f"{unlisted} file(s) not in {MANIFEST}"


def _open(name: str, root: Path | None, asked: bool) -> Dataset | DatasetReport:
    try:
        return open_dataset(name, root)
    except DatasetNotFound as e:
        # absent sets are normal (nobody has all of them); incomplete or requested ones are not
        if e.partial or asked:
            return DatasetReport(name, status="bad", problems=[str(e)])
        return DatasetReport(name, status="missing", note="not under the data root")
    except DataError as e:
        return DatasetReport(name, status="bad", problems=[str(e)])


def check_root(root: Path | None, names: Sequence[str] = (), progress: bool = False) -> list[DatasetReport]:
    """Check the named datasets (default: every registered one that lives under a data root)."""
    if not names and root is None:
        raise UsageError("check: no data root; pass --data-root DIR or set SR_BENCH_DATA=DIR "
                         "(the folder holding Set5/HR, Set14/HR, ...)")
    if root is not None and not root.is_dir():
        raise UsageError(f"--data-root {root}: no such folder; pass the folder holding Set5/HR, Set14/HR, ...")
    manifest = read_manifest(root) if root is not None else None
    asked = bool(names)
    reports = []
    for name in names or [s.name for s in DATASETS.values() if s.layouts]:
        found = _open(name, root, asked)
        if isinstance(found, DatasetReport):
            reports.append(found)
            continue
        reports.append(check_dataset(found, manifest, progress))
        log.debug("checked %s: %d problem(s)", name, len(reports[-1].problems))
    return reports


def dataset_files(ds: Dataset) -> list[Path]:
    """Every HR file of ``ds`` and each LR file beside it, at every scale that has an LR folder."""
    files = []
    for ref in ds.images:
        files.append(ref.hr_path)
        files += [p for s in _lr_scales(ref) if (p := ref.lr_path(s)) is not None]
    return files


def manifest_row(dataset: str, root: Path, file: Path, source: str) -> dict[str, str]:
    """The manifest row of one image file (``file`` under ``root``); ``source`` says where it came from."""
    from PIL import Image

    data = file.read_bytes()
    with Image.open(io.BytesIO(data)) as img:  # the header is enough for the size and mode
        (width, height), mode = img.size, img.mode
    return {"dataset": dataset, "file": file.relative_to(root).as_posix(), "sha256": hashlib.sha256(data).hexdigest(),
            "width": str(width), "height": str(height), "mode": mode, "source": source}


def write_manifest(root: Path, rows: Sequence[Mapping[str, str]]) -> Path:
    """Merge ``rows`` into ``<root>/MANIFEST.tsv``: a row for a file already listed replaces it, the
    other rows (and any extra columns) stay, new files go at the end; written atomically."""
    path = root / MANIFEST
    fieldnames, merged = list(MANIFEST_COLUMNS), dict[str, dict[str, str]]()
    if path.is_file():
        read_manifest(root)  # a malformed manifest is reported, not rewritten
        with open(path, newline="") as f:
            reader = csv.DictReader(f, delimiter="\t")
            present = list(reader.fieldnames or ())
            fieldnames = present + [c for c in MANIFEST_COLUMNS if c not in present]
            merged = {row["file"]: row for row in reader}
    for row in rows:
        merged[row["file"]] = {**merged.get(row["file"], {}), **row}

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames, delimiter="\t", lineterminator="\n", restval="")
            writer.writeheader()
            writer.writerows(merged.values())

    return atomic_write(path, write)
