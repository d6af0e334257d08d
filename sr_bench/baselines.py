"""The paper's published numbers, read from the data files in ``baselines/`` (with sources).

The files live once, in the repository's top-level ``baselines/`` folder; the wheel ships that
folder as the package ``sr_bench._baselines`` (``pyproject.toml`` maps it), so ``pip install .``
carries the numbers. Where they come from: ``docs/paper-tables.md``.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.abc.Traversable is deprecated from Python 3.12
    from importlib.resources.abc import Traversable

__all__ = ["PaperValue", "baselines_dir", "table3_values", "table3_value", "read_csv", "read_text"]

#: the file every complete copy has; used to tell a real folder from a wrong path.
_MARKER = "table3.csv"


def _packaged() -> Traversable | None:
    """The copy inside the installed package; None where the package is absent (an editable
    install made before the folder was mapped: the checkout's ``baselines/`` is used then)."""
    try:
        folder = resources.files("sr_bench._baselines")
    except ModuleNotFoundError:
        return None
    return folder if folder.joinpath(_MARKER).is_file() else None


def _source() -> Traversable:
    env = os.environ.get("SR_BENCH_BASELINES")
    if env:
        path = Path(env)
        if not (path / _MARKER).is_file():
            raise FileNotFoundError(
                f"SR_BENCH_BASELINES={env}: no {_MARKER} there. Point it at a folder holding the published-numbers "
                f"files (a clone's baselines/), or unset it to use the copy shipped with sr_bench."
            )
        return path
    packaged = _packaged()
    if packaged is not None:
        return packaged
    checkout = Path(__file__).resolve().parents[1] / "baselines"
    if (checkout / _MARKER).is_file():
        return checkout
    raise FileNotFoundError(
        f"the published-numbers files (sr_bench._baselines/{_MARKER}) are missing from this installation and "
        f"{checkout} has none either. Reinstall sr_bench (`pip install .` or `pip install -e .` from a clone), "
        f"or set SR_BENCH_BASELINES to a clone's baselines/ folder."
    )


def baselines_dir() -> Path:
    """The folder read: ``$SR_BENCH_BASELINES``, else the copy installed with sr_bench, else the
    ``baselines/`` folder of the checkout sr_bench runs from."""
    return Path(str(_source()))


def read_text(name: str) -> str:
    """One file of the folder, e.g. ``read_text("table1.csv")``."""
    entry = _source().joinpath(name)
    if not entry.is_file():
        raise FileNotFoundError(f"{baselines_dir() / name}: no such published-numbers file")
    return entry.read_text(encoding="utf-8")


def read_csv(name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read_text(name), newline="")))


@dataclass(frozen=True)
class PaperValue:
    method: str  # the paper's column name, e.g. "EDSR+"
    psnr: float
    ssim: float
    confidence: str
    source: str


@lru_cache(maxsize=4)
def _table3(folder: str) -> dict[tuple[str, bool, str, int], PaperValue]:
    # keyed by folder so that a changed SR_BENCH_BASELINES is read afresh
    values = {}
    for row in read_csv("table3.csv"):
        if not row["model"]:
            continue
        key = (row["model"], row["self_ensemble"] == "true", row["dataset"], int(row["scale"]))
        values[key] = PaperValue(
            row["method"], float(row["psnr"]), float(row["ssim"]), row["confidence"], row["source"]
        )
    return values


def table3_values() -> dict[tuple[str, bool, str, int], PaperValue]:
    """Table 3 cells keyed by (registry model, self-ensemble, dataset, scale)."""
    return _table3(str(baselines_dir()))


def table3_value(model: str, self_ensemble: bool, dataset: str, scale: int) -> PaperValue | None:
    return table3_values().get((model, self_ensemble, dataset, scale))
