"""The driver: ``reproduce --launcher submitit`` looks at what is done, submits the rest, and
(locally, or with ``--launcher-wait``) follows the jobs to the end.

1. **plan** as the in-process run does, and make the job graph;
2. **survey**: a training run already finished (its recipe checked against the one asked for), an
   evaluation whose records are all there, and a job an earlier launch left queued or running
   are not submitted again; a run folder of another recipe stops everything here, before any job;
3. **submit**: on Slurm every job at once (arrays, dependencies); locally each job once what it
   needs has finished (a job behind a failed one is not started, and the tables say why);
4. **follow** (locally always: the local executor has no dependencies to hand the work to):
   report each job as it ends; Ctrl-C or SIGTERM stops the jobs, trainings after a checkpoint.

Running the same command again after a failure, an outage or a kill continues from what is on disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sr_bench.cli import UsageError
from sr_bench.launch.dryrun import dry_run_text
from sr_bench.launch.executors import Backend, LaunchOptions, check_parameters, cpu_count, make_backend, resolve_cluster
from sr_bench.launch.graph import Graph, Node, NodeKind, job_graph
from sr_bench.launch.state import Ledger, jobs_dir, survey_node
from sr_bench.launch.tasks import Launch, NodeTask
from sr_bench.records import read_records
from sr_bench.reproduce import ReproduceConfig, available_datasets, estimate, log_plan, plan
from sr_bench.weights import current_weights_dir

__all__ = ["launch", "prepare", "Scheduler"]

log = logging.getLogger("sr_bench.launch")

#: seconds between two looks at the jobs (local jobs end within a poll of finishing)
POLL_S = {"local": 1.0, "slurm": 30.0}


def _threads(options: LaunchOptions, cluster: str) -> int | None:
    """Intra-op threads per job: Slurm's ``cpus_per_task``, or locally the cores shared out over
    the jobs that run at once (unless ``OMP_NUM_THREADS`` says)."""
    if "OMP_NUM_THREADS" in os.environ:
        return None
    if cluster == "slurm":
        cpus = options.parameters.get("cpus_per_task")
        return int(cpus) if cpus else None
    parallel = options.parallel or min(4, cpu_count())
    return None if options.gpus_per_node else max(1, cpu_count() // parallel)


def prepare(config: ReproduceConfig, options: LaunchOptions, cluster: str, verbosity: int = 0) -> tuple[Launch, dict]:
    """The launch (plan, graph, what to run) and the jobs an earlier launch left queued on Slurm
    ({node: job id}). Raises a usage error before any submission when a job would fail at once."""

    datasets, absent = available_datasets(config.data_root)
    jobs = plan(config, datasets)
    graph = job_graph(jobs)
    folder = jobs_dir(config)
    done = read_records(Path(config.results) / "records.jsonl")
    ledger = Ledger(folder)
    by_model = {j.model: j for j in jobs}
    todo, queued = [], {}
    for node in graph:
        if survey_node(config, by_model.get(node.model) if node.model else None, node, done):
            continue
        active = ledger.active(node.name, folder / "submitit") if node.kind is not NodeKind.TABLES else None
        if active is not None and ledger.entries[node.name]["cluster"] == "local":
            raise _still_running(node.name, active)
        if active is not None:
            queued[node.name] = active
        else:
            todo.append(node.name)
    weights_dir = current_weights_dir()
    launch = Launch(id=f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}", config=config, jobs=tuple(jobs),
                    datasets=tuple(datasets), absent=dict(absent), graph=graph, todo=tuple(todo),
                    weights_dir=str(weights_dir) if weights_dir else None, threads=_threads(options, cluster),
                    verbosity=verbosity)
    log_plan(config, jobs, datasets, absent, f"{config.device} (in each job)")
    return launch, queued


def _still_running(name: str, pid: str) -> Exception:
    return UsageError(f"job {name} of an earlier launch still runs here (pid {pid}): wait for it to end, or stop "
                      f"it with kill -TERM {pid} (a training saves its checkpoint first), then run this again")


@dataclass
class Scheduler:
    """Submits the launch's nodes as their dependencies allow and follows them."""

    launch: Launch
    backend: Backend
    ledger: Ledger
    #: node -> job id of a job queued by an earlier launch (Slurm)
    queued: dict[str, str] = field(default_factory=dict)
    state: dict[str, str] = field(default_factory=dict)  # todo | submitted | ok | failed | blocked | done
    jobs: dict[str, Any] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for node in self.launch.graph:
            name = node.name
            self.state[name] = ("todo" if name in self.launch.todo else
                                "submitted" if name in self.queued else "done")

    @property
    def graph(self) -> Graph:
        return self.launch.graph

    def _job_id(self, name: str) -> str:
        return self.queued[name] if name in self.queued else str(self.jobs[name].job_id)

    def _ready(self, node: Node) -> bool:
        ended = ("done", "ok", "failed", "blocked")
        if self.backend.follows_dependencies:
            return all(self.state[a] != "todo" for a in node.after)
        return all(self.state[a] in ("done", "ok") for a in node.needs) and all(
            self.state[a] in ended for a in node.waits)

    def _block(self) -> None:
        for node in self.graph:
            if self.state[node.name] == "todo" and any(self.state[a] in ("failed", "blocked") for a in node.needs):
                self.state[node.name] = "blocked"
                log.warning("%s: not started: %s did not finish", node.name,
                            next(a for a in node.needs if self.state[a] in ("failed", "blocked")))

    def _running(self) -> list[str]:
        return [n for n, s in self.state.items() if s == "submitted" and n in self.jobs]

    def submit_ready(self) -> None:
        """Submit every node whose dependencies allow it (on Slurm: all of them, in graph order)."""
        while self._submit_pass():
            pass

    def _submit_pass(self) -> bool:
        self._block()
        ready = [n.name for n in self.graph if self.state[n.name] == "todo" and self._ready(n)]
        progress = False
        # trainings first: they lead to the longest chains (an evaluation waits for each)
        for group in sorted(self.graph.groups(ready), key=lambda g: g[0].kind is not NodeKind.TRAIN):
            kind = group[0].kind
            group = group[:self.backend.capacity(kind, len(self._running()))]
            if not group:
                continue
            progress = True
            live = self.backend.follows_dependencies
            after_ok = [self._job_id(a) for a in group[0].needs if live and self.state[a] == "submitted"]
            after_any = [self._job_id(a) for a in group[0].waits if live and self.state[a] == "submitted"]
            tasks = [NodeTask(self.launch, node.name) for node in group]
            submitted = self.backend.submit(kind, group, tasks, after_ok, after_any)
            for node, job in zip(group, submitted, strict=True):
                self.jobs[node.name], self.state[node.name] = job, "submitted"
                self.started[node.name] = time.time()
                self.ledger.record(node.name, str(job.job_id), self.backend.cluster, self.launch.id)
            log.info("submitted %s", _describe(group, submitted, after_ok + after_any))
        return progress

    def poll(self) -> None:
        for name in self._running():
            job = self.jobs[name]
            if not job.done():
                continue
            self.backend.release(job)
            minutes = (time.time() - self.started[name]) / 60
            if self.launch.ran(name):
                self.state[name] = "ok"
                log.info("%s: finished (%.1f min)", name, minutes)
            else:
                self.state[name] = "failed"
                log.error("%s: failed after %.1f min; its log: %s", name, minutes,
                          self.launch.folder / f"{name}.log")

    def pending(self) -> bool:
        return any(s == "todo" for s in self.state.values()) or bool(self._running())

    def run(self, wait: bool) -> int:
        """Submit everything (following the jobs to the end when ``wait``); the exit status."""
        poll = POLL_S[self.backend.cluster]
        with _interrupts_stop(self):
            self.submit_ready()
            if self.backend.follows_dependencies and not wait:
                return self._submitted_only()
            while self.pending():
                time.sleep(poll)
                self.poll()
                self.submit_ready()
        return self._summary()

    def _submitted_only(self) -> int:
        folder = self.launch.folder
        log.info("%d job(s) submitted; follow them with squeue -u $USER and tail -f %s/*.log; the tables are "
                 "made by the last job (%s). Run the same command again after an outage: it submits only what is "
                 "missing.", len(self.jobs), folder, self._job_id("tables"))
        return 0

    def _summary(self) -> int:
        counts = {s: sorted(n for n, v in self.state.items() if v == s) for s in ("ok", "done", "failed", "blocked")}
        log.info("jobs: %d finished, %d done before, %d failed, %d not started", len(counts["ok"]),
                 len(counts["done"]), len(counts["failed"]), len(counts["blocked"]))
        if counts["failed"] or counts["blocked"]:
            log.error("failed: %s; not started: %s. Their logs are in %s; run the same command again to retry "
                      "them (finished runs and records are kept, a stopped run resumes from its checkpoint)",
                      ", ".join(counts["failed"]) or "none", ", ".join(counts["blocked"]) or "none",
                      self.launch.folder)
            return 1
        return 0


