"""Reproduce the paper's tables: train (or load published weights), evaluate, regenerate tables.

``python -m sr_bench.reproduce [--profile smoke|quick|gpu|paper] [--pretrained] [--results DIR]``
(``nox -s reproduce -- ARGS``). For every registered model and scale it trains under the profile,
loads the published weights (``--pretrained``), or reuses a finished run; evaluates on every
benchmark present with and without self-ensemble; and regenerates ``table1.md`` and
``table3.md`` under ``--results``. Finished records are reused, so an interrupted run continues
where it stopped. Without a data folder it runs on the scikit-image photos (``embedded``).

``--profile gpu`` is the whole Table 3 on one H100/H200-class GPU in about 12 minutes, in two
``--models`` parts (``--parts`` prints them); ``--dry-run`` prints the plan with times estimated
from a few updates timed on this device, and the same estimate for the ``paper`` profile.

``--launcher submitit`` runs every training run and evaluation as a job of a Slurm cluster (or as
local subprocesses without one) through :mod:`sr_bench.launch`; see docs/cluster.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from sr_bench import cli, deadline
from sr_bench.bench import time_forward, time_trainer_updates, time_updates, train_flops_per_update
from sr_bench.data import DatasetNotFound, data_root, evaluation_sets, open_dataset
from sr_bench.evaluate import Candidate, evaluate, load_candidates
from sr_bench.flops import flops_per_lr_pixel
from sr_bench.images import atomic_write
from sr_bench.inference import resolve_device
from sr_bench.lookup import Registry
from sr_bench.models import get_spec
from sr_bench.models import names as model_names
from sr_bench.models.registry import parse_option
from sr_bench.paths import check_folder_option, default_results_dir, default_runs_dir, is_committed_results
from sr_bench.records import append_records, environment, find_record, git_commit, read_records
from sr_bench.tables.table1 import write_table1
from sr_bench.tables.table3 import Column, Skip, write_table3
from sr_bench.train import TrainingStopped, make_config, resolve_config, train_or_reuse
from sr_bench.train.config import GPU_BRIEF, PROFILES, check_fields, load_run_file, run_name
from sr_bench.weights import set_weights_dir, weights_for

__all__ = ["ReproduceConfig", "Job", "GPU_PARTS", "plan", "estimate", "run", "main"]

log = logging.getLogger("sr_bench.reproduce")

ALL_SCALES = (2, 3, 4)
TRAINED_MODELS = ("edsr-baseline", "edsr", "mdsr-baseline", "mdsr", "srresnet", "vdsr")
#: the gpu profile in two parts of at most 6 minutes each on one H100/H200 (estimated: the
#: dry run times them on the device at hand)
GPU_PARTS: dict[str, tuple[str, ...]] = {
    "1": ("bicubic", "srresnet", "vdsr", "edsr-baseline", "mdsr-baseline", "mdsr"),
    "2": ("edsr",),
}


#: (dataset or None: all, scale or None: all, self-ensemble or None: both) -> why not measured
WhyNot = dict[tuple[str | None, int | None, bool | None], str]


@dataclass(frozen=True)
class Job:
    """One model at some scales: where its weights come from and what it is evaluated on."""

    model: str
    scales: tuple[int, ...]
    weights: str  # "none" (parameter-free) | "official" | "train"
    datasets: tuple[str, ...]
    self_ensemble: tuple[bool, ...] = (False, True)
    protocols: tuple[str, ...] = ("paper",)
    warm_start_from: int | None = None  # train x3/x4 from this scale's run (the paper's recipe)
    why_not: WhyNot = field(default_factory=dict)  # (dataset or None, scale or None, se) -> reason

    def modes(self, dataset: str, scale: int) -> tuple[bool, ...]:
        """The self-ensemble modes scored for (dataset, scale): those no ``why_not`` rules out."""
        return tuple(se for se in self.self_ensemble
                     if not any(k[0] in (None, dataset) and k[1] in (None, scale) and k[2] in (None, se)
                                for k in self.why_not))


@dataclass
class ReproduceConfig:
    profile: str = "quick"
    pretrained: bool = False
    results: str = "results"
    runs: str = "runs"  # training runs (checkpoints: not committed)
    data_root: str | None = None
    device: str = "auto"
    models: tuple[str, ...] | None = None  # restrict to these registry names
    table1: bool = True
    #: dotted TrainConfig changes applied to every run (tests: tiny counts and crops)
    overrides: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    @property
    def runs_dir(self) -> Path:
        return Path(self.runs)

    @property
    def device_name(self) -> str:
        return resolve_device(self.device)


def available_datasets(root: str | None) -> tuple[list[str], dict[str, str]]:
    """(benchmarks present, {absent benchmark: why}); the embedded photos when none is present."""
    present, absent = [], {}
    for name in evaluation_sets():
        try:
            open_dataset(name, root)
            present.append(name)
        except DatasetNotFound:
            absent[name] = "dataset absent" + (" (no data root)" if data_root(root) is None else "")
    if not present:
        present = ["embedded"]
    return present, absent


def plan(config: ReproduceConfig, datasets: Sequence[str]) -> list[Job]:
    """What each model does under the profile. The default (quick) fits 30 minutes on 2 CPU cores:
    it trains EDSR-baseline x2 only, scores self-ensemble on the small sets only, and says so.
    ``gpu`` and ``paper`` train every model (x3/x4 EDSR warm-started from x2, as the paper)."""
    small = tuple(d for d in datasets if d in ("Set5", "Set14", "embedded"))
    jobs = [Job("bicubic", ALL_SCALES, "none", tuple(datasets), (False,), ("paper", "vdsr"))]
    if config.pretrained:
        for m in TRAINED_MODELS:
            if weights_for(m):
                jobs.append(Job(m, ALL_SCALES, "official", tuple(datasets)))
            else:
                none: WhyNot = {(None, None, None): "no published weights (train it: --profile gpu or paper)"}
                jobs.append(Job(m, ALL_SCALES, "none", (), why_not=none))
    elif config.profile in ("paper", "gpu"):
        why: WhyNot = {}
        if config.profile == "gpu" and "DIV2K" in datasets:
            why[("DIV2K", None, True)] = ("the gpu profile scores DIV2K val without self-ensemble: 8 forwards of 100 "
                                          "2K images per model and scale do not fit its 12 minutes")
        for m in TRAINED_MODELS:
            warm = 2 if m in ("edsr-baseline", "edsr") else None
            jobs.append(Job(m, ALL_SCALES, "train", tuple(datasets), warm_start_from=warm, why_not=dict(why)))
    else:  # smoke, quick: one CPU-sized run
        skip = (f"the {config.profile} profile trains edsr-baseline x2 only "
                f"(--profile gpu or paper, or --pretrained, for the rest)")
        big = tuple(d for d in datasets if d not in small)
        cpu: WhyNot = {(d, 2, True): f"the {config.profile} profile scores self-ensemble on Set5/Set14 only "
                                     f"(8x the time)" for d in big}
        cpu[(None, 3, None)] = cpu[(None, 4, None)] = skip
        evaluated = small if config.profile == "smoke" else tuple(datasets)
        if config.profile == "smoke":
            cpu.update({(d, 2, None): "the smoke profile evaluates Set5/Set14/embedded only"
                        for d in datasets if d not in small})
        jobs.append(Job("edsr-baseline", (2,), "train", evaluated, why_not=cpu))
        for m in TRAINED_MODELS[1:]:
            jobs.append(Job(m, (), "none", (), why_not={(None, None, None): skip}))
    if config.models:
        jobs = [j for j in jobs if j.model in config.models]
    return jobs


def run_scale(model: str, scale: int) -> int:
    """The scale whose run serves ``model`` at ``scale``: itself, or the first scale of a
    multi-scale model (MDSR, VDSR), whose one run serves all of them."""
    spec = get_spec(model)
    return int(spec.scales[0]) if spec.multi_scale else scale


def run_dir(config: ReproduceConfig, model: str, scale: int) -> Path:
    """The run folder that serves ``model`` at ``scale`` under ``config``'s profile."""
    return config.runs_dir / run_name(config.profile, model, run_scale(model, scale))


