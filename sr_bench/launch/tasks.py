"""What runs inside a job: one node of the graph, with its log, its result and submitit's
checkpoint protocol.

:class:`NodeTask` is the callable every job runs (a small picklable class, no closures). It
calls the same functions as the in-process ``reproduce`` (:func:`~sr_bench.reproduce.train_run`,
:func:`~sr_bench.reproduce.evaluate_job`, :func:`~sr_bench.reproduce.write_tables`), so a job
writes the records and tables that the in-process run writes.

Time limits and preemption: Slurm (``--signal=USR2@90``, set by submitit) and submitit's local
executor send SIGUSR2 before the end. In training, the trainer takes it as a stop signal: it
finishes the update, saves a checkpoint and raises :class:`~sr_bench.train.TrainingStopped`; the
task then raises SIGUSR2 again, now that submitit's own handler is back, and submitit calls
:meth:`NodeTask.checkpoint` and requeues the job. The requeued job runs the same task: the
trainer resumes from the checkpoint (bit-exactly, as ``--resume``), and an evaluation skips the
records already written. Elsewhere (evaluation, data loading) submitit requeues at once, and the
job continues from what is on disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sr_bench import cli
from sr_bench.evaluate import load_candidates
from sr_bench.launch.graph import Graph, Node, NodeKind
from sr_bench.launch.state import finished_run, jobs_dir, read_result, warm_start_weights, write_result
from sr_bench.records import environment, read_records
from sr_bench.reproduce import (
    Job,
    ReproduceConfig,
    evaluate_job,
    plan_skips,
    run_dir,
    run_scale,
    train_run,
    weights_label,
    write_tables,
)
from sr_bench.tables.table3 import Column, Skip
from sr_bench.train import TrainingStopped
from sr_bench.weights import set_weights_dir

__all__ = ["Launch", "NodeTask", "RUNNERS", "preempt_signal"]

log = logging.getLogger("sr_bench.launch")


@dataclass(frozen=True)
class Launch:
    """What every job of one launch shares (pickled with each job)."""

    id: str
    config: ReproduceConfig
    jobs: tuple[Job, ...]
    datasets: tuple[str, ...]
    absent: dict[str, str]
    graph: Graph
    #: the nodes this launch runs (the others were done before it, or queued by an earlier launch)
    todo: tuple[str, ...]
    weights_dir: str | None = None
    #: intra-op threads of each job (None: torch's default)
    threads: int | None = None
    verbosity: int = 0

    @property
    def folder(self) -> Path:
        return jobs_dir(self.config)

    def job(self, model: str | None) -> Job:
        return next(j for j in self.jobs if j.model == model)

    def ran(self, name: str) -> bool:
        """Whether ``name`` finished in this launch (its result carries this launch's id)."""
        result = read_result(self.folder, name)
        return result is not None and result.get("launch") == self.id


# ---- the runners, one per node kind ------------------------------------------------------------------

Runner = Callable[[Launch, Node], dict[str, Any]]
RUNNERS: dict[NodeKind, Runner] = {}


def runner(kind: NodeKind) -> Callable[[Runner], Runner]:
    def register(fn: Runner) -> Runner:
        if kind in RUNNERS:
            raise ValueError(f"two runners for {kind.value} jobs")
        RUNNERS[kind] = fn
        return fn

    return register


@runner(NodeKind.TRAIN)
def run_training(launch: Launch, node: Node) -> dict[str, Any]:
    """Train the run (or resume it, or pick it up finished), as the in-process run does; an
    x3/x4 run starts from the x2 run, which the graph made finish first."""

    config, job = launch.config, launch.job(node.model)
    scale = node.scale if node.scale is not None else run_scale(job.model, job.scales[0])
    init = warm_start_weights(config, job, scale)
    if init is not None and job.warm_start_from and finished_run(config, job, job.warm_start_from) is None:
        raise cli.DataError(f"{init} is missing: the x{job.warm_start_from} run must finish before {node.name} "
                            f"starts from it (its job: train-{job.model}-x{job.warm_start_from})")
    result = train_run(job, scale, config, init=init)
    return {"run": str(result.out_dir), "iterations": result.iterations, "train_s": round(result.total_seconds, 1),
            "diverged": result.diverged}


@runner(NodeKind.EVALUATE)
def run_evaluation(launch: Launch, node: Node) -> dict[str, Any]:
    """Evaluate one model at one scale on every dataset and protocol of the plan; records already
    in the records file are skipped, so a requeued job continues."""

    assert node.scale is not None
    config = launch.config
    job = dataclasses.replace(launch.job(node.model), scales=(node.scale,))
    weights: str | None = "official" if job.weights == "official" else None
    options: dict[str, Any] = {}
    timing: dict[str, Any] = {}
    if job.weights == "train":
        run = finished_run(config, job, node.scale)
        if run is None:
            raise cli.DataError(f"{run_dir(config, job.model, node.scale)} holds no finished run: its training job "
                                f"must finish first")
        weights, options = str(run.weights), run.options
        timing = {"updates": {run.updates_key: run.iterations}, "train_s": round(run.train_seconds(), 1)}
    cand = load_candidates(job.model, [node.scale], weights, config.device_name, options=options)[0]
    records = Path(config.results) / "records.jsonl"
    t0 = time.time()
    evaluate_job(job, [cand], config, records, read_records(records))
    return {"model": job.model, "scale": node.scale, "weights_sha256": cand.weights_sha256, **timing,
            "eval_s": round(time.time() - t0, 1), "host": environment(config.device_name)["host"]}


def _unfinished_skips(launch: Launch) -> list[Any]:
    """Table 3 cells of the evaluations this launch ran that did not finish, each naming the job
    (training or evaluation) that stopped it and its log."""

    skips = []
    logs = Path("jobs") / launch.config.profile
    for name in launch.graph.names(NodeKind.EVALUATE):
        if name not in launch.todo or launch.ran(name):
            continue
        node = launch.graph[name]
        job = launch.job(node.model)
        stopped = [n for n in node.needs if n in launch.todo and not launch.ran(n)]
        culprit = stopped[0] if stopped else name
        reason = f"job {culprit} did not finish (its log: {logs / culprit}.log)"
        label = weights_label(launch.config, job)
        skips += [Skip(Column(job.model, se, label), reason, None, node.scale) for se in (False, True)]
    return skips


def _times(launch: Launch) -> dict[str, Any]:
    """Per-model times (the in-process run's ``times-PROFILE.json`` entries) from the evaluation
    jobs' results; a run that serves several scales is counted once."""
    times: dict[str, Any] = {}
    for name in launch.graph.names(NodeKind.EVALUATE):
        result = read_result(launch.folder, name)
        if result is None:
            continue
        t = times.setdefault(result["model"], {"updates": {}, "train_s": 0.0, "host": result["host"], "eval_s": 0.0})
        for key, n in result.get("updates", {}).items():
            if key not in t["updates"]:
                t["updates"][key] = n
                t["train_s"] = round(t["train_s"] + result["train_s"], 1)
        t["eval_s"] = round(t["eval_s"] + result["eval_s"], 1)
    return times


@runner(NodeKind.TABLES)
def make_tables(launch: Launch, node: Node) -> dict[str, Any]:
    """The times file, Table 3 (every record, and why each missing cell is missing) and Table 1."""

    skipped = plan_skips(launch.config, launch.jobs, launch.absent) + _unfinished_skips(launch)
    table3 = write_tables(launch.config, list(launch.datasets), skipped, _times(launch))
    return {"table3": str(table3)}


# ---- the job callable ------------------------------------------------------------------------------


def preempt_signal() -> int | None:
    """The signal submitit checkpoints and requeues on (``$SUBMITIT_PREEMPT_SIGNAL``, default USR2)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


def _in_submitit_job() -> bool:
    return bool(os.environ.get("SUBMITIT_EXECUTOR"))


def _rank() -> int:
    """This task's global rank. A job of several tasks (``tasks_per_node`` x ``nodes``) exports
    the variables ``torch.distributed`` reads (MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK)
    from submitit's view of the job, as torchrun would; each task then takes ``cuda:LOCAL_RANK``."""
    if not _in_submitit_job():
        return int(os.environ.get("RANK", "0"))
    import submitit

    env = submitit.JobEnvironment()
    if env.num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return env.global_rank


def _attempt(launch: Launch, node: Node) -> str:
    where = socket.gethostname()
    if not _in_submitit_job():
        return f"{node.name}: started on {where} (pid {os.getpid()})"
    import submitit

    env = submitit.JobEnvironment()
    return (f"{node.name}: job {env.job_id} started on {where}, {env.num_tasks} task(s); launch {launch.id}; "
            f"submitit's stdout/stderr: {env.paths.stdout.parent}")


@contextlib.contextmanager
def _node_log(path: Path, enabled: bool, verbosity: int) -> Iterator[None]:
    """The job's log lines also go to ``path`` (appended: one file for every attempt of the job),
    and how the attempt ended."""
    cli.setup_logging(verbosity)
    handler: logging.Handler | None = None
    if enabled:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, mode="a")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        logging.getLogger("sr_bench").addHandler(handler)
    try:
        yield
    except cli.UserError as e:
        log.error("error: %s", e)
        raise
    except KeyboardInterrupt:
        log.error("interrupted")
        raise
    except SystemExit as e:  # a stop signal (the trainer saved a checkpoint), or submitit's requeue
        log.warning("stopped (exit status %s)", e.code)
        raise
    except BaseException:
        log.exception("failed")
        raise
    finally:
        if handler is not None:
            logging.getLogger("sr_bench").removeHandler(handler)
            handler.close()