def _describe(group: tuple[Node, ...], jobs: list[Any], after: list[str]) -> str:
    ids = ", ".join(f"{n.name} (job {j.job_id})" for n, j in zip(group, jobs, strict=True))
    return ids + (f", after job(s) {', '.join(after)}" if after else "")


@contextlib.contextmanager
def _interrupts_stop(scheduler: Scheduler) -> Iterator[None]:
    """Ctrl-C or SIGTERM while local jobs run stops them (trainings save a checkpoint first)."""

    def to_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, to_interrupt)
    try:
        yield
    except KeyboardInterrupt:
        running = [scheduler.jobs[n] for n in scheduler._running()]
        if running and not scheduler.backend.follows_dependencies:
            log.warning("interrupted: stopping %d job(s); a training saves its checkpoint first", len(running))
            scheduler.backend.stop(running)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def launch(config: ReproduceConfig, options: LaunchOptions, verbosity: int = 0) -> int:
    """``reproduce --launcher submitit``: the exit status (0: everything finished, or submitted)."""
    check_parameters(options)
    cluster = resolve_cluster(options)
    the_launch, queued = prepare(config, options, cluster, verbosity)
    folder = the_launch.folder
    backend = make_backend(cluster, folder / "submitit", options)
    done = len(the_launch.graph) - len(the_launch.todo) - len(queued)
    log.info("%s executor; %d job(s): %d done before, %d queued by an earlier launch, %d to run; logs in %s",
             cluster, len(the_launch.graph), done, len(queued), len(the_launch.todo), folder)
    scheduler = Scheduler(the_launch, backend, Ledger(folder), queued)
    return scheduler.run(wait=options.wait or not backend.follows_dependencies)


def dry_run(config: ReproduceConfig, options: LaunchOptions, verbosity: int = 0) -> str:
    """``--launcher-dry-run``: the job graph, the submissions and their sbatch scripts, with each
    job's time estimated by :func:`sr_bench.reproduce.estimate` on this machine; nothing submitted."""

    check_parameters(options)
    cluster = resolve_cluster(options)
    the_launch, queued = prepare(config, options, cluster, verbosity)
    import torch

    here = config if torch.cuda.is_available() else dataclasses.replace(config, device="cpu")  # a login node
    estimates = {e.model: e for e in estimate(here, list(the_launch.jobs))}
    return dry_run_text(the_launch, options, cluster, estimates, queued, here.device_name)
