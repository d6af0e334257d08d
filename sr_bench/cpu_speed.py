"""CPU speed where users feel it, measured in one process: the EDSR inference forward against the
official port's eager forward and the convolution ceiling, and MATLAB ``imresize`` against torch's
own antialiased bicubic kernel.

    python -m sr_bench.cpu_speed                          # EDSR-baseline x2, committed quick weights
    python -m sr_bench.cpu_speed --model edsr --weights official --size 96 --rounds 3
    python -m sr_bench.cpu_speed --bf16 --compiled        # also bf16, torch.jit.freeze, torch.compile

**Forward** (``--model`` x``--scale``, float32, a ``--size`` x ``--size`` LR crop of a photograph):

* *ceiling*: one bare F->F 3x3 convolution on an F x size x size map (the faster of NCHW and
  channels_last), times the model's FLOPs counted in such convolutions
  (:func:`sr_bench.flops.count_flops`): the time the forward would take if all its arithmetic
  ran at that convolution's speed. sr_bench's fused forward does fewer FLOPs than it counts (the
  upsampler and tail are composed), so it can beat 100%;
* *official*: :class:`OfficialEDSR`, an independent re-implementation of the official port's
  structure run as its test loop runs it: NCHW, under ``torch.no_grad()``, MeanShift as 1x1
  convolutions, ``res = body(x).mul(res_scale); res += x``, convolution + PixelShuffle
  upsampler; it loads the same state_dict;
* *sr_bench*: ``super_resolve(prepare_model(model, "cpu"), lr, scale)``, the path evaluation
  takes (fused, bit-identical to the layers); *sr_bench composed*: with
  ``prepare_model(..., compose_upsampler=True)`` (opt-in: float32 rounding differs); *sr_bench
  unfused*: with ``prepare_model(..., fuse=False)``.

Before timing, the outputs are checked to be equal work: each sr_bench form must be within 16x
the official float32 forward's distance from a float64 forward of the official structure (on a
crop), and within twice that of the official float32 output on the timed image. (A float32
forward's error depends on the kernels' summation order: channels_last measured 3-4x NCHW's
here; a wrong weight, bias or border is off by more than 1e-3, 1000x this bound.)

**imresize**: a 2040 x 1356 RGB photograph shrunk by 4, as a numpy uint8 HWC array and as a
(1, 3, H, W) uint8 tensor, against ``F.interpolate(uint8, mode="bicubic", antialias=True)``.

Every round times each case once, in rotating order, on 1 and 2 intra-op threads, so all cases
see the same load; reported are medians (wall clock; on 1 thread also the thread's CPU time,
which the other processes of a shared machine disturb far less; on more threads the process's
CPU time, which counts the work and the threads' spinning at barriers but not the time a thread
waited for a core), the spread, the ratios of the medians, and the load average before and
after. Output: markdown on stdout, JSON (``--out``).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sr_bench import cli, models
from sr_bench.data import DatasetNotFound, open_dataset
from sr_bench.evaluate import evaluate, load_candidates
from sr_bench.flops import count_flops
from sr_bench.images import atomic_write, check_writable
from sr_bench.inference import prepare_model, super_resolve
from sr_bench.models.common import ResBlock
from sr_bench.models.edsr import EDSR
from sr_bench.paths import checkout_root, default_results_dir
from sr_bench.resize import imresize
from sr_bench.weights import load_weights, published_weights

__all__ = ["OfficialEDSR", "Timing", "interleave", "forward_speed", "resize_speed", "photograph", "main"]

log = logging.getLogger("sr_bench.cpu_speed")

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)  # the official port's rgb_mean
#: the committed trained EDSR-baseline x2 (under the checkout root)
QUICK_WEIGHTS = "results/weights/quick-edsr-baseline-x2.safetensors"


def _default_weights(model: str, scale: int) -> str:
    """The committed quick weights where they fit (a checkout), else random init (speed only)."""

    root = checkout_root()
    if (model, scale) == ("edsr-baseline", 2) and root is not None and (root / QUICK_WEIGHTS).is_file():
        return str(root / QUICK_WEIGHTS)
    log.warning("no trained weights for %s x%d here: timing random-init weights (the same speed)", model, scale)
    return "random"


# --------------------------------------------------------------------------------------------
# The official port's structure, written independently (same state_dict keys)


class _MeanShift(nn.Conv2d):
    def __init__(self, sign: int, rgb_range: float = 255.0) -> None:
        super().__init__(3, 3, 1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            assert self.bias is not None
            self.bias.copy_(sign * rgb_range * torch.tensor(DIV2K_MEAN))


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class _ResBlock(nn.Module):
    def __init__(self, filters: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(filters, filters), nn.ReLU(True), _conv(filters, filters))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x).mul(self.res_scale)
        res += x
        return res


class OfficialEDSR(nn.Module):
    """EDSR as the official PyTorch port builds and runs it: input and output in 0..255."""

    def __init__(self, scale: int, blocks: int, filters: int, res_scale: float) -> None:
        super().__init__()
        self.sub_mean, self.add_mean = _MeanShift(-1), _MeanShift(+1)
        self.head = nn.Sequential(_conv(3, filters))
        self.body = nn.Sequential(*[_ResBlock(filters, res_scale) for _ in range(blocks)], _conv(filters, filters))
        factors = [3] if scale == 3 else [2] * int(math.log2(scale))
        up: list[nn.Module] = []
        for f in factors:
            up += [_conv(filters, f * f * filters), nn.PixelShuffle(f)]
        self.tail = nn.Sequential(nn.Sequential(*up), _conv(filters, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sub_mean(x)
        x = self.head(x)
        res = self.body(x)
        res += x
        return self.add_mean(self.tail(res))


# --------------------------------------------------------------------------------------------
# Timing


@dataclass
class Timing:
    """Seconds per call of one case, one entry per round."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # this thread's CPU time
    process: list[float] = field(default_factory=list)  # the process's CPU time, all threads

    def median(self, kind: str = "wall") -> float:
        return statistics.median(getattr(self, kind))

    def summary(self, kind: str = "wall") -> dict[str, float]:
        v = getattr(self, kind)
        return {"median_ms": statistics.median(v) * 1e3, "min_ms": min(v) * 1e3, "max_ms": max(v) * 1e3}


