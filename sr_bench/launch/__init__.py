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

from sr_bench.launch.executors import LaunchOptions
from sr_bench.launch.graph import Graph, Node, NodeKind, job_graph

__all__ = ["Graph", "LaunchOptions", "Node", "NodeKind", "job_graph"]
