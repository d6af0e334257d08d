"""Where jobs run: submitit's Slurm executor, or its local executor (subprocesses) without Slurm.

:class:`LaunchOptions` holds the job parameters of the command line; :func:`job_parameters`
turns them into submitit's (AutoExecutor names: ``timeout_min``, ``gpus_per_node``,
``slurm_partition``, ...) for each kind of job: a training job gets ``--nodes`` x
``--gpus-per-node`` (one task per GPU, DistributedDataParallel over all of them); an evaluation
or the tables one task and at most one GPU.

Two backends behind one interface:

- :class:`SlurmBackend` submits every job at once, each group of independent jobs as one array,
  with Slurm dependencies (``afterok`` for what a job needs, ``afterany`` for what it waits for;
  ``kill-on-invalid-dep`` so that the jobs behind a failed run end instead of pending forever).
- :class:`LocalBackend` has no dependencies to hand the work to: the driver submits a job once
  what it needs has finished, at most ``--launcher-parallel`` at once, each on its own GPUs.
"""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sr_bench.cli import UsageError
from sr_bench.launch.graph import Node, NodeKind

__all__ = ["LaunchOptions", "job_parameters", "check_parameters", "resolve_cluster", "cpu_count", "Backend",
           "SlurmBackend", "LocalBackend", "make_backend", "sbatch_text", "import_submitit"]

#: AutoExecutor's parameters for every cluster (submitit translates them for Slurm)
GENERIC = ("name", "timeout_min", "mem_gb", "nodes", "cpus_per_task", "gpus_per_node", "tasks_per_node",
           "stderr_to_stdout")
#: the shape of a job, set by --nodes / --gpus-per-node (tasks_per_node may be given for CPU DDP)
SHAPE = ("nodes", "gpus_per_node")


def import_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise UsageError("--launcher submitit needs the submitit package: pip install 'sr_bench[cluster]' "
                         "(or pip install submitit)") from None
    return submitit


@dataclass(frozen=True)
class LaunchOptions:
    """The command line's job parameters."""

    cluster: str = "auto"  # auto (Slurm when srun is on PATH, else local) | slurm | local
    nodes: int = 1  # per training job
    gpus_per_node: int = 0  # per training job: one task per GPU
    partition: str | None = None
    time_limit_min: int = 24 * 60
    #: jobs at once (local: the driver's limit, default the CPU cores; Slurm: each array's %N)
    parallel: int | None = None
    #: requeues after a time limit before submitit gives up (preemptions do not count)
    max_num_timeout: int = 20
    wait: bool = False  # Slurm: follow the jobs until the tables are made
    #: --launcher-option KEY=VALUE: any submitit AutoExecutor parameter, for every job
    parameters: dict[str, Any] = field(default_factory=dict)


def resolve_cluster(options: LaunchOptions) -> str:
    if options.cluster != "auto":
        return options.cluster
    submitit = import_submitit()
    which = submitit.AutoExecutor.which()
    return "slurm" if which == "slurm" else "local"


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def job_parameters(options: LaunchOptions, kind: NodeKind) -> dict[str, Any]:
    """AutoExecutor parameters of a job of ``kind`` (``name`` and dependencies are added per
    submission)."""
    params: dict[str, Any] = {"timeout_min": options.time_limit_min}
    if options.partition:
        params["slurm_partition"] = options.partition
    params.update(options.parameters)
    gpus = options.gpus_per_node
    if kind is NodeKind.TRAIN:
        tasks = params.get("tasks_per_node", max(1, gpus))
        params.update(nodes=options.nodes, gpus_per_node=gpus, tasks_per_node=tasks)
    else:  # one process: DDP is for training
        params.update(nodes=1, gpus_per_node=min(1, gpus), tasks_per_node=1)
    if not gpus:
        del params["gpus_per_node"]
    return params