def interleave(cases: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, Timing]:
    """Time every case once per round, in an order rotated each round."""
    for f in cases.values():
        for _ in range(warmup):
            f()
    names = list(cases)
    out = {k: Timing() for k in names}
    for r in range(rounds):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            w0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
            cases[k]()
            out[k].process.append(time.process_time() - p0)
            out[k].cpu.append(time.thread_time() - c0)
            out[k].wall.append(time.perf_counter() - w0)
    return out


class _Threads:
    def __init__(self, n: int) -> None:
        self.n, self.before = n, torch.get_num_threads()

    def __enter__(self) -> None:
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)


def photograph() -> np.ndarray:
    """scikit-image's astronaut enlarged to DIV2K size (2040 x 1356) with PIL's bicubic."""
    from PIL import Image
    from skimage.data import astronaut

    return np.array(Image.fromarray(astronaut()).resize((2040, 1356), Image.Resampling.BICUBIC))


def _lr_crop(size: int) -> torch.Tensor:
    """A size x size crop of the photograph shrunk by 4 (MATLAB bicubic), 0..1, (1, 3, s, s)."""

    small = imresize(photograph(), 0.25)  # 339 x 510
    if size > min(small.shape[:2]):
        small = imresize(small, output_shape=(size, size))
    y0, x0 = (small.shape[0] - size) // 2, (small.shape[1] - size) // 2
    crop = np.ascontiguousarray(small[y0 : y0 + size, x0 : x0 + size])
    return torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(255)


# --------------------------------------------------------------------------------------------
# Forward


@dataclass
class _Models:
    official: OfficialEDSR
    forms: dict[str, nn.Module]  # sr_bench's inference forms by case name
    filters: int
    conv_equivalents: float


def _build(model: str, scale: int, weights: str | None) -> _Models:
    if model not in ("edsr-baseline", "edsr"):
        raise cli.UsageError(f"--model {model}: the official-structure reference covers edsr-baseline and edsr")
    torch.manual_seed(0)
    net = models.create(model, scale=scale)
    if weights not in (None, "random"):
        load_weights(net, published_weights(model, scale).name if weights == "official" else weights)

    assert isinstance(net, EDSR)
    first = net.body[0]
    assert isinstance(first, ResBlock)
    conv0 = first.body[0]
    assert isinstance(conv0, nn.Conv2d)
    filters = conv0.in_channels
    official = OfficialEDSR(scale, len(net.body) - 1, filters, first.res_scale)
    official.load_state_dict(net.state_dict(), strict=True)
    flops = count_flops(copy.deepcopy(net).to("meta"), scale, 16, 16) / (16 * 16)
    forms = {"sr_bench": prepare_model(copy.deepcopy(net), "cpu"),
             "sr_bench composed": prepare_model(copy.deepcopy(net), "cpu", compose_upsampler=True),
             "sr_bench unfused": prepare_model(copy.deepcopy(net), "cpu", fuse=False)}
    return _Models(official.eval(), forms, filters, flops / (2 * filters * filters * 9))