def train_changes(config: ReproduceConfig, init: str | None = None) -> dict[str, Any]:
    """The dotted config changes of a run: ``--set`` and, for an x3/x4 run warm-started from x2,
    ``model.init`` = ``init`` (the x2 run's final weights)."""
    changes = dict(config.overrides)
    if init is not None:
        changes["model.init"] = init
    return changes


def train_run(job: Job, scale: int, config: ReproduceConfig, init: str | None = None) -> Any:
    """Train one run, or resume it, or pick up its finished weights; returns its TrainResult.
    An x3/x4 run warm-started from x2 starts from ``init``, else from the x2 run (trained or
    picked up here first)."""
    out = run_dir(config, job.model, scale)
    if job.warm_start_from and scale != job.warm_start_from and init is None:
        init = str(train_run(job, job.warm_start_from, config).weights)
    log.info("training %s x%d (%s profile) -> %s", job.model, scale, config.profile, out)
    return train_or_reuse(config.profile, job.model, run_scale(job.model, scale), out, data_root=config.data_root,
                          device=config.device, **train_changes(config, init))


# ---- the dry run: the plan with estimated times ------------------------------------------------

#: end-to-end updates/s over the timed ones, by device type. CUDA times the compute-only step
#: (``bench.time_updates``): 0.72 measured on an H200 before the trainer's speed work (58 updates/s
#: against a 12.5 ms step for edsr-baseline x2). The CPU times the real trainer, DataLoader worker
#: and log points included (``bench.time_trainer_updates``): nothing to add.
END_TO_END = {"cuda": 0.72, "cpu": 1.0}
#: timing budget per run: a warm-up update, then at least 3 timed ones, more while under this
TIMING_BUDGET_S = 4.0
#: LR side of the timed inference forward (per-pixel cost; larger images scale linearly)
FORWARD_SIZE = {"cuda": 256, "cpu": 96}


@dataclass
class RunEstimate:
    """One training run's estimate: its updates at the timed speed, plus its validation pauses."""

    scale: int | None  # None: one multi-scale run
    updates: int
    step_s: float  # median compute-only seconds per full-size update on this device
    how: str  # "timed 5 updates of 16 x 48x48 (bf16)", "x2's timing scaled by FLOPs", ...
    end_to_end: float  # end-to-end share of the compute-only speed (END_TO_END)
    val_every: int
    validation_s: float  # one validation pass
    samples: tuple[float, ...] = ()

    def validations(self, updates: int | None = None) -> int:
        n = self.updates if updates is None else updates
        return (n - 1) // self.val_every + 1 if self.val_every > 0 else 1  # the last one at the end

    def train_s(self, updates: int | None = None) -> float:
        n = self.updates if updates is None else updates
        return n * self.step_s / self.end_to_end + self.validations(n) * self.validation_s


