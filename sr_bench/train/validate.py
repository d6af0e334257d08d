"""Validation during training: PSNR / SSIM of the model being trained on a few images.

Scores come from the evaluation core (``sr_bench.evaluate.evaluate_model``) with the paper
protocol, so a training curve and a final table use the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sr_bench.data import DatasetNotFound, open_dataset
from sr_bench.evaluate import evaluate_model

__all__ = ["validate", "resolve_val_dataset"]


def resolve_val_dataset(name: str, train_dataset: str, root: str | None) -> str:
    """``auto``: DIV2K-val10 (the paper's 10 validation images) when training on DIV2K and it is
    present, else Set5 when present, else the embedded photos. Other names are returned as given."""
    if name != "auto":
        return name

    candidates = (["DIV2K-val10"] if train_dataset.startswith("DIV2K") else []) + ["Set5"]
    for candidate in candidates:
        try:
            open_dataset(candidate, root)
            return candidate
        except DatasetNotFound:
            continue
    return "embedded"


def validate(
    model: nn.Module,
    dataset: str,
    scales: Sequence[int],
    *,
    name: str,
    root: str | None = None,
    protocol: str = "paper",
    device: torch.device | str = "cpu",
    max_images: int | None = None,
) -> list[dict]:
    """One record per scale: ``{"dataset", "scale", "psnr", "ssim", "images", "protocol"}``,
    scored by ``sr_bench.evaluate.evaluate_model`` (``name`` is the model's registry name),
    PSNR/SSIM averaged over the first ``max_images`` images of ``dataset``.

    The model is put in eval mode for the duration and restored to its previous mode after.
    """
    ds = open_dataset(dataset, root)
    was_training = model.training
    model.eval()
    try:
        records = evaluate_model(
            model, ds, list(scales), protocol=protocol, device=str(device), max_images=max_images, progress=False,
            name=name,
        )
    finally:
        model.train(was_training)
    out = []
    for s in scales:
        rs = [r for r in records if int(r.scale) == int(s)]
        if not rs:
            continue
        out.append(
            {
                "dataset": ds.name,
                "scale": int(s),
                "psnr": float(sum(r.psnr for r in rs) / len(rs)),  # one record per (dataset, scale)
                "ssim": float(sum(r.ssim for r in rs) / len(rs)),
                "images": int(sum(getattr(r, "n_images", 1) for r in rs)),
                "protocol": protocol,
            }
        )
    return out

