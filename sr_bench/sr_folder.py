"""Score super-resolved images that something else produced (another codebase, a paper's release).

``python -m sr_bench.evaluate --sr-dir DIR --label NAME --datasets Set5 B100 --scales 2 4`` calls
:func:`score_sr_folder`. The SR files are found under the first of these layouts that holds any
file for a (dataset, scale), and the layout used is logged and stored in the record
(``model_options["sr_layout"]``):

==============  =================================================  ==============================
layout          path under DIR                                     made by
==============  =================================================  ==============================
sr_bench        ``{dataset}/x{scale}/{stem}.png``                  ``upscale --dataset``, exports
edsr-pytorch    ``results-{dataset}/{stem}_x{scale}_SR.png``       EDSR-PyTorch ``--save_results``
basicsr         ``visualization/{dataset}/{stem}_{label}.png``     BasicSR test (scale implied);
                (or the one suffix the files carry)                suffix: ``val.suffix`` or name
upscale         ``{dataset}/x{scale}/{stem}_x{scale}.png``         ``upscale --out OUT/Set5/x2``
pattern         ``--sr-pattern`` with ``{dataset}`` ``{scale}``    anything else
                ``{stem}`` (``{label}``)
==============  =================================================  ==============================

BasicSR names its images after its run (``val.suffix``, else the option file's ``name``), not after
sr_bench's ``--label``: when no file carries the label, the one suffix that the folder's images
carry is taken (a folder holding several is refused with the suffixes listed), and the record's
``sr_pattern`` names it (``visualization/{dataset}/{stem}_EDSR_Mx2.png``).

The extension in a layout is only the usual one: any image extension sr_bench reads is accepted,
but two files for one image (``a.png`` and ``a.PNG``, or ``a.png`` and ``a.jpg``) are refused.

Scoring is the code ``evaluate`` uses too (:mod:`sr_bench.scoring`: ``Protocol.reference`` /
``score_reference`` on the HR from ``open_dataset``), so a folder of sr_bench's outputs scores
exactly what ``evaluate`` gives.
Everything that can be checked from file headers (missing files, duplicates, sizes, 16-bit or gray
outputs) is checked for every requested (dataset, scale) before any image is scored, and all the
problems are reported in one message; nothing is returned, so nothing is written, when refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import string
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sr_bench.data import Dataset, open_dataset
from sr_bench.data.dataset import generated_lr_source
from sr_bench.errors import DataError, UsageError
from sr_bench.images import (
    IMAGE_EXTENSIONS,
    UNREAD_IMAGE_EXTENSIONS,
    ImageError,
    as_batch,
    decode_image,
    file_problem,
    read_header,
    read_image_bytes,
)
from sr_bench.protocols import Protocol, get_protocol
from sr_bench.records import Record, environment
from sr_bench.scoring import DataFingerprint, score_image, set_fields

__all__ = ["LAYOUTS", "SrLayout", "SrSet", "find_sr_file", "find_sr_set", "score_sr_folder", "sr_fingerprint"]

log = logging.getLogger("sr_bench.sr_folder")

#: names a problem list shows before "and N more", so one message stays readable
_SHOWN = 12


@dataclass(frozen=True)
class SrLayout:
    """Where one codebase writes its SR images, relative to the SR folder. ``any_label``: the
    ``{label}`` part of the file name may be any one suffix (a run name), not only ``--label``."""

    name: str
    pattern: str
    any_label: bool = False

    @property
    def has_scale(self) -> bool:
        return "{scale}" in self.pattern

    def path(self, root: Path, dataset: str, scale: int, stem: str, label: str) -> Path:
        return root / self.pattern.format(dataset=dataset, scale=scale, stem=stem, label=label)


LAYOUTS: tuple[SrLayout, ...] = (
    SrLayout("sr_bench", "{dataset}/x{scale}/{stem}.png"),
    SrLayout("edsr-pytorch", "results-{dataset}/{stem}_x{scale}_SR.png"),
    SrLayout("basicsr", "visualization/{dataset}/{stem}_{label}.png", any_label=True),
    SrLayout("upscale", "{dataset}/x{scale}/{stem}_x{scale}.png"),
)

_PLACEHOLDERS = {"dataset", "scale", "stem", "label"}


def _pattern_layout(pattern: str) -> SrLayout:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None}
    except ValueError as e:
        raise UsageError(f"--sr-pattern {pattern!r}: {e}; write placeholders as {{stem}}") from None
    unknown = sorted(fields - _PLACEHOLDERS)
    if unknown or "stem" not in fields:
        raise UsageError(
            f"--sr-pattern {pattern!r}: " + (f"unknown placeholder(s) {', '.join(unknown)}; " if unknown else "")
            + "use {dataset}, {scale}, {stem} and {label}, with {stem} required, "
              "e.g. 'out/{dataset}/{stem}_x{scale}.png'"
        )
    if Path(pattern).is_absolute():
        raise UsageError(f"--sr-pattern {pattern!r} must be relative to --sr-dir")
    return SrLayout("pattern", pattern)


@dataclass
class SrSet:
    """The SR files found for one (dataset, scale), and what is wrong with them."""

    dataset: Dataset
    scale: int
    layout: SrLayout | None
    files: dict[int, Path] = field(default_factory=dict)  # image index -> SR file
    missing: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _candidates(path: Path) -> list[Path]:
    """The files that are ``path`` under any image extension (any case)."""
    folder, stem = path.parent, path.name[: len(path.name) - len(path.suffix)]
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and p.name[: len(p.name) - len(p.suffix)] == stem)


def _unreadable_candidates(path: Path) -> list[str]:
    """Why the files that would be ``path`` are not read: a format sr_bench does not read
    (``a.gif``), or an entry named like an image that is not a regular file (a FIFO, a folder)."""
    folder, stem = path.parent, path.name[: len(path.name) - len(path.suffix)]
    if not folder.is_dir():
        return []
    problems = []
    for p in sorted(folder.glob(f"{glob_escape(stem)}.*")):
        if p.suffix.lower() in UNREAD_IMAGE_EXTENSIONS:
            problems.append(f"{p}: sr_bench does not read {p.suffix} images (it reads {', '.join(IMAGE_EXTENSIONS)}); "
                            f"save the SR image as PNG")
        elif p.suffix.lower() in IMAGE_EXTENSIONS and (why := file_problem(p)) is not None:
            problems.append(f"{p}: {why}; the SR image must be an image file")
    return problems


def glob_escape(text: str) -> str:
    """``text`` matched literally by :meth:`Path.glob` (``[``, ``*`` and ``?`` in a stem)."""
    return "".join(f"[{c}]" if c in "[]*?" else c for c in text)


def _locate(root: Path, ds: Dataset, scale: int, layout: SrLayout, label: str) -> SrSet:
    found = SrSet(ds, scale, layout)
    for i, ref in enumerate(ds.images):
        expected = layout.path(root, ds.name, scale, ref.stem, label)
        hits = _candidates(expected)
        if not hits and (unread := _unreadable_candidates(expected)):
            found.problems += unread
        elif not hits:
            found.missing.append(expected)
        elif len(hits) > 1:
            found.problems.append(
                f"{' and '.join(map(str, hits))} are all the SR image of {ds.name}/{ref.stem} x{scale}; keep one"
            )
        else:
            found.files[i] = hits[0]
    return found


def _suffixes(root: Path, layout: SrLayout, dataset: str, scale: int, stems: Sequence[str]) -> dict[str, list[str]]:
    """Suffix -> the stems carrying it, for the image files of ``layout``'s folder named
    ``{stem}<sep>{suffix}`` (the longest stem wins, so ``a_b_X`` is ``a_b`` with suffix ``X``)."""
    probe = layout.path(root, dataset, scale, "{stem}", "{label}")  # the placeholders, written out
    folder, name = probe.parent, probe.name
    if "{stem}" in str(folder) or "{label}" in str(folder) or "{label}" not in name or not folder.is_dir():
        return {}
    sep = name[name.index("{stem}") + len("{stem}"): name.index("{label}")]
    if not sep:
        return {}
    found: dict[str, list[str]] = {}
    for f in sorted(folder.iterdir()):
        base = f.name[: len(f.name) - len(f.suffix)]
        if not (f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS):
            continue
        stem = max((t for t in stems if base.startswith(t + sep) and len(base) > len(t + sep)), key=len, default=None)
        if stem is not None:
            found.setdefault(base[len(stem) + len(sep):], []).append(stem)
    return found


def _with_suffix(layout: SrLayout, suffix: str) -> SrLayout:
    """``layout`` with its ``{label}`` written out as ``suffix`` (braces escaped for format)."""
    literal = suffix.replace("{", "{{").replace("}", "}}")
    return SrLayout(layout.name, layout.pattern.replace("{label}", literal))


def _any_label(root: Path, ds: Dataset, scale: int, layout: SrLayout) -> SrLayout | str | None:
    """The layout with the one suffix its folder's images carry; a problem (text) when they carry
    several; None when none."""
    suffixes = _suffixes(root, layout, ds.name, scale, [im.stem for im in ds.images])
    if len(suffixes) == 1:
        (suffix,) = suffixes
        return _with_suffix(layout, suffix)
    if not suffixes:
        return None
    where = layout.path(root, ds.name, scale, "{stem}", "{suffix}")
    listed = ", ".join(f"{k!r} ({len(v)} of {len(ds)} images)" for k, v in sorted(suffixes.items()))
    return (f"{where.parent} holds the SR images of {ds.name} under {len(suffixes)} suffixes ({listed}); "
            f"pass --label SUFFIX to score one, or --sr-pattern "
            f"'{Path(layout.pattern).parent.as_posix()}/{{stem}}_SUFFIX.png'")


def find_sr_set(root: Path, ds: Dataset, scale: int, label: str, pattern: str | None = None) -> SrSet:
    """The SR files of ``ds`` at ``scale`` under the first layout holding any of them (only
    ``pattern`` when given); an :class:`SrSet` with ``layout=None`` when no layout has one. A
    layout with ``any_label`` takes the one suffix its files carry when none carries ``label``."""
    layouts = (_pattern_layout(pattern),) if pattern else LAYOUTS
    for layout in layouts:
        found = _locate(root, ds, scale, layout, label)
        if found.files or found.problems:
            return found
        if layout.any_label:
            concrete = _any_label(root, ds, scale, layout)
            if isinstance(concrete, str):
                return SrSet(ds, scale, None, problems=[concrete])
            if concrete is not None:
                log.info("%s x%d: no %s file carries the label %r; took the suffix in %s", ds.name, scale,
                         layout.name, label, concrete.pattern)
                return _locate(root, ds, scale, concrete, label)
    tried = ", ".join(f"{lay.name} ({lay.path(root, ds.name, scale, ds.images[0].stem, label)})" for lay in layouts)
    return SrSet(ds, scale, None, problems=[f"no SR image of {ds.name} x{scale} in {root}; looked for e.g. {tried}"])


def find_sr_file(root: Path, dataset: str, scale: int, stem: str, label: str, pattern: str | None = None) -> Path:
    """The one SR file of image ``stem`` of ``dataset`` at ``scale`` (first layout holding it)."""
    layouts = (_pattern_layout(pattern),) if pattern else LAYOUTS
    for layout in layouts:
        hits = _candidates(layout.path(root, dataset, scale, stem, label))
        if not hits and layout.any_label:
            suffixes = _suffixes(root, layout, dataset, scale, [stem])
            if len(suffixes) == 1:
                hits = _candidates(_with_suffix(layout, next(iter(suffixes))).path(root, dataset, scale, stem, label))
        if len(hits) > 1:
            raise DataError(
                f"{' and '.join(map(str, hits))} are all the SR image of {dataset}/{stem} x{scale}; keep one"
            )
        if hits:
            return hits[0]
    tried = ", ".join(str(lay.path(root, dataset, scale, stem, label)) for lay in layouts)
    raise DataError(f"no SR image of {dataset}/{stem} x{scale} in {root}; looked for {tried}")


def _header(path: Path) -> tuple[tuple[int, int], str, int | None]:
    """(width, height) after the EXIF orientation, PIL mode and PNG bit depth, from the header."""
    try:
        head = read_header(path)
    except ImageError as e:
        raise DataError(f"{e}; write it again as an 8-bit PNG" if ": cannot decode" in str(e) else str(e)) from None
    return head.size, head.mode, head.bit_depth


def _channels(mode: str) -> int | None:
    """Channels sr_bench decodes an image of this mode to; None: not an 8-bit image."""
    return {"L": 1, "LA": 1, "RGB": 3, "RGBA": 3, "P": 3, "PA": 3}.get(mode)


def _check_files(found: SrSet, protocol: Protocol) -> None:
    """Size, bit depth and channel checks from the headers of every SR file and its HR."""
    for i, sr_path in found.files.items():
        hr_path = found.dataset.images[i].hr_path
        (sw, sh), smode, sdepth = _header(sr_path)
        (hw, hh), hmode, _ = _header(hr_path)
        s = found.scale
        if (sdepth is not None and sdepth > 8) or _channels(smode) is None:
            found.problems.append(
                f"{sr_path}: {'16-bit' if sdepth == 16 else smode} image; scores are defined on 8-bit outputs: "
                f"save the SR images as 8-bit (e.g. numpy (a / 257).round().astype('uint8'))"
            )
        elif (sw, sh) != (hw - hw % s, hh - hh % s):
            found.problems.append(
                f"{sr_path} is {sw}x{sh} but the HR {hr_path} is {hw}x{hh}, i.e. {hw - hw % s}x{hh - hh % s} "
                f"cropped to a multiple of x{s}; is this the x{s} output of the LR image?"
            )
        elif _channels(smode) == 1 and _channels(hmode) == 3 and not protocol.y_first:
            found.problems.append(
                f"{sr_path} is gray but the HR {hr_path} is RGB; save the RGB output (the {protocol.name} protocol "
                f"computes Y itself; only --protocol vdsr scores Y-only outputs)"
            )


def _listed(paths: Sequence[object]) -> str:
    shown = ", ".join(map(str, paths[:_SHOWN]))
    return shown + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")


def _refuse(sets: Sequence[SrSet], root: Path, allow_partial: bool) -> None:
    """One :class:`DataError` with every problem of every set, or nothing."""
    problems: list[str] = []
    for found in sets:
        problems += found.problems
        if found.layout is None:
            continue
        if not found.files:
            problems.append(f"no SR image of {found.dataset.name} x{found.scale} under layout {found.layout.name}")
        elif found.missing and not allow_partial:
            problems.append(
                f"{found.dataset.name} x{found.scale} ({found.layout.name} layout) lacks {len(found.missing)} of "
                f"{len(found.dataset)} SR images: {_listed(found.missing)}"
            )
    if problems:
        incomplete = any(f.layout is not None and f.files and f.missing for f in sets)  # a set it could score
        fix = " (pass --allow-partial to score an incomplete set)" if incomplete and not allow_partial else ""
        raise DataError(f"SR folder {root}: {len(problems)} problem(s): " + "; ".join(problems) + fix)


def sr_fingerprint(files: Sequence[Path], root: Path) -> str:
    """sha256 over the sorted (path relative to ``root``, file sha256) of ``files``."""
    return _fingerprint({p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files})


def _fingerprint(shas: dict[str, str]) -> str:
    """:func:`sr_fingerprint` of files whose sha256 is known (path relative to the root -> sha256)."""
    h = hashlib.sha256()
    for rel, sha in sorted(shas.items()):
        h.update(f"{rel}\t{sha}\n".encode())
    return h.hexdigest()


def _lr_sha(ds: Dataset, i: int, scale: int, hr_sha: str, protocol: Protocol) -> tuple[str, str]:
    """The LR part of ``evaluate``'s data fingerprint (sha, origin) without decoding the LR:
    the same images must give the same ``data_sha256`` whichever command scored them."""
    if protocol.y_first:
        return "y-first", "y-first"
    path = ds.images[i].lr_path(scale)
    if path is not None:
        return hashlib.sha256(path.read_bytes()).hexdigest(), "file"
    return generated_lr_source(scale, hr_sha), "generated"


def _read_sr(path: Path, want: tuple[int, int]) -> tuple[np.ndarray, str]:
    """The SR image at ``path`` and the sha256 of the very bytes decoded (read once: a file
    replaced while the folder is scored can never give a score of one file and the hash of
    another); its size checked again, as the file may have changed since its header was."""
    if (why := file_problem(path)) is not None:
        raise DataError(f"{path}: {why} (it changed while the SR folder was scored?)")
    try:
        data = read_image_bytes(path)
        image = decode_image(data, path)
    except ImageError as e:
        raise DataError(str(e)) from None
    if image.shape[:2] != want:
        raise DataError(f"{path}: is now {image.shape[1]}x{image.shape[0]}, not the {want[1]}x{want[0]} its header "
                        f"said when the folder was checked: did something replace it while it was scored? Run again "
                        f"once the folder is complete")
    return image, hashlib.sha256(data).hexdigest()


def _score_set(found: SrSet, protocol: Protocol, root: Path, label: str, bar: tqdm) -> Record:
    ds, scale = found.dataset, found.scale
    fingerprint, rows, scored = DataFingerprint(), [], {}
    t0 = time.perf_counter()
    for i in sorted(found.files):
        hr, hr_sha = ds.read_hr(i)
        stem = ds.images[i].stem
        lr_sha, origin = _lr_sha(ds, i, scale, hr_sha, protocol)
        fingerprint.add(stem, hr_sha, lr_sha, origin)
        reference = protocol.reference(as_batch(hr), ds.is_benchmark)
        sr, sha = _read_sr(found.files[i], (hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale))
        scored[found.files[i].relative_to(root).as_posix()] = sha
        rows.append(score_image(protocol, as_batch(sr), reference, scale, stem))
        bar.update(1)
    assert found.layout is not None
    env = environment("cpu")
    return Record(
        model="sr-folder", weights=None, scale=scale, self_ensemble=False, protocol=protocol.name,
        model_options={"sr_layout": found.layout.name, "sr_pattern": found.layout.pattern},
        dtype="uint8", seconds=round(time.perf_counter() - t0, 3),
        label=label, source="sr-folder", sr_dir=str(root), **set_fields(ds, rows, fingerprint),
        sr_sha256=_fingerprint(scored),
        sr_bench_version=env["sr_bench_version"], torch_version=env["torch_version"], host=env["host"],
        date=env["date"], sr_bench_commit=env["sr_bench_commit"],
    )


def score_sr_folder(
    sr_dir: str | os.PathLike,
    *,
    label: str,
    datasets: Sequence[str],
    scales: Sequence[int],
    protocol: str = "paper",
    data_root: str | os.PathLike | None = None,
    pattern: str | None = None,
    allow_partial: bool = False,
    progress: bool = True,
) -> list[Record]:
    """Score the SR images under ``sr_dir``: one record per (dataset, scale), model "sr-folder".

    Raises :class:`~sr_bench.errors.DataError` listing every missing, duplicate, wrongly sized,
    16-bit or gray file before anything is scored, and :class:`~sr_bench.errors.UsageError` for
    arguments that cannot work.
    """
    root = Path(sr_dir).expanduser().resolve()
    if not root.is_dir():
        raise UsageError(f"--sr-dir {sr_dir}: no such folder")
    if not label or not label.strip():
        raise UsageError("--label must name the method the SR images come from, e.g. --label MyNet")
    try:
        proto = get_protocol(protocol)
    except KeyError as e:
        raise UsageError(str(e)) from None
    opened = [open_dataset(name, data_root) for name in datasets]  # fail on a bad name before reading SR files
    sets = []
    for ds in opened:
        for s in scales:
            found = find_sr_set(root, ds, s, label, pattern)
            if found.layout is not None and not found.layout.has_scale and len(scales) > 1:
                raise UsageError(
                    f"{found.layout.name} layout ({found.layout.pattern}) has no scale in its paths, so one folder "
                    f"holds one scale: score one --scales value per run, or pass --sr-pattern with {{scale}}"
                )
            if found.layout is not None:
                log.info("%s x%d: %d of %d SR images in %s (%s layout: %s)", ds.name, s, len(found.files), len(ds),
                         root, found.layout.name, found.layout.pattern)
            _check_files(found, proto)
            sets.append(found)
    _refuse(sets, root, allow_partial)
    for found in sets:
        if found.missing:
            log.warning("%s x%d: partial set, %d of %d images scored (--allow-partial)", found.dataset.name,
                        found.scale, len(found.files), len(found.dataset))
    total = sum(len(f.files) for f in sets)
    with tqdm(total=total, desc=f"{label} ({proto.name})", file=sys.stderr, disable=not progress, unit="img") as bar:
        return [_score_set(found, proto, root, label, bar) for found in sets]
