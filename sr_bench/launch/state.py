"""What a launch finds on disk: finished training runs, complete evaluations, job results, and
the jobs an earlier launch left queued or running.

Everything here only reads the run folders and the records (the trainer and the evaluation own
those files), except :func:`write_result` and :class:`Ledger`, which own ``RESULTS/jobs/PROFILE/``:

- ``NODE.log``: the job's log (every attempt appends to it);
- ``NODE.json``: the job's result (times), written atomically when it finishes;
- ``submitted.json``: the job id each node was last submitted as (so that a second launch neither
  resubmits a queued job nor starts a second writer on a running one);
- ``submitit/``: submitit's own files (pickled jobs, stdout/stderr per job id).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sr_bench.cli import UsageError
from sr_bench.evaluate import load_candidates
from sr_bench.images import atomic_write
from sr_bench.launch.graph import Node, NodeKind
from sr_bench.reproduce import Job, ReproduceConfig, missing_modes, run_dir, run_scale, train_changes
from sr_bench.train import resolve_config
from sr_bench.train.checkpoint import load_checkpoint
from sr_bench.train.config import EXECUTION_FIELDS, TrainConfig, config_diff
from sr_bench.train.loop import reuse_config
from sr_bench.train.run_dir import CHECKPOINT, CONFIG, FINAL_WEIGHTS

log = logging.getLogger("sr_bench.launch")

__all__ = ["FinishedRun", "finished_run", "warm_start_weights", "missing_evaluation", "write_result", "read_result",
           "Ledger", "jobs_dir"]


def jobs_dir(config: ReproduceConfig) -> Path:
    """Where one profile's job logs and results go: ``RESULTS/jobs/PROFILE``."""
    return Path(config.results) / "jobs" / config.profile


@dataclass(frozen=True)
class FinishedRun:
    """A training run that reached its last update and exported its weights."""

    out: Path
    weights: Path
    iterations: int
    options: dict[str, Any]
    multi_scale: bool

    @property
    def updates_key(self) -> str:
        """How the times file names the run: ``x2``, or ``x2/3/4`` for a multi-scale run."""
        return "x2/3/4" if self.multi_scale else self.out.name.rsplit("-", 1)[-1]

    def train_seconds(self) -> float:
        """Training seconds over every call of the run (from its checkpoint)."""

        return float(load_checkpoint(self.out / CHECKPOINT).get("train_seconds", 0.0))


def warm_start_weights(config: ReproduceConfig, job: Job, scale: int) -> str | None:
    """The weights an x3/x4 run starts from: the x2 run's ``final.safetensors``, spelled as the
    trainer spells it (resolved), so that a run made in-process and one made by a job compare equal."""
    if not job.warm_start_from or scale == job.warm_start_from:
        return None

    return str(run_dir(config, job.model, job.warm_start_from).expanduser().resolve() / FINAL_WEIGHTS)


def _recipe_conflict(out: Path, saved: Any, wanted: Any) -> UsageError | None:
    diff = config_diff(saved, wanted, ignore=EXECUTION_FIELDS)
    if not diff:
        return None
    fields = "; ".join(f"{k}: run {a!r}, now {b!r}" for k, (a, b) in diff.items())
    return UsageError(f"{out} holds a run of another recipe ({fields}); choose another --runs folder, or delete "
                      f"that run to train it again")


def finished_run(config: ReproduceConfig, job: Job, scale: int) -> FinishedRun | None:
    """``job``'s run at ``scale`` if it has finished, else None. Reads ``config.json`` and the
    weights' metadata only (no checkpoint). Raises :class:`~sr_bench.cli.UsageError` when the
    folder holds a run of another recipe, or more updates than asked for: the job would fail."""
    from safetensors import safe_open


    out = run_dir(config, job.model, scale).expanduser().resolve()
    if not (out / CONFIG).is_file():
        return None
    changes = train_changes(config, warm_start_weights(config, job, scale))
    # the device is an execution setting: "cpu" keeps a login node without a GPU from failing here
    wanted = resolve_config(reuse_config(config.profile, job.model, run_scale(job.model, scale), out,
                                         data_root=config.data_root, device="cpu", **changes))
    saved = TrainConfig.load(out / CONFIG)
    conflict = _recipe_conflict(out, saved, wanted)
    if conflict is not None:
        raise conflict
    if not (out / FINAL_WEIGHTS).is_file():
        return None
    with safe_open(str(out / FINAL_WEIGHTS), framework="pt") as f:
        iterations = int((f.metadata() or {}).get("iterations", -1))
    if iterations > wanted.optim.iterations:
        raise UsageError(f"{out} holds {iterations} updates, more than the {wanted.optim.iterations} asked for; "
                         f"pass --set optim.iterations={iterations} or another --runs folder")
    if iterations != wanted.optim.iterations:
        return None
    return FinishedRun(out, out / FINAL_WEIGHTS, iterations, dict(saved.model.options), len(saved.model.scales) > 1)