@dataclass
class PassEstimate:
    """One evaluation pass: a model at a scale over a dataset under a protocol."""

    dataset: str
    scale: int
    protocol: str
    forwards: int  # 8 with self-ensemble (plain and "+" share them), else 1
    lr_pixels: int
    seconds: float


@dataclass
class Estimate:
    model: str
    scales: tuple[int, ...]
    runs: list[RunEstimate]
    passes: list[PassEstimate]
    forward_how: str = ""

    @property
    def eval_s(self) -> float:
        return sum(p.seconds for p in self.passes)

    def train_s(self, paper: bool = False) -> float:
        return sum(r.train_s(PAPER_UPDATES if paper else None) for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "scales": list(self.scales), "train_s": self.train_s(), "eval_s": self.eval_s,
                "paper_train_s": self.train_s(paper=True), "forward": self.forward_how,
                "runs": [{**asdict(r), "samples": list(r.samples), "validations": r.validations(),
                          "seconds_per_update": r.step_s / r.end_to_end, "train_s": r.train_s()} for r in self.runs],
                "evaluation_passes": [asdict(p) for p in self.passes]}


PAPER_UPDATES = 300_000


def _lr_pixels(name: str, root: str | None, scale: int, cache: dict, max_images: int | None = None) -> int:
    """Sum of LR pixels of a dataset at ``scale``, from the image headers (no decoding)."""
    if name not in cache:
        from PIL import Image

        ds = open_dataset(name, root)
        sizes = []
        for ref in ds.images:
            with Image.open(ref.hr_path) as im:
                sizes.append(im.size)
        cache[name] = sizes
    return sum((w // scale) * (h // scale) for w, h in cache[name][:max_images])


class _Timer:
    """Times what the estimate needs on this device within one overall deadline; past it, a
    figure comes from FLOPs at the speed measured so far (and says so)."""

    def __init__(self, config: ReproduceConfig, deadline: float) -> None:
        self.config, self.deadline = config, deadline
        self.kind = torch.device(config.device_name).type
        self.train_speeds: list[float] = []  # training FLOP/s of the updates timed
        self.forward_speeds: list[float] = []  # inference FLOP/s of the forwards timed
        self.per_pixel: dict[tuple[str, int], tuple[float, str]] = {}  # (model, scale) -> s per LR pixel

    def step(self, cfg: Any) -> tuple[float, str, tuple[float, ...]]:
        """(seconds per full-size update, how, samples) of a training config."""
        flop = train_flops_per_update(cfg)
        if self.train_speeds and time.monotonic() + 4 * flop / max(self.train_speeds) > self.deadline:
            return flop / statistics.mean(self.train_speeds), "FLOPs at the speed timed for the other runs", ()
        timing = time_updates if self.kind == "cuda" else time_trainer_updates
        t = timing(cfg, self.config.device_name, updates=3, warmup=1, budget_s=TIMING_BUDGET_S)
        self.train_speeds.append(flop / t.seconds)
        d = cfg.data
        what = "compute-only updates" if self.kind == "cuda" else "updates through the trainer"
        how = f"median of {t.updates} timed {what} of {d.batch_size} x {d.patch_size}x{d.patch_size} ({t.amp})"
        return t.seconds, how, t.samples

    def seconds_per_lr_pixel(self, model: str, scale: int) -> tuple[float, str]:
        """Inference seconds per LR pixel (float32, as evaluation runs), timed on one square image."""
        if (model, scale) in self.per_pixel:
            return self.per_pixel[(model, scale)]
        size = FORWARD_SIZE.get(self.kind, 96)
        flop = _flops_per_lr_pixel(model, scale) * size * size
        if self.forward_speeds and time.monotonic() + 3 * flop / max(self.forward_speeds) > self.deadline:
            out = (flop / statistics.mean(self.forward_speeds) / size**2,
                   "forward FLOPs at the speed timed for the other models")
        else:
            seconds = time_forward(model, scale, self.config.device_name, size=size, repeats=2)
            if flop > 0:
                self.forward_speeds.append(flop / seconds)
            out = (seconds / size**2, f"timed float32 forward of a {size}x{size} LR image")
        self.per_pixel[(model, scale)] = out
        return out


def _run_configs(job: Job, config: ReproduceConfig) -> list[Any]:
    """The resolved TrainConfig of each training run of a job (one for a multi-scale model)."""
    multi = len(PROFILES.get(config.profile)(job.model, 2).model.scales) > 1
    changes = dict(config.overrides)
    if config.data_root:
        changes["data.root"] = config.data_root
    if data_root(config.data_root) is None:  # as train_or_reuse: the scikit-image photos
        changes.update({"data.dataset": "embedded-train", "val.dataset": "embedded"})
    cfgs = []
    for s in ([None] if multi else list(job.scales)):
        cfg = make_config(config.profile, job.model, s if s is not None else 2, **changes)
        try:
            cfg = resolve_config(cfg.replace(**{"runtime.device": config.device_name}))
        except DatasetNotFound:
            pass  # the plan still stands; validation is then estimated on the config's own name
        cfgs.append(cfg)
    return cfgs


def _estimate_runs(job: Job, config: ReproduceConfig, timer: _Timer, cache: dict) -> list[RunEstimate]:
    e2e = END_TO_END.get(timer.kind, 1.0)
    runs: list[RunEstimate] = []
    first: tuple[float, float] | None = None  # (FLOPs, seconds) of the first run timed: other scales scale from it
    for cfg in _run_configs(job, config):
        scale = None if len(cfg.model.scales) > 1 else cfg.model.scales[0]
        flop = train_flops_per_update(cfg)
        if first is not None and time.monotonic() + 4 * first[1] > timer.deadline:
            samples: tuple[float, ...] = ()
            step, how = first[1] * flop / first[0], f"x{runs[0].scale}'s timing scaled by FLOPs"
        else:
            step, how, samples = timer.step(cfg)
            first = first or (flop, step)
        val_s = 0.0
        try:
            px = sum(_lr_pixels(cfg.val.dataset, config.data_root, s, cache, cfg.val.max_images)
                     for s in cfg.model.scales)
            val_s = px * timer.seconds_per_lr_pixel(job.model, cfg.model.scales[0])[0]
        except DatasetNotFound:
            pass
        runs.append(RunEstimate(scale, cfg.optim.iterations, step, how, e2e, cfg.val.every, val_s, samples))
    return runs


def _estimate_passes(job: Job, config: ReproduceConfig, timer: _Timer, cache: dict) -> tuple[list[PassEstimate], str]:
    """Every evaluation pass of a job: forwards x LR pixels x the timed seconds per pixel."""
    passes, hows = [], set()
    for protocol in job.protocols:  # each protocol is a pass of its own
        for ds in job.datasets:
            for s in job.scales:
                forwards = 8 if True in job.modes(ds, s) else 1
                per_px, how = timer.seconds_per_lr_pixel(job.model, s)
                hows.add(how)
                px = _lr_pixels(ds, config.data_root, s, cache)
                passes.append(PassEstimate(ds, s, protocol, forwards, px, forwards * px * per_px))
    return passes, "; ".join(sorted(hows))


@functools.cache
def _flops_per_lr_pixel(model: str, scale: int) -> float:
    return flops_per_lr_pixel(model, scale)  # ~1 s for the big models, even on the meta device


def estimate(config: ReproduceConfig, jobs: Sequence[Job], *, budget_s: float = 120.0) -> list[Estimate]:
    """Estimated train and evaluation time of every job on this device: each training run's
    updates timed at their real patch and batch (a warm-up, then the median of at least 3 timed
    updates, more within :data:`TIMING_BUDGET_S`), each model's inference forward timed on one
    image. The cheapest networks are timed first; once ``budget_s`` is spent, the rest come from
    their FLOPs at the speed measured so far, and say so."""
    timer = _Timer(config, time.monotonic() + budget_s)
    cache: dict = {}
    out: dict[str, Estimate] = {}
    for job in sorted(jobs, key=lambda j: _flops_per_lr_pixel(j.model, 2)):
        runs = _estimate_runs(job, config, timer, cache) if job.weights == "train" and job.scales else []
        passes, how = _estimate_passes(job, config, timer, cache) if job.datasets else ([], "")
        out[job.model] = Estimate(job.model, job.scales, runs, passes, how)
    return [out[j.model] for j in jobs]


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


METHOD = ("Training: each run's updates are timed at the profile's own patch and batch (on the CPU through the "
          "real trainer, DataLoader worker included; on CUDA the trainer's compute-only step), after warm-up "
          "updates, as the median of at least 3 timed updates; times the run's updates, divided by the end-to-end "
          "share of the timed speed ({e2e}), plus one validation pass every val.every updates and at the end. "
          "Evaluation: each model's float32 forward is timed on one image, per LR pixel, times the "
          "LR pixels of every dataset and scale (8 forwards with self-ensemble). Metrics and image decoding are not "
          "counted. Estimates: the real run's times go in times-PROFILE.json beside the tables.")


def dry_run_text(config: ReproduceConfig, estimates: Sequence[Estimate], datasets: Sequence[str]) -> str:
    """The plan as a markdown table, with the gpu/quick/smoke estimate and the paper's."""
    device = environment(config.device_name)["host"]
    lines = [f"Plan: profile {config.profile}, device {config.device_name} ({device}), datasets {', '.join(datasets)}",
             "", "| model | runs (updates) | seconds per update | evaluation passes | train | evaluate | total | "
             "paper profile (3e5 updates) |", "|---|---|---|---|---|---|---|---|"]
    total = paper = 0.0
    for e in estimates:
        runs = ", ".join(f"{'x' + str(r.scale) if r.scale else 'x2/3/4'} {r.updates}" for r in e.runs) or "-"
        steps = ", ".join(f"{r.step_s / r.end_to_end:.3g} s" for r in e.runs) or "-"
        t, tp = e.train_s() + e.eval_s, e.train_s(paper=True) + e.eval_s
        total, paper = total + t, paper + tp
        lines.append(f"| {e.model} | {runs} | {steps} | {len(e.passes)} | {_duration(e.train_s())} | "
                     f"{_duration(e.eval_s)} | {_duration(t)} | {_duration(tp)} |")
    e2e = ", ".join(f"{k} {v}" for k, v in END_TO_END.items())
    hows = sorted({f"{e.model} x{r.scale or '2/3/4'}: {r.how}" for e in estimates for r in e.runs})
    lines += ["", f"Total: {_duration(total)} for profile {config.profile}; {_duration(paper)} for the paper profile "
              f"(3e5 updates per run; the paper's final EDSR/MDSR used 1e6: x3.3 more).",
              "Timed: " + "; ".join(hows) + "." if hows else "No training runs in this plan.",
              "How: " + METHOD.format(e2e=e2e)]
    return "\n".join(lines) + "\n"


def dry_run_json(config: ReproduceConfig, estimates: Sequence[Estimate], datasets: Sequence[str]) -> str:
    """The same estimate as JSON: seconds per update of every run and seconds of every evaluation pass."""
    e2e = ", ".join(f"{k} {v}" for k, v in END_TO_END.items())
    total = sum(e.train_s() + e.eval_s for e in estimates)
    doc = {"profile": config.profile, "device": config.device_name, "host": environment(config.device_name)["host"],
           "datasets": list(datasets), "total_s": total,
           "paper_total_s": sum(e.train_s(paper=True) + e.eval_s for e in estimates),
           "method": METHOD.format(e2e=e2e), "models": [e.to_dict() for e in estimates]}
    return json.dumps(doc, indent=1) + "\n"


def parts_text() -> str:
    cmd = "python -m sr_bench.reproduce --profile gpu --device cuda --models"
    lines = ["The gpu profile in two parts of at most 6 minutes each on one H100/H200 (estimates until measured; "
             "check yours with --dry-run):"]
    for name, models in GPU_PARTS.items():
        lines.append(f"  part {name}: {cmd} {' '.join(models)}" + (" --no-table1" if name != "2" else ""))
    return "\n".join(lines) + "\n"


# ---- the run -------------------------------------------------------------------------------------


def _skips(job: Job, absent: dict[str, str], weights_label: str | None) -> list[Skip]:
    out = []
    for se in (False, True):
        if job.scales and se not in job.self_ensemble:
            continue  # e.g. bicubic: no "+" column at all
        col = Column(job.model, se, weights_label)
        out += [Skip(col, reason, ds, s) for (ds, s, mode), reason in job.why_not.items() if mode in (None, se)]
        out += [Skip(col, reason, ds) for ds, reason in absent.items()]
    return out


def _candidates(job: Job, config: ReproduceConfig, weights_label: str | None, skipped: list[Skip],
                timing: dict[str, Any]) -> list[Candidate]:
    cands: list[Candidate] = []
    for s in job.scales:
        try:
            options: dict[str, Any] = {}
            if job.weights == "train":
                result = train_run(job, s, config)
                w: str | None = str(result.weights)
                options = dict(result.config.model.options)  # the network the run trained (--set model.options)
                multi = len(result.config.model.scales) > 1  # one run serves every scale: count it once
                if not multi or s == job.scales[0]:
                    timing["updates"]["x2/3/4" if multi else f"x{s}"] = result.iterations
                    timing["train_s"] += result.total_seconds
            else:
                w = None if job.weights == "none" else "official"
            cands.append(load_candidates(job.model, [s], w, config.device_name, options=options)[0])
        except Exception as e:  # noqa: BLE001 - one missing checkpoint must not sink the table
            reason = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
            log.warning("%s x%d: not run: %s", job.model, s, reason)
            skipped += [Skip(Column(job.model, se, weights_label), reason, None, s) for se in (False, True)]
    return cands


def missing_modes(job: Job, cand: Candidate, protocol: str, dataset: str, done: list) -> tuple[bool, ...]:
    """The self-ensemble modes of (``cand``, ``protocol``, ``dataset``) that have no complete record."""
    return tuple(se for se in job.modes(dataset, cand.scale) if find_record(
        done, model=job.model, weights=cand.weights_sha256, dataset=dataset, scale=cand.scale,
        self_ensemble=se, protocol=protocol) is None)


def evaluate_job(job: Job, cands: list[Candidate], config: ReproduceConfig, records_path: Path,
                  done: list) -> None:
    """Score ``cands`` on every protocol and dataset of ``job`` that ``done`` lacks, appending the
    records after each dataset (an interrupted evaluation continues from there). A time budget
    (:mod:`sr_bench.deadline`) that has run out stops it before the next pass."""
    for protocol in job.protocols:
        for ds_name in job.datasets:
            ds = open_dataset(ds_name, config.data_root)
            for cand in cands:
                todo = missing_modes(job, cand, protocol, ds_name, done)
                if not todo:
                    continue
                deadline.check(f"evaluating {job.model} x{cand.scale} on {ds_name} ({protocol})")
                log.info("evaluating %s x%d on %s (%s%s)", job.model, cand.scale, ds_name, protocol,
                         ", self-ensemble" if True in todo else "")
                recs = evaluate([cand], ds, protocol, self_ensemble=todo, device=config.device_name,
                                progress=config.progress)
                append_records(records_path, recs)  # after every step: an interrupted run resumes here
                done += recs


def _timings(path: Path, new: dict[str, Any]) -> dict[str, Any]:
    """Per-model times of this profile, merged over the parts run so far (one file per results)."""
    old = json.loads(path.read_text()) if path.is_file() else {}
    merged = {**old, **new}
    text = json.dumps(merged, indent=1)
    atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))
    return merged


