"""Comparison figures in the style of the paper's Figures 5 and 6.

    python -m sr_bench.figure --image Urban100/img_092 --box 560 160 120 80 --labels bicubic MyNet --scale 4

The PNG shows the HR image with the box drawn, then the box zoomed from the HR image and from
each method's output, each titled with the method's PSNR / SSIM on the whole image (protocol
``--protocol``, default paper). Crops are enlarged by an integer factor by pixel repetition and
pasted unresampled, so every panel shows the method's output pixels exactly; the panel
rectangles are written beside the PNG (``.json``) so this can be checked.

A label is resolved, in this order, to
1. a registered parameter-free model (``bicubic``), run on the fly;
2. a record of that label from an SR folder (``evaluate --sr-dir``): its image is read from the folder;
3. a record of that label from a model whose weights file (``weights_source``) exists: the
   network is rebuilt, loaded strictly and run.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sr_bench import cli, models
from sr_bench.data import Dataset, open_dataset
from sr_bench.evaluate import load_candidates, model_input_tensor
from sr_bench.images import as_batch, atomic_write, check_writable, decode_image, quantize
from sr_bench.inference import resolve_device, super_resolve
from sr_bench.paths import results_and_records
from sr_bench.protocols import PROTOCOLS, Protocol, Reference, get_protocol
from sr_bench.records import Record, read_records
from sr_bench.sr_folder import find_sr_file
from sr_bench.storage import refuse_same_file

__all__ = ["Panel", "FigureResult", "Method", "resolve_method", "make_figure", "main"]

log = logging.getLogger("sr_bench.figure")

#: power of two, so pixel sizes / DPI are exact in binary and the PNG has exactly the planned size
DPI = 128
MARGIN = 12
TITLE = 34  # two lines of 8-point text at DPI
#: the zoomed crops aim at about this many pixels on their long side
PANEL_TARGET = 240
OVERVIEW_MAX_H = 360  # keeps a committed figure small (a photo compresses poorly in PNG)


@dataclass(frozen=True)
class Panel:
    """One zoomed crop in the PNG: pixel rectangle, top-left origin."""

    label: str
    x: int
    y: int
    width: int
    height: int
    psnr: float | None
    ssim: float | None


@dataclass(frozen=True)
class FigureResult:
    png: Path
    panels_json: Path
    width: int
    height: int
    box: tuple[int, int, int, int]
    zoom: int
    panels: list[Panel]


@dataclass
class Method:
    label: str
    sr: np.ndarray  # uint8 (H, W) or (H, W, 3), the size of the HR cropped to a multiple of the scale
    origin: str  # what produced it, for the log
    psnr: float = float("nan")
    ssim: float = float("nan")


def _has_parameters(name: str, scale: int) -> bool:
    spec = models.get_spec(name)
    if spec.params and (spec.multi_scale or scale in spec.scales):
        return bool(spec.num_params(scale))
    with torch.device("meta"):  # only asks whether it has parameters: allocates nothing
        return any(True for _ in models.create(name, scale=scale).parameters())


def _run_model(module: torch.nn.Module, channels: int | None, name: str, ds: Dataset, i: int, scale: int,
               protocol: Protocol, reference: Reference, device: str) -> np.ndarray:
    """The quantised output ``evaluate`` scores for image ``i`` (same input path)."""
    hr, hr_sha = ds.read_hr(i)
    lr = None if protocol.y_first else ds.read_lr(i, scale, hr, hr_sha)[0]
    x = model_input_tensor(protocol.model_input(reference, lr, scale), channels, device, protocol, name)
    out = quantize(super_resolve(module, x, scale))[0].cpu()
    return out[0].numpy() if out.shape[0] == 1 else out.permute(1, 2, 0).contiguous().numpy()


def _from_records(label: str, records: Sequence[Record], ds: Dataset, i: int, scale: int, protocol: Protocol,
                  reference: Reference, device: str) -> Method | None:
    mine = [r for r in records if r.label == label]
    mine.sort(key=lambda r: (r.scale == scale, r.dataset == ds.name, r.date))  # best match last
    for r in reversed(mine):
        if r.source == "sr-folder" and r.sr_dir and Path(r.sr_dir).is_dir():
            pattern = r.model_options.get("sr_pattern") if r.model_options.get("sr_layout") == "pattern" else None
            path = find_sr_file(Path(r.sr_dir), ds.name, scale, ds.images[i].stem, label, pattern)
            try:
                return Method(label, decode_image(path.read_bytes(), path), f"SR folder {r.sr_dir} ({path.name})")
            except ValueError as e:
                raise cli.DataError(str(e)) from None
    for r in reversed(mine):
        if r.source == "model" and r.weights_source and Path(r.weights_source).is_file():
            (cand,) = load_candidates(r.model, [scale], r.weights_source, device, options=r.model_options)
            sr = _run_model(cand.module, cand.in_channels, r.model, ds, i, scale, protocol, reference, device)
            return Method(label, sr, f"{r.model} with {r.weights_source}")
    return None


def resolve_method(label: str, records: Sequence[Record], ds: Dataset, i: int, scale: int, protocol: Protocol,
                   reference: Reference, device: str = "cpu") -> Method:
    """The output of ``label`` for image ``i`` of ``ds`` (see the module docstring for the order)."""
    if label in models.names() and not _has_parameters(label, scale):
        module = models.create(label, scale=scale).to(device).eval()
        channels = getattr(module, "in_channels", None)
        sr = _run_model(module, channels, label, ds, i, scale, protocol, reference, device)
        return Method(label, sr, f"{label} (registered, parameter-free)")
    found = _from_records(label, records, ds, i, scale, protocol, reference, device)
    if found is None:
        usable = sorted({r.label for r in records if r.source == "sr-folder" or
                         (r.weights_source and Path(r.weights_source).is_file())})
        free = [n for n in models.names() if not _has_parameters(n, scale)]
        raise cli.UsageError(
            f"label {label!r} is neither a parameter-free model ({', '.join(free)}) nor a record label with an SR "
            f"folder or a weights file on this machine; usable labels in the records: {', '.join(usable) or 'none'}"
        )
    return found


def _to_rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


@dataclass(frozen=True)
class _Plan:
    width: int
    height: int
    zoom: int
    overview: tuple[int, int, int, int]  # x, y (top-left origin), w, h
    panels: list[tuple[int, int, int, int]]


def _plan(hr_size: tuple[int, int], box: tuple[int, int, int, int], n_panels: int, zoom: int | None) -> _Plan:
    """Pixel layout: the HR overview on top, the zoomed crops in a row below."""
    bw, bh = box[2], box[3]
    z = zoom or max(1, PANEL_TARGET // max(bw, bh))
    pw, ph = bw * z, bh * z
    row = n_panels * pw + (n_panels + 1) * MARGIN
    width = max(row, 640)
    ov_w = width - 2 * MARGIN
    ov_h = round(ov_w * hr_size[1] / hr_size[0])
    if ov_h > OVERVIEW_MAX_H:
        ov_h = OVERVIEW_MAX_H
        ov_w = round(ov_h * hr_size[0] / hr_size[1])
    overview = ((width - ov_w) // 2, MARGIN + TITLE // 2, ov_w, ov_h)
    top = overview[1] + ov_h + MARGIN + TITLE
    x0 = (width - row) // 2 + MARGIN
    panels = [(x0 + k * (pw + MARGIN), top, pw, ph) for k in range(n_panels)]
    return _Plan(width, top + ph + MARGIN, z, overview, panels)


def _draw(hr: np.ndarray, methods: Sequence[Method], box: tuple[int, int, int, int], plan: _Plan, title: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    W, H = plan.width, plan.height
    fig = Figure(figsize=(W / DPI, H / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ox, oy, ow, oh = plan.overview
    ax = fig.add_axes((ox / W, 1 - (oy + oh) / H, ow / W, oh / H))
    ax.imshow(_to_rgb(hr), interpolation="antialiased")
    x, y, bw, bh = box
    ax.add_patch(Rectangle((x - 0.5, y - 0.5), bw, bh, fill=False, edgecolor="red", linewidth=1.5))
    ax.set_axis_off()
    fig.text(0.5, 1 - (oy - 3) / H, title, ha="center", va="bottom", fontsize=8)
    crops = [("HR", hr, None, None)] + [(m.label, m.sr, m.psnr, m.ssim) for m in methods]
    z = plan.zoom
    for (label, img, psnr, ssim), (px, py, pw, ph) in zip(crops, plan.panels, strict=True):
        crop = _to_rgb(img[y:y + bh, x:x + bw])
        big = np.ascontiguousarray(crop.repeat(z, axis=0).repeat(z, axis=1))
        # figimage pastes pixels unresampled; its offsets count from the bottom-left corner
        fig.figimage(big, xo=px, yo=H - py - ph, origin="upper", resize=False)
        text = label if psnr is None else f"{label}\n{psnr:.2f} dB / {ssim:.4f}"
        fig.text((px + pw / 2) / W, 1 - (py - 3) / H, text, ha="center", va="bottom", fontsize=8)
    return fig


def _save_png(fig, path: Path) -> None:
    """RGB PNG (Agg writes RGBA; the alpha channel is all opaque and only costs bytes)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    buf.seek(0)
    with Image.open(buf) as im:
        rgb = im.convert("RGB")
    atomic_write(path, lambda tmp: rgb.save(tmp, format="PNG", optimize=True))