def missing_evaluation(config: ReproduceConfig, job: Job, scale: int, done: list) -> bool:
    """Whether ``job`` at ``scale`` lacks a record (its weights must exist: a finished run, or
    none for a parameter-free model; published weights are looked up as the job would)."""

    weights: str | None = None
    options: dict[str, Any] = {}
    if job.weights == "train":
        run = finished_run(config, job, scale)
        if run is None:
            return True
        weights, options = str(run.weights), run.options
    elif job.weights == "official":
        weights = "official"
    try:
        cand = load_candidates(job.model, [scale], weights, "cpu", options=options)[0]
    except Exception:  # noqa: BLE001 - e.g. published weights not found here: the job says why, in its log
        return True
    return any(missing_modes(job, cand, protocol, dataset, done)
               for protocol in job.protocols for dataset in job.datasets)


# ---- job results ---------------------------------------------------------------------------------


def write_result(folder: Path, node: Node, launch_id: str, result: dict[str, Any]) -> Path:
    """``NODE.json``: what the job measured, with the launch that ran it."""
    body = {"node": node.name, "kind": node.kind.value, "launch": launch_id,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **result}
    text = json.dumps(body, indent=1) + "\n"
    return atomic_write(folder / f"{node.name}.json", lambda tmp: Path(tmp).write_text(text))


def read_result(folder: Path, name: str) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---- the jobs submitted --------------------------------------------------------------------------


#: Slurm states of a job that may still run (squeue/sacct spelling)
SLURM_ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED",
                "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT")


def _local_alive(pid: int) -> bool:
    """Whether a local job's controller process (submitit's ``submitit.local._local``) still runs."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    return not cmdline.exists() or b"submitit.local" in cmdline.read_bytes()


class Ledger:
    """``submitted.json``: node -> the job it was last submitted as (the driver is its one writer)."""

    def __init__(self, folder: Path):
        self.path = folder / "submitted.json"
        try:
            self.entries: dict[str, dict[str, Any]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def record(self, name: str, job_id: str, cluster: str, launch_id: str) -> None:
        self.entries[name] = {"job_id": job_id, "cluster": cluster, "launch": launch_id,
                              "submitted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        text = json.dumps(self.entries, indent=1) + "\n"
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))

    def active(self, name: str, submitit_folder: Path) -> str | None:
        """The job id ``name`` runs (or waits) as now, if an earlier launch submitted it."""
        entry = self.entries.get(name)
        if entry is None:
            return None
        job_id = str(entry["job_id"])
        if entry["cluster"] == "local":
            return job_id if job_id.isdigit() and _local_alive(int(job_id)) else None
        from submitit import SlurmJob

        try:
            state = SlurmJob(submitit_folder, job_id).get_info(mode="force").get("State", "UNKNOWN")
        except (OSError, subprocess.SubprocessError) as e:  # no sacct here: say so, and submit again
            log.warning("cannot ask Slurm about job %s of %s (%s); submitting it again", job_id, name, e)
            return None
        return job_id if state.split()[0] in SLURM_ACTIVE else None


def survey_node(config: ReproduceConfig, job: Job | None, node: Node, done: list) -> bool:
    """Whether ``node``'s work is already on disk (the tables are always made again)."""
    if node.kind is NodeKind.TRAIN:
        assert job is not None and node.model is not None
        return finished_run(config, job, node.scale or run_scale(node.model, job.scales[0])) is not None
    if node.kind is NodeKind.EVALUATE:
        assert job is not None and node.scale is not None
        return not missing_evaluation(config, job, node.scale, done)
    return False