def _note(config: ReproduceConfig, datasets: list[str], records_path: Path, times: dict[str, Any]) -> str:
    embedded = datasets == ["embedded"]
    note = (
        f"Last run: profile **{config.profile}**{' with published weights' if config.pretrained else ''}; "
        f"data: {'scikit-image photos (no benchmark data found)' if embedded else ', '.join(datasets)}; "
        f"device {config.device_name} ({environment(config.device_name)['host']}); "
        f"sr_bench commit {git_commit()}; {time.strftime('%Y-%m-%d', time.gmtime())}. The table shows every record "
        f"of these datasets in {records_path.name}, earlier runs' included (each record keeps its own data hash, "
        f"device and date)."
    )
    if times and config.profile in ("gpu", "paper"):
        parts = [f"{m} ({', '.join(f'{k} {n}' for k, n in t['updates'].items()) or 'no training'} updates; "
                 f"train {t['train_s']:.0f} s, evaluate {t['eval_s']:.0f} s on {t['host']})" for m, t in times.items()]
        total = sum(t["train_s"] + t["eval_s"] for t in times.values())
        note += (f" Updates and measured times per model: {'; '.join(parts)}; {total / 60:.1f} min in all."
                 f" {', '.join(m for m in GPU_BRIEF if m in times)} are brief runs of their architectures with the "
                 f"EDSR recipe, not the published models' training." if config.profile == "gpu" else "")
    return note