def _hand_over_to_submitit(stopped: BaseException) -> None:
    """The trainer stopped on submitit's preemption signal, its checkpoint saved: raise the signal
    again, so that submitit's handler (back in place) checkpoints this task and requeues the job.
    On rank 0 this does not return; other ranks return and exit with the trainer's status."""

    sig = preempt_signal()
    if _in_submitit_job() and isinstance(stopped, TrainingStopped) and sig is not None and stopped.signum == sig:
        log.warning("requeueing: the checkpoint is saved; the requeued job resumes from it")
        signal.raise_signal(sig)


@dataclass
class NodeTask:
    """The callable of one job: ``NodeTask(launch, "train-edsr-x2")()``."""

    launch: Launch
    name: str

    def __call__(self) -> dict[str, Any]:
        launch, node = self.launch, self.launch.graph[self.name]
        rank = _rank()
        with _node_log(launch.folder / f"{node.name}.log", rank == 0, launch.verbosity):
            log.info("%s", _attempt(launch, node))
            if launch.threads:
                import torch

                torch.set_num_threads(launch.threads)
            set_weights_dir(launch.weights_dir)
            t0 = time.time()
            try:
                result = RUNNERS[node.kind](launch, node)
            except TrainingStopped as stopped:
                _hand_over_to_submitit(stopped)
                raise
            if rank == 0:
                write_result(launch.folder, node, launch.id, {**result, "seconds": round(time.time() - t0, 1)})
            log.info("%s: finished in %.1f min", node.name, (time.time() - t0) / 60)
        return result

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's checkpoint protocol: what to run when the job is requeued. The same task:
        the run folder's checkpoint and the records file hold the progress."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)
