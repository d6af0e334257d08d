"""Table 1 of the paper (model specifications), regenerated from the registry.

Every row the paper has (residual blocks, filters, parameters, residual scaling, BN, loss) is
*measured* on the built models and printed beside the paper's value from
``baselines/table1.csv``; two rows the paper lacks are added: FLOPs per LR megapixel and the
measured inference time per LR megapixel on the machine that ran it (named in the header).

    python -m sr_bench.tables.table1 [--out FILE.md] [--device cpu] [--size 64]

``--out`` defaults to ``table1.md`` in ``sr_bench.paths.default_results_dir()``.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from sr_bench import baselines as _baselines
from sr_bench import cli, models
from sr_bench.flops import flops_per_lr_megapixel
from sr_bench.images import atomic_write
from sr_bench.inference import prepare_model
from sr_bench.models.common import ResBlock
from sr_bench.paths import default_results_dir

__all__ = ["Measured", "measure", "conv_ceiling", "time_per_lr_megapixel", "write_table1", "render_table1", "main"]



def paper_table1(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The paper's Table 1 (``baselines/table1.csv``, shipped with the package), or ``path``."""
    if path is not None:
        return pd.read_csv(path)
    return pd.read_csv(io.StringIO(_baselines.read_text("table1.csv")))


@dataclass(frozen=True)
class Measured:
    """What the built model of one registry entry is, per scale where it differs."""

    name: str
    blocks: int | None
    filters: int | None
    params: dict[int, int]  # scale -> parameter count (one entry for multi-scale models)
    res_scale: float | None
    batch_norm: bool
    loss: str
    gflops_per_mp: dict[int, float]  # scale -> GFLOPs per LR megapixel
    ms_per_mp: float | None  # at ``time_scale``
    time_scale: int

    @property
    def params_total(self) -> int:
        return max(self.params.values())


def _structure(model: nn.Module) -> tuple[int | None, int | None, float | None, bool]:
    """(residual blocks of the body, or conv layers when there are none; filters of the first
    conv; residual scaling, None when 1; any BN) of a built model."""
    body = getattr(model, "body", model)
    # MDSR's per-scale pre-processing blocks are outside the shared body, as in the paper's count
    body_blocks = [m for m in body.modules() if isinstance(m, ResBlock)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    if not convs:
        return None, None, None, False
    n_blocks = len(body_blocks) if body_blocks else len(convs)
    scales = {b.res_scale for b in model.modules() if isinstance(b, ResBlock)}
    res_scale = None if scales <= {1.0} else (next(iter(scales)) if len(scales) == 1 else None)
    bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    return n_blocks, convs[0].out_channels, res_scale, bn


def time_per_lr_megapixel(
    model: nn.Module, scale: int, device: torch.device, *, size: int = 64, repeats: int = 3, channels: int = 3
) -> float:
    """Fastest wall time (ms) of ``repeats`` forwards on a ``size`` x ``size`` LR input, per LR
    megapixel (the minimum is the figure least disturbed by other work on the machine)."""
    x = torch.rand(1, channels, size, size, device=device)
    if next(model.parameters(), None) is not None and next(model.parameters()).is_contiguous(
        memory_format=torch.channels_last
    ):
        x = x.contiguous(memory_format=torch.channels_last)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = []
    with torch.inference_mode():
        model(x, scale)  # warm-up (allocations, oneDNN / cuDNN algorithm choice)
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            model(x, scale)
            sync()
            times.append(time.perf_counter() - t0)
    return min(times) * 1e3 / (size * size) * 1e6


def conv_ceiling(device: torch.device, *, size: int = 128, repeats: int = 5) -> float:
    """GFLOP/s of a bare 64->64 3x3 convolution (float32, the layout prepare_model picks)."""
    channels_last = device.type == "cpu"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(1, 64, size, size, device=device).contiguous(memory_format=fmt)
    w = (torch.randn(64, 64, 3, 3, device=device) * 0.05).contiguous(memory_format=fmt)
    times = []
    with torch.inference_mode():
        torch.nn.functional.conv2d(x, w, padding=1)
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            torch.nn.functional.conv2d(x, w, padding=1)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
    return 2 * 64 * 64 * 9 * size * size / min(times) / 1e9


def measure(
    name: str, device: str | torch.device = "cpu", *, size: int = 64, repeats: int = 3, time_scale: int = 2
) -> Measured:
    """Build ``name`` at each of its scales and measure it (timing on ``device`` at ``time_scale``)."""
    spec = models.get_spec(name)
    device = torch.device(device)
    scales = (None,) if spec.multi_scale else spec.scales
    params: dict[int, int] = {}
    structure = None
    for s in scales:
        m = models.create(name, scale=s)
        params[s or 0] = sum(p.numel() for p in m.parameters())
        structure = structure or _structure(m)
    assert structure is not None
    gflops = {s: flops_per_lr_megapixel(name, s) / 1e9 for s in spec.scales}
    m = prepare_model(models.create(name, scale=None if spec.multi_scale else time_scale), device)
    ms = time_per_lr_megapixel(m, time_scale, device, size=size, repeats=repeats, channels=spec.in_channels or 3)
    blocks, filters, res_scale, bn = structure
    return Measured(name, blocks, filters, params, res_scale, bn, spec.loss, gflops, ms, time_scale)


def _device_description(device: torch.device) -> str:
    threads = torch.get_num_threads()
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f} when measured"
    return f"CPU {cpu}, {threads} threads, {os.cpu_count()} logical cores{load}"


