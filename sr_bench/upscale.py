"""Super-resolve your own images (no ground truth, no metrics).

    python -m sr_bench.upscale --weights edsr-x4 photo.png --out sr/
    python -m sr_bench.upscale --model edsr-baseline --weights my_run/last.pt --scale 2 imgs/ --out sr/
    python -m sr_bench.upscale --model bicubic --scale 3 a.png b.jpg --out sr/ --self-ensemble

    python -m sr_bench.upscale --model bicubic --scale 2 --dataset Set5 Set14 --out sr/

``--weights`` takes a registered name (downloaded once into the torch hub cache, hash-checked) or
a local file (official ``.pt``, sr_bench training checkpoint, ``.safetensors``, BasicSR's
``params``/``params_ema``, with ``--option`` / ``--param-key`` as for ``evaluate``). Without it, a
model with parameters uses its published weights for that scale when there are any.

Image files: gray images are replicated to RGB for RGB models, and the result is written gray
(mean of the three output channels). Outputs are PNGs named ``<name>_x<scale>.png``, written
atomically, where ``<name>`` is the input's stem without the LR tag of the EDSR / DIV2K naming
(``LR_bicubic/X2/babyx2.png`` at x2 -> ``baby_x2.png``), so ``--out OUT/Set5/x2`` is found by
``evaluate --sr-dir OUT``.

``--dataset NAME``: the dataset's LR images exactly as ``evaluate`` feeds them (MATLAB LR files or
sr_bench's MATLAB bicubic), written as ``OUT/<dataset>/x<scale>/<stem>.png`` (the output
``evaluate`` scores, RGB for an RGB network): ``evaluate --sr-dir OUT`` then scores what
``evaluate --model`` scores.

Inputs are read as image viewers show them: a JPEG's EXIF orientation is applied (and logged), so
a phone photo comes back upright. An output never replaces an input, and ``--out`` is never one of
the input folders (a second run would upscale the first run's outputs): both are refused before
anything is computed. Files in an input folder of an image type sr_bench does not read (``.gif``)
are named in a warning and skipped.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import time
from pathlib import Path

import numpy as np
import torch

from sr_bench import cli, models
from sr_bench.data import open_dataset
from sr_bench.data.dataset import broken_link
from sr_bench.images import (
    IMAGE_EXTENSIONS,
    NAME_MAX,
    ORIENTATIONS,
    UNREAD_IMAGE_EXTENSIONS,
    ImageError,
    check_writable,
    file_problem,
    read_oriented,
    set_max_pixels,
    to_image,
    to_tensor,
    write_image,
)
from sr_bench.inference import model_device, parse_dtype, prepare_model, resolve_device, super_resolve
from sr_bench.weights import (
    WeightsError,
    check_weights_path,
    get_weights,
    load_weights,
    published_weights,
    set_weights_dir,
    weights_names,
)

__all__ = ["main", "build_parser", "check_outputs", "collect_images", "output_name", "output_path", "resolve_model"]

log = logging.getLogger("sr_bench.upscale")


UsageError = cli.UsageError  # a command line that cannot work: exit 2, one line


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m sr_bench.upscale", "Super-resolve your own images with a registered model.")
    p.epilog = f"models: {', '.join(models.names())}; registered weights: {', '.join(weights_names())}"
    cli.add_common_options(p, device=True, data_root=True)
    p.add_argument("images", nargs="*", type=Path, help="image files or folders of images")
    p.add_argument("--dataset", dest="datasets", nargs="+", default=[], metavar="NAME",
                   help="benchmark datasets (or folders) whose LR images to upscale as evaluate feeds them, into "
                        "OUT/<dataset>/x<scale>/<stem>.png (what evaluate --sr-dir OUT reads)")
    p.add_argument("--out", type=Path, required=True, help="output folder for the super-resolved PNGs")
    p.add_argument("--model", help="registry name (optional when --weights is a registered name)")
    p.add_argument("--weights", help="registered weights name or a local file")
    p.add_argument("--option", type=models.parse_option, action="append", default=[], metavar="KEY=VALUE",
                   help="model option the weights were trained with, e.g. rgb_mean=0.5,0.5,0.5 (repeatable)")
    p.add_argument("--param-key", default=None, metavar="KEY",
                   help="the entry of a checkpoint holding several state_dicts (BasicSR: params or params_ema)")
    p.add_argument(
        "--weights-dir", type=Path, default=None,
        help="folder holding published weights under their official file names (default: $SR_BENCH_WEIGHTS_DIR)",
    )
    p.add_argument("--scale", type=cli.positive_int,
                   help="upscaling factor (implied by single-scale weights; bicubic: any integer >= 2)")
    p.add_argument("--self-ensemble", action="store_true", help="average the 8 flip/transpose transforms (EDSR+)")
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    p.add_argument("--tile", type=cli.positive_int, default=None,
                   help="LR tile size (tiles overlap by the receptive field; raised to it when smaller)")
    p.add_argument("--memory-budget", default=None, help="size tiles to fit this much memory, e.g. 4GB")
    p.add_argument("--max-pixels", type=cli.positive_int, default=None,
                   help="refuse inputs with more pixels than this (default: $SR_BENCH_MAX_PIXELS, else 178956970, "
                        "PIL's own limit; a guard against decompression bombs)")
    return p


def collect_images(paths: list[Path]) -> list[Path]:
    """Files as given, plus the images directly inside given folders (sorted). An entry of a
    folder named like an image that is not a file (a FIFO, a folder) is refused by name; an image
    of a type sr_bench does not read is skipped with a warning naming it."""
    out: list[Path] = []
    for p in paths:
        why = broken_link(p)
        if why is not None:
            raise cli.DataError(f"{p}: {why}; point the link at a real image or folder, or remove it")
        if p.is_dir():
            out += _folder_images(p)
        elif p.exists():
            if (why := file_problem(p)) is not None:
                raise cli.DataError(f"{p}: {why}; pass image files or folders of them")
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or folder")
    return out


def _folder_images(folder: Path) -> list[Path]:
    entries = sorted(f for f in folder.iterdir() if not f.name.startswith("."))
    found = []
    for f in entries:
        if f.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        why = broken_link(f) or file_problem(f)
        if why is not None:  # refused by name, as evaluate does, never silently skipped
            raise cli.DataError(f"{f}: {why}; remove it or rename it so it does not look like an image")
        found.append(f)
    unread = [f.name for f in entries if f.suffix.lower() in UNREAD_IMAGE_EXTENSIONS]
    if unread:
        log.warning("%s: skipping %s: sr_bench reads %s", folder, ", ".join(unread), ", ".join(IMAGE_EXTENSIONS))
    if not found:
        raise UsageError(f"{folder}: no images inside (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return found


#: the LR tag of the EDSR / DIV2K naming: ``.../X2/babyx2.png`` is the x2 LR of ``baby``
_LR_TAG = re.compile(r"(?i)(.+)x(\d+)")


def output_name(path: Path, scale: int) -> str:
    """``<name>_x<scale>.png`` for the input ``path``; ``<name>`` drops the LR tag ``x<scale>`` of
    an input named as EDSR and DIV2K name their LR files (in a folder ``X<scale>``), so that the
    output carries the HR image's stem."""
    m = _LR_TAG.fullmatch(path.stem)
    tagged = m is not None and int(m.group(2)) == scale and path.parent.name.lower() == f"x{scale}"
    return f"{m.group(1) if tagged and m else path.stem}_x{scale}.png"


