"""The steps of the GPU run, their state between calls, and the command line.

A call runs the steps that are not done yet, in order, until the time budget (``--budget-min``,
less :data:`RESERVE_S` for the tables and the export) runs out:

1. ``estimate``: the ``reproduce --profile gpu`` dry run on this device (each training run's
   update timed at full size, each model's forward timed; what is not timed within its own budget
   is scaled by FLOPs and says so): how long every later step should take here;
2. ``tests``: ``pytest -m gpu`` in a subprocess (its log in ``tests.log``);
3. ``bench-edsr-baseline-x2``, ``bench-edsr-x2``: :func:`sr_bench.bench.measure` on the gpu
   profile's recipe: compute-only step, end to end after a warm-up, MFU against the peak of the
   math the step ran in;
4. ``reproduce-MODEL``, one step per model of :data:`sr_bench.reproduce.GPU_PARTS` in their
   order: :func:`sr_bench.reproduce.run` with ``--models MODEL`` (its runs trained and scored:
   records, Table 3, per-model times). One step per model, not per part: a machine given back
   between two calls keeps no checkpoint, so a stopped step costs at most one model's training;
5. ``tables``: Table 3 over every record with every model's reasons for the cells not measured,
   and ``summary.md``.

A step starts only when its estimate fits the time left, or when it is the first step of the
call (a step longer than a whole call then stops at the deadline and continues in the next call
on the same machine). Training stops at the deadline after its current update, with a
checkpoint, and evaluation before its next pass (:mod:`sr_bench.deadline`), so finished records
stay; tests and bench cannot stop midway and are left whole for the next call.
The state of every step (done, stopped, failed, skipped; seconds; figures) is kept in
``state.json`` beside the results, and each call appends to ``gpu_run.log``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from sr_bench import cli
from sr_bench.bench import measure, to_markdown
from sr_bench.deadline import Budget, Deadline, DeadlineReached, remaining, time_budget
from sr_bench.gpu_run import staging
from sr_bench.gpu_run.preflight import TESTS, missing
from sr_bench.images import atomic_write
from sr_bench.inference import resolve_device
from sr_bench.paths import checkout_root
from sr_bench.records import environment
from sr_bench.reproduce import (
    GPU_PARTS,
    ReproduceConfig,
    available_datasets,
    dry_run_json,
    dry_run_text,
    estimate,
    plan,
    plan_skips,
    write_tables,
)
from sr_bench.reproduce import run as reproduce_run
from sr_bench.train import TrainingStopped

__all__ = ["REAL", "TINY", "TARGETS", "RunOptions", "Sizes", "main", "run"]

log = logging.getLogger("sr_bench.gpu_run")

#: seconds kept back from the budget for the tables, the summary and the export (and for the
#: last training update and checkpoint, or evaluation pass, that a deadline lets finish)
RESERVE_S = 30.0
#: the tests step: its estimate until one run measured it, and the most it may take
TESTS_ESTIMATE_S = 120.0
TESTS_CAP_S = 300.0
#: a bench step's fixed cost (network built twice, amp auto timed twice, training set decoded)
BENCH_OVERHEAD_S = 20.0
#: exit status of a call that stopped at its deadline with steps left: call again
EXIT_CALL_AGAIN = 75


@dataclass(frozen=True)
class Sizes:
    """What the real run and the tiny one (CI, a CPU) differ in."""

    profile: str
    #: the models of Table 3, in the order they run (one reproduce step each)
    models: tuple[str, ...]
    bench_models: tuple[str, ...]
    #: TrainConfig changes of every training run (reproduce --set)
    overrides: dict[str, Any] = field(default_factory=dict)
    bench_changes: dict[str, Any] = field(default_factory=dict)
    bench_updates: int = 200
    bench_warmup: int = 20
    bench_step_updates: int = 10
    estimate_budget_s: float = 45.0
    #: judge the bench figures against :data:`TARGETS` (set for an H200: meaningless at smoke size)
    targets: bool = True


REAL = Sizes("gpu", tuple(m for part in GPU_PARTS.values() for m in part), ("edsr-baseline", "edsr"))
_TINY_NET = {"model.options": {"blocks": 1, "filters": 8}, "data.num_workers": 0}
TINY = Sizes("smoke", ("bicubic", "edsr-baseline"), ("edsr-baseline", "edsr"), dict(_TINY_NET),
             {**_TINY_NET, "data.patch_size": 8, "data.batch_size": 2}, bench_updates=3, bench_warmup=1,
             bench_step_updates=2, estimate_budget_s=5.0, targets=False)

#: what the bench steps should reach on an H200 (the targets set for this code): EDSR-baseline x2
#: at least 150 updates/s end to end and 90% of its compute-only speed; EDSR x2 at most 23 ms
TARGETS: dict[str, dict[str, float]] = {
    "edsr-baseline": {"min_end_to_end_updates_per_s": 150.0, "min_ratio": 0.9},
    "edsr": {"max_step_ms": 23.0},
}


@dataclass(frozen=True)
class RunOptions:
    out: Path
    runs: Path
    data_root: str | None
    device: str
    budget_s: float
    export: Path | None = None
    sizes: Sizes = REAL
    redo: tuple[str, ...] = ()


# ---- state between calls ---------------------------------------------------------------------


class State:
    """``state.json``: each step's last outcome, and one entry per call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"steps": {}, "calls": []}

    def step(self, name: str) -> dict[str, Any]:
        return dict(self.data["steps"].get(name, {}))

    def set(self, name: str, status: str, **fields: Any) -> None:
        self.data["steps"][name] = {"status": status, **fields,
                                    "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.save()

    def save(self) -> None:
        text = json.dumps(self.data, indent=1, default=str) + "\n"
        atomic_write(self.path, lambda tmp: tmp.write_text(text))


@dataclass
class Context:
    """What the steps share in one call."""

    options: RunOptions
    state: State
    datasets: list[str]
    absent: dict[str, str]
    estimate_doc: dict[str, Any] | None = None

    @property
    def sizes(self) -> Sizes:
        return self.options.sizes

    def reproduce_config(self, models: Sequence[str]) -> ReproduceConfig:
        o = self.options
        return ReproduceConfig(profile=self.sizes.profile, results=str(o.out), runs=str(o.runs),
                               data_root=o.data_root, device=o.device, models=tuple(models), table1=False,
                               overrides=dict(self.sizes.overrides), progress=False)

    def all_models(self) -> tuple[str, ...]:
        return self.sizes.models


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    run: Callable[[Context], dict[str, Any]]
    estimate_s: Callable[[Context], float | None]


# ---- the steps -------------------------------------------------------------------------------


def _estimate(ctx: Context) -> dict[str, Any]:
    config = ctx.reproduce_config(ctx.all_models())
    jobs = plan(config, ctx.datasets)
    estimates = estimate(config, jobs, budget_s=ctx.sizes.estimate_budget_s)
    text = dry_run_text(config, estimates, ctx.datasets)
    doc = json.loads(dry_run_json(config, estimates, ctx.datasets))
    out = ctx.options.out
    atomic_write(out / "estimate.md", lambda tmp: tmp.write_text(text))
    atomic_write(out / "estimate.json", lambda tmp: tmp.write_text(json.dumps(doc, indent=1) + "\n"))
    ctx.estimate_doc = doc
    log.info("%s", text)
    return {"total_s": round(doc["total_s"], 1)}


def _model_seconds(ctx: Context, model: str) -> float | None:
    """The estimate's train and evaluation seconds of ``model`` on this device."""
    doc = ctx.estimate_doc
    if doc is None:
        return None
    found = [m for m in doc["models"] if m["model"] == model]
    return sum(m["train_s"] + m["eval_s"] for m in found) if found else None


def _seconds_per_update(ctx: Context, model: str) -> float | None:
    """The estimate's end-to-end seconds per x2 (or multi-scale) update of ``model``."""
    for m in (ctx.estimate_doc or {}).get("models", []):
        if m["model"] == model and m["runs"]:
            return float(m["runs"][0]["seconds_per_update"])
    return None


def _tests(ctx: Context) -> dict[str, Any]:
    root = _base()  # the copy sent to a GPU machine has no .git: its root is where the command runs
    absent = missing(TESTS)
    if not (root / "tests" / "conftest.py").is_file():
        return {"skipped": "no tests/ folder: run from a checkout of sr_bench"}
    if absent:
        return {"skipped": f"this Python lacks {', '.join(absent)}"}
    if torch.device(ctx.options.device).type != "cuda":
        return {"skipped": "no CUDA device: the gpu-marked tests need one"}
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rfEs", "-p", "no:cacheprovider", "--benchmark-disable",
           "--continue-on-collection-errors", "tests"]
    env = {**os.environ, "SR_BENCH_DATA": ctx.options.data_root or "", "CI": "", "PYTHONUNBUFFERED": "1"}
    timeout = min(TESTS_CAP_S, max(remaining(), 1.0))
    log_path = ctx.options.out / "tests.log"
    with open(log_path, "w") as f:
        try:
            code = subprocess.run(cmd, cwd=root, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                                  check=False).returncode
        except subprocess.TimeoutExpired:
            code = None
    counts = _pytest_counts(log_path.read_text(errors="replace"))
    log.info("gpu tests: %s (exit %s; %s)", ", ".join(f"{v} {k}" for k, v in counts.items()) or "no summary",
             code, log_path)
    return {**counts, "returncode": code, "timed_out_after_s": None if code is not None else round(timeout)}