def _paper_params(text: str) -> float:
    return float(text.rstrip("M")) * 1e6


def _fmt_gflops(g: float) -> str:
    return f"{g:,.0f}" if g >= 10 else f"{g:.3g}"


def _achieved(m: Measured) -> str:
    g = m.gflops_per_mp.get(m.time_scale)
    if not m.ms_per_mp or not g or g < 10:
        return "–"
    return f"{g / (m.ms_per_mp / 1e3):,.0f}"


def _dash(value: object) -> str:
    return "–" if value is None else str(value)


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


LABELS = (
    "Options",
    "sr_bench model",
    "# Residual blocks",
    "# Filters",
    "# Parameters (paper)",
    "# Parameters (measured)",
    "Residual scaling",
    "Use BN",
    "Loss function",
    "GFLOPs per LR megapixel (x2 / x3 / x4)",
    "Inference time per LR megapixel (x2, float32)",
    "Achieved GFLOP/s (x2)",
    "Paper value confidence",
)


def _column(label: str, measured: Measured, p: pd.Series | None) -> list[str]:
    """One model's column: measured values, each marked against the paper's row ``p`` (if any)."""
    pv = (lambda k: p[k]) if p is not None else (lambda k: None)
    blocks_paper, filters_paper = pv("residual_blocks"), pv("filters")
    blocks_ok = blocks_paper is None or int(blocks_paper) == measured.blocks
    filters_ok = filters_paper is None or int(filters_paper) == measured.filters
    rs_paper = pv("residual_scaling")
    rs_paper = None if rs_paper is None or pd.isna(rs_paper) else float(rs_paper)
    bn_paper = None if p is None else str(pv("batch_norm")).lower() == "true"
    loss_paper = pv("loss")
    params = "<br>".join(
        (f"x{s} " if s else "") + f"{n:,}" for s, n in sorted(measured.params.items())
    )
    if p is not None:
        target = _paper_params(str(pv("parameters")))
        ok = all(abs(n - target) / target <= 0.10 for n in measured.params.values())
        params_paper = f"{pv('parameters')} {_mark(ok)}"
    else:
        params_paper = "–"

    def cell(value: str, paper_value: object, ok: bool) -> str:
        if p is None:
            return value
        return f"{value} {_mark(ok)}" if ok else f"{value} ✗ (paper: {paper_value})"

    rs = "–" if measured.res_scale is None else f"{measured.res_scale:g}"
    return [
        label,
        f"`{measured.name}`",
        cell(_dash(measured.blocks), pv("residual_blocks"), blocks_ok),
        cell(_dash(measured.filters), pv("filters"), filters_ok),
        params_paper,
        params,
        cell(rs, rs_paper if rs_paper is not None else "–", rs_paper == measured.res_scale),
        cell("Yes" if measured.batch_norm else "No", "Yes" if bn_paper else "No", bn_paper == measured.batch_norm),
        cell(
            measured.loss.upper() if measured.params_total else "–", str(loss_paper).upper(),
            loss_paper == measured.loss,
        ),
        " / ".join(_fmt_gflops(measured.gflops_per_mp[s]) for s in sorted(measured.gflops_per_mp)),
        "–" if measured.ms_per_mp is None else f"{measured.ms_per_mp / 1e3:,.2f} s",
        _achieved(measured),
        str(pv("confidence")) if p is not None else "(not in the paper's Table 1)",
    ]


