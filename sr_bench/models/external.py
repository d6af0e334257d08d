"""Your own network, without editing sr_bench.

Two kinds of names resolve through the model registry (:func:`sr_bench.models.get_spec` /
:func:`sr_bench.models.create`), so every command that takes ``--model`` takes them:

* an import path ``"my_pkg.my_module:factory"`` (the module must be importable: installed, on
  ``PYTHONPATH``, or in the current folder, as ``python -m`` finds it: the ``sr-bench-*`` console
  scripts do not put the current folder on ``sys.path``, so it is searched, after everything
  else, for import paths only);
* the name of an entry point in the ``sr_bench.models`` group of an installed package::

      # pyproject.toml of your package
      [project.entry-points."sr_bench.models"]
      my-net = "my_pkg.my_module:factory"

``factory`` is a function or an ``nn.Module`` class returning a network. It gets ``scale=`` when
its signature has a ``scale`` parameter, and every ``create()`` option (``--option KEY=VALUE``)
except the three read here:

* ``input_range``: the pixel range the network works in, 1 (default: 0..1 in and out) or 255
  (inputs are multiplied by 255 and outputs divided by it, so sr_bench still sees 0..1);
* ``scales``: the scales the network serves (default: the factory's ``scales`` default, else
  2, 3, 4), e.g. ``--option scales=[4]`` for an x4-only network;
* ``receptive_field``: its radius in LR pixels, which tiled inference (``--tile``) overlaps tiles
  by; without it (and without a ``receptive_field`` attribute) do not tile.

A network whose ``forward`` takes only ``x`` is adapted to sr_bench's ``forward(x, scale=None)``
(its class is swapped for a subclass with that forward, so its ``state_dict`` keys stay its own
and ``--weights FILE`` saved from it loads strictly). A factory may instead carry a
``sr_bench_spec`` attribute (a :class:`~sr_bench.models.registry.ModelSpec`) to describe itself,
or its module may ``@register_model`` it under the entry point's name.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sr_bench.models import registry
from sr_bench.models.registry import ModelSpec, UnknownModelError, add_model_source

__all__ = ["GROUP", "WRAPPER_OPTIONS", "ExternalModelError", "ExternalModels", "resolve", "entry_point_names", "adapt"]

GROUP = "sr_bench.models"
WRAPPER_OPTIONS = ("input_range", "scales", "receptive_field")
_DEFAULT_SCALES = (2, 3, 4)


class ExternalModelError(UnknownModelError):
    """An import path or entry point that cannot be loaded; the message says which and why."""

    exit_code = 2


def entry_point_names() -> list[str]:
    """Names of the installed ``sr_bench.models`` entry points, sorted."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=GROUP)})


def _in_current_folder(module_name: str) -> bool:
    """Whether the top package of ``module_name`` lies in the current folder, which is not on
    ``sys.path`` (a console script's); if so, the folder is appended to ``sys.path`` (after
    everything installed, so it shadows nothing) and stays there, for the module's own later
    imports of its neighbours."""
    top, cwd = module_name.split(".")[0], os.getcwd()
    if cwd in sys.path or "" in sys.path or not (Path(cwd, f"{top}.py").is_file() or Path(cwd, top).is_dir()):
        return False
    sys.path.append(cwd)
    importlib.invalidate_caches()
    return True


def _import_module(name: str, module_name: str) -> object:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name.split(".")[0] and _in_current_folder(module_name):
            return _import_module(name, module_name)
        raise ExternalModelError(
            f"--model {name!r}: cannot import module {module_name!r} ({type(e).__name__}: {e}); install its "
            f"package, add its folder to PYTHONPATH, or run from the folder that holds it"
        ) from e
    except ImportError as e:
        raise ExternalModelError(
            f"--model {name!r}: cannot import module {module_name!r} ({type(e).__name__}: {e}); "
            f"install its package or add its folder to PYTHONPATH"
        ) from e