def log_plan(config: ReproduceConfig, jobs: Sequence[Job], datasets: Sequence[str], absent: dict[str, str],
             device: str) -> None:
    log.info("profile %s%s; device %s; datasets %s%s", config.profile, " (published weights)" if config.pretrained
             else "", device, ", ".join(datasets), f"; absent: {', '.join(absent)}" if absent else "")
    if list(datasets) == ["embedded"]:
        log.info("no benchmark data found (set SR_BENCH_DATA or --data-root): running on 5 scikit-image photos, "
                 "which have no published values; training uses 10 other scikit-image photos")
    for j in jobs:
        what = {"none": "no weights", "official": "published weights",
                "train": f"trained ({config.profile})"}[j.weights]
        log.info("plan: %s x%s: %s; evaluated on %s", j.model, "/".join(map(str, j.scales)) or "-", what,
                 ", ".join(j.datasets) or "nothing")


def weights_label(config: ReproduceConfig, job: Job) -> str | None:
    """The weights' short name in ``job``'s Table 3 column label."""
    return {"none": None, "official": "official", "train": config.profile}[job.weights]


def plan_skips(config: ReproduceConfig, jobs: Sequence[Job], absent: dict[str, str]) -> list[Skip]:
    """The Table 3 cells the plan leaves out, each with its reason."""
    return [skip for job in jobs for skip in _skips(job, absent, weights_label(config, job))]