def _pytest_counts(text: str) -> dict[str, int]:
    """{"passed": 12, "failed": 1, ...} from pytest's last summary line."""
    lines = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed|skipped|error|deselected)", line)]
    if not lines:
        return {}
    return {word.rstrip("s") if word == "errors" else word: int(n)
            for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", lines[-1])}


def _bench(model: str) -> Callable[[Context], dict[str, Any]]:
    def run_bench(ctx: Context) -> dict[str, Any]:
        s = ctx.sizes
        r = measure(model, 2, device=ctx.options.device, profile=s.profile, updates=s.bench_updates,
                    warmup_updates=s.bench_warmup, step_updates=s.bench_step_updates, data_root=ctx.options.data_root,
                    eval_images=0, changes=dict(s.bench_changes))
        out = ctx.options.out
        atomic_write(out / f"bench-{model}-x2.json", lambda tmp: tmp.write_text(json.dumps(asdict(r), indent=1) + "\n"))
        atomic_write(out / f"bench-{model}-x2.md", lambda tmp: tmp.write_text(to_markdown(r)))
        log.info("%s", to_markdown(r))
        figures = {"step_ms": round(r.step_ms, 3), "end_to_end_updates_per_s": round(r.end_to_end_updates_per_s, 2),
                   "ratio": round(r.ratio, 3), "mfu": round(r.mfu, 4), "math_mode": r.math_mode, "amp": r.amp,
                   "host": r.host}
        return {**figures, "targets": _verdicts(model, figures) if s.targets else {}}

    return run_bench


def _verdicts(model: str, figures: dict[str, Any]) -> dict[str, str]:
    """Each target of :data:`TARGETS` for ``model``: met or not, with the figure."""
    out = {}
    for name, bound in TARGETS.get(model, {}).items():
        kind, measure_name = name.split("_", 1)
        value = float(figures[measure_name])
        met = value >= bound if kind == "min" else value <= bound
        out[name] = f"{'met' if met else 'NOT met'}: {value:g} ({'>=' if kind == 'min' else '<='} {bound:g})"
    return out


def _bench_estimate(model: str) -> Callable[[Context], float | None]:
    def seconds(ctx: Context) -> float | None:
        per_update = _seconds_per_update(ctx, model)
        if per_update is None:
            return None
        s = ctx.sizes
        updates = s.bench_warmup + s.bench_updates + 3 + 2 * 13 * 2  # + warm-up and amp auto, timed twice
        return BENCH_OVERHEAD_S + updates * per_update + 10 * 0.05

    return seconds


def _reproduce(model: str) -> Callable[[Context], dict[str, Any]]:
    def run_model(ctx: Context) -> dict[str, Any]:
        reproduce_run(ctx.reproduce_config([model]))
        times = ctx.options.out / f"times-{ctx.sizes.profile}.json"
        merged = json.loads(times.read_text()) if times.is_file() else {}
        return {"times": merged.get(model, {})}

    return run_model


def _tables(ctx: Context) -> dict[str, Any]:
    config = ctx.reproduce_config(ctx.all_models())
    jobs = plan(config, ctx.datasets)
    table = write_tables(config, ctx.datasets, plan_skips(config, jobs, ctx.absent), {})
    return {"table3": table.name, "datasets": ctx.datasets, "absent": sorted(ctx.absent)}


def steps(sizes: Sizes) -> list[Step]:
    """The steps of a run, in order."""
    out = [Step("estimate", "dry-run estimate on this device", _estimate, lambda ctx: sizes.estimate_budget_s + 15),
           Step("tests", "pytest -m gpu", _tests,
                lambda ctx: float(ctx.state.step("tests").get("seconds") or TESTS_ESTIMATE_S))]
    out += [Step(f"bench-{m}-x2", f"sr_bench.bench {m} x2", _bench(m), _bench_estimate(m)) for m in sizes.bench_models]
    out += [Step(f"reproduce-{m}", f"reproduce --profile {sizes.profile} --models {m}", _reproduce(m),
                 functools.partial(_model_seconds, model=m)) for m in sizes.models]
    out.append(Step("tables", "Table 3 over every model, summary", _tables, lambda ctx: 5.0))
    return out


# ---- the run ----------------------------------------------------------------------------------


def _plan_text(ctx: Context, all_steps: list[Step]) -> str:
    lines = ["| step | what | status | estimate here | took |", "|---|---|---|---|---|"]
    for step in all_steps:
        est = step.estimate_s(ctx)
        s = ctx.state.step(step.name)
        took = f"{s['seconds']:.0f} s" if "seconds" in s else ""
        lines.append(f"| {step.name} | {step.what} | {s.get('status', 'to do')} | "
                     f"{'?' if est is None else f'{est:.0f} s'} | {took} |")
    return "\n".join(lines)


def _run_step(ctx: Context, step: Step, budget: Budget) -> str:
    """Run one step; returns its status: done, stopped (the deadline), failed or skipped."""
    t0 = time.monotonic()
    try:
        result = step.run(ctx)
    except (TrainingStopped, DeadlineReached) as e:
        ctx.state.set(step.name, "stopped", seconds=round(time.monotonic() - t0, 1), reason=str(e))
        log.warning("%s: stopped at the deadline (%s); the next call continues it", step.name, e)
        return "stopped"
    except Exception as e:  # noqa: BLE001 - one failed step must not cost the others
        log.exception("%s failed", step.name)
        ctx.state.set(step.name, "failed", seconds=round(time.monotonic() - t0, 1),
                      error=f"{type(e).__name__}: {e}"[:500])
        return "failed"
    status = "skipped" if "skipped" in result else "done"
    ctx.state.set(step.name, status, seconds=round(time.monotonic() - t0, 1), **result)
    log.info("%s: %s in %.0f s (%.0f s left)", step.name, status, time.monotonic() - t0, max(budget.remaining(), 0))
    return status


def _pending(ctx: Context, all_steps: list[Step]) -> list[Step]:
    redo = set(ctx.options.redo)
    return [s for s in all_steps if s.name in redo or ctx.state.step(s.name).get("status") not in ("done", "skipped",
                                                                                                    "failed")]


def _loop(ctx: Context, all_steps: list[Step], budget: Budget) -> str | None:
    """Run the pending steps; returns why this call stopped early (None: nothing left)."""
    for i, step in enumerate(_pending(ctx, all_steps)):
        if budget.expired():
            return f"the time budget ran out before {step.name}"
        est = step.estimate_s(ctx)
        if i > 0 and est is not None and est > budget.remaining():
            return f"{step.name} needs about {est:.0f} s and {max(budget.remaining(), 0):.0f} s are left"
        log.info("%s: %s (estimate %s)", step.name, step.what, "?" if est is None else f"{est:.0f} s")
        if _run_step(ctx, step, budget) == "stopped":
            return f"the time budget ran out during {step.name}"
    return None


def run(options: RunOptions, budget: Budget | None = None) -> int:
    """One call: the pending steps within the budget, then the summary and the export. Returns 0
    when every step is done, :data:`EXIT_CALL_AGAIN` when steps are left, 1 when one failed. The
    call's log lines are also appended to ``gpu_run.log`` in the results folder."""
    options.out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(options.out / "gpu_run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logger = logging.getLogger("sr_bench")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:  # called from Python: the file gets the INFO lines (-q keeps WARNING)
        logger.setLevel(logging.INFO)
    try:
        return _call(options, budget)
    finally:
        logger.removeHandler(handler)
        handler.close()


def _call(options: RunOptions, budget: Budget | None) -> int:
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    budget = budget or Deadline.after(max(options.budget_s - RESERVE_S, 0.0))
    datasets, absent = available_datasets(options.data_root)
    ctx = Context(options, State(options.out / "state.json"), datasets, absent)
    if (options.out / "estimate.json").is_file():
        ctx.estimate_doc = json.loads((options.out / "estimate.json").read_text())
    all_steps = steps(options.sizes)
    host = environment(options.device)["host"]
    log.info("gpu run on %s (%s, torch %s): budget %.0f s; data %s (absent: %s)\n%s", options.device, host,
             torch.__version__, options.budget_s, ", ".join(datasets), ", ".join(absent) or "none",
             _plan_text(ctx, all_steps))
    with time_budget(budget):
        stopped = _loop(ctx, all_steps, budget)
    left = [s.name for s in _pending(ctx, all_steps)]
    ctx.state.data["calls"].append({"started": started, "host": host, "torch": torch.__version__,
                                    "device": options.device, "budget_s": options.budget_s, "stopped": stopped,
                                    "left": left})
    ctx.state.save()
    _write_summary(ctx, all_steps)
    _finish_message(ctx, stopped, left)
    if options.export is not None:
        written = staging.export(options.out, options.export)
        log.info("exported: %s", ", ".join(str(p) for p in written))
    failed = [n for n, s in ctx.state.data["steps"].items() if s.get("status") == "failed"]
    return EXIT_CALL_AGAIN if left else (1 if failed else 0)


def _finish_message(ctx: Context, stopped: str | None, left: list[str]) -> None:
    if left:
        log.warning("stopped: %s; left for the next call: %s. Run the same command again (after "
                    "`--import-results` where the results came back from another machine)", stopped, ", ".join(left))
    else:
        log.info("every step is done: %s", ctx.options.out / "summary.md")


def _write_summary(ctx: Context, all_steps: list[Step]) -> None:
    lines = [f"# GPU run: {ctx.sizes.profile} profile", "",
             f"Data: {', '.join(ctx.datasets)}; absent: {', '.join(ctx.absent) or 'none'}. "
             f"Calls so far: {len(ctx.state.data['calls'])}.", "", _plan_text(ctx, all_steps), ""]
    bench = [(m, ctx.state.step(f"bench-{m}-x2")) for m in ctx.sizes.bench_models]
    bench = [(m, s) for m, s in bench if s.get("status") == "done"]
    if bench:
        lines += ["| bench (x2, gpu profile recipe) | math | compute-only step | end to end | ratio | MFU |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {m} | {s['math_mode']} | {s['step_ms']:.2f} ms | {s['end_to_end_updates_per_s']:.1f} updates/s | "
                  f"{s['ratio']:.2f} | {100 * s['mfu']:.1f}% |" for m, s in bench]
        lines.append("")
    for step in all_steps:
        s = ctx.state.step(step.name)
        if s.get("status") in ("failed", "stopped", "skipped"):
            lines.append(f"- {step.name}: {s['status']}: {s.get('error') or s.get('reason') or s.get('skipped')}")
        for target, verdict in s.get("targets", {}).items():
            lines.append(f"- {step.name}: {target} {verdict}")
        if step.name == "tests" and s.get("status") == "done":
            lines.append(f"- tests: {', '.join(f'{k} {v}' for k, v in s.items() if k in _COUNTS)} (tests.log)")
    text = "\n".join(lines) + "\n"
    atomic_write(ctx.options.out / "summary.md", lambda tmp: tmp.write_text(text))


_COUNTS = ("passed", "failed", "skipped", "error", "xfailed", "xpassed")


# ---- the command line ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m sr_bench.gpu_run", "The GPU table in one command (docs/gpu.md).")
    cli.add_common_options(p, device=False, data_root=True)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--prepare", action="store_true",
                      help=f"here: stage the benchmark images that fit into {staging.CARRY}/data and print the run "
                           f"command")
    what.add_argument("--import-results", type=Path, metavar="FILE",
                      help=f"here: unpack a returned {staging.ARCHIVE} into --out")
    what.add_argument("--status", action="store_true", help="print the state of every step and exit")
    p.add_argument("--budget-min", type=float, default=9.0,
                   help="minutes this call may take; it stops cleanly before (default 9)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: results/gpu of the checkout)")
    p.add_argument("--runs", type=Path, default=None, help="training runs (default: runs/gpu-run of the checkout)")
    p.add_argument("--device", default="cuda", help="default cuda; cpu only with --tiny")
    p.add_argument("--export", type=Path, default=None, metavar="DIR",
                   help=f"write {staging.ARCHIVE}, summary.md and gpu_run.log into DIR at the end ($OUT)")
    p.add_argument("--tiny", action="store_true",
                   help="smoke-size steps (tests, CI, a CPU): the whole pipeline in a minute")
    p.add_argument("--redo", nargs="+", default=[], metavar="STEP", help="run these steps again even if done")
    return p


def _base() -> Path:
    """The checkout (a copy without ``.git`` is the folder the command runs in)."""
    return checkout_root() or Path.cwd()


def _options(a: argparse.Namespace) -> RunOptions:
    device = resolve_device(a.device)
    if torch.device(device).type != "cuda" and not a.tiny:
        raise cli.UsageError(f"--device {a.device}: the GPU run needs CUDA (torch.cuda.is_available() is "
                             f"{torch.cuda.is_available()}); add --tiny to try the pipeline at smoke size here")
    if a.budget_min <= 0:
        raise cli.UsageError(f"--budget-min {a.budget_min:g}: give the minutes this call may take, e.g. 9")
    known = {s.name for s in steps(TINY if a.tiny else REAL)}
    unknown = [r for r in a.redo if r not in known]
    if unknown:
        raise cli.UsageError(f"--redo {' '.join(unknown)}: no such step; steps: {', '.join(sorted(known))}")
    data_root = a.data_root or os.environ.get("SR_BENCH_DATA") or None
    return RunOptions(out=a.out or _base() / "results" / "gpu", runs=a.runs or _base() / "runs" / "gpu-run",
                      data_root=data_root, device=device, budget_s=a.budget_min * 60, export=a.export,
                      sizes=TINY if a.tiny else REAL, redo=tuple(a.redo))


def _prepare(a: argparse.Namespace) -> int:
    source = a.data_root or os.environ.get("SR_BENCH_DATA")
    if not source:
        raise cli.UsageError("--prepare needs the benchmark images: pass --data-root DIR or set SR_BENCH_DATA")
    base = _base()
    staged = staging.prepare(Path(source), base)
    for s in staged:
        print(f"{s.name}: {s.mode}" + (f", {s.files} files, {s.nbytes / 2**20:.1f} MiB" if s.files else f" ({s.why})"))
    total = staging.tree_bytes(base) + sum(p.stat().st_size for p in (base / staging.CARRY).rglob("*") if p.is_file())
    command = staging.run_command(base, budget_min=a.budget_min)
    (base / staging.CARRY / "RUN.txt").write_text(command + "\n")
    print(f"\nwhat travels: {total / 2**20:.1f} MiB of {staging.DEVICE_TREE_LIMIT // 2**20} (checkout and "
          f"{staging.CARRY})\nrun (device tool): command = {command}\n"
          f"  carry = [\"{staging.CARRY}\"], timeout_s = 600\n"
          f"then here: python -m sr_bench.gpu_run --import-results FILES_AT/{staging.ARCHIVE}")
    return 0


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    cli.setup_logging(a.verbosity)
    if a.prepare:
        return _prepare(a)
    out = a.out or _base() / "results" / "gpu"
    if a.import_results is not None:
        written = staging.import_results(a.import_results, out)
        print(f"unpacked {len(written)} files into {out}; {out / 'summary.md'} says what was measured")
        return 0
    if a.status:
        state = State(out / "state.json")
        for name, s in state.data["steps"].items():
            print(f"{name}: {s.get('status')} ({s.get('seconds', '?')} s)")
        return 0
    return run(_options(a))
