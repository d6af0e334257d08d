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

import functools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sr_bench import cli
from sr_bench.data import DatasetNotFound, data_root, evaluation_sets, open_dataset
from sr_bench.evaluate import Candidate, evaluate, load_candidates
from sr_bench.images import atomic_write
from sr_bench.inference import resolve_device
from sr_bench.models.registry import parse_option
from sr_bench.paths import check_folder_option, default_results_dir
from sr_bench.records import append_records, environment, find_record, git_commit, read_records
from sr_bench.tables.table3 import Column, Skip, write_table3
from sr_bench.train.config import GPU_BRIEF, PROFILES, check_fields, run_name
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
    from sr_bench.models import get_spec

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
    from sr_bench.train import train_or_reuse

    out = run_dir(config, job.model, scale)
    if job.warm_start_from and scale != job.warm_start_from and init is None:
        init = str(train_run(job, job.warm_start_from, config).weights)
    log.info("training %s x%d (%s profile) -> %s", job.model, scale, config.profile, out)
    return train_or_reuse(config.profile, job.model, run_scale(job.model, scale), out, data_root=config.data_root,
                          device=config.device, **train_changes(config, init))


# ---- the dry run: the plan with estimated times ------------------------------------------------

#: end-to-end updates/s over the compute-only step, measured on an H200 before the trainer's speed
#: work (issue 10: 58 updates/s against a 12.5 ms step for edsr-baseline x2); estimates divide by it
END_TO_END = 0.72


@dataclass
class Estimate:
    model: str
    scales: tuple[int, ...]
    updates: dict[int | None, int]  # scale (None: one multi-scale run) -> updates
    step_s: dict[int | None, float]  # seconds per full-size update on this device
    how: str  # "timed 8x8 x2 crops, scaled" / "from FLOPs" ...
    eval_passes: int  # forwards over every (dataset, scale, protocol) evaluated
    eval_s: float

    def train_s(self, paper: bool = False) -> float:
        n = {k: (300_000 if paper else v) for k, v in self.updates.items()}
        return sum(n[k] * self.step_s[k] for k in n) / END_TO_END


