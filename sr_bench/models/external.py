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

Your code's own errors are reported as one line with its own words (exit status 1; ``--debug``
shows its traceback): a module that raises while importing, a factory that raises or returns
something other than an ``nn.Module``, a forward that raises. What your code prints while its
module is imported or the factory runs goes to stderr, so a command's stdout (tables, JSON) stays
its own.

A network whose ``forward`` takes only ``x`` is adapted to sr_bench's ``forward(x, scale=None)``
(its class is swapped for a subclass with that forward, so its ``state_dict`` keys stay its own
and ``--weights FILE`` saved from it loads strictly). A factory may instead carry a
``sr_bench_spec`` attribute (a :class:`~sr_bench.models.registry.ModelSpec`) to describe itself,
or its module may ``@register_model`` it under the entry point's name.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import importlib.metadata
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sr_bench.errors import DataError, UsageError
from sr_bench.models import registry
from sr_bench.models.registry import ModelSpec, UnknownModelError, add_model_source

__all__ = ["GROUP", "WRAPPER_OPTIONS", "ExternalModelError", "ExternalCodeError", "ExternalModels", "resolve",
           "entry_point_names", "adapt"]

GROUP = "sr_bench.models"
WRAPPER_OPTIONS = ("input_range", "scales", "receptive_field")
_DEFAULT_SCALES = (2, 3, 4)


class ExternalModelError(UnknownModelError):
    """An import path or entry point that cannot be loaded; the message says which and why."""

    exit_code = 2


class ExternalCodeError(DataError):
    """Your code raised (importing its module, the factory, a forward), or the factory returned
    something that is not a network; one line with its own message (exit status 1)."""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or "(no message)"
    return text if len(text) <= 300 else text[:297] + "..."


def _raised(what: str, e: BaseException) -> ExternalCodeError:
    return ExternalCodeError(f"{what} raised {type(e).__name__}: {_one_line(e)}; run with --debug for its traceback")


@contextlib.contextmanager
def _user_code() -> Iterator[None]:
    """Your code's prints go to stderr: a command's stdout is its tables and JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


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
        with _user_code():
            return importlib.import_module(module_name)
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and e.name and module_name.startswith(e.name):
            if e.name == module_name.split(".")[0] and _in_current_folder(module_name):
                return _import_module(name, module_name)
            raise ExternalModelError(
                f"--model {name!r}: cannot import module {module_name!r} ({type(e).__name__}: {e}); install its "
                f"package, add its folder to PYTHONPATH, or run from the folder that holds it"
            ) from e
        raise _raised(f"--model {name!r}: importing module {module_name!r}", e) from e  # found, but it failed
    except Exception as e:  # your module's own error, whatever it is
        where = f" ({e.filename}, line {e.lineno})" if isinstance(e, SyntaxError) else ""
        raise _raised(f"--model {name!r}: importing module {module_name!r}{where}", e) from e


def _import_path(name: str) -> object:
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ExternalModelError(f"--model {name!r}: an import path is 'package.module:factory'")
    obj: object = _import_module(name, module_name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            close = difflib.get_close_matches(part, [n for n in dir(obj) if not n.startswith("_")], n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ExternalModelError(f"--model {name!r}: module {module_name!r} has no attribute {attr!r}{hint}")
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
    _check_call(target, spec.name, options)
    try:
        with _user_code():
            net = target(**options)
    except Exception as e:  # your factory's own error, whatever it is
        raise _raised(f"factory {spec.name}", e) from e
    if not isinstance(net, nn.Module):
        what = f"the class {net.__name__}" if isinstance(net, type) else type(net).__name__
        raise ExternalCodeError(f"factory {spec.name} returned {what}, not a torch.nn.Module instance; it must "
                                f"return the network")
    return adapt(net, scale=scale, scales=scales, input_range=input_range, receptive_field=receptive_field,
                 name=spec.name)


def _check_call(target: Callable[..., Any], name: str, options: dict[str, Any]) -> None:
    """Refuse a call the factory's signature cannot take (a required argument not given)."""
    try:
        inspect.signature(target).bind(**options)
    except TypeError as e:
        params = inspect.signature(target).parameters.values()
        needed = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name not in options]
        how = " ".join(f"--option {n}=VALUE" for n in needed) if needed else "the options it takes"
        raise UsageError(f"factory {name}: cannot be called with {sorted(options) or 'no options'} ({e}); "
                         f"pass {how}") from None
    except ValueError:  # no signature to read (a builtin): let the call itself tell
        return


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
        try:
            y = cls.forward(self, x, scale) if takes_scale else cls.forward(self, x)
        except torch.OutOfMemoryError:  # inference retries with smaller tiles
            raise
        except Exception as e:  # the network's own error: one line naming it (its traceback with --debug)
            raise _raised(f"network {getattr(self, 'sr_bench_name', cls.__name__)}", e) from e
        return y / r if r != 1.0 and isinstance(y, torch.Tensor) else y

    attrs = {"forward": forward, "__module__": cls.__module__, "__qualname__": cls.__qualname__, "_sr_bench_base": cls}
    return type(cls.__name__, (cls,), attrs)


def adapt(
    net: nn.Module,
    *,
    scale: int | None,
    scales: tuple[int, ...] = _DEFAULT_SCALES,
    input_range: float = 1.0,
    receptive_field: int | None = None,
    name: str | None = None,
) -> nn.Module:
    """Give ``net`` sr_bench's model interface in place: ``forward(x, scale=None)`` on 0..1
    pixels, ``scales``, ``in_channels`` (3 unless it has one) and (when known) ``receptive_field``.
    A network whose forward takes only ``x`` serves the one ``scale`` it was built for. ``name``
    (the ``--model`` text) names it when its forward raises. Returns ``net``."""
    base = getattr(type(net), "_sr_bench_base", type(net))  # adapting twice must not scale twice
    takes_scale = _forward_takes_scale(base)
    if not takes_scale and scale is None:
        raise ValueError("a network whose forward takes only x is built for one scale: pass scale=")
    net.scales = tuple(scales) if takes_scale else (scale,)  # type: ignore[assignment]
    net.sr_bench_input_range = float(input_range)  # type: ignore[assignment]
    if name is not None:
        net.sr_bench_name = name  # type: ignore[assignment]
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
