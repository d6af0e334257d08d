"""Training and evaluation speed of one model config, measured in one run.

    python -m sr_bench.bench --model edsr-baseline --scale 2 [--updates 200] [--device cuda]
    python -m sr_bench.bench --model edsr --scale 2 --peak-tflops 989 --out results/bench.json

It reports, for the config the ``--profile`` gives (default ``paper``: batch 16, 48x48 LR patches):

* **compute-only step**: one update (forward, loss, backward, Adam) on tensors already on the
  device, by the trainer's own ``Trainer.step`` (same precision choice, memory format and loss),
  timed over a few updates after warm-up;
* **end to end**: updates/s through the real trainer (:func:`sr_bench.train.train`: data
  sampling, logging, checkpoints) in the precision the compute-only step used, over
  ``--updates`` updates after ``--warmup-updates`` untimed ones (cuDNN's autotuning,
  ``torch.compile`` and CUDA-graph capture happen there), the device synchronised at both ends;
  and its ratio to the compute-only step (the aim is at least 0.9: data, logging and checkpoints
  cost under a tenth of the time);
* **FLOP/s and MFU**: training FLOPs per update are 3x the forward's (the backward costs two
  forwards, the usual convention), forward FLOPs from :mod:`sr_bench.flops`. MFU is achieved /
  peak, for the math the step ran in (IEEE float32, TF32, bf16 or fp16: each has its own peak).
  The peak is ``--peak-tflops``, else :data:`KNOWN_PEAKS_TFLOPS` (NVIDIA's data sheets, dense),
  else a matrix product in that math measured here;
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
from sr_bench.precision import backend_flags, math_mode, training_flags
from sr_bench.records import environment
from sr_bench.train import make_config, resolve_config, train
from sr_bench.train.trainer import Trainer, cpu_has_native_bf16, device_sync, time_amp
from sr_bench.weights import check_weights_path

__all__ = ["BenchResult", "StepTiming", "time_updates", "time_trainer_updates", "time_forward", "peak_flops",
           "train_flops_per_update", "measure", "main"]

log = logging.getLogger("sr_bench.bench")

#: dense peaks (TFLOP/s) of each math mode (sr_bench.precision.math_mode), matched against
#: ``torch.cuda.get_device_name``, longest name first. From NVIDIA's data sheets, whose tensor-core
#: figures are quoted with 2:4 sparsity and are halved here:
#: H100 SXM5 and H200 SXM (same chip and clocks; "NVIDIA H100 Tensor Core GPU" and "NVIDIA H200
#: Tensor Core GPU" data sheets): FP32 67, TF32 989 / 2, BF16 and FP16 1,979 / 2;
#: H100 PCIe: FP32 51, TF32 756 / 2, BF16/FP16 1,513 / 2;
#: A100 ("NVIDIA A100 Tensor Core GPU" data sheet, dense figures): FP32 19.5, TF32 156, BF16/FP16 312;
#: L40S ("NVIDIA L40S" data sheet): FP32 91.6, TF32 366 / 2, BF16/FP16 733 / 2;
#: RTX 4090 (Ada Lovelace architecture whitepaper, appendix A): FP32 82.6, TF32 82.6, FP16/BF16
#: with FP32 accumulation 165.2.
KNOWN_PEAKS_TFLOPS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"fp32-ieee": 51.0, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5},
    "H100": {"fp32-ieee": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5},
    "H200": {"fp32-ieee": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5},
    "GH200": {"fp32-ieee": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5},
    "A100": {"fp32-ieee": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
    "L40S": {"fp32-ieee": 91.6, "tf32": 183.0, "bf16": 366.5, "fp16": 366.5},
    "RTX 4090": {"fp32-ieee": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2},
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
    #: the math of the timed updates (sr_bench.precision.math_mode); "" where not known
    math_mode: str = ""


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
    with training_flags(device, cfg.runtime.tf32):  # as the trainer: TF32 as configured, the autotuner on CUDA
        samples, done = _timed_rounds(trainer, x, y, scale, warmup, updates, budget_s, max_updates)
    return StepTiming(statistics.median(samples), p, b, cfg.runtime.amp, done, tuple(samples), trainer.math_mode)


def _timed_rounds(trainer: Trainer, x: torch.Tensor, y: torch.Tensor, scale: int, warmup: int, updates: int,
                  budget_s: float, max_updates: int) -> tuple[list[float], int]:
    """(seconds per update of each timed round, updates timed) for :func:`time_updates`."""
    device = trainer.device
    sync = device_sync(device)
    for _ in range(warmup):
        trainer.step(x, y, scale)
    sync()
    samples: list[float] = []
    per_round, done, t_start = 1, 0, time.perf_counter()
    while done < max_updates and (len(samples) < updates or time.perf_counter() - t_start < budget_s):
        n = min(per_round, max_updates - done)
        t0 = time.perf_counter()
        for _ in range(n):
            trainer.step(x, y, scale)
        sync()
        samples.append((time.perf_counter() - t0) / n)
        done += n
        if device.type == "cuda" and len(samples) == 1:
            per_round = max(1, int(CUDA_ROUND_S / max(samples[0], 1e-6)))
    return samples, done


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
                      tuple(samples), math_mode(amp, dev, tf32=cfg.runtime.tf32))


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


#: the matrix-product dtype and TF32 setting that measure each math mode's peak
_PEAK_PRODUCT = {"fp32-ieee": (torch.float32, False), "tf32": (torch.float32, True), "bf16": (torch.bfloat16, None),
                 "fp16": (torch.float16, None)}


def _measured_matmul_peak(device: torch.device, mode: str) -> tuple[float, str]:
    """FLOP/s of a square matrix product in ``mode``'s math on ``device`` (the best of a few on
    the CPU; the mean of ten after a warm-up on CUDA)."""
    dtype, tf32 = _PEAK_PRODUCT.get(mode, (torch.float32, False))
    n, repeats = (8192, 10) if device.type == "cuda" else (1024, 5)
    a = torch.rand(n, n, device=device, dtype=dtype)
    with backend_flags(tf32=tf32):
        a @ a
        _sync(device)
        if device.type == "cuda":
            t0 = time.perf_counter()
            for _ in range(repeats):
                a @ a
            _sync(device)
            seconds = (time.perf_counter() - t0) / repeats
        else:
            seconds = math.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                a @ a
                seconds = min(seconds, time.perf_counter() - t0)
    where = "this CPU" if device.type == "cpu" else str(device)
    return 2 * n**3 / seconds, f"measured {n}x{n} {mode} matrix product on {where}"


def peak_flops(device: str | torch.device, peak_tflops: float | None = None,
               mode: str = "bf16") -> tuple[float, str]:
    """(peak FLOP/s, where the figure comes from) of ``device`` in math ``mode``
    (:func:`sr_bench.precision.math_mode`: an fp32 step is measured against the fp32 or TF32 peak,
    never the bf16 one): ``peak_tflops`` when given, else :data:`KNOWN_PEAKS_TFLOPS` for a known
    GPU, else a matrix product measured in that math."""
    device = torch.device(resolve_device(str(device)))
    if peak_tflops:
        return peak_tflops * 1e12, "--peak-tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key in sorted(KNOWN_PEAKS_TFLOPS, key=len, reverse=True):
            if key in name and mode in KNOWN_PEAKS_TFLOPS[key]:
                return KNOWN_PEAKS_TFLOPS[key][mode] * 1e12, f"{key} dense {mode} data-sheet peak"
        log.warning("no known %s peak for %s: pass --peak-tflops; using a measured matrix product", mode, name)
    return _measured_matmul_peak(device, mode)


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
    #: the math of both the compute-only step and the end-to-end run (sr_bench.precision.math_mode)
    math_mode: str = ""
    #: untimed end-to-end updates before the timed ones (autotuning, compilation)
    end_to_end_warmup: int = 0
    host: str = ""


def _end_to_end(cfg: Any, device: str, updates: int, warmup: int, data_root: str | None) -> float:
    """Updates/s of the real trainer from update ``warmup`` to ``warmup + updates`` (validation on
    one image, at the end; never reached): the first ``warmup`` updates hold cuDNN's autotuning,
    ``torch.compile`` and CUDA-graph capture, which a long run pays once. The device is
    synchronised at both ends, so queued work is counted where it runs."""
    sync = device_sync(torch.device(resolve_device(device)))
    stamps: dict[int, float] = {}
    first, last = max(warmup, 1), max(warmup, 1) + updates

    def stamp(event: dict[str, Any]) -> None:
        if event["iteration"] in (first, last):
            sync()
            stamps[event["iteration"]] = time.perf_counter()
            if event["iteration"] == last:
                raise _Enough

    with tempfile.TemporaryDirectory(prefix="sr_bench_bench_") as tmp:
        changes: dict[str, Any] = {"out": tmp, "runtime.device": device, "optim.iterations": last + 1,
                                   "val.every": 0, "val.max_images": 1, "runtime.save_every": last + 1,
                                   "runtime.progress": False}
        if data_root:
            changes["data.root"] = data_root
        if find_data_root(data_root) is None:
            changes.update({"data.dataset": "embedded-train", "val.dataset": "embedded"})
        try:
            train(cfg.replace(**changes), callbacks=[stamp], log=lambda msg: log.debug(msg))
        except _Enough:
            pass
    return updates / (stamps[last] - stamps[first])


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
            warmup_updates: int = 20, step_updates: int = 10, peak_tflops: float | None = None,
            data_root: str | None = None, eval_images: int = 0, eval_weights: str = "random",
            changes: dict[str, Any] | None = None) -> BenchResult:
    """Everything in the module docstring, for one config; ``eval_images=0`` skips evaluation. The
    end-to-end run trains in the precision the compute-only step chose (``amp auto`` is decided
    once, by the step's timing), so the two figures compare one computation."""
    dev = resolve_device(device)
    if eval_images and eval_weights not in ("random", "official", "none"):
        check_weights_path(eval_weights)  # a missing file fails now, not after the timing runs
    cfg = make_config(profile, model, scale, **(changes or {}))
    step = time_updates(cfg, dev, updates=step_updates, warmup=3)
    e2e = _end_to_end(cfg.replace(**{"runtime.amp": step.amp}), dev, updates, warmup_updates, data_root)
    flop = train_flops_per_update(cfg)
    peak, source = peak_flops(dev, peak_tflops, step.math_mode)
    achieved = flop / step.seconds
    rows = _eval_speed(dev, data_root, eval_weights, eval_images) if eval_images else []
    return BenchResult(model, int(cfg.model.scales[0]), dev, step.amp, step.patch_size, step.batch_size,
                       step.seconds * 1e3, e2e, updates, e2e * step.seconds, flop / 1e12, achieved / 1e12,
                       peak / 1e12, source, achieved / peak, rows, step.math_mode, max(warmup_updates, 1),
                       environment(dev)["host"])


def to_markdown(r: BenchResult) -> str:
    crop = f"amp {r.amp}: {r.math_mode}, batch {r.batch_size}, {r.patch_size}x{r.patch_size}"
    lines = [f"## {r.model} x{r.scale} on {r.device} ({crop})", "",
             "| measure | value |", "|---|---|",
             f"| compute-only step | {r.step_ms:.4g} ms ({1e3 / r.step_ms:.4g} updates/s) |",
             f"| end to end, {r.end_to_end_updates} updates through the trainer after {r.end_to_end_warmup} | "
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
    p.add_argument("--updates", type=cli.positive_int, default=200,
                   help="timed end-to-end updates through the trainer")
    p.add_argument("--warmup-updates", type=cli.positive_int, default=20,
                   help="untimed end-to-end updates first (autotuning, compilation; default 20)")
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
    r = measure(a.model, a.scale, device=a.device, profile=a.profile, updates=a.updates,
                warmup_updates=a.warmup_updates, step_updates=a.step_updates,
                peak_tflops=a.peak_tflops, data_root=a.data_root, eval_images=a.eval_images,
                eval_weights=a.eval_weights, changes=dict(a.set))

    text = json.dumps(asdict(r), indent=1)
    print(to_markdown(r), end="")  # shown even if the JSON cannot be written
    atomic_write(out, lambda tmp: tmp.write_text(text + "\n"))
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
