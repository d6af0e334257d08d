"""torch.hub entry points: every registered sr_bench model, built and loaded in one call.

    import torch
    net = torch.hub.load("path/to/sr_bench", "edsr_baseline", source="local", scale=2,
                         weights="results/weights/quick-edsr-baseline-x2.safetensors")

``python -m sr_bench.models`` lists the entry points (its ``torch.hub`` column): ``torch.hub.list``
and ``torch.hub.help`` take no ``source=`` and read GitHub repositories only, not a local clone.

Hub names cannot contain '-': the model ``edsr-baseline`` is the entry point ``edsr_baseline``
(and ``mdsr-baseline`` is ``mdsr_baseline``). Each entry point takes

* ``scale``: the upscaling factor (required for single-scale models; multi-scale models serve
  every scale when it is left out);
* ``weights``: None (random initialisation), a file (``.pt`` / ``.pth`` / ``.safetensors``, in any
  layout :func:`sr_bench.weights.load_weights` reads; a relative path is looked up in the
  current folder, then in this clone, so the committed ``results/weights/`` files load from
  anywhere), a registered weights name (``edsr-x2``, see ``python -m sr_bench.models``), or
  ``"official"`` for the published checkpoint of the model at that scale;
* ``**options``: the model's options (``blocks=``, ``filters=``, ``batch_norm=``, ...).

and returns the model in eval mode, its weights loaded strictly (every key, every shape).

This file lives at the top of a clone for torch.hub and is not part of the installed package;
torch.hub puts the clone first on ``sys.path`` while it loads, so the clone's ``sr_bench`` is the
one used unless another copy was imported earlier in the same process.
"""

from pathlib import Path as _Path

from torch import nn as _nn

from sr_bench import models as _models
from sr_bench.weights import load_weights as _load_weights
from sr_bench.weights import published_weights as _published_weights

dependencies = ["torch", "numpy", "PIL", "safetensors"]

_CLONE = _Path(__file__).resolve().parent


def _weights_source(weights: str, name: str, scale: int | None) -> str:
    """``"official"`` as the registered name of the published checkpoint; a relative path that
    is not in the current folder but is in the clone as the clone's file; anything else as given."""
    if weights == "official":
        return _published_weights(name, scale).name
    path = _Path(weights).expanduser()
    if not path.is_absolute() and not path.exists() and (_CLONE / path).is_file():
        return str(_CLONE / path)
    return weights


def _entry_point(name: str):
    spec = _models.get_spec(name)

    def entry(scale: int | None = None, weights: str | None = None, **options: object) -> _nn.Module:
        model = _models.create(name, scale=scale, **options)
        if weights is not None:
            _load_weights(model, _weights_source(str(weights), name, scale))
        return model.eval()

    entry.__name__ = entry.__qualname__ = name.replace("-", "_")
    scales = "/".join(f"x{s}" for s in spec.scales)
    kind = "one network for every scale" if spec.multi_scale else "one network per scale"
    entry.__doc__ = (
        f"{name} ({scales}, {kind}): {spec.description or spec.family}\n\n"
        f"torch.hub.load(clone, {entry.__name__!r}, source='local', scale=..., weights=None | PATH | NAME | "
        f"'official', **options) -> the model in eval mode, weights loaded strictly."
    )
    return entry


for _name in _models.names():
    globals()[_name.replace("-", "_")] = _entry_point(_name)
del _name