def _lr_pixels(name: str, root: str | None, scale: int, cache: dict) -> int:
    """Sum of LR pixels of a dataset at ``scale``, from the image headers (no decoding)."""
    if name not in cache:
        from PIL import Image

        ds = open_dataset(name, root)
        sizes = []
        for ref in ds.images:
            with Image.open(ref.hr_path) as im:
                sizes.append(im.size)
        cache[name] = sizes
    return sum((w // scale) * (h // scale) for w, h in cache[name])


def _time_job(job: Job, config: ReproduceConfig, deadline: float, speeds: list[float]) -> tuple[dict, dict, str]:
    """Updates and seconds per full-size update for each run of a job, on this device. CUDA:
    3 timed updates of the real config. CPU: 1 update of 16x16 crops x 2, scaled by the FLOP
    count (small crops run below full speed: the estimate errs long). A timing that would end past
    ``deadline`` is replaced by the FLOPs at the mean speed timed so far (``speeds``, FLOP/s)."""
    from sr_bench.bench import time_updates, train_flops_per_update
    from sr_bench.train import make_config

    runs = [None] if len(PROFILES.get(config.profile)(job.model, 2).model.scales) > 1 else list(job.scales)
    cuda = torch.device(config.device_name).type == "cuda"
    updates, step, hows = {}, {}, set()
    for s in runs:
        cfg = make_config(config.profile, job.model, s if s is not None else 2, **config.overrides)
        updates[s] = cfg.optim.iterations
        full = train_flops_per_update(cfg)
        crop = (cfg.data.patch_size, cfg.data.batch_size) if cuda else (min(16, cfg.data.patch_size), 2)
        small = full * crop[0] ** 2 * crop[1] / (cfg.data.patch_size ** 2 * cfg.data.batch_size)
        speed = sum(speeds) / len(speeds) if speeds else None
        if speed and time.monotonic() + 3 * small / speed > deadline:
            step[s] = full / speed
            hows.add("from its FLOPs at the speed timed for the models before it")
            continue
        t = time_updates(cfg, config.device_name, updates=3 if cuda else 1, warmup=2 if cuda else 1,
                         patch_size=crop[0], batch_size=crop[1])
        speeds.append(small / t.seconds)
        step[s] = t.seconds * full / small
        hows.add(f"timed {t.updates} update(s) ({t.amp})" if cuda else
                 f"timed {crop[0]}x{crop[0]} x{crop[1]} crops ({t.amp}), scaled by FLOPs")
    return updates, step, ", ".join(sorted(hows))


@functools.cache
def _flops_per_lr_pixel(model: str, scale: int) -> float:
    from sr_bench.flops import flops_per_lr_pixel

    return flops_per_lr_pixel(model, scale)  # ~1 s for the big models, even on the meta device


def _eval_seconds(job: Job, config: ReproduceConfig, cache: dict, speed: float) -> tuple[int, float]:
    """(forward passes, seconds) of a job's evaluation: forward FLOPs over every image, 8 forwards
    where self-ensemble is scored, at ``speed`` (the FLOP/s of the updates timed on this device)."""
    passes, flop = 0, 0.0
    for _protocol in job.protocols:  # each protocol is a pass of its own
        for ds in job.datasets:
            for s in job.scales:
                forwards = 8 if True in job.modes(ds, s) else 1
                passes += 1
                flop += forwards * _flops_per_lr_pixel(job.model, s) * _lr_pixels(ds, config.data_root, s, cache)
    return passes, flop / speed


def estimate(config: ReproduceConfig, jobs: Sequence[Job], *, budget_s: float = 40.0) -> list[Estimate]:
    """Estimated train and evaluation time of every job on this device (see :func:`_time_job`).
    The cheapest networks are timed first, so that the FLOP/s they reach can stand in for the
    ones the time budget leaves untimed."""
    deadline = time.monotonic() + budget_s
    cache: dict = {}
    speeds: list[float] = []
    timed = {}
    for job in sorted((j for j in jobs if j.weights == "train"), key=lambda j: _flops_per_lr_pixel(j.model, 2)):
        timed[job.model] = _time_job(job, config, deadline, speeds)
    speed = sum(speeds) / len(speeds) if speeds else _cpu_speed()
    out = []
    for job in jobs:
        updates, step, how = timed.get(job.model, ({}, {}, ""))
        passes, seconds = _eval_seconds(job, config, cache, speed)
        out.append(Estimate(job.model, job.scales, updates, step, how, passes, seconds))
    return out


def _cpu_speed() -> float:
    from sr_bench.bench import peak_flops

    return peak_flops("cpu")[0]


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def dry_run_text(config: ReproduceConfig, estimates: Sequence[Estimate], datasets: Sequence[str]) -> str:
    """The plan as a markdown table, with the gpu/quick/smoke estimate and the paper's."""
    device = environment(config.device_name)["host"]
    lines = [f"Plan: profile {config.profile}, device {config.device_name} ({device}), datasets {', '.join(datasets)}",
             "", "| model | runs (updates) | seconds per update | evaluation passes | train | evaluate | total | "
             "paper profile (3e5 updates) |", "|---|---|---|---|---|---|---|---|"]
    total = paper = 0.0
    for e in estimates:
        runs = ", ".join(f"{'x' + str(k) if k else 'x2/3/4'} {n}" for k, n in e.updates.items()) or "-"
        steps = ", ".join(f"{v * 1e3:.4g} ms" for v in e.step_s.values()) or "-"
        t, tp = e.train_s() + e.eval_s, e.train_s(paper=True) + e.eval_s
        total, paper = total + t, paper + tp
        lines.append(f"| {e.model} | {runs} | {steps} | {e.eval_passes} | {_duration(e.train_s())} | "
                     f"{_duration(e.eval_s)} | {_duration(t)} | {_duration(tp)} |")
    lines += ["", f"Total: {_duration(total)} for profile {config.profile}; {_duration(paper)} for the paper profile "
              f"(3e5 updates per run; the paper's final EDSR/MDSR used 1e6: x3.3 more).",
              "How: " + "; ".join(sorted({f"{e.model}: {e.how}" for e in estimates if e.how})) + ". Training time "
              f"is the timed compute-only update / {END_TO_END} (the end-to-end share measured in issue 10); "
              "evaluation is the forward FLOPs of every image (8 forwards with self-ensemble) at the FLOP/s of "
              "the timed updates. Estimates: the real run's times go in the Table 3 header."]
    return "\n".join(lines) + "\n"


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
    records after each dataset (an interrupted evaluation continues from there)."""
    for protocol in job.protocols:
        for ds_name in job.datasets:
            ds = open_dataset(ds_name, config.data_root)
            for cand in cands:
                todo = missing_modes(job, cand, protocol, ds_name, done)
                if not todo:
                    continue
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
        f"in {records_path.name}, earlier runs' included (each record keeps its own data hash, device and date)."
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
    table3 = write_table3(read_records(records_path), results / "table3.md", skipped=skipped, title_note=note)
    log.info("table 3: %s", table3.resolve())
    if config.table1:
        from sr_bench.tables.table1 import write_table1

        table1 = write_table1(results / "table1.md", config.device_name)
        log.info("table 1: %s", Path(table1).resolve())
    return table3


def run(config: ReproduceConfig) -> Path:
    t0 = time.time()
    records_path = Path(config.results) / "records.jsonl"
    datasets, absent = available_datasets(config.data_root)
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
    return table3


def build_parser() -> Any:
    p = cli.parser("python -m sr_bench.reproduce", __doc__.split("\n\n")[0])
    cli.add_common_options(p, device=True, data_root=True, results=True, progress=True, weights_dir=True)
    p.add_argument("--profile", choices=PROFILES.names(), default="quick",
                   help="training profile (default quick: about 20 minutes on 2 CPU cores; gpu: 12 minutes on one "
                        "H100/H200)")
    p.add_argument("--pretrained", action="store_true", help="evaluate the published checkpoints instead of training")
    p.add_argument("--runs", default="runs", help="folder for training runs (checkpoints and weights)")
    p.add_argument("--models", nargs="+", default=None, help="only these registered models (a part of the table)")
    p.add_argument("--no-table1", dest="table1", action="store_false", help="skip Table 1 (it times every model)")
    p.add_argument("--set", type=parse_option, action="append", default=[], metavar="FIELD=VALUE",
                   help="change a training config field in every run, e.g. optim.iterations=2 (tests)")
    p.add_argument("--dry-run", action="store_true", help="print the plan with times estimated on this device")
    p.add_argument("--parts", action="store_true", help="print the gpu profile's suggested --models parts")
    _add_launcher_options(p)
    return p


# ---- on a cluster: the hand-off to sr_bench.launch ----------------------------------------------------


def _duration_minutes(text: str) -> int:
    """argparse ``type=`` for ``--time-limit``: minutes, or 90m, 24h, 2d, or Slurm's H:MM:SS / D-HH:MM:SS."""
    import argparse
    import re

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


def _launch_options(a: Any) -> Any:
    """The launcher options given (a usage error when they come without ``--launcher submitit``)."""
    from sr_bench.launch import LaunchOptions

    if a.launcher != "submitit":
        given = [k for k, default in _LAUNCHER_ONLY.items() if getattr(a, k) != default]
        if given:
            raise cli.UsageError(f"--{given[0].replace('_', '-')} is an option of --launcher submitit; add it, or "
                                 f"leave the option out for the in-process run")
        return None
    if ":" in a.device:
        raise cli.UsageError(f"--device {a.device} with --launcher submitit: each job has GPUs of its own, numbered "
                             f"from 0 inside the job; pass --device cuda (or auto) and --gpus-per-node N")
    params = dict(a.launcher_option)
    max_timeouts = params.pop("max_num_timeout", 20)
    if not isinstance(max_timeouts, int) or max_timeouts < 0:
        raise cli.UsageError(f"--launcher-option max_num_timeout={max_timeouts!r}: give a whole number >= 0")
    return LaunchOptions(cluster=a.launcher_cluster, nodes=a.nodes, gpus_per_node=a.gpus_per_node,
                         partition=a.partition, time_limit_min=a.time_limit, parallel=a.launcher_parallel,
                         max_num_timeout=max_timeouts, wait=a.launcher_wait, parameters=params)


def parse_args(argv: Sequence[str] | None = None) -> ReproduceConfig:
    a = build_parser().parse_args(argv)
    set_weights_dir(a.weights_dir)  # a process-wide setting of the command line, as $SR_BENCH_WEIGHTS_DIR
    return _config(a)


def _config(a: Any) -> ReproduceConfig:
    from sr_bench.models import names as model_names

    unknown = [m for m in a.models or () if m not in model_names()]
    if unknown:
        raise cli.UsageError(f"--models: unknown model(s) {', '.join(unknown)}; registered: {', '.join(model_names())}")
    check_folder_option("--data-root", a.data_root, must_exist=True)  # the embedded photos only when none is given
    check_folder_option("--results", a.results)
    check_fields(k for k, _ in a.set)
    return ReproduceConfig(profile=a.profile, pretrained=a.pretrained, results=str(a.results or default_results_dir()),
                           runs=a.runs, data_root=a.data_root, device=a.device,
                           models=tuple(a.models) if a.models else None, table1=a.table1, overrides=dict(a.set),
                           progress=a.progress)


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    cli.setup_logging(a.verbosity)
    if a.parts:
        print(parts_text(), end="")
        return 0
    config = _config(a)
    options = _launch_options(a)
    if options is not None:
        from sr_bench.launch.driver import dry_run, launch

        if a.launcher_dry_run:
            print(dry_run(config, options, a.verbosity), end="")
            return 0
        return launch(config, options, a.verbosity)
    if a.dry_run:
        datasets, _ = available_datasets(config.data_root)
        jobs = plan(config, datasets)
        print(dry_run_text(config, estimate(config, jobs), datasets), end="")
        return 0
    run(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
