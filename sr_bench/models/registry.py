"""The model registry: small typed factories, each described by a :class:`ModelSpec`.

A model is registered by decorating its factory::

    @register_model(ModelSpec(name="edsr-baseline", family="edsr", loss="l1", ...))
    def edsr_baseline(scale: int = 2, *, blocks: int = 16, ...) -> EDSR:
        return EDSR(scale=scale, blocks=blocks, ...)

and built with ``create("edsr-baseline", scale=2, batch_norm=True)``. The architecture fields of
the spec (``blocks``, ``filters``, ``res_scale``, ``batch_norm``, ``in_channels``) are read from the
factory's keyword defaults when the decorator runs, so a default is written once (a spec that
states one that disagrees is refused). Registration happens when the module defining the factory
is imported; ``sr_bench.models`` imports every model module explicitly (no folder scans), and
registering does no work beyond storing the function.

Names outside the registry resolve through *model sources* (:class:`ModelSource`) added with
:func:`add_model_source`: :mod:`sr_bench.models.external` adds one for an import path
``"my_pkg.my_module:factory"`` and the names of the ``sr_bench.models`` entry-point group. This
module imports no source; a source imports this module.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from torch import nn

from sr_bench.lookup import Registry, UnknownNameError
from sr_bench.models.common import UnsupportedScaleError

__all__ = [
    "ModelSpec", "register_model", "create", "names", "get_spec", "get_factory", "parse_option", "options",
    "UnknownModelError", "UnknownOptionError", "ARCH_ARGUMENTS", "ModelSource", "add_model_source",
]

Loss = Literal["l1", "l2"]
F = TypeVar("F", bound=Callable[..., nn.Module])

# Spec field -> the factory keyword(s) whose default it is (VDSR counts conv ``layers``).
ARCH_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "blocks": ("blocks", "layers"),
    "filters": ("filters",),
    "res_scale": ("res_scale",),
    "batch_norm": ("batch_norm",),
    "in_channels": ("in_channels",),
}
# What a field is when the factory has no such argument (EDSR-family networks are RGB only).
_ABSENT: dict[str, object] = {"blocks": None, "filters": None, "res_scale": None, "batch_norm": False, "in_channels": 3}


@dataclass(frozen=True)
class ModelSpec:
    """What a registered architecture is, as the paper's Table 1 describes it.

    Attributes:
        name: registry name, e.g. ``"edsr-baseline"``.
        family: architecture family (``"edsr"``, ``"mdsr"``, ``"srresnet"``, ``"vdsr"``, ``"bicubic"``,
            ``"external"``).
        loss: the training loss of the paper's model (read by training).
        scales: the upscaling factors the architecture is built for.
        multi_scale: one network serves every scale in ``scales`` (``forward`` needs ``scale``).
        receptive_field: radius in LR pixels that one output pixel depends on, for the default
            configuration (the built model's ``receptive_field`` attribute follows its options);
            tiled inference overlaps tiles by at least this much.
        params: parameter counts of the default configuration: one per entry of ``scales`` for
            single-scale models, one number for multi-scale ones (see :meth:`num_params`).
        blocks: residual blocks (or conv layers for VDSR); None where it does not apply.
        filters: feature maps; None where it does not apply.
        res_scale: residual scaling factor (1.0: none); None where there are no residual blocks.
        batch_norm: whether the residual blocks use batch normalisation.
        in_channels: input (and output) channels.
        paper_params: the parameter count as the paper prints it ("1.5M"), or None.
        description: one paragraph: where the design comes from and any choices made.

    ``blocks`` .. ``in_channels`` are filled in from the factory's defaults by
    :func:`register_model`; leave them out (a stated value must agree with the factory).
    """

    name: str
    family: str
    loss: Loss
    scales: tuple[int, ...]
    multi_scale: bool
    receptive_field: int
    params: tuple[int, ...] = ()
    blocks: int | None = None
    filters: int | None = None
    res_scale: float | None = None
    batch_norm: bool | None = None
    in_channels: int | None = None
    paper_params: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"ModelSpec {self.name!r}: loss must be 'l1' or 'l2', got {self.loss!r}")
        if not self.scales or any(int(s) != s or s < 2 for s in self.scales):
            raise ValueError(f"ModelSpec {self.name!r}: scales must be integers >= 2, got {self.scales!r}")
        want = 1 if self.multi_scale else len(self.scales)
        if self.params and len(self.params) != want:
            what = "one for the multi-scale network" if self.multi_scale else f"one per scale in {self.scales}"
            raise ValueError(f"ModelSpec {self.name!r}: params must hold {want} count(s) ({what}), got {self.params!r}")

    def num_params(self, scale: int | None = None) -> int | None:
        """Parameter count of the default configuration at ``scale`` (None: not recorded)."""
        if not self.params:
            return None
        if self.multi_scale:
            return self.params[0]
        if scale not in self.scales:
            raise ValueError(f"{self.name}: no parameter count for x{scale}; scales {self.scales}")
        return self.params[self.scales.index(scale)]


@dataclass(frozen=True)
class _Entry:
    spec: ModelSpec
    factory: Callable[..., nn.Module]


class UnknownModelError(UnknownNameError):
    """A model name that is not registered; the message lists close matches."""

    exit_code = 2  # a usage error for sr_bench.cli.command


class UnknownOptionError(TypeError):
    """An option (``--option KEY=VALUE``) the model's factory does not accept; still a TypeError."""

    exit_code = 2  # a usage error for sr_bench.cli.command


_MODELS: Registry[_Entry] = Registry(
    "model", hint="or pass an import path 'package.module:factory' for your own network"
)


def factory_defaults(factory: Callable[..., nn.Module]) -> dict[str, object]:
    """The spec architecture fields as ``factory``'s keyword defaults say (absent arguments get
    the family-neutral value: no blocks, no BN, 3 channels)."""
    params = inspect.signature(factory).parameters
    out: dict[str, object] = {}
    for field_name, args in ARCH_ARGUMENTS.items():
        found = [params[a].default for a in args if a in params and params[a].default is not inspect.Parameter.empty]
        out[field_name] = found[0] if found else _ABSENT[field_name]
    return out


def _derive(spec: ModelSpec, factory: Callable[..., nn.Module]) -> ModelSpec:
    defaults = factory_defaults(factory)
    for field_name, value in defaults.items():
        stated = getattr(spec, field_name)
        if stated is not None and stated != value:
            raise ValueError(
                f"ModelSpec {spec.name!r} says {field_name}={stated!r} but its factory "
                f"{factory.__module__}.{factory.__qualname__} defaults to {value!r}: write the default once, "
                f"in the factory, and leave {field_name} out of the spec"
            )
    return dataclasses.replace(spec, **defaults)  # type: ignore[arg-type]


def register_model(spec: ModelSpec) -> Callable[[F], F]:
    """Register ``factory`` under ``spec.name``. Registering a name twice is an error."""

    def decorator(factory: F) -> F:
        if spec.name in _MODELS:
            other = _MODELS.get(spec.name).factory
            raise ValueError(
                f"model {spec.name!r} is already registered by {other.__module__}.{other.__qualname__}"
            )
        params = inspect.signature(factory).parameters
        if "scale" not in params:
            raise TypeError(f"factory for {spec.name!r} must take a 'scale' argument")
        _MODELS.add(spec.name, _Entry(_derive(spec, factory), factory))
        return factory

    return decorator


def _unregister(name: str) -> None:
    """Remove ``name`` (tests register throw-away models)."""
    _MODELS.remove(name)


class ModelSource(Protocol):
    """Where names that are not registered may come from (see :func:`add_model_source`)."""

    def resolve(self, name: str) -> tuple[ModelSpec, Callable[..., nn.Module]] | None:
        """(spec, factory) for ``name``, or None when this source does not know it."""
        ...

    def listed_names(self) -> list[str]:
        """Names this source offers, shown when a name is unknown (may be empty)."""
        ...


_SOURCES: list[ModelSource] = []


def add_model_source(source: ModelSource) -> ModelSource:
    """Ask ``source`` for names the registry does not hold, after the sources added before it."""
    if source not in _SOURCES:
        _SOURCES.append(source)
    return source


def _entry(name: str) -> _Entry:
    if name in _MODELS:
        return _MODELS[name]
    for source in _SOURCES:
        found = source.resolve(name)
        if found is not None:
            return _Entry(*found)
        if name in _MODELS:  # loading a plugin's module may register the name itself
            return _MODELS[name]
    message = _MODELS.unknown_message(name)
    plugins = [n for source in _SOURCES for n in source.listed_names()]
    if plugins:
        message += f"; installed plugins: {', '.join(plugins)}"
    raise UnknownModelError(message)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a registered (or importable, see module docs) model."""
    return _entry(name).spec


def get_factory(name: str) -> Callable[..., nn.Module]:
    """The factory function registered under ``name``."""
    return _entry(name).factory


def names(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell-style filter such as ``"edsr*"``.
    Names of model sources are not listed (entry-point plugins: see
    :func:`sr_bench.models.external.entry_point_names`)."""
    return _MODELS.names(pattern)


def options(name: str) -> dict[str, object]:
    """The keyword options a factory accepts, with their defaults."""
    params = inspect.signature(get_factory(name)).parameters
    return {k: p.default for k, p in params.items() if k != "scale" and p.kind is p.KEYWORD_ONLY}


def parse_option(text: str) -> tuple[str, object]:
    """A ``create()`` option (or config field) from command-line text ``KEY=VALUE``; VALUE is read
    as JSON where it can be (8, 0.1, true), else kept as a string. Usable as argparse ``type=``."""
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
        name: registry name (see :func:`names`), an import path ``"pkg.module:factory"`` or an
            entry-point name of the ``sr_bench.models`` group.
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
    params = inspect.signature(entry.factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):  # else the factory checks them
        accepted = [k for k in params if k != "scale"]
        unknown = [k for k in options if k not in accepted]
        if unknown:
            raise UnknownOptionError(
                f"{name}: unknown option(s) {', '.join(map(repr, unknown))}; it accepts {', '.join(accepted) or 'none'}"
            )
    try:
        return entry.factory(scale=scale, **options)
    except UnsupportedScaleError as e:
        raise UnsupportedScaleError(f"{name}: {e}") from None
