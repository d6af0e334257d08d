"""Training and evaluation speed of one model config, measured in one run.

    python -m sr_bench.bench --model edsr-baseline --scale 2 [--updates 200] [--device cuda]
    python -m sr_bench.bench --model edsr --scale 2 --peak-tflops 989 --out results/bench.json

It reports, for the config the ``--profile`` gives (default ``paper``: batch 16, 48x48 LR patches):

* **compute-only step**: one update (forward, loss, backward, Adam) on tensors already on the
  device, by the trainer's own ``Trainer.step`` (same precision choice, memory format and loss),
  timed over a few updates after warm-up;
* **end to end**: updates/s through the real trainer (:func:`sr_bench.train.train`: data
  sampling, logging, checkpoints) for ``--updates`` updates, and its ratio to the compute-only
  step (the aim is at least 0.9: data, logging and checkpoints cost under a tenth of the time);
* **FLOP/s and MFU**: training FLOPs per update are 3x the forward's (the backward costs two
  forwards, the usual convention), forward FLOPs from :mod:`sr_bench.flops`. MFU is achieved /
  peak. The peak is ``--peak-tflops``, else a table of known GPUs (dense bf16 tensor-core figures
  from NVIDIA's data sheets), else, on the CPU, a float32 matrix product measured here;
* **evaluation**: images/s of EDSR+ (self-ensemble) x4 on Urban100 (the embedded photos without
  a data root), in float32 and bfloat16, with the PSNR each gives; the difference is the cost of
  bf16 inference (meaningful with trained weights: ``--eval-weights official`` or a file).

Output: a markdown table on stdout and a JSON file (``--out``).

CPU inference speed against the official port's forward and the convolution ceiling, and
``imresize`` against torch's kernel: ``python -m sr_bench.cpu_speed`` (docs/cpu-inference.md).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sr_bench import cli
from sr_bench.data import DatasetNotFound, open_dataset
from sr_bench.data import data_root as find_data_root
from sr_bench.evaluate import evaluate, load_candidates
from sr_bench.flops import flops_per_lr_pixel
from sr_bench.images import atomic_write, check_writable
from sr_bench.inference import prepare_model, resolve_device
from sr_bench.models import create, get_spec
from sr_bench.models.registry import parse_option
from sr_bench.paths import default_results_dir
from sr_bench.train import make_config, resolve_config, train
from sr_bench.train.trainer import Trainer, cpu_has_native_bf16, time_amp
from sr_bench.weights import check_weights_path

__all__ = ["BenchResult", "StepTiming", "time_updates", "time_trainer_updates", "time_forward", "peak_flops",
           "train_flops_per_update", "measure", "main"]

log = logging.getLogger("sr_bench.bench")

#: dense bf16 tensor-core peaks (TFLOP/s) from NVIDIA's data sheets (H100/H200 SXM: 989.5; H100
#: PCIe: 756; A100: 312; L40S: 362; RTX 4090: 165 with fp32 accumulation); matched against
#: ``torch.cuda.get_device_name``, longest name first.
KNOWN_PEAKS_TFLOPS: dict[str, float] = {
    "H100 PCIe": 756.0,
    "H100": 989.5,
    "H200": 989.5,
    "GH200": 989.5,
    "A100": 312.0,
    "L40S": 362.0,
    "RTX 4090": 165.2,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepTiming:
    """Seconds per update of a config at the patch/batch it was timed with: the median over
    ``updates`` timed updates (``samples``: seconds per update of each timed round)."""

    seconds: float
    patch_size: int
    batch_size: int
    amp: str
    updates: int
    samples: tuple[float, ...] = ()


def _resolved(cfg: Any, device: torch.device, batch: int) -> Any:
    """``cfg`` with the trainer's precision for this device: its ``amp auto`` rule (on CUDA it
    times fp32 against bf16 on the network, as :func:`sr_bench.train.train` does)."""
    probe = cfg.replace(**{"runtime.device": str(device), "data.dataset": "embedded-train", "val.dataset": "embedded",
                           "model.init": None})
    cfg = resolve_config(probe)
    if cfg.runtime.amp == "auto":
        cfg = cfg.replace(**{"runtime.amp": time_amp(cfg, device, batch).amp})
    return cfg


#: on CUDA a timed round holds enough updates to last about this long, so that the synchronisation
#: closing each round does not show in the figure (the trainer never synchronises per update)
CUDA_ROUND_S = 0.05


def time_updates(cfg: Any, device: str | torch.device, *, updates: int = 3, warmup: int = 1,
                 patch_size: int | None = None, batch_size: int | None = None, budget_s: float = 0.0,
                 max_updates: int = 50) -> StepTiming:
    """Time updates of ``cfg``'s network by the trainer's own ``Trainer.step`` on random tensors
    already on ``device``, after ``warmup`` untimed ones: at least ``updates`` timed rounds, then
    more (up to ``max_updates`` updates) while the timing has lasted under ``budget_s`` seconds.
    The result is the median of the rounds (one update each on the CPU; on CUDA enough updates to
    last :data:`CUDA_ROUND_S`), so one burst of load from other processes does not decide it.
    ``patch_size``/``batch_size`` replace the config's (default: the config's own)."""
    device = torch.device(resolve_device(str(device)))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    p = patch_size or cfg.data.patch_size
    b = batch_size or cfg.data.batch_size
    cfg = _resolved(cfg.replace(**{"data.patch_size": p, "data.batch_size": b}), device, b)
    trainer = Trainer(cfg, device)
    scale = cfg.model.scales[0]
    fmt = trainer.memory_format
    x = torch.rand(b, 3, p, p, device=device).contiguous(memory_format=fmt)
    y = torch.rand(b, 3, p * scale, p * scale, device=device).contiguous(memory_format=fmt)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer: fixed patch sizes
    for _ in range(warmup):
        trainer.step(x, y, scale)
    _sync(device)
    samples: list[float] = []
    per_round, done, t_start = 1, 0, time.perf_counter()
    while done < max_updates and (len(samples) < updates or time.perf_counter() - t_start < budget_s):
        n = min(per_round, max_updates - done)
        t0 = time.perf_counter()
        for _ in range(n):
            trainer.step(x, y, scale)
        _sync(device)
        samples.append((time.perf_counter() - t0) / n)
        done += n
        if device.type == "cuda" and len(samples) == 1:
            per_round = max(1, int(CUDA_ROUND_S / max(samples[0], 1e-6)))
    return StepTiming(statistics.median(samples), p, b, cfg.runtime.amp, done, tuple(samples))


class _Enough(Exception):
    """Raised from a training callback once :func:`time_trainer_updates` has its figures."""


def time_trainer_updates(cfg: Any, device: str | torch.device, *, updates: int = 3, warmup: int = 1,
                         budget_s: float = 0.0, max_updates: int = 50) -> StepTiming:
    """Seconds per update of ``cfg`` through the real trainer (:func:`sr_bench.train.train`: its
    DataLoader workers, log points and all), on the scikit-image photos in a temporary folder: the
    median of the intervals between updates after ``warmup`` untimed ones; at least ``updates``,
    more (up to ``max_updates``) while the timing has lasted under ``budget_s``. What a run on
    this machine sees, data loading included: on the CPU a DataLoader worker takes a share of the
    same cores. (On CUDA the updates are asynchronous, so the intervals between them do not
    measure them: use :func:`time_updates` there.)"""
    dev = resolve_device(str(device))
    stamps: list[float] = []

    def record(event: dict[str, Any]) -> None:
        stamps.append(time.perf_counter())
        timed = len(stamps) - 1 - warmup  # intervals after the warm-up updates
        if timed >= max_updates or (timed >= updates and stamps[-1] - stamps[warmup] >= budget_s):
            raise _Enough

    with tempfile.TemporaryDirectory(prefix="sr_bench_timing_") as tmp:
        run = cfg.replace(**{"out": tmp, "runtime.device": dev, "optim.iterations": warmup + max_updates + 1,
                             "val.every": 0, "val.max_images": 1, "runtime.save_every": 10**9,
                             "runtime.progress": False, "data.dataset": "embedded-train", "val.dataset": "embedded",
                             "model.init": None})
        try:
            train(run, callbacks=[record], log=lambda msg: log.debug(msg))
        except _Enough:
            pass
    samples = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:], strict=False)]
    amp = "bf16" if cfg.runtime.amp == "auto" and _cpu_bf16() else cfg.runtime.amp
    return StepTiming(statistics.median(samples), cfg.data.patch_size, cfg.data.batch_size, amp, len(samples),
                      tuple(samples))


def _cpu_bf16() -> bool:
    return cpu_has_native_bf16()


def time_forward(model: str, scale: int, device: str | torch.device, *, size: int = 64, repeats: int = 2,
                 options: dict[str, Any] | None = None) -> float:
    """Seconds of one float32 inference forward of ``model`` on a ``size`` x ``size`` LR image."""
    device = torch.device(resolve_device(str(device)))
    spec = get_spec(model)
    net = prepare_model(create(model, scale=None if spec.multi_scale else scale, **(options or {})), device)
    channels = getattr(net, "in_channels", None) or 3
    x = torch.rand(1, channels, size, size, device=device)
    with torch.inference_mode():
        net(x, scale)  # warm-up: kernel selection, allocator
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            net(x, scale)
        _sync(device)
    return (time.perf_counter() - t0) / repeats


def _cpu_matmul_peak(n: int = 1024, repeats: int = 5) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def peak_flops(device: str | torch.device, peak_tflops: float | None = None) -> tuple[float, str]:
    """(peak FLOP/s, where the figure comes from) for MFU."""
    device = torch.device(resolve_device(str(device)))
    if peak_tflops:
        return peak_tflops * 1e12, "--peak-tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key in sorted(KNOWN_PEAKS_TFLOPS, key=len, reverse=True):
            if key in name:
                return KNOWN_PEAKS_TFLOPS[key] * 1e12, f"{key} dense bf16 data-sheet peak"
        log.warning("no known peak for %s: pass --peak-tflops; using a measured bf16 matrix product", name)
        n = 8192
        a = torch.rand(n, n, device=device, dtype=torch.bfloat16)
        a @ a
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(10):
            a @ a
        _sync(device)
        return 10 * 2 * n**3 / (time.perf_counter() - t0), f"measured {n}x{n} bf16 matmul"
    return _cpu_matmul_peak(), "measured 1024x1024 float32 matmul on this CPU"


def train_flops_per_update(cfg: Any) -> float:
    """3x the forward FLOPs of one minibatch (the backward is counted as two forwards)."""
    scale = cfg.model.scales[0]
    per_px = flops_per_lr_pixel(cfg.model.name, scale, **cfg.model.options)
    return 3 * per_px * cfg.data.patch_size**2 * cfg.data.batch_size


@dataclass
class BenchResult:
    model: str
    scale: int
    device: str
    amp: str
    patch_size: int
    batch_size: int
    step_ms: float
    end_to_end_updates_per_s: float
    end_to_end_updates: int
    ratio: float  # end-to-end updates/s over compute-only updates/s
    tflop_per_update: float
    achieved_tflops: float
    peak_tflops: float
    peak_source: str
    mfu: float
    eval: list[dict[str, Any]]


def _end_to_end(cfg: Any, device: str, updates: int, data_root: str | None) -> float:
    """Updates/s of the real trainer over ``updates`` updates (validation on one image, at the end)."""
    with tempfile.TemporaryDirectory(prefix="sr_bench_bench_") as tmp:
        changes: dict[str, Any] = {"out": tmp, "runtime.device": device, "optim.iterations": updates,
                                   "val.every": 0, "val.max_images": 1, "runtime.save_every": max(updates, 1),
                                   "runtime.progress": False}
        if data_root:
            changes["data.root"] = data_root
        if find_data_root(data_root) is None:
            changes.update({"data.dataset": "embedded-train", "val.dataset": "embedded"})
        result = train(cfg.replace(**changes), log=lambda msg: log.debug(msg))
    return float(result.updates_per_second)


def _eval_speed(device: str, data_root: str | None, weights: str, n_images: int) -> list[dict[str, Any]]:
    """EDSR+ x4 images/s and PSNR in float32 and bfloat16 on Urban100 (else the embedded photos)."""
    try:
        ds = open_dataset("Urban100", data_root)
    except DatasetNotFound:
        ds = open_dataset("embedded", data_root)
    rows = []
    for dtype in ("float32", "bfloat16"):
        cands = load_candidates("edsr", [4], weights, device, dtype=dtype)
        evaluate(cands, ds, "paper", self_ensemble=(True,), device=device, dtype=dtype, max_images=1, progress=False)
        rec = evaluate(cands, ds, "paper", self_ensemble=(True,), device=device, dtype=dtype, max_images=n_images,
                       progress=False)[0]
        rows.append({"model": "edsr+ x4", "dataset": ds.name, "dtype": dtype, "weights": weights,
                     "images": rec.n_images, "seconds": rec.seconds,
                     "images_per_s": rec.n_images / max(rec.seconds, 1e-9), "psnr": rec.psnr})
    rows[1]["psnr_cost_db"] = rows[0]["psnr"] - rows[1]["psnr"]
    return rows


def measure(model: str, scale: int, *, device: str = "auto", profile: str = "paper", updates: int = 200,
            step_updates: int = 10, peak_tflops: float | None = None, data_root: str | None = None,
            eval_images: int = 0, eval_weights: str = "random", changes: dict[str, Any] | None = None) -> BenchResult:
    """Everything in the module docstring, for one config; ``eval_images=0`` skips evaluation."""
    dev = resolve_device(device)
    if eval_images and eval_weights not in ("random", "official", "none"):
        check_weights_path(eval_weights)  # a missing file fails now, not after the timing runs
    cfg = make_config(profile, model, scale, **(changes or {}))
    step = time_updates(cfg, dev, updates=step_updates, warmup=3)
    e2e = _end_to_end(cfg, dev, updates, data_root)
    flop = train_flops_per_update(cfg)
    peak, source = peak_flops(dev, peak_tflops)
    achieved = flop / step.seconds
    rows = _eval_speed(dev, data_root, eval_weights, eval_images) if eval_images else []
    return BenchResult(model, int(cfg.model.scales[0]), dev, step.amp, step.patch_size, step.batch_size,
                       step.seconds * 1e3, e2e, updates, e2e * step.seconds, flop / 1e12, achieved / 1e12,
                       peak / 1e12, source, achieved / peak, rows)


def to_markdown(r: BenchResult) -> str:
    crop = f"{r.amp}, batch {r.batch_size}, {r.patch_size}x{r.patch_size}"
    lines = [f"## {r.model} x{r.scale} on {r.device} ({crop})", "",
             "| measure | value |", "|---|---|",
             f"| compute-only step | {r.step_ms:.4g} ms ({1e3 / r.step_ms:.4g} updates/s) |",
             f"| end to end, {r.end_to_end_updates} updates through the trainer | "
             f"{r.end_to_end_updates_per_s:.4g} updates/s |",
             f"| end to end / compute-only | {r.ratio:.2f} |",
             f"| training FLOPs per update | {r.tflop_per_update:.4g} TFLOP |",
             f"| achieved (compute-only step) | {r.achieved_tflops:.4g} TFLOP/s |",
             f"| peak ({r.peak_source}) | {r.peak_tflops:.4g} TFLOP/s |",
             f"| MFU | {r.mfu:.1%} |"]
    for e in r.eval:
        cost = f", bf16 cost {e['psnr_cost_db']:+.3f} dB" if "psnr_cost_db" in e else ""
        lines.append(f"| {e['model']} on {e['dataset']} ({e['dtype']}, {e['weights']} weights, {e['images']} images) | "
                     f"{e['images_per_s']:.2f} images/s, PSNR {e['psnr']:.2f} dB{cost} |")
    return "\n".join(lines) + "\n"


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("python -m sr_bench.bench", "Training and evaluation speed of one model config.")
    cli.add_common_options(p, device=True, data_root=True, results=True)
    p.add_argument("--model", default="edsr-baseline")
    p.add_argument("--scale", type=cli.positive_int, default=2)
    p.add_argument("--profile", default="paper", help="training profile whose recipe is timed (default paper)")
    p.add_argument("--updates", type=cli.positive_int, default=200, help="end-to-end updates through the trainer")
    p.add_argument("--step-updates", type=cli.positive_int, default=10, help="timed compute-only updates")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="peak TFLOP/s for MFU (default: known GPUs, or a measured matrix product)")
    p.add_argument("--eval-images", type=cli.non_negative_int, default=10,
                   help="Urban100 images for EDSR+ x4 (0: skip)")
    p.add_argument("--eval-weights", default="random",
                   help="EDSR x4 weights: random (speed only), official, or a file")
    p.add_argument("--set", type=parse_option, action="append", default=[], metavar="FIELD=VALUE",
                   help="change a TrainConfig field (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default: RESULTS/bench-MODEL-xSCALE.json)")
    a = p.parse_args(argv)
    cli.setup_logging(a.verbosity)
    out = a.out or Path(a.results or default_results_dir()) / f"bench-{a.model}-x{a.scale}.json"
    check_writable(out)  # a read-only or full disk fails now, not after the measurements
    r = measure(a.model, a.scale, device=a.device, profile=a.profile, updates=a.updates, step_updates=a.step_updates,
                peak_tflops=a.peak_tflops, data_root=a.data_root, eval_images=a.eval_images,
                eval_weights=a.eval_weights, changes=dict(a.set))

    text = json.dumps(asdict(r), indent=1)
    print(to_markdown(r), end="")  # shown even if the JSON cannot be written
    atomic_write(out, lambda tmp: tmp.write_text(text + "\n"))
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