def check_parameters(options: LaunchOptions) -> None:
    """Refuse what submitit would refuse, before anything is submitted, as one line."""
    shaped = [k for k in SHAPE if k in options.parameters]
    if shaped:
        raise UsageError(f"--launcher-option {shaped[0]}=...: use --{shaped[0].replace('_', '-')} instead")
    submitit = import_submitit()
    with tempfile.TemporaryDirectory() as tmp:
        executor = submitit.AutoExecutor(tmp, cluster="debug")  # checks every cluster's names; no limits of its own
        for kind in NodeKind:
            try:
                executor.update_parameters(**job_parameters(options, kind))
            except (NameError, AssertionError, ValueError, TypeError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise UsageError(f"--launcher-option: {first} (any parameter of submitit's AutoExecutor, e.g. "
                                 f"slurm_partition=gpu, slurm_account=NAME, mem_gb=64, cpus_per_task=8)") from None


def _dependency(after_ok: Sequence[str], after_any: Sequence[str]) -> str | None:
    parts = ([f"afterok:{':'.join(after_ok)}"] if after_ok else []) + (
        [f"afterany:{':'.join(after_any)}"] if after_any else [])
    return ",".join(parts) or None


def slurm_parameters(options: LaunchOptions, kind: NodeKind, name: str, after_ok: Sequence[str],
                     after_any: Sequence[str]) -> dict[str, Any]:
    """The AutoExecutor parameters of one Slurm submission (one job or one array)."""
    params = job_parameters(options, kind)
    extra = dict(params.pop("slurm_additional_parameters", None) or {})
    if after_ok:  # a failed run cancels what needs it, instead of leaving it pending forever
        extra.setdefault("kill-on-invalid-dep", "yes")
    params["name"] = name
    dependency = _dependency(after_ok, after_any)
    if dependency:
        params["slurm_dependency"] = dependency
    if extra:
        params["slurm_additional_parameters"] = extra
    if options.parallel:
        params["slurm_array_parallelism"] = options.parallel
    return params


def sbatch_text(params: dict[str, Any], folder: Path, array_size: int) -> str:
    """The sbatch script submitit writes for one submission with AutoExecutor ``params``, made by
    submitit's own Slurm executor (so it can be shown where ``srun`` is not installed)."""
    from submitit.slurm.slurm import SlurmExecutor

    class Preview(SlurmExecutor):  # SlurmExecutor refuses to exist without srun on PATH
        @classmethod
        def affinity(cls) -> int:
            return 1

    executor = Preview(folder)
    generic = executor._convert_parameters({k: v for k, v in params.items() if k in GENERIC})
    specific = {k[len("slurm_"):]: v for k, v in params.items() if k.startswith("slurm_")}
    executor.update_parameters(**generic, **specific)
    if array_size > 1:
        executor.parameters["map_count"] = array_size
    return executor._make_submission_file_text(executor._submitit_command_str, "preview")


# ---- backends ------------------------------------------------------------------------------------


class Backend(abc.ABC):
    """Submits jobs and says when the driver may submit more."""

    cluster: str
    #: whether the cluster holds jobs until their dependencies end (then the driver submits the
    #: whole graph at once)
    follows_dependencies: bool

    def __init__(self, folder: Path, options: LaunchOptions):
        self.folder, self.options = folder, options
        self.submitit = import_submitit()

    @abc.abstractmethod
    def submit(self, kind: NodeKind, nodes: Sequence[Node], tasks: Sequence[Any], after_ok: Sequence[str],
               after_any: Sequence[str]) -> list[Any]:
        """Submit ``tasks`` (one per node) as one submission; returns submitit jobs."""

    def capacity(self, kind: NodeKind, running: int) -> int:
        """How many more jobs of ``kind`` may start now."""
        return 1 << 30

    def release(self, job: Any) -> None:  # noqa: B027 - most backends hold nothing
        """``job`` ended: give back what it held."""

    def stop(self, jobs: Sequence[Any]) -> None:  # noqa: B027 - cluster jobs stay queued
        """The driver is interrupted: stop ``jobs`` (local runs only)."""


class SlurmBackend(Backend):
    cluster = "slurm"
    follows_dependencies = True

    def submit(self, kind: NodeKind, nodes: Sequence[Node], tasks: Sequence[Any], after_ok: Sequence[str],
               after_any: Sequence[str]) -> list[Any]:
        name = f"sr_bench-{nodes[0].name}" if len(nodes) == 1 else f"sr_bench-{kind.value}"
        executor = self.submitit.AutoExecutor(self.folder, cluster="slurm",
                                              slurm_max_num_timeout=self.options.max_num_timeout)
        executor.update_parameters(**slurm_parameters(self.options, kind, name, after_ok, after_any))
        with executor.batch():
            jobs = [executor.submit(task) for task in tasks]
        return jobs


def local_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """AutoExecutor parameters as submitit's LocalExecutor reads them (Slurm ones dropped)."""
    out = {k: v for k, v in params.items() if k in ("timeout_min", "gpus_per_node", "tasks_per_node", "nodes",
                                                       "stderr_to_stdout")}
    out.update({k[len("local_"):]: v for k, v in params.items() if k.startswith("local_")})
    return out


class LocalBackend(Backend):
    """Jobs as subprocesses of this machine (submitit's LocalExecutor), at most ``parallel`` at
    once, each training or evaluation on GPUs of its own."""

    cluster = "local"
    follows_dependencies = False

    def __init__(self, folder: Path, options: LaunchOptions):
        super().__init__(folder, options)
        if options.nodes > 1:
            raise UsageError(f"--nodes {options.nodes}: submitit's local executor runs on this machine only; "
                             f"use --nodes 1, or run on a Slurm cluster")
        self.free_gpus: list[int] = []
        if options.gpus_per_node:
            import torch

            self.free_gpus = list(range(torch.cuda.device_count()))
            if len(self.free_gpus) < options.gpus_per_node:
                raise UsageError(f"--gpus-per-node {options.gpus_per_node}: this machine has "
                                 f"{len(self.free_gpus)} CUDA device(s)")
        self.parallel = options.parallel or (len(self.free_gpus) if options.gpus_per_node else min(4, cpu_count()))
        self.held: dict[str, list[int]] = {}
        self.kinds: dict[str, NodeKind] = {}

    def _gpus(self, kind: NodeKind) -> int:
        return int(job_parameters(self.options, kind).get("gpus_per_node", 0))

    def capacity(self, kind: NodeKind, running: int) -> int:
        slots = self.parallel - running
        need = self._gpus(kind)
        return max(0, min(slots, len(self.free_gpus) // need if need else slots))

    def submit(self, kind: NodeKind, nodes: Sequence[Node], tasks: Sequence[Any], after_ok: Sequence[str],
               after_any: Sequence[str]) -> list[Any]:
        jobs = []
        for task in tasks:
            executor = self.submitit.LocalExecutor(self.folder, max_num_timeout=self.options.max_num_timeout)
            params = local_parameters(job_parameters(self.options, kind))
            gpus = [self.free_gpus.pop(0) for _ in range(int(params.get("gpus_per_node", 0)))]
            executor.update_parameters(**params, visible_gpus=tuple(gpus))
            job = executor.submit(task)
            self.held[job.job_id] = gpus
            self.kinds[job.job_id] = kind
            jobs.append(job)
        return jobs

    def release(self, job: Any) -> None:
        self.free_gpus += self.held.pop(job.job_id, [])

    def stop(self, jobs: Sequence[Any], grace_s: float = 120.0) -> None:
        """SIGTERM to every job (a training saves its checkpoint and exits; an evaluation ignores
        it, as on Slurm), up to ``grace_s`` for the trainings to end, then Ctrl-C to what is left
        (submitit's controller passes both to the job's tasks)."""
        for job in jobs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(job.job_id), signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(self.kinds.get(j.job_id) is NodeKind.TRAIN and not j.done()
                                                  for j in jobs):
            time.sleep(0.5)
        for job in jobs:
            if not job.done():
                job.cancel(check=False)


def make_backend(cluster: str, folder: Path, options: LaunchOptions) -> Backend:
    if cluster == "slurm":
        return SlurmBackend(folder, options)
    if cluster == "local":
        return LocalBackend(folder, options)
    raise UsageError(f"--launcher-cluster {cluster!r}: choose auto, slurm or local")