def _check_box(box: Sequence[int], size: tuple[int, int], where: str) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in box)
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > size[0] or y + h > size[1]:
        raise cli.UsageError(
            f"--box {x} {y} {w} {h} (x y width height, HR pixels) spans x {x}..{x + w}, y {y}..{y + h}, outside "
            f"{where}, which is {size[0]}x{size[1]}; pick a box inside it"
        )
    return x, y, w, h


def _open_image(image: str, data_root: str | None) -> tuple[Dataset, int]:
    name, sep, stem = image.rpartition("/")
    if not sep or not name or not stem:
        raise cli.UsageError(f"--image {image!r}: write DATASET/IMAGE, e.g. Urban100/img_092")
    ds = open_dataset(name, data_root)
    stems = [r.stem for r in ds.images]
    if stem not in stems:
        raise cli.UsageError(f"--image {image}: {ds.name} has no image {stem!r}; it has {', '.join(stems[:8])}, ...")
    return ds, stems.index(stem)


def make_figure(image: str, box: Sequence[int], labels: Sequence[str], scale: int, out: str | Path, *,
                protocol: str = "paper", records: Sequence[Record] = (), data_root: str | None = None,
                device: str = "cpu", zoom: int | None = None) -> FigureResult:
    """Write the comparison PNG (and its panel rectangles as JSON beside it)."""
    proto = get_protocol(protocol)
    ds, i = _open_image(image, data_root)
    hr, _ = ds.read_hr(i)
    H, W = hr.shape[:2]
    size = (W - W % scale, H - H % scale)
    box_ = _check_box(box, size, f"{image} x{scale} (the HR {W}x{H} cropped to a multiple of {scale})")
    reference = proto.reference(as_batch(hr).to(device), ds.is_benchmark)
    methods = []
    for label in labels:
        m = resolve_method(label, records, ds, i, scale, proto, reference, device)
        if m.sr.shape[:2] != (size[1], size[0]):
            raise cli.DataError(f"{label} ({m.origin}) is {m.sr.shape[1]}x{m.sr.shape[0]}, not {size[0]}x{size[1]}")
        score = proto.score_reference(as_batch(m.sr), reference, scale)
        m.psnr, m.ssim = score.psnr, score.ssim
        log.info("%s: %s, PSNR %.3f dB, SSIM %.4f", label, m.origin, m.psnr, m.ssim)
        methods.append(m)
    hr_crop = hr[: size[1], : size[0]]
    plan = _plan(size, box_, 1 + len(methods), zoom)
    title = f"{ds.name}/{ds.images[i].stem}, x{scale}, {proto.name} protocol (PSNR / SSIM on the whole image)"
    fig = _draw(hr_crop, methods, box_, plan, title)
    png = Path(out)
    _save_png(fig, png)
    panels = [Panel(lab, *rect, psnr, ssim) for (lab, psnr, ssim), rect in
              zip([("HR", None, None)] + [(m.label, m.psnr, m.ssim) for m in methods], plan.panels, strict=True)]
    result = FigureResult(png, png.with_suffix(".json"), plan.width, plan.height, box_, plan.zoom, panels)
    meta = {"image": image, "scale": scale, "protocol": proto.name, "box": list(box_), "zoom": plan.zoom,
            "size": [plan.width, plan.height], "panels": [asdict(p) for p in panels]}
    atomic_write(result.panels_json, lambda tmp: tmp.write_text(json.dumps(meta, indent=1) + "\n"))
    return result


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m sr_bench.figure", __doc__.split("\n\n")[0])
    p.add_argument("--image", required=True, help="DATASET/IMAGE, e.g. Urban100/img_092")
    p.add_argument("--box", nargs=4, type=cli.non_negative_int, required=True, metavar=("X", "Y", "W", "H"),
                   help="region to zoom, in HR pixels (left, top, width, height)")
    p.add_argument("--labels", nargs="+", required=True,
                   help="bicubic, or labels of records (SR folders, weights files)")
    p.add_argument("--scale", type=cli.positive_int, required=True)
    p.add_argument("--protocol", choices=list(PROTOCOLS), default="paper")
    p.add_argument("--zoom", type=cli.positive_int, default=None,
                   help="integer enlargement of the crops (default: about 240 px per crop)")
    p.add_argument("--records", default=None, help="records file to resolve labels (default: RESULTS/records.jsonl)")
    p.add_argument("--out", default=None, help="PNG to write (default: RESULTS/figures/DATASET_IMAGE_xS.png)")
    cli.add_common_options(p, device=True, data_root=True, results=True)
    return p


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbosity)

    results, records_file = results_and_records(args.results, args.records)
    records = read_records(records_file)
    ds_name, _, stem = args.image.rpartition("/")
    name = f"{Path(ds_name).name.lower()}_{stem.replace('_', '')}_x{args.scale}.png"
    out = Path(args.out) if args.out else results / "figures" / name
    refuse_same_file([("--records", records_file), ("--out", out), ("--out (its .json)", out.with_suffix(".json"))])
    check_writable(out)  # before any network runs
    check_writable(out.with_suffix(".json"))
    device = resolve_device(None if args.device == "auto" else args.device)
    res = make_figure(args.image, args.box, args.labels, args.scale, out, protocol=args.protocol, records=records,
                      data_root=args.data_root, device=device, zoom=args.zoom)
    log.info("figure: %s (%dx%d, crops x%d); panels: %s", res.png.resolve(), res.width, res.height, res.zoom,
             res.panels_json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
