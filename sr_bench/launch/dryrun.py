"""``reproduce --launcher submitit --launcher-dry-run``: the job graph, the submissions, each
job's estimated time and the sbatch scripts submitit would write, without submitting anything."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sr_bench.launch.executors import LaunchOptions, job_parameters, sbatch_text, slurm_parameters
from sr_bench.launch.graph import Node, NodeKind
from sr_bench.launch.tasks import Launch
from sr_bench.reproduce import PAPER_UPDATES, _duration

__all__ = ["node_seconds", "dry_run_text"]


def node_seconds(node: Node, estimates: dict[str, Any], paper: bool = False) -> float | None:
    """A job's estimated seconds, from :func:`sr_bench.reproduce.estimate` of its model (None for
    the tables): a training job, its run's updates at the timed speed; an evaluation job, its
    model's evaluation time shared evenly over its scales."""
    e = estimates.get(node.model or "")
    if e is None:
        return None
    if node.kind is NodeKind.TRAIN:
        run = next((r for r in e.runs if r.scale == node.scale), None)
        return None if run is None else float(run.train_s(PAPER_UPDATES if paper else None))
    return float(e.eval_s) / max(1, len(e.scales))


def _shape(options: LaunchOptions, kind: NodeKind) -> str:
    p = job_parameters(options, kind)
    return f"{p['nodes']} x {p['tasks_per_node']}, {p.get('gpus_per_node', 0)} GPU/node"


def _names(group: Sequence[Node]) -> str:
    return ", ".join(n.name for n in group)


def _worst(group: Sequence[Node], estimates: dict[str, Any], paper: bool) -> str:
    times = [t for t in (node_seconds(n, estimates, paper) for n in group) if t is not None]
    return _duration(max(times)) if times else "-"


def dry_run_text(launch: Launch, options: LaunchOptions, cluster: str, estimates: dict[str, Any],
                 queued: dict[str, str], device: str = "cpu") -> str:
    """The graph as a table of submissions, then each submission's sbatch script."""
    graph, profile = launch.graph, launch.config.profile
    groups = graph.groups(launch.todo)
    where = ("Slurm" if cluster == "slurm" else
             "no Slurm here (srun not found): jobs would run as local subprocesses; the sbatch scripts below are "
             "what a Slurm cluster would get")
    lines = [f"Job graph: profile {profile}, {len(graph)} jobs ({len(graph.names(NodeKind.TRAIN))} training run(s), "
             f"{len(graph.names(NodeKind.EVALUATE))} evaluation(s), the tables); {len(launch.todo)} to submit in "
             f"{len(groups)} submissions; {where}.", "",
             f"| # | submission | jobs | needs (afterok) | waits for (afterany) | nodes x tasks, GPUs | "
             f"estimate per job ({profile}, the longest of an array) | paper profile (3e5 updates) |",
             "|---|---|---|---|---|---|---|---|"]
    for i, group in enumerate(groups, 1):
        first = group[0]
        what = f"array of {len(group)}" if len(group) > 1 else "job"
        lines.append(f"| {i} | {first.kind.value} {what} | {_names(group)} | {', '.join(first.needs) or '-'} | "
                     f"{'all evaluations' if first.waits else '-'} | {_shape(options, first.kind)} | "
                     f"{_worst(group, estimates, False)} | {_worst(group, estimates, True)} |")
    budget = options.time_limit_min * 60 * (options.max_num_timeout + 1)
    over = [n for n in launch.todo if (node_seconds(graph[n], estimates) or 0) > budget]
    done = [n for n in graph.names() if n not in launch.todo and n not in queued]
    lines += ["", f"Done before (not submitted): {', '.join(done) or 'nothing'}.",
              f"Queued by an earlier launch (not submitted again): "
              f"{', '.join(f'{n} (job {j})' for n, j in queued.items()) or 'nothing'}.",
              f"Time limit {options.time_limit_min} min per job; a job that reaches it saves a checkpoint and is "
              f"requeued, at most {options.max_num_timeout} times (preemptions do not count). Estimates: "
              f"updates timed on this machine's device, {device} (see --dry-run); evaluation shared evenly over "
              f"scales.",
              (f"At these estimates {', '.join(over)} would not finish within {options.max_num_timeout + 1} time "
               f"limits: raise --time-limit or --launcher-option max_num_timeout=N." if over else
               "At these estimates every job finishes within its time limits."), "",
              "## sbatch scripts", "",
              "As submitit writes them (its own generator); <JOB:NAME> stands for the id Slurm gives job NAME."]
    folder = Path(launch.folder) / "submitit"
    for i, group in enumerate(groups, 1):
        first = group[0]
        name = f"sr_bench-{first.name}" if len(group) == 1 else f"sr_bench-{first.kind.value}"
        params = slurm_parameters(options, first.kind, name, [f"<JOB:{a}>" for a in first.needs],
                                  [f"<JOB:{a}>" for a in first.waits])
        lines += ["", f"### {i}. {_names(group)}", "", "```bash",
                  sbatch_text(params, folder, len(group)).rstrip(), "```"]
    return "\n".join(lines) + "\n"
