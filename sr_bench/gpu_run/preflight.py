"""The packages the GPU run needs, checked by name before any of them is imported: the GPU
machine has no network, so a missing one must be named at once, with the way to carry it.

Starting ``python -m sr_bench.gpu_run`` at all needs what ``import sr_bench`` imports (torch,
numpy, pillow, tqdm); Python names the first of those that is missing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping

__all__ = ["RUNTIME", "TESTS", "missing", "missing_message"]

#: import name -> distribution name: what the runner imports (sr_bench's runtime dependencies
#: but pooch, which only downloads)
RUNTIME: Mapping[str, str] = {
    "torch": "torch", "numpy": "numpy", "PIL": "pillow", "skimage": "scikit-image", "pandas": "pandas",
    "tabulate": "tabulate", "tqdm": "tqdm", "safetensors": "safetensors", "matplotlib": "matplotlib",
}
#: what the step that runs the ``gpu``-marked tests needs besides (without it that step is skipped)
TESTS: Mapping[str, str] = {"pytest": "pytest", "pytest_benchmark": "pytest-benchmark", "scipy": "scipy",
                            "yaml": "pyyaml"}


def missing(packages: Mapping[str, str]) -> list[str]:
    """The distributions of ``packages`` (import name -> distribution) that cannot be imported here."""
    return [dist for name, dist in packages.items() if importlib.util.find_spec(name) is None]


def missing_message(names: list[str]) -> str:
    """What to tell the user: which distributions, and how to carry them to a machine without a
    network (a wheelhouse made here, installed there without an index; docs/gpu.md#wheels)."""
    return (f"this Python lacks {', '.join(names)}; the GPU machine has no network: on a machine that has one run "
            f"`python3 -m pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 "
            f"-d .gpu_carry/wheels {' '.join(names)}`, then `python -m sr_bench.gpu_run --prepare` prints the run "
            f"command that installs them first (docs/gpu.md#wheels)")