def output_path(out: Path, image: Path, scale: int) -> Path:
    """Where the output of ``image`` goes."""
    return out / output_name(image, scale)


def check_outputs(images: list[Path], inputs: list[Path], out: Path, scale: int) -> None:
    """Refuse, before any work, outputs that would collide with each other, replace an input, or
    land in an input folder (the next run there would read them as inputs), and names too long."""
    folders = {p.resolve() for p in inputs if p.is_dir()}
    if out.resolve() in folders:
        raise UsageError(
            f"--out {out} is also an input folder: the outputs would be read as inputs by the next run there; "
            f"write them to another folder, e.g. --out {out.resolve().name}_x{scale}"
        )
    sources = {p.resolve(): p for p in images}
    targets: dict[Path, Path] = {}
    for image in images:
        dst = output_path(out, image, scale)
        if len(os.fsencode(dst.name)) > NAME_MAX:
            raise UsageError(f"{image}: its output name {dst.name[:40]}... has {len(os.fsencode(dst.name))} bytes, "
                             f"over the {NAME_MAX} a file name may have; rename the input")
        key = dst.resolve()
        if key in sources:
            raise UsageError(f"{image}'s output {dst} is the input {sources[key]}: it would be overwritten; pass "
                             f"another --out")
        if key in targets:
            raise UsageError(f"{targets[key]} and {image}: their outputs collide (both {dst}); rename one of them "
                             f"or upscale them into different folders")
        targets[key] = image


def resolve_model(model: str | None, weights: str | None, scale: int | None) -> tuple[str, int, str | None]:
    """(registry name, scale, weights source) from the command line, or a :class:`UsageError`."""
    spec_w = None
    if weights is not None and check_weights_path(weights) is None:  # a path is checked there (missing, a folder)
        try:
            spec_w = get_weights(weights)
        except WeightsError:
            if not Path(weights).expanduser().is_file():
                raise
    if spec_w is not None:
        if model is not None and model != spec_w.arch:
            raise UsageError(f"--weights {weights} is for {spec_w.arch!r}, not --model {model!r}")
        model = spec_w.arch
        if spec_w.scale is not None:
            if scale is not None and scale != spec_w.scale:
                raise UsageError(f"--weights {weights} is a x{spec_w.scale} model; drop --scale {scale} "
                                 f"or pick other weights")
            scale = spec_w.scale
    if model is None:
        raise UsageError("pass --model (or --weights with a registered name)")
    try:
        spec = models.get_spec(model)
    except KeyError as e:  # UnknownNameError: the message lists close names
        raise UsageError(f"--model: {e}") from None
    if model == "bicubic" and scale is not None:
        return model, scale, None  # parameter-free, any integer scale
    if scale is None:
        if len(spec.scales) == 1:
            scale = spec.scales[0]
        else:
            raise UsageError(f"pass --scale, one of {spec.scales}")
    if scale not in spec.scales:
        raise UsageError(f"--scale {scale}: {model} serves x{'/x'.join(map(str, spec.scales))}")
    with torch.device("meta"):  # only to ask whether it has parameters: allocates nothing
        has_params = any(True for _ in models.create(model, scale=scale).parameters())
    if weights is None and has_params:
        try:
            weights = published_weights(model, scale).name
        except WeightsError as e:
            raise UsageError(str(e)) from None
    return model, scale, weights


