"""Loading weights into a model: read a file on the CPU (``torch.load(weights_only=True)`` or
safetensors), convert it through :mod:`sr_bench.weights.convert`, refuse NaN/Inf, and load
**strictly** (:func:`load_weights`); the x2 -> x3/x4 warm start that names every key it loads and
leaves (:func:`partial_load`); and an atomic, reproducible safetensors export.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch import nn

from sr_bench.images import atomic_write
from sr_bench.weights.convert import convert_checkpoint
from sr_bench.weights.describe import check_state_dict, describe_state_dict, key_differences
from sr_bench.weights.errors import NonFiniteWeightsError, WeightsError, WeightsMismatchError
from sr_bench.weights.files import resolve_weights, sha256_file
from sr_bench.weights.published import WeightsSpec, identify_weights

__all__ = [
    "check_finite", "read_state_dict", "WeightsInfo", "load_weights", "PartialLoad", "partial_load",
    "export_safetensors",
]

log = logging.getLogger(__name__)


def check_finite(state: Mapping[str, torch.Tensor], *, what: str = "checkpoint") -> None:
    """Raise :class:`NonFiniteWeightsError` naming the tensors that hold NaN or Inf."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise NonFiniteWeightsError(
            f"{what}: {len(bad)} tensor(s) hold NaN or Inf ({', '.join(bad[:5])}{more}): the run that wrote it "
            f"diverged; use an earlier checkpoint"
        )



def read_state_dict(
    path: str | os.PathLike,
    *,
    fits: Collection[str] | None = None,
    model_state: Mapping[str, torch.Tensor] | None = None,
    param_key: str | None = None,
    model_options: Mapping[str, object] | None = None,
) -> tuple[dict[str, torch.Tensor], str, dict[str, object]]:
    """Read a weights file on the CPU, convert it to sr_bench's layout and refuse NaN/Inf.

    Returns:
        (state_dict, format, metadata): format names what was recognised, ``"+"``-joined in the
        order the converters ran (``"state_dict"``: an official ``.pt`` / sr_bench plain
        state_dict; ``"safetensors"``; ``"sr_bench-checkpoint"``; ``"basicsr+basicsr-edsr"``;
        ``"lightning"``; ``"dataparallel"``, ...). Metadata holds the plain entries of training
        checkpoints and the string metadata of safetensors files. ``model_state`` (the target
        model's state: values a format keeps outside its files), ``param_key`` and
        ``model_options``: see :class:`sr_bench.weights.convert.ConvertContext`.
    """
    path = Path(path)
    meta: dict[str, object] = {}
    if path.suffix == ".safetensors":
        try:
            obj: object = load_file(str(path), device="cpu")
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
        except Exception as e:  # safetensors raises its own error types
            raise WeightsError(f"{path}: not a readable safetensors file ({e})") from e
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle / zip errors, or objects weights_only refuses
            # never repeat torch's own text: it is multi-line and advises weights_only=False
            raise WeightsError(
                f"{path}: cannot be read as a checkpoint with weights_only=True (not a tensor state_dict, "
                f"or corrupt; {type(e).__name__}); save only the state_dict, e.g. "
                f"torch.save(ckpt['state_dict' or 'params'], 'weights.pt'), or re-download the file"
            ) from e
    state, formats, more = convert_checkpoint(obj, what=str(path), fits=fits, model_state=model_state,
                                              param_key=param_key, model_options=model_options)
    check_finite(state, what=str(path))
    container = ["safetensors"] if path.suffix == ".safetensors" else []
    return state, "+".join(container + formats) or "state_dict", {**meta, **more}


@dataclass(frozen=True)
class WeightsInfo:
    """What :func:`load_weights` loaded; records keep it beside every result."""

    source: str
    path: Path
    sha256: str
    format: str
    spec: WeightsSpec | None
    num_tensors: int
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def name(self) -> str | None:
        """The registered weights name, when the file is a registered (official) one."""
        return self.spec.name if self.spec is not None else None

    def as_record(self) -> dict[str, object]:
        """A flat, JSON-friendly dict."""
        return {
            "weights": self.source,
            "weights_path": str(self.path),
            "weights_sha256": self.sha256,
            "weights_format": self.format,
            "weights_name": self.name,
        }


