"""The job graph of a ``reproduce`` plan: which jobs, what each waits for, which go in one array.

A pure function of the plan (:func:`sr_bench.reproduce.plan`): nothing here reads a file or
talks to a cluster, so the graph of the ``paper`` profile can be checked anywhere.

- ``train-MODEL-xS``: one training run. A multi-scale model (MDSR, VDSR) has one run for all of
  its scales, ``train-MODEL``. An x3/x4 run warm-started from x2 (EDSR, EDSR-baseline: the
  paper's recipe) **needs** the x2 run.
- ``evaluate-MODEL-xS``: one model at one scale on every dataset and protocol the plan names; it
  needs the training run that serves that scale.
- ``tables``: the times, Table 3 and Table 1. It **waits** for every evaluation, finished or
  not, so that the table says which cells are missing and why.

"needs" is Slurm's ``afterok`` (a failed run stops what needs it); "waits" is ``afterany``.
Nodes of one kind that need and wait for the same nodes run under the same job parameters and
are independent of each other: each such group is submitted as one job array.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sr_bench.models import get_spec

if TYPE_CHECKING:
    from sr_bench.reproduce import Job

__all__ = ["NodeKind", "Node", "Graph", "job_graph"]


class NodeKind(str, enum.Enum):
    TRAIN = "train"
    EVALUATE = "evaluate"
    TABLES = "tables"


@dataclass(frozen=True)
class Node:
    """One job of the graph."""

    kind: NodeKind
    model: str | None = None
    #: train: the run's scale (None: the one run of a multi-scale model); evaluate: the scale scored
    scale: int | None = None
    #: nodes that must have finished successfully first (Slurm ``afterok``)
    needs: tuple[str, ...] = ()
    #: nodes that must have ended, successfully or not (Slurm ``afterany``)
    waits: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """``train-edsr-x2``, ``train-mdsr``, ``evaluate-bicubic-x4``, ``tables``: also the name
        of the job's log file."""
        if self.kind is NodeKind.TABLES:
            return "tables"
        return f"{self.kind.value}-{self.model}" + ("" if self.scale is None else f"-x{self.scale}")

    @property
    def after(self) -> tuple[str, ...]:
        return self.needs + self.waits


@dataclass(frozen=True)
class Graph:
    """Nodes in an order where every node comes after those it needs or waits for."""

    nodes: tuple[Node, ...]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise ValueError(f"two jobs named {node.name}")
            missing = [a for a in node.after if a not in seen]
            if missing:
                raise ValueError(f"{node.name} comes before {', '.join(missing)}, which it waits for")
            seen.add(node.name)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def names(self, kind: NodeKind | None = None) -> list[str]:
        return [n.name for n in self.nodes if kind is None or n.kind is kind]

    def groups(self, names: Sequence[str] | None = None) -> list[tuple[Node, ...]]:
        """The job arrays: nodes (of ``names``, default all) of one kind with the same ``needs``
        and ``waits``, in graph order (a group's first member comes after everything the group
        waits for, so submitting groups in this order never names a job not yet submitted)."""
        chosen = set(self.names() if names is None else names)
        groups: dict[tuple, list[Node]] = {}
        for node in self.nodes:
            if node.name in chosen:
                groups.setdefault((node.kind, node.needs, node.waits), []).append(node)
        return [tuple(g) for g in groups.values()]

    def dependents(self, name: str) -> list[str]:
        """Every node that needs ``name``, directly or not (what a failed ``name`` stops)."""
        out: list[str] = []
        for node in self.nodes:
            if name in node.needs or any(n in node.needs for n in out):
                out.append(node.name)
        return out


def _multi_scale(model: str) -> bool:
    return get_spec(model).multi_scale


def job_graph(jobs: Sequence[Job]) -> Graph:
    """The graph of ``jobs`` (a :func:`~sr_bench.reproduce.plan`). A job with no scales or no
    datasets runs nothing, as in the in-process run."""
    nodes: list[Node] = []
    evaluations: list[str] = []
    for job in jobs:
        if not job.scales or not job.datasets:
            continue
        trains: dict[int, str] = {}
        if job.weights == "train":
            if _multi_scale(job.model):
                node = Node(NodeKind.TRAIN, job.model)
                nodes.append(node)
                trains = dict.fromkeys(job.scales, node.name)
            else:
                warm = job.warm_start_from
                runs = ((warm,) if warm is not None else ()) + tuple(s for s in job.scales if s != warm)
                for s in runs:  # the warm-start source first
                    needs = (trains[warm],) if warm is not None and s != warm else ()
                    node = Node(NodeKind.TRAIN, job.model, s, needs=needs)
                    nodes.append(node)
                    trains[s] = node.name
        for s in job.scales:
            node = Node(NodeKind.EVALUATE, job.model, s, needs=(trains[s],) if s in trains else ())
            nodes.append(node)
            evaluations.append(node.name)
    nodes.append(Node(NodeKind.TABLES, waits=tuple(evaluations)))
    return Graph(tuple(nodes))