def _import_path(name: str) -> object:
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ExternalModelError(f"--model {name!r}: an import path is 'package.module:factory'")
    obj: object = _import_module(name, module_name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ExternalModelError(f"--model {name!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _entry_point(name: str) -> object | None:
    found = [ep for ep in importlib.metadata.entry_points(group=GROUP) if ep.name == name]
    if not found:
        return None
    try:
        return found[0].load()
    except Exception as e:  # a broken plugin: say which, whatever it raised
        raise ExternalModelError(
            f"model {name!r}: the {GROUP} entry point {found[0].value!r} failed to load ({type(e).__name__}: {e})"
        ) from e


def _default_scales(factory: Callable[..., Any]) -> tuple[int, ...]:
    try:
        p = inspect.signature(factory).parameters.get("scales")
    except (TypeError, ValueError):
        return _DEFAULT_SCALES
    if p is not None and isinstance(p.default, (tuple, list)) and p.default:
        return tuple(int(s) for s in p.default)
    return _DEFAULT_SCALES


def resolve(name: str) -> tuple[ModelSpec, Callable[..., nn.Module]] | None:
    """(spec, factory) for an import path or an entry-point name; None when ``name`` is neither
    (or when loading the entry point registered ``name`` in the registry itself)."""
    target = _import_path(name) if ":" in name else _entry_point(name)
    if target is None or name in registry.names():
        return None
    if not callable(target):
        raise ExternalModelError(f"model {name!r}: {target!r} is not callable (expected a factory or nn.Module class)")
    spec = getattr(target, "sr_bench_spec", None)
    if isinstance(spec, ModelSpec):
        spec = ModelSpec(**{**spec.__dict__, "name": name})
    else:
        where = name if ":" in name else f"{GROUP} entry point {name}"
        spec = ModelSpec(
            name=name,
            family="external",
            loss="l1",
            scales=_default_scales(target),
            multi_scale=False,
            receptive_field=int(getattr(target, "receptive_field", 0) or 0),
            batch_norm=False,
            in_channels=3,
            description=f"your network from {where}, built per scale; options: {', '.join(WRAPPER_OPTIONS)}",
        )
    return spec, functools.partial(_build, target, spec)


def _accepts(fn: Callable[..., Any]) -> tuple[list[str], bool]:
    params = inspect.signature(fn).parameters
    return [k for k in params], any(p.kind is p.VAR_KEYWORD for p in params.values())


def _build(target: Callable[..., nn.Module], spec: ModelSpec, scale: int | None = None, **options: Any) -> nn.Module:
    input_range = float(options.pop("input_range", 1.0))
    scales = tuple(int(s) for s in options.pop("scales", spec.scales))
    receptive_field = options.pop("receptive_field", None)
    if input_range not in (1.0, 255.0):
        raise ValueError(f"{spec.name}: input_range must be 1 (0..1) or 255 (0..255), got {input_range:g}")
    if scale is not None and scale not in scales:
        raise ValueError(f"{spec.name} serves scales {scales} (option scales=); x{scale} is not one of them")
    accepted, any_kw = _accepts(target)
    unknown = [k for k in options if k not in accepted and not any_kw]
    if unknown:
        shown = [k for k in accepted if k != "scale"] + list(WRAPPER_OPTIONS)
        raise TypeError(
            f"{spec.name}: unknown option(s) {', '.join(map(repr, unknown))}; it accepts {', '.join(shown)}"
        )
    if "scale" in accepted or any_kw:
        options["scale"] = scale
    net = target(**options)
    if not isinstance(net, nn.Module):
        raise TypeError(f"{spec.name}: the factory returned {type(net).__name__}, not a torch.nn.Module")
    return adapt(net, scale=scale, scales=scales, input_range=input_range, receptive_field=receptive_field)


def _forward_takes_scale(cls: type[nn.Module]) -> bool:
    params = list(inspect.signature(cls.forward).parameters.values())[1:]  # after self
    params = [p for p in params if p.kind is not p.VAR_KEYWORD]
    return "scale" in {p.name for p in params} or len(params) >= 2


@functools.cache
def _adapted_class(cls: type[nn.Module], takes_scale: bool) -> type[nn.Module]:
    """``cls`` with sr_bench's ``forward(x, scale=None)`` on 0..1 pixels."""

    def forward(self: nn.Module, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        served: tuple[int, ...] = getattr(self, "scales")  # noqa: B009 - set by adapt(), unknown to mypy
        if scale is None and len(served) == 1:
            scale = served[0]
        if scale not in served:
            raise ValueError(f"this network serves scales {served}; got scale={scale}")
        r: float = getattr(self, "sr_bench_input_range")  # noqa: B009
        if r != 1.0:
            x = x * r
        y = cls.forward(self, x, scale) if takes_scale else cls.forward(self, x)
        return y / r if r != 1.0 else y

    attrs = {"forward": forward, "__module__": cls.__module__, "__qualname__": cls.__qualname__, "_sr_bench_base": cls}
    return type(cls.__name__, (cls,), attrs)


def adapt(
    net: nn.Module,
    *,
    scale: int | None,
    scales: tuple[int, ...] = _DEFAULT_SCALES,
    input_range: float = 1.0,
    receptive_field: int | None = None,
) -> nn.Module:
    """Give ``net`` sr_bench's model interface in place: ``forward(x, scale=None)`` on 0..1
    pixels, ``scales``, ``in_channels`` (3 unless it has one) and (when known) ``receptive_field``.
    A network whose forward takes only ``x`` serves the one ``scale`` it was built for. Returns
    ``net``."""
    base = getattr(type(net), "_sr_bench_base", type(net))  # adapting twice must not scale twice
    takes_scale = _forward_takes_scale(base)
    if not takes_scale and scale is None:
        raise ValueError("a network whose forward takes only x is built for one scale: pass scale=")
    net.scales = tuple(scales) if takes_scale else (scale,)  # type: ignore[assignment]
    net.sr_bench_input_range = float(input_range)  # type: ignore[assignment]
    if receptive_field is not None:
        net.receptive_field = int(receptive_field)  # type: ignore[assignment]
    if not hasattr(net, "in_channels"):  # evaluate feeds gray images as RGB to 3-channel networks
        net.in_channels = 3  # type: ignore[assignment]
    net.__class__ = _adapted_class(base, takes_scale)  # type: ignore[arg-type]
    return net


class ExternalModels:
    """The model source (:class:`~sr_bench.models.registry.ModelSource`) of import paths and
    ``sr_bench.models`` entry points; added to the registry when this module is imported."""

    def resolve(self, name: str) -> tuple[ModelSpec, Callable[..., nn.Module]] | None:
        return resolve(name)

    def listed_names(self) -> list[str]:
        return entry_point_names()


add_model_source(ExternalModels())  # registration only: nothing is imported or scanned until a name is asked for