def _markdown_rows(cols: list[list[str]]) -> list[str]:
    """Columns as a markdown table: one row per label, one column per model."""
    out = ["| " + " | ".join([LABELS[0]] + [c[0] for c in cols]) + " |", "|---" * (len(cols) + 1) + "|"]
    for i in range(1, len(LABELS)):
        out.append("| " + " | ".join([LABELS[i]] + [c[i] for c in cols]) + " |")
    return out


def render_table1(rows: list[Measured], paper: pd.DataFrame, device_text: str) -> str:
    """Markdown for the measured ``rows`` beside the paper's values (``paper`` = table1.csv)."""
    by_model = {r.name: r for r in rows}
    paper_rows = [p for _, p in paper.iterrows() if p["model"] in by_model]
    extra = [r for r in rows if r.name not in set(paper["model"])]
    columns = [_column(str(p["column"]), by_model[p["model"]], p) for _, p in pd.DataFrame(paper_rows).iterrows()]
    columns += [_column(r.name, r, None) for r in extra]

    n_paper = len(paper_rows)
    lines = [
        "# Table 1: model specifications, measured",
        "",
        f"Generated by `python -m sr_bench.tables.table1` on {_dt.date.today().isoformat()} with torch "
        f"{torch.__version__}. Timings: {device_text}.",
        "",
        "Measured values come from the models `sr_bench.models.create` builds (parameters counted with the "
        "frozen mean-shift convs, as the official port does); the paper's values are read from "
        "`baselines/table1.csv`. ✓ marks agreement (parameters: within 10% at every scale, since the paper "
        "prints one rounded figure for the x2/x3/x4 models); residual blocks count the shared body only.",
        "Loss is the training loss the spec records (not measurable from the network).",
        "FLOPs count convolutions at 2 per multiply-add (`sr_bench.flops`); the time is the fastest of "
        "a few float32 forwards on a random LR input, as prepared by `sr_bench.inference.prepare_model`, "
        "scaled to one LR megapixel.",
        "",
        *_markdown_rows(columns[:n_paper]),
        "",
    ]
    if extra:
        lines += ["## Other registered models (not in the paper's Table 1)", "", *_markdown_rows(columns[n_paper:]), ""]
    return "\n".join(lines)


def write_table1(
    path: str | os.PathLike = "results/table1.md",
    device: str | torch.device = "cpu",
    *,
    size: int = 64,
    repeats: int = 3,
    names: list[str] | None = None,
    baselines: str | os.PathLike | None = None,
) -> Path:
    """Measure every registered model (or ``names``) and write the markdown table atomically;
    ``baselines`` replaces the paper's table1.csv."""
    device = torch.device(device)
    paper = paper_table1(baselines)
    order = [m for m in paper["model"] if m in models.names()] + [
        n for n in models.names() if n not in set(paper["model"])
    ]
    chosen = [n for n in order if names is None or n in names]
    device_text = _device_description(device)
    device_text += f"; a bare 64->64 3x3 convolution runs at {conv_ceiling(device):,.0f} GFLOP/s there (the ceiling)"
    rows = [measure(n, device, size=size, repeats=repeats) for n in chosen]
    text = render_table1(rows, paper, device_text)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("python -m sr_bench.tables.table1", (__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write (default: table1.md in the "
                        "results folder: results/local/ of the sr_bench clone when run inside one, else "
                        "./sr_bench_results)")
    parser.add_argument("--device", default="cpu", help="device for the timing row (cpu, cuda, cuda:1)")
    parser.add_argument("--size", type=cli.positive_int, default=64, help="LR input side for the timing (default 64)")
    parser.add_argument("--repeats", type=cli.positive_int, default=3,
                        help="timed forwards per model (the fastest counts)")
    parser.add_argument("--models", nargs="*", default=None, help="registry names (default: all)")
    args = parser.parse_args(argv)
    for name in args.models or ():
        try:
            models.get_spec(name)  # an unknown name: a usage error listing close names, not an empty table
        except KeyError as e:
            raise cli.UsageError(f"--models: {e}") from None
    out = args.out or default_results_dir() / "table1.md"
    out = write_table1(out, args.device, size=args.size, repeats=args.repeats, names=args.models)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
