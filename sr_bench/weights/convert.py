"""Foreign checkpoints: one table of :class:`Converter` entries that turn what ``torch.load`` or
safetensors returned into an sr_bench state_dict, step by step, and back.

Built in: sr_bench training checkpoints, PyTorch Lightning (``state_dict`` with a ``model.``
prefix), BasicSR (``params`` / ``params_ema``) and its EDSR key names, DataParallel / DDP
``module.`` and ``torch.compile`` ``_orig_mod.`` prefixes. A converter sees a
:class:`ConvertContext`: the state of the model the weights go into (values a format keeps
outside its files, such as BasicSR's ``rgb_mean`` and ``img_range``, come from the model's
options) and the entry the user chose (``param_key``). EDSR-PyTorch's and sr_bench's plain
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
from sr_bench.models.common import DIV2K_MEAN, MeanShift
from sr_bench.weights.errors import WeightsError

__all__ = ["Unwrapped", "ConvertContext", "Converter", "CONVERTERS", "register_converter", "convert_checkpoint",
           "to_format", "is_state_dict"]

log = logging.getLogger(__name__)


class Unwrapped(NamedTuple):
    """What a converter made of a checkpoint: the next object, plain metadata, a note for the
    log ("" when there is nothing to say beyond the format name), and a warning: an assumption
    the user should know of (logged at WARNING, so it shows at default verbosity)."""

    obj: object
    metadata: dict[str, object]
    note: str = ""
    warning: str = ""


@dataclass(frozen=True)
class ConvertContext:
    """What a converter may use beyond the checkpoint itself.

    Attributes:
        what: the checkpoint's name in messages (its path).
        model_state: the state_dict of the model the weights will be loaded into; a format that
            keeps some values outside its files (BasicSR's EDSR mean shifts) takes them from here,
            i.e. from the options the model was built with. None: the format's defaults.
        param_key: the entry of a checkpoint holding several state_dicts to use (BasicSR's
            ``params`` / ``params_ema``); None: the converter's default, which it states.
        model_options: the options the model was built with, as the user gave them (``--option``):
            a converter states the values it had to assume among those not given. None: unknown
            (the converter judges from the values alone).
    """

    what: str = "checkpoint"
    model_state: Mapping[str, torch.Tensor] | None = None
    param_key: str | None = None
    model_options: Mapping[str, object] | None = None


@dataclass(frozen=True)
class Converter:
    """One checkpoint format: ``detect(obj)`` says whether ``obj`` (what ``torch.load`` or
    safetensors returned, or what an earlier converter made of it) is in this format,
    ``to_sr_bench(obj, context)`` takes one step towards an sr_bench state_dict,
    ``from_sr_bench(state)`` writes an sr_bench state_dict in this format (None: one-way). All
    three are pure."""

    name: str
    description: str
    detect: Callable[[object], bool]
    to_sr_bench: Callable[[object, ConvertContext], Unwrapped]
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


def _strip_wrapper(obj: object, _: ConvertContext) -> Unwrapped:
    prefix = _wrapper_prefix(obj)
    assert prefix is not None and isinstance(obj, Mapping)
    return Unwrapped({k[len(prefix):]: v for k, v in obj.items()}, {}, f"stripped the {prefix!r} prefix of every key")


def _lightning(obj: object, _: ConvertContext) -> Unwrapped:
    assert isinstance(obj, Mapping)
    state = obj["state_dict"]
    meta = _plain_entries(obj, "state_dict")
    if all(k.startswith("model.") for k in state):
        return Unwrapped({k[len("model."):]: v for k, v in state.items()}, meta, "stripped the 'model.' prefix")
    return Unwrapped(dict(state), meta)


def _basicsr_params(obj: object, ctx: ConvertContext) -> Unwrapped:
    assert isinstance(obj, Mapping)
    entries = [str(k) for k, v in obj.items() if is_state_dict(v)]
    if ctx.param_key is not None:
        if ctx.param_key not in entries:
            raise WeightsError(f"{ctx.what}: no entry {ctx.param_key!r} (param key); this BasicSR checkpoint holds "
                               f"{', '.join(map(repr, entries))}: pass one of them")
        return Unwrapped(dict(obj[ctx.param_key]), {"param_key": ctx.param_key}, f"used {ctx.param_key!r} as asked")
    if "params_ema" in entries and "params" in entries:
        warning = ("holds 'params' and 'params_ema': used 'params_ema' (the EMA weights, which BasicSR validates with "
                   "while training; BasicSR's test loader takes 'params' unless its options set path.param_key_g); "
                   "pass --param-key params for the others")
        return Unwrapped(dict(obj["params_ema"]), {"param_key": "params_ema"}, "", warning)
    key = "params_ema" if "params_ema" in entries else "params"
    return Unwrapped(dict(obj[key]), {}, f"used {key!r}")


def _is_basicsr_params(obj: object) -> bool:
    return _wrapped_in("params_ema")(obj) or _wrapped_in("params")(obj)


# BasicSR's EDSR (basicsr/archs/edsr_arch.py) -> sr_bench/EDSR-PyTorch names. BasicSR keeps the
# mean (``rgb_mean``) and range (``img_range``) as plain attributes set from its options, not in the
# state_dict: ``(x - mean) * img_range`` is what sr_bench's frozen sub_mean conv computes on
# ``x * rgb_range`` with ``rgb_range = img_range``, so the converted network takes its mean shifts
# from the model it is loaded into (built with those options), and BasicSR's defaults otherwise.
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
    """BasicSR's EDSR defaults (the DIV2K mean at img_range 255) as sr_bench's mean-shift tensors."""
    shifts = {"sub_mean": MeanShift(sign=-1), "add_mean": MeanShift(sign=1)}
    return {f"{name}.{k}": v.detach().to(dtype) for name, m in shifts.items() for k, v in m.state_dict().items()}


#: BasicSR's EDSR options kept outside its checkpoints -> (the sr_bench option names that state them,
#: BasicSR's default as said in messages)
_BASICSR_OUTSIDE = {
    "rgb_mean": (("rgb_mean",), f"({', '.join(f'{m:.4f}' for m in DIV2K_MEAN)})"),
    "img_range": (("img_range", "rgb_range"), "255"),
}


def _assumed(ctx: ConvertContext, shifts: Mapping[str, torch.Tensor], default: Mapping[str, torch.Tensor]) -> list[str]:
    """The BasicSR options whose values had to be assumed: those the user did not give, or (when
    the options are unknown) both, if the model's mean shifts are BasicSR's defaults."""
    if ctx.model_options is None:
        at_default = all(torch.equal(shifts[k], default[k]) for k in default)
        return list(_BASICSR_OUTSIDE) if at_default else []
    return [name for name, (given, _) in _BASICSR_OUTSIDE.items() if not any(g in ctx.model_options for g in given)]


def _basicsr_mean_shifts(ctx: ConvertContext, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], str, str]:
    """(mean-shift tensors, note, warning): the model's own when it has them (built with the
    options the weights were trained with), else BasicSR's defaults; a warning naming the values
    assumed, since BasicSR's checkpoints cannot say what they were."""
    default = _mean_shifts(dtype)
    model = ctx.model_state
    if model is not None and all(k in model for k in default):
        shifts = {k: model[k].detach().to("cpu", dtype).clone() for k in default}
    else:
        shifts = default
    offset = ", ".join(f"{v:g}" for v in shifts["add_mean.bias"].tolist())
    note = f"mean shifts from the model's options: img_range x rgb_mean = ({offset})"
    assumed = _assumed(ctx, shifts, default)
    if not assumed:
        return shifts, note, ""
    said = " and ".join(f"{name}={_BASICSR_OUTSIDE[name][1]}" for name in assumed)
    warning = (f"BasicSR keeps rgb_mean and img_range outside its checkpoints: assumed {said} (BasicSR's EDSR "
               f"defaults); weights trained with other values give wrong outputs: give network_g's values as model "
               f"options (--option rgb_mean=R,G,B --option img_range=N, or --basicsr-options TRAIN.yml; from Python "
               f"create(..., rgb_mean=..., img_range=...))")
    return shifts, note, warning


