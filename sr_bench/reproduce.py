"""Reproduce the paper's tables: train (or load published weights), evaluate, regenerate tables.

``python -m sr_bench.reproduce [--profile smoke|quick|paper] [--pretrained] [--results DIR]``
(``nox -s reproduce -- ARGS``). For every registered model and scale it trains under the profile,
loads the published weights (``--pretrained``), or reuses a finished run; evaluates on every
benchmark present with and without self-ensemble; and regenerates ``table1.md`` and
``table3.md`` under ``--results``. Finished records are reused, so an interrupted run continues
where it stopped. Without a data folder it runs on the scikit-image photos (``embedded``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from sr_bench.data import DatasetNotFound, data_root, open_dataset
from sr_bench.evaluate import Candidate, evaluate, load_candidates
from sr_bench.inference import resolve_device
from sr_bench.records import RecordKey, append_records, git_commit, read_records
from sr_bench.tables.table3 import Column, Skip, write_table3

__all__ = ["ReproduceConfig", "Job", "plan", "run", "main"]

BENCHMARKS = ("Set5", "Set14", "B100", "Urban100", "DIV2K")
ALL_SCALES = (2, 3, 4)


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
    why_not: dict = field(default_factory=dict)  # (dataset or None, scale or None, se) -> reason


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

    @property
    def runs_dir(self) -> Path:
        return Path(self.runs)

    @property
    def device_name(self) -> str:
        return resolve_device(self.device)


def available_datasets(root: str | None) -> tuple[list[str], dict[str, str]]:
    """(benchmarks present, {absent benchmark: why}); the embedded photos when none is present."""
    present, absent = [], {}
    for name in BENCHMARKS:
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
    it trains EDSR-baseline x2 only, scores self-ensemble on the small sets only, and says so."""
    small = tuple(d for d in datasets if d in ("Set5", "Set14", "embedded"))
    jobs = [Job("bicubic", ALL_SCALES, "none", tuple(datasets), (False,), ("paper", "vdsr"))]
    trained_models = ("edsr-baseline", "edsr", "mdsr-baseline", "mdsr", "srresnet", "vdsr")
    official = {"edsr-baseline", "edsr", "mdsr-baseline", "mdsr"}
    if config.pretrained:
        for m in trained_models:
            if m in official:
                jobs.append(Job(m, ALL_SCALES, "official", tuple(datasets)))
            else:
                jobs.append(Job(m, ALL_SCALES, "none", (), why_not={(None, None, None): "no published weights (train it: --profile paper)"}))
    elif config.profile == "paper":
        for m in trained_models:
            warm = 2 if m in ("edsr-baseline", "edsr") else None
            jobs.append(Job(m, ALL_SCALES, "train", tuple(datasets), warm_start_from=warm))
    else:  # smoke, quick: one CPU-sized run
        skip = f"the {config.profile} profile trains edsr-baseline x2 only (--profile paper or --pretrained for the rest)"
        big = tuple(d for d in datasets if d not in small)
        why = {(d, 2, True): f"the {config.profile} profile scores self-ensemble on Set5/Set14 only (8x the time)" for d in big}
        why[(None, 3, None)] = why[(None, 4, None)] = skip
        evaluated = small if config.profile == "smoke" else tuple(datasets)
        if config.profile == "smoke":
            why.update({(d, 2, None): "the smoke profile evaluates Set5/Set14/embedded only" for d in datasets if d not in small})
        jobs.append(Job("edsr-baseline", (2,), "train", evaluated, why_not=why))
        for m in trained_models[1:]:
            jobs.append(Job(m, (), "none", (), why_not={(None, None, None): skip}))
    if config.models:
        jobs = [j for j in jobs if j.model in config.models]
    return jobs


def _train(job: Job, scale: int, config: ReproduceConfig, say) -> Path:
    """Train one run, or resume it, or pick up its finished weights."""
    from sr_bench.train import train_or_reuse

    out = config.runs_dir / f"{config.profile}-{job.model}-x{scale}"
    changes = {}
    if job.warm_start_from and scale != job.warm_start_from:
        changes["model.init"] = str(_train(job, job.warm_start_from, config, say))
    say(f"training {job.model} x{scale} ({config.profile} profile) -> {out}")
    return train_or_reuse(config.profile, job.model, scale, out, data_root=config.data_root, device=config.device,
                          **changes).weights


