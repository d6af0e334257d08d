"""Small networks the weights tests build: a seeded 2-block, 8-filter EDSR-baseline, and any
registered model on the meta device (its keys and shapes, no memory)."""

from __future__ import annotations

import torch

from sr_bench import models


def tiny(scale=2, seed=0, blocks=2, filters=8, **kw):
    torch.manual_seed(seed)
    return models.create("edsr-baseline", scale=scale, blocks=blocks, filters=filters, **kw)


def meta(name, scale=None, **kw):
    with torch.device("meta"):
        return models.create(name, scale=scale, **kw)