def _build(name: str, scale: int, weights: str | None, args: argparse.Namespace) -> torch.nn.Module:
    """The model on its device, weights loaded; bicubic is built for the one scale asked (it
    serves any integer scale; evaluate and reproduce use x2/x3/x4, where published values exist)."""
    device = torch.device(resolve_device(args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but this torch has no usable CUDA device; use --device cpu")
    options = dict(args.option)
    if name == "bicubic" and scale not in models.get_spec(name).scales:
        model = models.create(name, scales=(scale,), **options)  # the spec lists the benchmark scales only
    else:
        model = models.create(name, scale=scale, **options)
    if weights is not None:
        info = load_weights(model, weights, param_key=args.param_key, model_options=options)
        log.info("weights: %s (sha256 %s…)", info.path, info.sha256[:12])
    elif args.param_key is not None:
        raise UsageError(f"--param-key {args.param_key}: {name} loads no weights; leave it out")
    dtype = args.dtype
    try:
        return prepare_model(model, device, parse_dtype(dtype))
    except ValueError as e:
        raise UsageError(f"--dtype {dtype}: {e}") from None


def _run(model: torch.nn.Module, img: np.ndarray, scale: int, args: argparse.Namespace, what: str,
         gray_out: bool) -> torch.Tensor:
    """The network's output for the uint8 image ``img`` (gray replicated to RGB for an RGB
    network; with ``gray_out``, a gray input gives a gray output)."""
    channels = getattr(model, "in_channels", 3)  # None: any (bicubic)
    lr = to_tensor(img, model_device(model, torch.device(resolve_device(args.device))))
    gray = lr.shape[1] == 1
    if channels == 3 and gray:
        lr = lr.expand(-1, 3, -1, -1)
    elif channels == 1 and lr.shape[1] == 3:
        raise cli.DataError(f"{what}: {args.model or 'the model'} takes one channel; convert the image to grayscale "
                            f"first")
    sr = super_resolve(model, lr, scale, self_ensemble=args.self_ensemble, tile=args.tile,
                       memory_budget=args.memory_budget, name=f"{args.model or 'the model'} x{scale} on {what}")
    if gray_out and gray and sr.shape[1] == 3:
        sr = sr.mean(dim=1, keepdim=True)  # gray in, gray out
    return sr


def _write(model: torch.nn.Module, img: np.ndarray, dst: Path, scale: int, args: argparse.Namespace, what: str,
           gray_out: bool) -> None:
    t0 = time.perf_counter()
    sr = _run(model, img, scale, args, what, gray_out)
    write_image(dst, to_image(sr))
    h, w = img.shape[:2]
    print(f"{what} ({w}x{h}) -> {dst} ({w * scale}x{h * scale}, {time.perf_counter() - t0:.2f} s)")


def _read(path: Path) -> np.ndarray:
    try:
        img, orientation = read_oriented(path)
    except ImageError as e:
        raise cli.DataError(str(e)) from None
    if orientation != 1:
        log.info("%s: applied EXIF orientation %d (%s), as image viewers show it", path, orientation,
                 ORIENTATIONS[orientation])
    return img


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbosity)
    set_weights_dir(args.weights_dir)
    set_max_pixels(args.max_pixels)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out}: is a file, not a folder; pass a folder for the PNGs (or a new name)")
    if not args.images and not args.datasets:
        raise UsageError("give image files or folders, or --dataset NAME (a benchmark's LR images)")
    name, scale, weights = resolve_model(args.model, args.weights, args.scale)
    if scale < 2:
        raise UsageError(f"--scale {scale}: upscaling needs a factor of 2 or more")
    images = collect_images(args.images) if args.images else []
    check_outputs(images, args.images, args.out, scale)
    datasets = [open_dataset(d, args.data_root) for d in args.datasets]  # fail on a bad name before any work
    first = output_path(args.out, images[0], scale) if images else args.out / datasets[0].name / f"x{scale}" / "probe"
    check_writable(first)  # a read-only or full --out fails before any work
    model = _build(name, scale, weights, args)
    for path in images:
        _write(model, _read(path), output_path(args.out, path, scale), scale, args, str(path), gray_out=True)
    for ds in datasets:
        for i, ref in enumerate(ds.images):
            dst = args.out / ds.name / f"x{scale}" / f"{ref.stem}.png"
            _write(model, ds.lr(i, scale), dst, scale, args, f"{ds.name}/{ref.stem} x{scale} LR", gray_out=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