def _check_equal_work(m: _Models, lr: torch.Tensor, scale: int) -> dict[str, Any]:
    """Max differences (0..1 units) that show each sr_bench form computes the official function."""

    crop = lr[..., :48, :48]
    with torch.no_grad():
        exact = copy.deepcopy(m.official).double()(crop.double() * 255) / 255
        official32 = m.official(crop * 255) / 255
        full32 = m.official(lr * 255) / 255
    err32 = float((official32 - exact).abs().max())
    bound = 16 * err32
    report: dict[str, Any] = {"official_fp32_vs_fp64": err32, "bound": bound}
    for name, form in m.forms.items():
        vs_exact = float((super_resolve(form, crop, scale) - exact).abs().max())
        vs_official = float((super_resolve(form, lr, scale) - full32).abs().max())
        if not (vs_exact <= bound and vs_official <= 2 * bound):
            raise AssertionError(f"{name} is not the official forward: {vs_exact:.3g} from float64 on a crop (bound "
                                 f"{bound:.3g}), {vs_official:.3g} from the official float32 output")
        report[name] = {"vs_fp64": vs_exact, "vs_official": vs_official}
    return report


def _forward_cases(m: _Models, lr: torch.Tensor, scale: int, bf16: bool) -> dict[str, Callable[[], object]]:
    s = lr.shape[-1]
    fmap = torch.randn(1, m.filters, s, s)
    weight, bias = torch.randn(m.filters, m.filters, 3, 3) * 0.05, torch.zeros(m.filters)
    cl = torch.channels_last
    fmap_cl, weight_cl = fmap.contiguous(memory_format=cl), weight.contiguous(memory_format=cl)
    lr255 = lr * 255

    def official() -> object:
        with torch.no_grad():
            return m.official(lr255)

    cases: dict[str, Callable[[], object]] = {
        "conv NCHW": lambda: F.conv2d(fmap, weight, bias, padding=1),
        "conv channels_last": lambda: F.conv2d(fmap_cl, weight_cl, bias, padding=1),
        "official": official,
    }
    for name, form in m.forms.items():
        cases[name] = functools.partial(super_resolve, form, lr, scale)
    if bf16:
        for name, compose in (("sr_bench bf16", False), ("sr_bench composed bf16", True)):
            half = prepare_model(copy.deepcopy(m.forms["sr_bench unfused"]), "cpu", "bfloat16",
                                 compose_upsampler=compose)
            cases[name] = functools.partial(super_resolve, half, lr, scale)
    return cases


def _compiled_cases(m: _Models, lr: torch.Tensor, scale: int) -> tuple[dict[str, Callable[[], object]], dict]:
    """torch.jit.freeze + optimize_for_inference (oneDNN fusions) and, with a C++ compiler,
    torch.compile, each with its one-time cost (trace/compile plus the first call)."""
    cases: dict[str, Callable[[], object]] = {}
    setup: dict[str, float | str] = {}
    x = lr.contiguous(memory_format=torch.channels_last)
    plain = copy.deepcopy(m.forms["sr_bench unfused"])
    with torch.no_grad():
        t0 = time.perf_counter()
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(_Fixed(plain, scale).eval(), x)))
        frozen(x)
        setup["jit.freeze"] = time.perf_counter() - t0
    cases["jit.freeze"] = lambda: frozen(x)
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        setup["torch.compile"] = "skipped: no C++ compiler"
        return cases, setup
    compiled = torch.compile(copy.deepcopy(m.forms["sr_bench unfused"]))
    with torch.no_grad():
        t0 = time.perf_counter()
        compiled(x, scale)
        setup["torch.compile"] = time.perf_counter() - t0

    def run_compiled() -> object:
        with torch.no_grad():
            return compiled(x, scale)

    cases["torch.compile"] = run_compiled
    return cases, setup


class _Fixed(nn.Module):
    def __init__(self, model: nn.Module, scale: int) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.scale)


def _kinds(threads: int) -> list[str]:
    """The clocks reported: wall, and the CPU time of the one working thread, or of the process
    (all threads: what they computed and spun, not when the result came) on more threads."""
    return ["wall", "cpu"] if threads == 1 else ["wall", "process"]


