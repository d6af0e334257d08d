"""``reproduce`` past one machine: every training run and evaluation of the plan as a job of a
Slurm cluster (or of submitit's local executor without one), through submitit.

``python -m sr_bench.reproduce --profile paper --launcher submitit [--partition gpu]
[--gpus-per-node 4] [--nodes 2] [--time-limit 24h] [--launcher-option KEY=VALUE]
[--launcher-dry-run]``; see docs/cluster.md.

Modules, in the order a launch uses them: :mod:`~sr_bench.launch.graph` (the job graph, a pure
function of the plan), :mod:`~sr_bench.launch.state` (what is already on disk, what is queued),
:mod:`~sr_bench.launch.executors` (submitit's Slurm and local executors, job parameters),
:mod:`~sr_bench.launch.tasks` (what runs inside a job), :mod:`~sr_bench.launch.driver`
(survey, submit, follow) and :mod:`~sr_bench.launch.dryrun`. Nothing here imports submitit
until a launch needs it: ``pip install 'sr_bench[cluster]'``.
"""

from typing import Any

from sr_bench import cli
from sr_bench.launch.driver import dry_run, launch
from sr_bench.launch.executors import LaunchOptions
from sr_bench.launch.graph import Graph, Node, NodeKind, job_graph
from sr_bench.reproduce import Launcher, register_launcher

__all__ = ["Graph", "LaunchOptions", "Node", "NodeKind", "job_graph", "launch_options"]


def launch_options(a: Any) -> LaunchOptions:
    """The ``--launcher submitit`` options of a parsed ``reproduce`` command line."""
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


register_launcher(Launcher("submitit", launch_options, dry_run, launch))
