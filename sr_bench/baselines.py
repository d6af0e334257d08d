"""The paper's published numbers, read from the data files in ``baselines/`` (with sources)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["PaperValue", "baselines_dir", "table3_values", "table3_value", "read_csv"]


def baselines_dir() -> Path:
    """``$SR_BENCH_BASELINES``, else ``baselines/`` of the checkout sr_bench runs from."""
    env = os.environ.get("SR_BENCH_BASELINES")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "baselines"
    if not (path / "table3.csv").is_file():
        raise FileNotFoundError(
            f"{path}: the published-numbers folder (baselines/table3.csv) is not there. Run sr_bench from "
            f"a clone installed with `pip install -e .`, or set SR_BENCH_BASELINES to the clone's baselines/ folder."
        )
    return path


def read_csv(name: str) -> list[dict[str, str]]:
    with open(baselines_dir() / name, newline="") as f:
        return list(csv.DictReader(f))


@dataclass(frozen=True)
class PaperValue:
    method: str  # the paper's column name, e.g. "EDSR+"
    psnr: float
    ssim: float
    confidence: str
    source: str


@lru_cache(maxsize=4)
def _table3(folder: str) -> dict[tuple[str, bool, str, int], PaperValue]:
    values = {}
    for row in read_csv("table3.csv"):
        if not row["model"]:
            continue
        key = (row["model"], row["self_ensemble"] == "true", row["dataset"], int(row["scale"]))
        values[key] = PaperValue(row["method"], float(row["psnr"]), float(row["ssim"]), row["confidence"], row["source"])
    return values


def table3_values() -> dict[tuple[str, bool, str, int], PaperValue]:
    """Table 3 cells keyed by (registry model, self-ensemble, dataset, scale)."""
    return _table3(str(baselines_dir()))


def table3_value(model: str, self_ensemble: bool, dataset: str, scale: int) -> PaperValue | None:
    return table3_values().get((model, self_ensemble, dataset, scale))