def _forward_row(t: dict[str, Timing], threads: int, conv_equivalents: float) -> dict[str, Any]:
    kinds = _kinds(threads)
    row: dict[str, Any] = {"threads": threads, "times": {k: {kind: v.summary(kind) for kind in kinds}
                                                        for k, v in t.items()}}
    for kind in kinds:
        conv = min(t["conv NCHW"].median(kind), t["conv channels_last"].median(kind))
        ceiling = conv * conv_equivalents
        official = t["official"].median(kind)
        for name in (k for k in t if not k.startswith("conv") and k != "official"):
            ours = t[name].median(kind)
            row.setdefault("ratios", {}).setdefault(name, {})[kind] = {
                "official_over_this": official / ours, "ceiling_fraction": ceiling / ours}
        pairs = zip(getattr(t["official"], kind), getattr(t["sr_bench"], kind), strict=True)
        per_round = [o / s for o, s in pairs]
        row.setdefault("per_round_official_over_sr_bench", {})[kind] = [min(per_round), max(per_round)]
    return row


def forward_speed(model: str = "edsr-baseline", scale: int = 2, *, weights: str | None = None,
                  size: int = 256, threads: Sequence[int] = (1, 2), rounds: int = 7, bf16: bool = False,
                  compiled: bool = False) -> dict[str, Any]:
    """The forward comparison described in the module docstring, one row per thread count."""
    m = _build(model, scale, weights)
    lr = _lr_crop(size)
    agreement = _check_equal_work(m, lr, scale)
    cases = _forward_cases(m, lr, scale, bf16)
    setup: dict = {}
    if compiled:
        extra, setup = _compiled_cases(m, lr, scale)
        cases.update(extra)
    rows = []
    for n in threads:
        with _Threads(n):
            rows.append(_forward_row(interleave(cases, rounds), n, m.conv_equivalents))
    return {"model": model, "scale": scale, "weights": weights or "random", "size": size, "rounds": rounds,
            "conv_equivalents": m.conv_equivalents, "filters": m.filters, "agreement": agreement,
            "setup_seconds": setup, "rows": rows}


def bf16_psnr_cost(model: str, scale: int, weights: str, data_root: str | None) -> dict[str, Any] | None:
    """Set5 PSNR (paper protocol) of sr_bench's default float32 path and of bfloat16, by the
    evaluation code itself; None without the data."""

    try:
        ds = open_dataset("Set5", data_root)
    except DatasetNotFound:
        return None
    psnr = {}
    for dtype in ("float32", "bfloat16"):
        cands = load_candidates(model, [scale], weights, "cpu", dtype=dtype)
        psnr[dtype] = evaluate(cands, ds, "paper", device="cpu", dtype=dtype, progress=False)[0].psnr
    return {"dataset": "Set5", "weights": weights, "psnr": psnr, "cost_db": psnr["float32"] - psnr["bfloat16"]}


# --------------------------------------------------------------------------------------------
# imresize


def resize_speed(threads: Sequence[int] = (1, 2), rounds: int = 15) -> dict[str, Any]:
    """imresize(., 1/4) on the 2040 x 1356 photograph against torch's antialiased bicubic."""

    image = photograph()
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()
    cases: dict[str, Callable[[], object]] = {
        "imresize numpy": lambda: imresize(image, 0.25),
        "imresize tensor": lambda: imresize(tensor, 0.25),
        "torch bicubic antialias": lambda: F.interpolate(tensor, scale_factor=0.25, mode="bicubic", antialias=True),
    }
    rows = []
    for n in threads:
        with _Threads(n):
            t = interleave(cases, rounds)
        kinds = _kinds(n)
        row: dict[str, Any] = {"threads": n, "times": {k: {kind: v.summary(kind) for kind in kinds}
                                                       for k, v in t.items()}}
        for kind in kinds:
            ref = t["torch bicubic antialias"].median(kind)
            row.setdefault("over_torch", {})[kind] = {k: t[k].median(kind) / ref for k in cases if "imresize" in k}
        rows.append(row)
    return {"image": "2040x1356 RGB uint8, shrunk by 4", "rounds": rounds, "rows": rows}


# --------------------------------------------------------------------------------------------
# Report


def machine() -> dict[str, Any]:
    name = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": name, "cores": os.cpu_count(), "torch": torch.__version__,
            "capability": torch.backends.cpu.get_cpu_capability()}


