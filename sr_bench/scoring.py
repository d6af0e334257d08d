"""Scoring one set of images: the part of a record that :mod:`sr_bench.evaluate` (networks) and
:mod:`sr_bench.sr_folder` (SR images something else wrote) compute alike.

Both score an image with ``Protocol.score_reference`` against ``Protocol.reference`` of its HR,
fingerprint the data as sha256 over ``stem \\t HR sha256 \\t LR sha256`` lines, and name the
dataset by :func:`dataset_identity`; so one set of images gives the same ``dataset``,
``data_sha256`` and per-image scores whichever command scored it. Both modules import this one;
neither imports the other for it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sr_bench.data import DATASETS, Dataset
from sr_bench.protocols import Protocol, Reference

__all__ = ["DataFingerprint", "dataset_identity", "score_image", "set_fields"]


def dataset_identity(dataset: Dataset) -> str:
    """What a record calls ``dataset``: the registered name, or for a folder of the user's the
    folder's resolved absolute path, so a user folder named ``Set5`` is never taken for Set5."""
    if dataset.name in DATASETS and DATASETS[dataset.name] == dataset.spec:
        return dataset.name
    where = Path(dataset.location)
    folder = where if where.name == dataset.name else where.parent  # <folder>/HR holds the images
    return str(folder.resolve())


@dataclass
class DataFingerprint:
    """The data one (dataset, scale) was scored on: sha256 over one ``stem \\t HR sha256 \\t LR
    sha256`` line per image, and where the LR images came from (``file``, ``generated``,
    ``y-first``)."""

    digest: Any = field(default_factory=hashlib.sha256)  # hashlib's sha256 object
    lr_sources: set[str] = field(default_factory=set)

    def add(self, stem: str, hr_sha: str, lr_sha: str, lr_origin: str) -> None:
        self.digest.update(f"{stem}\t{hr_sha}\t{lr_sha}\n".encode())
        self.lr_sources.add(lr_origin)

    @property
    def lr_source(self) -> str:
        """The one origin of every LR image, or ``"mixed"``."""
        return next(iter(self.lr_sources)) if len(self.lr_sources) == 1 else "mixed"


def score_image(protocol: Protocol, sr: torch.Tensor, reference: Reference, scale: int, stem: str) -> dict:
    """One per-image row of a record: ``{"image", "psnr", "ssim"}`` of a uint8 SR image."""
    score = protocol.score_reference(sr, reference, scale)
    return {"image": stem, "psnr": score.psnr, "ssim": score.ssim}


def set_fields(dataset: Dataset, rows: list[dict], fingerprint: DataFingerprint) -> dict[str, Any]:
    """The :class:`~sr_bench.records.Record` fields of one scored set: which data, the mean scores
    over ``rows`` (from :func:`score_image`), how many images of how many."""
    return {
        "dataset": dataset_identity(dataset),
        "psnr": float(np.mean([r["psnr"] for r in rows])),
        "ssim": float(np.mean([r["ssim"] for r in rows])),
        "n_images": len(rows),
        "per_image": rows,
        "data_sha256": fingerprint.digest.hexdigest(),
        "lr_source": fingerprint.lr_source,
        "n_expected": len(dataset),
    }