def write_tables(config: ReproduceConfig, datasets: list[str], skipped: list[Skip], times: dict[str, Any]) -> Path:
    """``times-PROFILE.json`` (merged with earlier runs'), ``table3.md`` over every record and,
    unless ``--no-table1``, ``table1.md``; returns table3's path."""
    results = Path(config.results)
    records_path = results / "records.jsonl"
    times = _timings(results / f"times-{config.profile}.json", times)
    note = _note(config, datasets, records_path, times)
    shown = [r for r in read_records(records_path) if r.dataset in datasets]  # this run's data only
    table3 = write_table3(shown, results / "table3.md", skipped=skipped, title_note=note)
    log.info("table 3: %s", table3.resolve())
    if config.table1:
        table1 = write_table1(results / "table1.md", config.device_name)
        log.info("table 1: %s", Path(table1).resolve())
    return table3


def run(config: ReproduceConfig) -> Path:
    t0 = time.time()
    results = Path(config.results)
    records_path = results / "records.jsonl"
    datasets, absent = available_datasets(config.data_root)
    _check_results_folder(results, datasets)
    jobs = plan(config, datasets)
    log_plan(config, jobs, datasets, absent, config.device_name)
    skipped = plan_skips(config, jobs, absent)
    done = read_records(records_path)  # a partial (--max-images) record never counts as done
    times: dict[str, Any] = {}
    for job in jobs:
        if not job.scales or not job.datasets:
            continue
        timing: dict[str, Any] = {"updates": {}, "train_s": 0.0, "host": environment(config.device_name)["host"]}
        cands = _candidates(job, config, weights_label(config, job), skipped, timing)
        t_eval = time.time()
        evaluate_job(job, cands, config, records_path, done)
        times[job.model] = {**timing, "eval_s": round(time.time() - t_eval, 1)}
    table3 = write_tables(config, datasets, skipped, times)
    log.info("done in %.1f min; records: %s", (time.time() - t0) / 60, records_path.resolve())
    log.info("%s", _where(results))
    return table3


def _where(results: Path) -> str:
    """The last line of a run: where its results are, and where the committed ones stay."""
    if is_committed_results(results):
        return f"regenerated the committed results in {results.resolve()} (`git diff results` shows what changed)"
    if results.resolve() == default_results_dir():
        return (f"results of this run: {results.resolve()} (git-ignored; the committed tables in results/ are "
                f"unchanged; `--results results` regenerates those)")
    return f"results of this run: {results.resolve()}"