def load_weights(
    model: nn.Module,
    source: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    param_key: str | None = None,
    model_options: Mapping[str, object] | None = None,
) -> WeightsInfo:
    """Load ``source`` (a registered name or a file) into ``model`` strictly.

    The file is read on the CPU and copied into the model's parameters whatever their device and
    dtype. A local file whose sha256 matches a registered checkpoint is identified as it. Values
    a format keeps outside its files (BasicSR's mean and range) come from ``model``'s options;
    ``model_options``, the options it was built with as the user gave them, lets the loader say
    which of those values it assumed. ``param_key`` picks the entry of a file holding several
    (BasicSR's ``params`` / ``params_ema``).

    Raises:
        WeightsMismatchError: the checkpoint is for another architecture or scale (explained).
        NonFiniteWeightsError: the file holds NaN/Inf (named).
        WeightsError, WeightsDownloadError, FileNotFoundError: see :func:`resolve_weights`.
    """
    path, spec = resolve_weights(source, cache_dir=cache_dir, progress=progress)
    digest = sha256_file(path)
    spec = spec or identify_weights(digest)
    target = model.state_dict()
    state, fmt, meta = read_state_dict(path, fits=target.keys(), model_state=target, param_key=param_key,
                                       model_options=model_options)
    check_state_dict(model, state, what=f"checkpoint {path.name}")
    model.load_state_dict(state, strict=True)
    log.info("loaded %s (%s, %d tensors, sha256 %s…)", path, fmt, len(state), digest[:12])
    return WeightsInfo(str(source), path, digest, fmt, spec, len(state), meta)


@dataclass(frozen=True)
class PartialLoad:
    """What :func:`partial_load` did: ``loaded`` keys were copied from the checkpoint,
    ``skipped`` checkpoint keys were excluded, ``left`` model keys keep their initialisation."""

    loaded: tuple[str, ...]
    skipped: tuple[str, ...]
    left: tuple[str, ...]
    exclude: tuple[str, ...]

    def __str__(self) -> str:
        def groups(keys: tuple[str, ...]) -> str:
            mods = sorted({k.rsplit(".", 1)[0] for k in keys})
            return ", ".join(mods) if mods else "nothing"

        return (
            f"warm start: loaded {len(self.loaded)} tensors; excluded {self.exclude}: skipped "
            f"{len(self.skipped)} checkpoint tensors ({groups(self.skipped)}); left {len(self.left)} model "
            f"tensors at their initialisation ({groups(self.left)})"
        )


def _excluded(key: str, exclude: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in exclude)


def partial_load(
    model: nn.Module,
    state: Mapping[str, torch.Tensor] | str | os.PathLike,
    exclude: tuple[str, ...] = ("tail", "upsample"),
) -> PartialLoad:
    """Load everything but the modules named in ``exclude`` (the paper's x2 -> x3/x4 warm start).

    Every key outside ``exclude`` must exist on both sides with the same shape and kind of number
    (else :class:`WeightsMismatchError` naming the keys); nothing is dropped silently. ``state`` is a state_dict or
    anything :func:`resolve_weights` accepts. The report is returned and logged.
    """
    if not isinstance(state, Mapping):
        path, _ = resolve_weights(state)
        state, _, _ = read_state_dict(path, model_state=model.state_dict())
    exclude = tuple(exclude)
    target = model.state_dict()
    want = {k for k in target if not _excluded(k, exclude)}
    diff = key_differences(target, state, keys=want | {k for k in state if not _excluded(k, exclude)})
    if diff:
        theirs, ours = describe_state_dict(state), describe_state_dict(target)
        what = f"checkpoint has {theirs}; the model has {ours}" if str(theirs) != str(ours) else f"both are {ours}"
        problems = diff.describe(state, target)
        raise WeightsMismatchError(f"warm start outside {exclude} does not fit: {what} [{problems}]")
    loaded = sorted(want)
    with torch.no_grad():
        for k in loaded:
            target[k].copy_(state[k])  # state_dict tensors share storage with the parameters
    report = PartialLoad(
        loaded=tuple(loaded),
        skipped=tuple(sorted(k for k in state if _excluded(k, exclude))),
        left=tuple(sorted(k for k in target if _excluded(k, exclude))),
        exclude=exclude,
    )
    log.info("%s", report)
    return report


def export_safetensors(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write a model's (or a state_dict's) tensors to ``path`` as safetensors, atomically.

    The file is a function of the tensors and metadata alone (the same weights always have the
    same sha256, which records use as their identity)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    data = _canonical_header(save(tensors, metadata=meta))
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _canonical_header(data: bytes) -> bytes:
    """safetensors writes ``__metadata__`` in hash-map order, which changes from process to
    process; rewrite the header with it sorted (the tensor entries keep their order and offsets)."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors aligns the data to 8 bytes
    return struct.pack("<Q", len(text)) + text + data[8 + n :]
