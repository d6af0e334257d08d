"""The model registry: small typed factories, each described by a :class:`ModelSpec`.

A model is registered by decorating its factory::

    @register_model(ModelSpec(name="edsr-baseline", family="edsr", ...))
    def edsr_baseline(scale: int = 2, *, blocks: int = 16, ...) -> EDSR:
        return EDSR(scale=scale, blocks=blocks, ...)

and built with ``create("edsr-baseline", scale=2, batch_norm=True)``. Registration happens when
the module defining the factory is imported; ``sr_bench.models`` imports every model module
explicitly (no folder scans), and registering does no work beyond storing the function.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from torch import nn

__all__ = [
    "ModelSpec", "register_model", "create", "names", "get_spec", "get_factory", "parse_option", "UnknownModelError",
]

Loss = Literal["l1", "l2"]
F = TypeVar("F", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelSpec:
    """What a registered architecture is, as the paper's Table 1 describes it.

    Attributes:
        name: registry name, e.g. ``"edsr-baseline"``.
        family: architecture family (``"edsr"``, ``"mdsr"``, ``"srresnet"``, ``"vdsr"``, ``"bicubic"``).
        blocks: residual blocks (or conv layers for VDSR); None where it does not apply.
        filters: feature maps; None where it does not apply.
        res_scale: residual scaling factor; None when the model does not scale residuals.
        batch_norm: whether the residual blocks use batch normalisation.
        loss: the training loss of the paper's model (read by training).
        scales: the upscaling factors the architecture is built for.
        multi_scale: one network serves every scale in ``scales`` (``forward`` needs ``scale``).
        receptive_field: radius in LR pixels that one output pixel depends on, for the default
            configuration (the built model's ``receptive_field`` attribute follows its options);
            tiled inference overlaps tiles by at least this much.
        in_channels: input (and output) channels.
        paper_params: the parameter count as the paper prints it ("1.5M"), or None.
        description: one paragraph: where the design comes from and any choices made.
    """

    name: str
    family: str
    blocks: int | None
    filters: int | None
    res_scale: float | None
    batch_norm: bool
    loss: Loss
    scales: tuple[int, ...]
    multi_scale: bool
    receptive_field: int
    in_channels: int = 3
    paper_params: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"ModelSpec {self.name!r}: loss must be 'l1' or 'l2', got {self.loss!r}")
        if not self.scales or any(int(s) != s or s < 2 for s in self.scales):
            raise ValueError(f"ModelSpec {self.name!r}: scales must be integers >= 2, got {self.scales!r}")


@dataclass(frozen=True)
class _Entry:
    spec: ModelSpec
    factory: Callable[..., nn.Module]


_REGISTRY: dict[str, _Entry] = {}


class UnknownModelError(KeyError):
    """A model name that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register_model(spec: ModelSpec) -> Callable[[F], F]:
    """Register ``factory`` under ``spec.name``. Registering a name twice is an error."""

    def decorator(factory: F) -> F:
        if spec.name in _REGISTRY:
            other = _REGISTRY[spec.name].factory
            raise ValueError(
                f"model {spec.name!r} is already registered by {other.__module__}.{other.__qualname__}"
            )
        params = inspect.signature(factory).parameters
        if "scale" not in params:
            raise TypeError(f"factory for {spec.name!r} must take a 'scale' argument")
        _REGISTRY[spec.name] = _Entry(spec, factory)
        return factory

    return decorator


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint} (registered: {', '.join(sorted(_REGISTRY))})"
        ) from None


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a registered model."""
    return _entry(name).spec


def get_factory(name: str) -> Callable[..., nn.Module]:
    """The factory function registered under ``name``."""
    return _entry(name).factory


def names(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell-style filter such as ``"edsr*"``."""
    out = sorted(_REGISTRY)
    return out if pattern is None else [n for n in out if fnmatch.fnmatchcase(n, pattern)]


def options(name: str) -> dict[str, object]:
    """The keyword options a factory accepts, with their defaults."""
    params = inspect.signature(get_factory(name)).parameters
    return {k: p.default for k, p in params.items() if k != "scale" and p.kind is p.KEYWORD_ONLY}


def parse_option(text: str) -> tuple[str, object]:
    """A ``create()`` option (or config field) from command-line text ``KEY=VALUE``; VALUE is read
    as JSON where it can be (8, 0.1, true), else kept as a string. Usable as argparse ``type=``."""
    import argparse
    import json

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. batch_norm=true; got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def create(name: str, scale: int | None = None, **options: object) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name (see :func:`names`).
        scale: the upscaling factor. Required for single-scale models; for multi-scale models it
            may be given to check that the model supports it (the model is built for all of its
            scales, and ``forward`` takes the scale).
        **options: ablation knobs of the factory (``blocks``, ``filters``, ``res_scale``,
            ``batch_norm``, ...); unknown options are errors.
    """
    entry = _entry(name)
    spec = entry.spec
    # Single-scale factories validate ``scale`` themselves (the upsampler supports any power of
    # two and 3, so an x8 EDSR can be built although the paper has none).
    if scale is None and not spec.multi_scale:
        raise ValueError(
            f"{name} is a single-scale model: pass scale= one of {spec.scales}, e.g. create({name!r}, scale=2)"
        )
    if spec.multi_scale and scale is not None and scale not in spec.scales:
        raise ValueError(f"{name} serves scales {spec.scales}; x{scale} is not one of them")
    sig = inspect.signature(entry.factory)
    accepted = [k for k, p in sig.parameters.items() if k != "scale"]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise TypeError(
            f"{name}: unknown option(s) {', '.join(map(repr, unknown))}; it accepts {', '.join(accepted) or 'none'}"
        )
    return entry.factory(scale=scale, **options)