def _check_results_folder(results: Path, datasets: Sequence[str]) -> None:
    """The committed ``results/`` hold records of the real benchmarks: a run that found none of them
    (the scikit-image photos) must not put its rows beside those."""
    if is_committed_results(results) and list(datasets) == ["embedded"]:
        raise cli.UsageError(
            f"--results {results}: that is the clone's committed results folder, made on the real benchmarks, and "
            f"no benchmark data was found (set SR_BENCH_DATA or pass --data-root); leave --results out to write "
            f"this run to {default_results_dir()}")


def build_parser() -> Any:
    p = cli.parser("python -m sr_bench.reproduce", __doc__.split("\n\n")[0])
    cli.add_common_options(p, device=True, data_root=True, results=True, progress=True, weights_dir=True)
    p.add_argument("--profile", choices=PROFILES.names(), default=None,
                   help="training profile (default quick: about 20 minutes on 2 CPU cores; gpu: 12 minutes on one "
                        "H100/H200; or the --config file's profile)")
    p.add_argument("--pretrained", action="store_true", help="evaluate the published checkpoints instead of training")
    p.add_argument("--runs", default=None,
                   help="folder for training runs (checkpoints and weights; default: runs/ of the clone, else ./runs)")
    p.add_argument("--models", nargs="+", default=None, help="only these registered models (a part of the table)")
    p.add_argument("--no-table1", dest="table1", action="store_false", help="skip Table 1 (it times every model)")
    p.add_argument("--set", type=parse_option, action="append", default=[], metavar="FIELD=VALUE",
                   help="change a training config field in every run, e.g. optim.iterations=2 (tests)")
    p.add_argument("--config", metavar="RUN.toml",
                   help="training config fields for every run, as --set ([optim] lr = 2e-4, or optim.lr = 2e-4; "
                        "profile chooses --profile); --set wins; each run's config.json keeps the file (config_file)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan with times estimated on this device (each run's updates timed at full size)")
    p.add_argument("--json", action="store_true", help="with --dry-run: the estimate as JSON (seconds per update of "
                   "every run, seconds of every evaluation pass)")
    p.add_argument("--parts", action="store_true", help="print the gpu profile's suggested --models parts")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: what every run does anyway (finished records and training runs "
                        "are reused, an interrupted training run continues from its checkpoint)")
    _add_launcher_options(p)
    return p


# ---- on a cluster: the hand-off to sr_bench.launch ----------------------------------------------------


def _duration_minutes(text: str) -> int:
    """argparse ``type=`` for ``--time-limit``: minutes, or 90m, 24h, 2d, or Slurm's H:MM:SS / D-HH:MM:SS."""
    t = text.strip().lower()
    m = re.fullmatch(r"(\d+)\s*(m|min|h|d)?", t)
    if m:
        minutes = int(m.group(1)) * {None: 1, "m": 1, "min": 1, "h": 60, "d": 1440}[m.group(2)]
    else:
        m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d\d)(?::(\d\d))?", t)
        if not m:
            raise argparse.ArgumentTypeError(f"expected minutes, 90m, 24h, 2d or H:MM:SS; got {text!r}")
        days, hours, mins, secs = (int(g or 0) for g in m.groups())
        minutes = days * 1440 + hours * 60 + mins + (1 if secs else 0)
    if minutes < 1:
        raise argparse.ArgumentTypeError(f"a time limit must be at least 1 minute; got {text!r}")
    return minutes


def _add_launcher_options(p: Any) -> None:
    g = p.add_argument_group("on a cluster (--launcher submitit; see docs/cluster.md)")
    g.add_argument("--launcher", choices=("process", "submitit"), default="process",
                   help="process (default): everything in this process; submitit: every training run and "
                        "evaluation as a job (Slurm when srun is found, else local subprocesses)")
    g.add_argument("--launcher-dry-run", action="store_true",
                   help="print the job graph, each job's estimated time and the sbatch scripts; submit nothing")
    g.add_argument("--launcher-cluster", choices=("auto", "slurm", "local"), default="auto",
                   help="auto (default): Slurm when srun is on PATH, else local subprocesses")
    g.add_argument("--partition", help="Slurm partition of every job")
    g.add_argument("--nodes", type=cli.positive_int, default=1, help="nodes per training job (default 1)")
    g.add_argument("--gpus-per-node", type=cli.non_negative_int, default=0,
                   help="GPUs per node of a training job, one process each (DDP); evaluations take one")
    g.add_argument("--time-limit", type=_duration_minutes, default=24 * 60, metavar="DURATION",
                   help="per job: minutes, 90m, 24h, 2d or H:MM:SS (default 24h); a job that reaches it saves a "
                        "checkpoint and is requeued")
    g.add_argument("--launcher-parallel", type=cli.positive_int, default=None, metavar="N",
                   help="jobs at once (local: default the CPU cores, at most 4; Slurm: per array)")
    g.add_argument("--launcher-wait", action="store_true",
                   help="Slurm: follow the jobs until the tables are made (local runs always do)")
    g.add_argument("--launcher-option", type=parse_option, action="append", default=[], metavar="KEY=VALUE",
                   help="any submitit AutoExecutor parameter for every job, e.g. slurm_account=NAME, mem_gb=64, "
                        "cpus_per_task=8, slurm_qos=high, tasks_per_node=2 (training: CPU DDP); "
                        "max_num_timeout=N (requeues after a time limit, default 20)")