CLOCKS = (("wall", "wall"), ("cpu", "CPU"), ("process", "process CPU"))


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"CPU: {report['machine']['cpu']}, {report['machine']['cores']} cores, torch {report['machine']['torch']} "
             f"({report['machine']['capability']}); load average {report['load_before']} before, "
             f"{report['load_after']} after", ""]
    fwd = report.get("forward")
    if fwd:
        a = fwd["agreement"]
        lines += [f"## {fwd['model']} x{fwd['scale']} forward, {fwd['size']}x{fwd['size']} LR, float32, "
                  f"{fwd['rounds']} rounds ({fwd['weights']} weights; {fwd['conv_equivalents']:.2f} conv-equivalents)",
                  "", "equal work, max difference from a float64 forward of the official structure: official "
                  f"float32 {a['official_fp32_vs_fp64']:.2g}, "
                  + ", ".join(f"{k} {v['vs_fp64']:.2g}" for k, v in a.items() if isinstance(v, dict)), "",
                  "| threads | clock | case | median ms (min-max) | official / this | of ceiling |",
                  "|---|---|---|---|---|---|"]
        for row in fwd["rows"]:
            for kind, label in CLOCKS:
                for name, times in row["times"].items():
                    if kind not in times:
                        continue
                    s, r = times[kind], row.get("ratios", {}).get(name, {}).get(kind)
                    ratios = f"{r['official_over_this']:.2f}x | {r['ceiling_fraction']:.0%}" if r else " | "
                    lines.append(f"| {row['threads']} | {label} | {name} | {s['median_ms']:.1f} "
                                 f"({s['min_ms']:.0f}-{s['max_ms']:.0f}) | {ratios} |")
        for k, v in fwd["setup_seconds"].items():
            lines.append(f"\n{k} one-time cost: {v if isinstance(v, str) else f'{v:.1f} s'}")
        cost = fwd.get("bf16_psnr")
        if cost:
            lines.append(f"\nbf16 on {cost['dataset']}: PSNR {cost['psnr']['bfloat16']:.4f} dB against "
                         f"{cost['psnr']['float32']:.4f} dB in float32 ({cost['cost_db']:+.4f} dB cost)")
        lines.append("")
    rs = report.get("imresize")
    if rs:
        lines += [f"## imresize, {rs['image']}, {rs['rounds']} rounds", "",
                  "| threads | clock | case | median ms (min-max) | / torch |", "|---|---|---|---|---|"]
        for row in rs["rows"]:
            for kind, label in CLOCKS:
                for name, times in row["times"].items():
                    if kind in times:
                        s = times[kind]
                        ratio = row["over_torch"][kind].get(name)
                        lines.append(f"| {row['threads']} | {label} | {name} | {s['median_ms']:.1f} "
                                     f"({s['min_ms']:.1f}-{s['max_ms']:.1f}) | {f'{ratio:.2f}' if ratio else ''} |")
    return "\n".join(lines) + "\n"


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("python -m sr_bench.cpu_speed", "CPU inference forward and imresize speed, in one process.")
    cli.add_common_options(p, data_root=True, results=True)
    p.add_argument("--model", default="edsr-baseline", choices=["edsr-baseline", "edsr"])
    p.add_argument("--scale", type=int, default=2, choices=[2, 3, 4])
    p.add_argument("--weights", default=None, help="a weights file, official, or random (default: the "
                   f"committed {QUICK_WEIGHTS} for edsr-baseline x2, else random)")
    p.add_argument("--size", type=cli.positive_int, default=256, help="LR side of the forward input (default 256)")
    p.add_argument("--threads", type=cli.positive_int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=cli.positive_int, default=7, help="forward rounds (imresize: 15)")
    p.add_argument("--bf16", action="store_true",
                   help="also time sr_bench in bfloat16, and its Set5 PSNR cost (it changes results)")
    p.add_argument("--compiled", action="store_true", help="also torch.jit.freeze and torch.compile (slow to set up)")
    p.add_argument("--skip", choices=["forward", "imresize"], default=None)
    p.add_argument("--out", type=Path, default=None, help="JSON file (default: RESULTS/cpu-speed.json)")
    a = p.parse_args(argv)
    cli.setup_logging(a.verbosity)
    out = a.out or Path(a.results or default_results_dir()) / "cpu-speed.json"
    check_writable(out)  # a read-only or full disk fails now, not after the measurements
    weights = a.weights or _default_weights(a.model, a.scale)
    report: dict[str, Any] = {"machine": machine(), "load_before": [round(x, 2) for x in os.getloadavg()]}
    if a.skip != "forward":
        report["forward"] = forward_speed(a.model, a.scale, weights=weights, size=a.size, threads=a.threads,
                                          rounds=a.rounds, bf16=a.bf16, compiled=a.compiled)
        if a.bf16 and weights != "random":
            report["forward"]["bf16_psnr"] = bf16_psnr_cost(a.model, a.scale, weights, a.data_root)
    if a.skip != "imresize":
        report["imresize"] = resize_speed(a.threads, max(a.rounds, 15))
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]

    text = json.dumps(report, indent=1)
    print(to_markdown(report), end="")  # shown even if the JSON cannot be written
    atomic_write(out, lambda tmp: tmp.write_text(text + "\n"))
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