def run(config: ReproduceConfig) -> Path:
    t0 = time.time()
    say = lambda msg: print(f"[reproduce] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    results = Path(config.results)
    records_path = results / "records.jsonl"
    datasets, absent = available_datasets(config.data_root)
    embedded = datasets == ["embedded"]
    jobs = plan(config, datasets)
    say(f"profile {config.profile}{' (published weights)' if config.pretrained else ''}; device {config.device_name}; "
        f"datasets {', '.join(datasets)}" + ("" if not absent else f"; absent: {', '.join(absent)}"))
    if embedded:
        say("no benchmark data found (set SR_BENCH_DATA or --data-root): running on 5 scikit-image photos, "
            "which have no published values; training uses 10 other scikit-image photos")
    for j in jobs:
        what = {"none": "no weights", "official": "published weights", "train": f"trained ({config.profile})"}[j.weights]
        say(f"plan: {j.model} x{'/'.join(map(str, j.scales)) or '-'}: {what}; evaluated on {', '.join(j.datasets) or 'nothing'}")

    skipped: list[Skip] = []
    done = {r.key for r in read_records(records_path)}
    for job in jobs:
        weights_label = {"none": None, "official": "official", "train": config.profile}[job.weights]
        for se in (False, True):
            if job.scales and se not in job.self_ensemble:
                continue  # e.g. bicubic: no "+" column at all
            col = Column(job.model, se, weights_label)
            for (ds, s, mode), reason in job.why_not.items():
                if mode in (None, se):
                    skipped.append(Skip(col, reason, ds, s))
            for ds, reason in absent.items():
                skipped.append(Skip(col, reason, ds))
        if not job.scales or not job.datasets:
            continue
        cands: list[Candidate] = []
        for s in job.scales:
            try:
                if job.weights == "train":
                    w = str(_train(job, s, config, say))
                else:
                    w = None if job.weights == "none" else "official"
                cand = load_candidates(job.model, [s], w, config.device_name)[0]
                cands.append(cand)
            except Exception as e:  # noqa: BLE001 - one missing checkpoint must not sink the table
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
                say(f"{job.model} x{s}: not run: {reason}")
                for se in (False, True):
                    skipped.append(Skip(Column(job.model, se, weights_label), reason, None, s))
        for protocol in job.protocols:
            for ds_name in job.datasets:
                ds = open_dataset(ds_name, config.data_root)
                for cand in cands:
                    modes = tuple(se for se in job.self_ensemble
                                  if not any(k[0] in (None, ds_name) and k[1] in (None, cand.scale) and k[2] in (None, se)
                                             for k in job.why_not))
                    todo = tuple(se for se in modes if RecordKey(job.model, cand.weights_sha256, ds_name, cand.scale, se, protocol) not in done)
                    if not todo:
                        continue
                    say(f"evaluating {job.model} x{cand.scale} on {ds_name} ({protocol}{', self-ensemble' if True in todo else ''})")
                    recs = evaluate([cand], ds, protocol, self_ensemble=todo, device=config.device_name)
                    append_records(records_path, recs)  # after every step: an interrupted run resumes here
                    done |= {r.key for r in recs}
    note = (
        f"Last run: profile **{config.profile}**{' with published weights' if config.pretrained else ''}; "
        f"data: {'scikit-image photos (no benchmark data found)' if embedded else ', '.join(datasets)}; "
        f"device {config.device_name} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads); "
        f"sr_bench commit {git_commit()}; {time.strftime('%Y-%m-%d', time.gmtime())}. The table shows every record "
        f"in {records_path.name}, earlier runs' included (each record keeps its own data hash, device and date)."
    )
    table3 = write_table3(read_records(records_path), results / "table3.md", skipped=skipped, title_note=note)
    say(f"table 3: {table3.resolve()}")
    if config.table1:
        from sr_bench.tables.table1 import write_table1

        table1 = write_table1(results / "table1.md", config.device_name)
        say(f"table 1: {Path(table1).resolve()}")
    say(f"done in {(time.time() - t0) / 60:.1f} min; records: {records_path.resolve()}")
    return table3


def parse_args(argv: Sequence[str] | None = None) -> ReproduceConfig:
    p = argparse.ArgumentParser(prog="python -m sr_bench.reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", choices=["smoke", "quick", "paper"], default="quick",
                   help="training profile (default quick: about 20 minutes on 2 CPU cores)")
    p.add_argument("--pretrained", action="store_true", help="evaluate the published checkpoints instead of training")
    p.add_argument("--results", default="results", help="folder for records.jsonl, table1.md and table3.md")
    p.add_argument("--runs", default="runs", help="folder for training runs (checkpoints and weights)")
    p.add_argument("--data-root", default=None, help="folder holding the datasets (default: $SR_BENCH_DATA)")
    p.add_argument("--device", default="auto")
    p.add_argument("--models", nargs="+", default=None, help="only these registered models")
    p.add_argument("--no-table1", dest="table1", action="store_false", help="skip Table 1 (it times every model)")
    a = p.parse_args(argv)
    return ReproduceConfig(profile=a.profile, pretrained=a.pretrained, results=a.results, runs=a.runs,
                           data_root=a.data_root, device=a.device, models=tuple(a.models) if a.models else None,
                           table1=a.table1)


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