#: the launcher options that only mean something with --launcher submitit, and their defaults
_LAUNCHER_ONLY = {"launcher_dry_run": False, "launcher_cluster": "auto", "partition": None, "nodes": 1,
                  "gpus_per_node": 0, "time_limit": 24 * 60, "launcher_parallel": None, "launcher_wait": False,
                  "launcher_option": []}


@dataclass(frozen=True)
class Launcher:
    """A way to run the plan other than in this process: its options from the parsed command line,
    its dry run (the text it prints) and the launch itself (an exit status). ``sr_bench.launch``
    registers ``submitit``; ``python -m sr_bench.reproduce`` imports it first."""

    name: str
    options: Callable[[Any], Any]
    dry_run: Callable[[ReproduceConfig, Any, int], str]
    launch: Callable[[ReproduceConfig, Any, int], int]


LAUNCHERS: Registry[Launcher] = Registry("launcher", hint="the submitit launcher comes with sr_bench.launch")


def register_launcher(launcher: Launcher) -> Launcher:
    return LAUNCHERS.add(launcher.name, launcher)


def _launcher(a: Any) -> Launcher | None:
    """The launcher asked for, or None for the in-process run (a usage error when a launcher's
    options come without it, or when its module was not loaded)."""
    if a.launcher == "process":
        given = [k for k, default in _LAUNCHER_ONLY.items() if getattr(a, k) != default]
        if given:
            raise cli.UsageError(f"--{given[0].replace('_', '-')} is an option of --launcher submitit; add it, or "
                                 f"leave the option out for the in-process run")
        return None
    if a.launcher not in LAUNCHERS:
        raise cli.UsageError(f"--launcher {a.launcher}: not loaded in this process; run `python -m sr_bench.reproduce` "
                             f"or `sr-bench-reproduce` (they load sr_bench.launch), or `import sr_bench.launch` first")
    return LAUNCHERS[a.launcher]


def parse_args(argv: Sequence[str] | None = None) -> ReproduceConfig:
    a = build_parser().parse_args(argv)
    set_weights_dir(a.weights_dir)  # a process-wide setting of the command line, as $SR_BENCH_WEIGHTS_DIR
    return _config(a)


def _config(a: Any) -> ReproduceConfig:
    unknown = [m for m in a.models or () if m not in model_names()]
    if unknown:
        raise cli.UsageError(f"--models: unknown model(s) {', '.join(unknown)}; registered: {', '.join(model_names())}")
    check_folder_option("--data-root", a.data_root, must_exist=True)  # the embedded photos only when none is given
    check_folder_option("--results", a.results)
    check_fields(k for k, _ in a.set)
    overrides, profile = _run_file_overrides(a.config, a.profile)
    overrides.update(dict(a.set))
    return ReproduceConfig(profile=profile, pretrained=a.pretrained, results=str(a.results or default_results_dir()),
                           runs=str(a.runs or default_runs_dir()), data_root=a.data_root, device=a.device,
                           models=tuple(a.models) if a.models else None, table1=a.table1, overrides=overrides,
                           progress=a.progress)


def _run_file_overrides(path: str | None, profile: str | None) -> tuple[dict[str, Any], str]:
    """(training config changes, profile) from a ``--config`` run file; ``--profile`` must agree
    with its ``profile``, and it cannot name a model (reproduce trains the table's)."""
    if path is None:
        return {}, profile or "quick"
    run = load_run_file(path)
    if run.model is not None or run.scales is not None:
        raise cli.UsageError(f"--config {path}: model.name / model.scales choose one run; reproduce trains every "
                             f"model of the table at its scales: leave them out (and use --models for a part)")
    if profile is not None and run.profile is not None and profile != run.profile:
        raise cli.UsageError(f"--profile {profile} differs from {path}'s profile {run.profile}; change one")
    if (run.profile or profile) not in (None, *PROFILES.names()):
        raise cli.UsageError(f"--config {path}: {PROFILES.unknown_message(str(run.profile))}")
    return {**run.changes, "config_file": run.source}, profile or run.profile or "quick"


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    cli.setup_logging(a.verbosity)
    if a.parts:
        print(parts_text(), end="")
        return 0
    config = _config(a)
    launcher = _launcher(a)
    if launcher is not None:
        options = launcher.options(a)
        if a.launcher_dry_run:
            print(launcher.dry_run(config, options, a.verbosity), end="")
            return 0
        return launcher.launch(config, options, a.verbosity)
    if a.dry_run:
        datasets, _ = available_datasets(config.data_root)
        jobs = plan(config, datasets)
        render = dry_run_json if a.json else dry_run_text
        print(render(config, estimate(config, jobs), datasets), end="")
        return 0
    try:
        run(config)
    except (KeyboardInterrupt, TrainingStopped):
        args = " ".join(_argv(argv))
        log.warning("stopped: the records and checkpoints written so far are kept; the same command continues "
                    "where this one stopped: `python -m sr_bench.reproduce%s` (or `nox -s reproduce%s`)",
                    f" {args}" if args else "", f" -- {args}" if args else "")
        raise
    return 0


def _argv(argv: Sequence[str] | None) -> list[str]:
    return [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)]


