"""Training (the paper's recipe and shorter profiles), resumable, single- or multi-process.

    >>> from sr_bench.train import make_config, train
    >>> cfg = make_config("quick", "edsr-baseline", 2, out="runs/quick-x2", **{"data.dataset": "T91"})
    >>> result = train(cfg)                      # doctest: +SKIP
    >>> result.final_psnr, result.weights        # doctest: +SKIP

Command line: ``python -m sr_bench.train --model edsr-baseline --scale 2 --profile quick --out DIR``
(``torchrun --nproc_per_node N -m sr_bench.train ...`` for DistributedDataParallel).

Modules, in the order a run uses them: :mod:`~sr_bench.train.config` (the recipe),
:mod:`~sr_bench.train.plan` (the recipe resolved once on this machine, for this process and
folder: what every later phase reads), :mod:`~sr_bench.train.distributed` (torchrun's
processes), :mod:`~sr_bench.train.run_dir` (which folder a run may write),
:mod:`~sr_bench.train.patches` (the data), :mod:`~sr_bench.train.trainer` (network, optimiser,
one update, ``amp auto``), :mod:`~sr_bench.train.checkpoint` (the saved state),
:mod:`~sr_bench.train.loop` (the phases of a run), :mod:`~sr_bench.train.validate` and
:mod:`~sr_bench.train.plot`.
"""

from sr_bench.train.config import (
    PROFILES,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RuntimeConfig,
    TrainConfig,
    ValConfig,
    make_config,
)
from sr_bench.train.loop import TrainingStopped, TrainResult, train, train_or_reuse
from sr_bench.train.plan import RunPlan, resolve_config
from sr_bench.train.trainer import Trainer

__all__ = [
    "PROFILES",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RuntimeConfig",
    "TrainConfig",
    "ValConfig",
    "TrainResult",
    "RunPlan",
    "Trainer",
    "TrainingStopped",
    "make_config",
    "resolve_config",
    "train",
    "train_or_reuse",
]
