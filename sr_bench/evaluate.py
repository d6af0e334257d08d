"""Evaluate registered models on the benchmarks under a named protocol.

``python -m sr_bench.evaluate --model bicubic --datasets Set5 Set14 B100 Urban100 --scales 2 3 4
--protocol vdsr`` prints a table, appends one record per (model, dataset, scale, self-ensemble) to
``--out`` (JSON Lines) and regenerates Table 3 beside it.

Each image is decoded once and scored for every model and scale; the next image is decoded in a
background thread while the current one runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sr_bench import baselines
from sr_bench.data import Dataset, open_dataset
from sr_bench.images import as_batch, quantize
from sr_bench.inference import parse_dtype, prepare_model, super_resolve_modes
from sr_bench.models import create, get_spec, names, parse_option
from sr_bench.protocols import PROTOCOLS, Protocol, get_protocol
from sr_bench.records import Record, append_records, environment, read_records

__all__ = ["Candidate", "EvalConfig", "evaluate", "evaluate_model", "load_candidates", "main"]


@dataclass
class Candidate:
    """One network at one scale, ready to run."""

    name: str
    scale: int
    module: nn.Module
    weights_sha256: str | None = None
    weights_source: str | None = None
    profile: str | None = None
    options: dict = field(default_factory=dict)

    @property
    def in_channels(self) -> int | None:
        """Input channels the network expects (None: any)."""
        if hasattr(self.module, "in_channels"):
            return self.module.in_channels
        return get_spec(self.name).in_channels if self.name in names() else None


@dataclass
class EvalConfig:
    models: list[str]
    datasets: list[str] = field(default_factory=lambda: ["Set5", "Set14", "B100", "Urban100"])
    scales: list[int] = field(default_factory=lambda: [2, 3, 4])
    protocol: str = "paper"
    weights: list[str] = field(default_factory=list)
    self_ensemble: str = "off"  # off | on | both
    data_root: str | None = None
    out: str = "results/records.jsonl"
    table: str | None = None  # default: table3.md beside --out
    device: str = "cpu"
    dtype: str = "float32"
    tile: int | None = None
    memory_budget: str | None = None
    max_images: int | None = None
    progress: bool = True
    options: dict = field(default_factory=dict)

    @property
    def ensemble_modes(self) -> tuple[bool, ...]:
        return {"off": (False,), "on": (True,), "both": (False, True)}[self.self_ensemble]


def _num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def load_candidates(
    name: str,
    scales: Sequence[int],
    weights: str | None,
    device: str = "cpu",
    dtype: str = "float32",
    options: dict | None = None,
) -> list[Candidate]:
    """Build ``name`` for every scale and load its weights.

    ``weights``: None (only for parameter-free models), ``official`` (the registered published
    checkpoint for each scale), ``random`` (untrained, for smoke runs), a registered weights name,
    or a file path; ``{scale}`` in a path is replaced by each scale. ``options`` are
    ``sr_bench.models.create`` options (ablation knobs) the weights were trained with.
    """
    options = dict(options or {})
    from sr_bench import weights as wts

    spec = get_spec(name)
    bad = [s for s in scales if s not in spec.scales]
    if bad:
        raise ValueError(f"{name} serves scales {spec.scales}, not {bad}")
    built: dict[object, Candidate] = {}
    out = []
    for s in scales:
        source = weights.format(scale=s) if weights and "{scale}" in weights else weights
        key = (None if spec.multi_scale else s, source)
        if key in built:
            out.append(dataclasses.replace(built[key], scale=s))
            continue
        torch.manual_seed(0)
        module = create(name, scale=None if spec.multi_scale else s, **options)
        sha = src = profile = None
        if source is None:
            if _num_parameters(module):
                raise ValueError(
                    f"{name} has {_num_parameters(module):,} parameters and no weights were given: pass "
                    f"--weights official (published checkpoints), a registered name, a file, or random"
                )
        elif source == "random":
            src, profile = "random-init (seed 0)", "untrained"
        else:
            if source == "official":
                found = wts.weights_for(name, s)
                if not found:
                    raise ValueError(f"no published weights are registered for {name} x{s}; pass a file instead")
                source = found[0].name
            info = wts.load_weights(module, source)
            sha, src = info.sha256, info.source
            profile = "official" if info.spec is not None else str(info.metadata.get("profile", "") or "") or None
        module = prepare_model(module, device, dtype)
        cand = Candidate(name, s, module, sha, src, profile, options)
        built[key] = cand
        out.append(cand)
    return out


def _input_tensor(image: np.ndarray, channels: int | None, device: torch.device, protocol: Protocol, name: str) -> torch.Tensor:
    t = as_batch(image).to(device=device, dtype=torch.float32) / 255.0
    if channels is None or t.shape[1] == channels:
        return t
    if t.shape[1] == 1 and channels == 3 and not protocol.y_first:
        return t.expand(-1, 3, -1, -1)  # a gray image through an RGB network, as the official code does
    raise ValueError(
        f"{name} takes {channels}-channel input but protocol {protocol.name!r} feeds {t.shape[1]}"
        + (": the vdsr protocol feeds the Y channel; use --protocol paper for RGB models" if protocol.y_first else "")
    )


def _load(dataset: Dataset, i: int, scales: Sequence[int], need_lr: bool):
    hr, hr_sha = dataset.read_hr(i)
    lrs = {s: dataset.read_lr(i, s, hr, hr_sha) for s in scales} if need_lr else {}
    return hr, hr_sha, lrs


def evaluate(
    candidates: Sequence[Candidate],
    dataset: Dataset,
    protocol: str | Protocol = "paper",
    *,
    self_ensemble: Sequence[bool] = (False,),
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    tile: int | None = None,
    memory_budget: str | None = None,
    max_images: int | None = None,
    progress: bool = True,
) -> list[Record]:
    """Score every candidate on ``dataset``; one record per (candidate, self-ensemble mode)."""
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    device = torch.device(device)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    scales = sorted({c.scale for c in candidates})
    per_image: dict[tuple[int, bool], list[dict]] = {(k, se): [] for k in range(len(candidates)) for se in self_ensemble}
    seconds = {k: 0.0 for k in range(len(candidates))}
    fingerprints = {s: hashlib.sha256() for s in scales}
    lr_sources = {s: set() for s in scales}
    bar = tqdm(total=n * len(candidates), desc=f"{dataset.name} ({protocol.name})", file=sys.stderr, disable=not progress, unit="sr")
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_load, dataset, 0, scales, not protocol.y_first) if n else None
        for i in range(n):
            hr, hr_sha, lrs = pending.result()
            if i + 1 < n:
                pending = pool.submit(_load, dataset, i + 1, scales, not protocol.y_first)
            stem = dataset.images[i].stem
            reference = protocol.reference(as_batch(hr).to(device), dataset.is_benchmark)
            inputs = {}
            for s in scales:
                lr, lr_sha, origin = lrs.get(s, (None, "y-first", "y-first"))
                fingerprints[s].update(f"{stem}\t{hr_sha}\t{lr_sha}\n".encode())
                lr_sources[s].add(origin)
                inputs[s] = protocol.model_input(reference, lr, s)
            for k, cand in enumerate(candidates):
                t0 = time.perf_counter()
                x = _input_tensor(inputs[cand.scale], cand.in_channels, device, protocol, cand.name)
                outputs = super_resolve_modes(cand.module, x, cand.scale, tuple(self_ensemble), tile=tile, memory_budget=memory_budget)
                for se, out in outputs.items():
                    score = protocol.score_reference(quantize(out), reference, cand.scale)
                    per_image[(k, se)].append({"image": stem, "psnr": score.psnr, "ssim": score.ssim})
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds[k] += time.perf_counter() - t0
                bar.update(1)
    bar.close()
    env = environment(str(device))
    records = []
    for k, cand in enumerate(candidates):
        for se in self_ensemble:
            rows = per_image[(k, se)]
            origin = lr_sources[cand.scale]
            records.append(
                Record(
                    model=cand.name,
                    weights=cand.weights_sha256,
                    dataset=dataset.name,
                    scale=cand.scale,
                    self_ensemble=se,
                    protocol=protocol.name,
                    psnr=float(np.mean([r["psnr"] for r in rows])),
                    ssim=float(np.mean([r["ssim"] for r in rows])),
                    n_images=len(rows),
                    per_image=rows,
                    weights_source=cand.weights_source,
                    profile=cand.profile,
                    model_options=cand.options,
                    data_sha256=fingerprints[cand.scale].hexdigest(),
                    lr_source=next(iter(origin)) if len(origin) == 1 else "mixed",
                    device=str(device),
                    dtype=dtype,
                    tile=tile,
                    seconds=round(seconds[k], 3),
                    **env,
                )
            )
    return records


def evaluate_model(
    model: nn.Module,
    dataset: Dataset | str,
    scales: Sequence[int],
    protocol: str = "paper",
    *,
    self_ensemble: bool = False,
    device: str | torch.device = "cpu",
    max_images: int | None = None,
    progress: bool = False,
    name: str = "model",
    data_root: str | None = None,
) -> list[Record]:
    """Score an in-memory model (e.g. during training) without touching its mode or device
    for good: it is put in eval mode for the call and restored after."""
    ds = open_dataset(dataset, data_root) if isinstance(dataset, str) else dataset
    was_training = model.training
    model.eval()
    try:
        cands = [Candidate(name, s, model) for s in scales]
        return evaluate(cands, ds, protocol, self_ensemble=(self_ensemble,), device=device, max_images=max_images, progress=progress)
    finally:
        model.train(was_training)


def _fmt_delta(measured: float, paper: float | None, digits: int) -> str:
    return "" if paper is None else f"{measured - paper:+.{digits}f}"


def summary_rows(records: Sequence[Record]) -> list[list[object]]:
    rows = []
    for r in records:
        paper = baselines.table3_value(r.model, r.self_ensemble, r.dataset, r.scale)
        paper_ok = paper is not None and r.protocol in ("paper", "vdsr")
        rows.append([
            r.model + ("+" if r.self_ensemble else ""), r.dataset, f"x{r.scale}", r.protocol,
            f"{r.psnr:.2f}", f"{r.ssim:.4f}",
            f"{paper.psnr:.2f} / {paper.ssim:.4f}" if paper_ok else "",
            _fmt_delta(r.psnr, paper.psnr if paper_ok else None, 3),
            _fmt_delta(r.ssim, paper.ssim if paper_ok else None, 4),
            r.n_images, f"{r.seconds:.1f}",
        ])
    return rows


SUMMARY_HEADERS = ["model", "dataset", "scale", "protocol", "PSNR", "SSIM", "paper", "dPSNR", "dSSIM", "images", "s"]


def run(config: EvalConfig) -> list[Record]:
    from tabulate import tabulate

    dtype = parse_dtype(config.dtype)
    if dtype != torch.float32 and torch.device(config.device).type == "cpu" and dtype == torch.float16:
        raise ValueError("float16 is for CUDA; on the CPU use float32 or bfloat16")
    weights = list(config.weights) or [None]
    if len(weights) == 1:
        weights = weights * len(config.models)
    if len(weights) != len(config.models):
        raise ValueError(f"give one --weights for all models or one per model ({len(config.models)}), got {len(weights)}")
    datasets = [open_dataset(name, config.data_root) for name in config.datasets]  # fail before any work
    candidates = []
    for name, w in zip(config.models, weights):
        candidates += load_candidates(name, config.scales, None if w in (None, "none") else w, config.device, config.dtype,
                                      config.options)
    records = []
    for ds in datasets:
        records += evaluate(
            candidates, ds, config.protocol, self_ensemble=config.ensemble_modes, device=config.device,
            dtype=config.dtype, tile=config.tile, memory_budget=config.memory_budget,
            max_images=config.max_images, progress=config.progress,
        )
    print(tabulate(summary_rows(records), headers=SUMMARY_HEADERS, tablefmt="github"))
    out = Path(config.out)
    append_records(out, records)
    table = Path(config.table) if config.table else out.with_name("table3.md")
    from sr_bench.tables.table3 import write_table3

    write_table3(read_records(out), table)
    print(f"\nrecords: {out.resolve()}\ntable:   {table.resolve()}", file=sys.stderr)
    return records


def parse_args(argv: Sequence[str] | None = None) -> EvalConfig:
    p = argparse.ArgumentParser(prog="python -m sr_bench.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", "--models", dest="models", nargs="+", required=True, help="registered model name(s)")
    p.add_argument("--weights", nargs="+", default=[], help="per model: official | random | NAME | PATH (PATH may contain {scale})")
    p.add_argument("--option", type=parse_option, action="append", default=[], metavar="KEY=VALUE",
                   help="model option the weights were trained with, e.g. batch_norm=true (repeatable)")
    p.add_argument("--datasets", nargs="+", default=["Set5", "Set14", "B100", "Urban100"])
    p.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    p.add_argument("--protocol", choices=list(PROTOCOLS), default="paper")
    p.add_argument("--self-ensemble", nargs="?", const="on", default="off", choices=["off", "on", "both"],
                   help="geometric self-ensemble (the paper's '+' models); 'both' records with and without")
    p.add_argument("--data-root", default=None, help="folder holding the datasets (default: $SR_BENCH_DATA)")
    p.add_argument("--out", default="results/records.jsonl", help="JSON Lines file the records are appended to")
    p.add_argument("--table", default=None, help="Table 3 markdown to regenerate (default: table3.md beside --out)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--tile", type=int, default=None, help="LR tile size (default: whole image)")
    p.add_argument("--memory-budget", default=None, help="size tiles to this much memory, e.g. 4GB")
    p.add_argument("--max-images", type=int, default=None, help="only the first N images of each dataset")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    a = p.parse_args(argv)
    return EvalConfig(
        models=a.models, datasets=a.datasets, scales=a.scales, protocol=a.protocol, weights=a.weights,
        self_ensemble=a.self_ensemble, data_root=a.data_root, out=a.out, table=a.table, device=a.device,
        dtype=a.dtype, tile=a.tile, memory_budget=a.memory_budget, max_images=a.max_images, progress=a.progress,
        options=dict(a.option),
    )


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
