"""Foreign checkpoints: one table of :class:`Converter` entries that turn what ``torch.load`` or
safetensors returned into an sr_bench state_dict, step by step, and back.

Built in: sr_bench training checkpoints, PyTorch Lightning (``state_dict`` with a ``model.``
prefix), BasicSR (``params`` / ``params_ema``) and its EDSR key names, DataParallel / DDP
``module.`` and ``torch.compile`` ``_orig_mod.`` prefixes. EDSR-PyTorch's and sr_bench's plain
state_dicts need no converter. A new format is one more :func:`register_converter` call here (or
in a module of its own that ``sr_bench/weights/__init__.py`` imports); nothing else in
:mod:`sr_bench.weights` changes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import NamedTuple, TypeGuard

import torch

from sr_bench.lookup import Registry
from sr_bench.models.common import MeanShift
from sr_bench.weights.errors import WeightsError

__all__ = ["Unwrapped", "Converter", "CONVERTERS", "register_converter", "convert_checkpoint", "to_format",
           "is_state_dict"]

log = logging.getLogger(__name__)


class Unwrapped(NamedTuple):
    """What a converter made of a checkpoint: the next object, plain metadata, and a note for
    the log ("" when there is nothing to say beyond the format name)."""

    obj: object
    metadata: dict[str, object]
    note: str = ""


@dataclass(frozen=True)
class Converter:
    """One checkpoint format: ``detect(obj)`` says whether ``obj`` (what ``torch.load`` or
    safetensors returned, or what an earlier converter made of it) is in this format,
    ``to_sr_bench(obj)`` takes one step towards an sr_bench state_dict, ``from_sr_bench(state)``
    writes an sr_bench state_dict in this format (None: one-way). All three are pure."""

    name: str
    description: str
    detect: Callable[[object], bool]
    to_sr_bench: Callable[[object], Unwrapped]
    from_sr_bench: Callable[[Mapping[str, torch.Tensor]], object] | None = None


CONVERTERS: Registry[Converter] = Registry("checkpoint format")


def register_converter(converter: Converter) -> Converter:
    """Add a format to :data:`CONVERTERS` (a duplicate name is an error). Converters are tried in
    the order they were registered, each at most once per checkpoint."""
    return CONVERTERS.add(converter.name, converter)


def is_state_dict(obj: object) -> TypeGuard[Mapping[str, torch.Tensor]]:
    """Whether ``obj`` is a non-empty mapping of names to tensors."""
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _plain_entries(obj: Mapping, skip: str) -> dict[str, object]:
    return {str(k): v for k, v in obj.items() if k != skip and isinstance(v, (int, float, str, bool, type(None)))}


def _wrapped_in(key: str) -> Callable[[object], bool]:
    return lambda obj: isinstance(obj, Mapping) and not is_state_dict(obj) and is_state_dict(obj.get(key))


def _add_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


# DataParallel / DistributedDataParallel save "module.<key>"; torch.compile "_orig_mod.<key>".
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _wrapper_prefix(obj: object) -> str | None:
    if not is_state_dict(obj):
        return None
    return next((p for p in _WRAPPER_PREFIXES if all(k.startswith(p) for k in obj)), None)


def _strip_wrapper(obj: object) -> Unwrapped:
    prefix = _wrapper_prefix(obj)
    assert prefix is not None and isinstance(obj, Mapping)
    return Unwrapped({k[len(prefix):]: v for k, v in obj.items()}, {}, f"stripped the {prefix!r} prefix of every key")


def _lightning(obj: object) -> Unwrapped:
    assert isinstance(obj, Mapping)
    state = obj["state_dict"]
    meta = _plain_entries(obj, "state_dict")
    if all(k.startswith("model.") for k in state):
        return Unwrapped({k[len("model."):]: v for k, v in state.items()}, meta, "stripped the 'model.' prefix")
    return Unwrapped(dict(state), meta)


def _basicsr_params(obj: object) -> Unwrapped:
    assert isinstance(obj, Mapping)
    if is_state_dict(obj.get("params_ema")):
        both = is_state_dict(obj.get("params"))
        note = "used 'params_ema' (the EMA weights)" + (" over 'params'" if both else "")
        return Unwrapped(dict(obj["params_ema"]), {}, note)
    return Unwrapped(dict(obj["params"]), {}, "used 'params'")


def _is_basicsr_params(obj: object) -> bool:
    return _wrapped_in("params_ema")(obj) or _wrapped_in("params")(obj)


# BasicSR's EDSR (basicsr/archs/edsr_arch.py) -> sr_bench/EDSR-PyTorch names. BasicSR keeps the
# mean as a plain attribute (not in the state_dict) and works at img_range 255 with the DIV2K mean:
# (x - mean) * 255 is what sr_bench's frozen sub_mean conv computes on x * 255, so the converted
# network gets the default mean shifts.
_BASICSR_EDSR_RULES = (
    (r"conv_first\.(weight|bias)", r"head.0.\1"),
    (r"body\.(\d+)\.conv1\.(weight|bias)", r"body.\1.body.0.\2"),
    (r"body\.(\d+)\.conv2\.(weight|bias)", r"body.\1.body.2.\2"),
    (r"upsample\.(\d+)\.(weight|bias)", r"tail.0.\1.\2"),
    (r"conv_last\.(weight|bias)", r"tail.1.\1"),
)


def _is_basicsr_edsr(obj: object) -> bool:
    needed = {"conv_first.weight", "conv_after_body.weight", "conv_last.weight"}
    return is_state_dict(obj) and needed <= set(obj)


def _mean_shifts(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    shifts = {"sub_mean": MeanShift(sign=-1), "add_mean": MeanShift(sign=1)}
    return {f"{name}.{k}": v.detach().to(dtype) for name, m in shifts.items() for k, v in m.state_dict().items()}


def _basicsr_edsr_to(obj: object) -> Unwrapped:
    assert isinstance(obj, Mapping)
    blocks = len({m.group(1) for k in obj if (m := re.fullmatch(r"body\.(\d+)\.conv1\.weight", k))})
    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if k.startswith("conv_after_body."):
            out[f"body.{blocks}." + k.split(".", 1)[1]] = v
            continue
        new = next((re.sub(pat, rep, k) for pat, rep in _BASICSR_EDSR_RULES if re.fullmatch(pat, k)), None)
        if new is None:
            raise WeightsError(f"BasicSR EDSR checkpoint: unexpected key {k!r}; sr_bench converts only BasicSR's EDSR")
        out[new] = v
    out.update(_mean_shifts(obj["conv_first.weight"].dtype))
    note = f"renamed BasicSR EDSR keys ({blocks} blocks); added the DIV2K mean shifts (img_range 255)"
    return Unwrapped(out, {}, note)


def _basicsr_edsr_from(state: Mapping[str, torch.Tensor]) -> object:
    default = _mean_shifts(torch.float32)
    for k, v in default.items():
        if k not in state or not torch.allclose(state[k].float(), v, atol=1e-4):
            raise WeightsError(
                f"{k} differs from the DIV2K mean at range 255: BasicSR's EDSR cannot hold it (it keeps the mean "
                f"outside its state_dict); keep these weights in sr_bench's layout"
            )
    blocks = len({m.group(1) for k in state if (m := re.fullmatch(r"body\.(\d+)\.body\.0\.weight", k))})
    rules = [(rf"body\.{blocks}\.(weight|bias)", r"conv_after_body.\1")] + [
        (r"head\.0\.(weight|bias)", r"conv_first.\1"),
        (r"body\.(\d+)\.body\.0\.(weight|bias)", r"body.\1.conv1.\2"),
        (r"body\.(\d+)\.body\.2\.(weight|bias)", r"body.\1.conv2.\2"),
        (r"tail\.0\.(\d+)\.(weight|bias)", r"upsample.\1.\2"),
        (r"tail\.1\.(weight|bias)", r"conv_last.\1"),
    ]
    out = {}
    for k, v in state.items():
        if k in default:
            continue
        new = next((re.sub(p, r, k) for p, r in rules if re.fullmatch(p, k)), None)
        if new is None:
            raise WeightsError(
                f"{k}: not part of a plain EDSR (BasicSR has no BN/MDSR variant); cannot write BasicSR keys"
            )
        out[new] = v
    return out


for _c in (
    Converter(
        "sr_bench-checkpoint", "sr_bench training checkpoint {'model': state_dict, 'optimizer': ..., 'step': ...}",
        _wrapped_in("model"), lambda o: Unwrapped(dict(o["model"]), _plain_entries(o, "model")),  # type: ignore[index,arg-type]
        lambda st: {"model": dict(st)},
    ),
    Converter(
        "lightning", "PyTorch Lightning checkpoint {'state_dict': {'model.<key>': ...}, 'epoch': ...}",
        _wrapped_in("state_dict"), _lightning, lambda st: {"state_dict": _add_prefix(st, "model.")},
    ),
    Converter(
        "basicsr", "BasicSR checkpoint {'params': ..., 'params_ema': ...} (params_ema preferred)",
        _is_basicsr_params, _basicsr_params, lambda st: {"params": dict(st)},
    ),
    Converter(
        "basicsr-edsr", "BasicSR EDSR key names (conv_first, body.N.conv1/conv2, conv_after_body, upsample, conv_last)",
        _is_basicsr_edsr, _basicsr_edsr_to, _basicsr_edsr_from,
    ),
    Converter(
        "dataparallel",
        "keys prefixed 'module.' (DataParallel / DistributedDataParallel) or '_orig_mod.' (torch.compile)",
        lambda o: _wrapper_prefix(o) is not None, _strip_wrapper, lambda st: _add_prefix(st, "module."),
    ),
):
    register_converter(_c)
del _c


def convert_checkpoint(
    obj: object, *, what: str = "checkpoint", fits: Collection[str] | None = None
) -> tuple[dict[str, torch.Tensor], list[str], dict[str, object]]:
    """Apply the converters of :data:`CONVERTERS` until ``obj`` is an sr_bench state_dict.

    ``fits``: the keys of the model the state will be loaded into; converting stops as soon as
    the keys match them (a BasicSR-layout network gets BasicSR keys unchanged).

    Returns:
        (state_dict, formats recognised in order, metadata).
    """
    formats: list[str] = []
    meta: dict[str, object] = {}
    for _ in range(len(CONVERTERS) + 1):
        if fits is not None and is_state_dict(obj) and set(obj) == set(fits):
            break
        conv = next((c for c in CONVERTERS.values() if c.name not in formats and c.detect(obj)), None)
        if conv is None:
            break
        step = conv.to_sr_bench(obj)
        obj, formats = step.obj, formats + [conv.name]
        meta.update(step.metadata)
        log.info("%s: recognised %s%s", what, conv.name, f" ({step.note})" if step.note else "")
    if not is_state_dict(obj):
        shown = f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping) else type(obj).__name__
        raise WeightsError(
            f"{what}: holds {shown}, not a state_dict; expected a plain state_dict, a training checkpoint "
            f"{{'model': state_dict, ...}}, or one of: {', '.join(CONVERTERS.names())}"
        )
    return dict(obj), formats, meta


def to_format(state: Mapping[str, torch.Tensor], fmt: str) -> object:
    """Write an sr_bench state_dict in format ``fmt``, a :attr:`WeightsInfo.format` string
    (converters ``"+"``-joined, outermost first), for ``torch.save``: ``"basicsr+basicsr-edsr"``
    is BasicSR's ``{'params': ...}`` with its EDSR key names, ``"lightning"``,
    ``"dataparallel"``, ``"sr_bench-checkpoint"``; ``"state_dict"`` is ``state`` itself."""
    obj: object = dict(state)
    for name in reversed([n for n in fmt.split("+") if n not in ("state_dict", "safetensors")]):
        conv = CONVERTERS.get(name)
        if conv.from_sr_bench is None:
            raise WeightsError(f"checkpoint format {name!r} can be read but not written")
        obj = conv.from_sr_bench(obj)  # type: ignore[arg-type]
    return obj