def _basicsr_edsr_to(obj: object, ctx: ConvertContext) -> Unwrapped:
    assert isinstance(obj, Mapping)
    blocks = len({m.group(1) for k in obj if (m := re.fullmatch(r"body\.(\d+)\.conv1\.weight", k))})
    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if k.startswith("conv_after_body."):
            out[f"body.{blocks}." + k.split(".", 1)[1]] = v
            continue
        new = next((re.sub(pat, rep, k) for pat, rep in _BASICSR_EDSR_RULES if re.fullmatch(pat, k)), None)
        if new is None:
            raise WeightsError(f"{ctx.what}: BasicSR EDSR checkpoint with an unexpected key {k!r}; sr_bench "
                               f"converts only BasicSR's EDSR")
        out[new] = v
    shifts, said, warning = _basicsr_mean_shifts(ctx, obj["conv_first.weight"].dtype)
    out.update(shifts)
    return Unwrapped(out, {}, f"renamed BasicSR EDSR keys ({blocks} blocks); {said}", warning)


def _basicsr_edsr_from(state: Mapping[str, torch.Tensor]) -> object:
    default = _mean_shifts(torch.float32)
    for k, v in default.items():
        if k not in state or not torch.allclose(state[k].float(), v, atol=1e-4):
            raise WeightsError(
                f"{k} differs from the DIV2K mean at range 255: BasicSR's EDSR keeps rgb_mean and img_range "
                f"outside its state_dict, so a file in its layout would lose them; keep these weights in sr_bench's "
                f"layout"
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
        _wrapped_in("model"), lambda o, _: Unwrapped(dict(o["model"]), _plain_entries(o, "model")),  # type: ignore[index,arg-type]
        lambda st: {"model": dict(st)},
    ),
    Converter(
        "lightning", "PyTorch Lightning checkpoint {'state_dict': {'model.<key>': ...}, 'epoch': ...}",
        _wrapped_in("state_dict"), _lightning, lambda st: {"state_dict": _add_prefix(st, "model.")},
    ),
    Converter(
        "basicsr", "BasicSR checkpoint {'params': ..., 'params_ema': ...} (params_ema unless param_key says)",
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
    obj: object,
    *,
    what: str = "checkpoint",
    fits: Collection[str] | None = None,
    model_state: Mapping[str, torch.Tensor] | None = None,
    param_key: str | None = None,
    model_options: Mapping[str, object] | None = None,
) -> tuple[dict[str, torch.Tensor], list[str], dict[str, object]]:
    """Apply the converters of :data:`CONVERTERS` until ``obj`` is an sr_bench state_dict.

    ``fits``: the keys of the model the state will be loaded into; converting stops as soon as
    the keys match them (a BasicSR-layout network gets BasicSR keys unchanged). ``model_state``,
    ``param_key`` and ``model_options``: see :class:`ConvertContext`; a ``param_key`` that no
    converter used (the file holds one state_dict) is an error.

    Returns:
        (state_dict, formats recognised in order, metadata).
    """
    ctx = ConvertContext(what, model_state, param_key, model_options)
    formats: list[str] = []
    meta: dict[str, object] = {}
    for _ in range(len(CONVERTERS) + 1):
        if fits is not None and is_state_dict(obj) and set(obj) == set(fits):
            break
        conv = next((c for c in CONVERTERS.values() if c.name not in formats and c.detect(obj)), None)
        if conv is None:
            break
        step = conv.to_sr_bench(obj, ctx)
        obj, formats = step.obj, formats + [conv.name]
        meta.update(step.metadata)
        log.info("%s: recognised %s%s", what, conv.name, f" ({step.note})" if step.note else "")
        if step.warning:
            log.warning("%s: %s", what, step.warning)
    if not is_state_dict(obj):
        shown = f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping) else type(obj).__name__
        raise WeightsError(
            f"{what}: holds {shown}, not a state_dict; expected a plain state_dict, a training checkpoint "
            f"{{'model': state_dict, ...}}, or one of: {', '.join(CONVERTERS.names())}"
        )
    if param_key is not None and meta.get("param_key") != param_key:
        raise WeightsError(f"{what}: param key {param_key!r} given, but the file holds one state_dict "
                           f"({'+'.join(formats) or 'plain'}), not entries to choose from; leave the param key out")
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
