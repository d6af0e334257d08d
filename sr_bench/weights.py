"""Published weights beside the models, and strict, explained loading.

* :class:`WeightsSpec` registry: the official EDSR/MDSR checkpoints (URL, file name, sha256
  prefix, the architecture they fit, the paper's Table 3 column).
* :func:`resolve_weights`: ``--weights NAME|PATH``. A path is used as it is; a registered name is
  looked up in the weights folder (:func:`set_weights_dir`, ``--weights-dir``,
  ``$SR_BENCH_WEIGHTS_DIR``: files under their official names), else downloaded once into
  ``torch.hub.get_dir()/checkpoints`` from the mirror ``$SR_BENCH_WEIGHTS_URL`` (base URL + official
  file name) or the official server, with its hash checked (a cached file is re-hashed every time:
  a truncated cache is never trusted).
* :func:`published_weights`: which published checkpoint serves (model, scale).
* :func:`load_weights`: reads files with ``torch.load(weights_only=True)`` or safetensors, converts
  foreign layouts through one table of :class:`Converter` entries (EDSR-PyTorch / sr_bench
  state_dicts, sr_bench training checkpoints, BasicSR ``params``/``params_ema`` and its EDSR key
  names, DataParallel/DDP ``module.`` prefixes, Lightning ``state_dict`` with a ``model.``
  prefix), refuses NaN/Inf tensors, says which format it recognised, and loads **strictly**.
  A checkpoint that does not fit is explained by inferring both
  architectures ("checkpoint has 32 residual blocks x 256 filters, x4 upsampler; the model has
  16 x 64, x2: did you mean create('edsr', scale=4)?"), never by a wall of missing keys.
* :func:`partial_load`: the x2 -> x3/x4 warm start; it names every key it loads and leaves.
* :func:`export_safetensors`: atomic export.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.error
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TypeGuard

import torch
from torch import nn

from sr_bench.images import atomic_write
from sr_bench.lookup import Registry, UnknownNameError
from sr_bench.models import registry

__all__ = [
    "WeightsSpec",
    "WeightsInfo",
    "ArchSummary",
    "PartialLoad",
    "WeightsError",
    "MissingWeightsFileError",
    "check_weights_path",
    "WeightsMismatchError",
    "WeightsDownloadError",
    "UnknownWeightsError",
    "NonFiniteWeightsError",
    "Converter",
    "CONVERTERS",
    "convert_checkpoint",
    "check_finite",
    "Unwrapped",
    "to_format",
    "published_weights",
    "set_weights_dir",
    "current_weights_dir",
    "download_urls",
    "WEIGHTS_DIR_ENV",
    "WEIGHTS_URL_ENV",
    "register_weights",
    "get_weights",
    "weights_names",
    "weights_for",
    "resolve_weights",
    "read_state_dict",
    "describe_state_dict",
    "check_state_dict",
    "load_weights",
    "partial_load",
    "export_safetensors",
    "sha256_file",
    "OFFICIAL_BASE_URL",
]

log = logging.getLogger(__name__)

OFFICIAL_BASE_URL = "https://cv.snu.ac.kr/research/EDSR/models/"
WEIGHTS_URL_ENV = "SR_BENCH_WEIGHTS_URL"
WEIGHTS_DIR_ENV = "SR_BENCH_WEIGHTS_DIR"


class WeightsError(RuntimeError):
    """A weights file that cannot be used; the message says why and what to do."""

    exit_code = 1  # a data error for sr_bench.cli.command: one line, no traceback


class UnknownWeightsError(WeightsError, UnknownNameError):
    """A weights name that is not registered (and not a file); the message lists close matches."""

    def __str__(self) -> str:
        return str(self.args[0])


class NonFiniteWeightsError(WeightsError):
    """A checkpoint holding NaN or Inf values."""


class WeightsMismatchError(WeightsError):
    """A checkpoint whose architecture differs from the model's."""


class WeightsDownloadError(WeightsError):
    """A registered checkpoint that could not be downloaded (no network, site down, bad hash)."""


class MissingWeightsFileError(WeightsError, FileNotFoundError):
    """A weights path that does not exist (still a FileNotFoundError for callers)."""

    def __str__(self) -> str:
        return str(self.args[0])


# --------------------------------------------------------------------------------------------
# The registry of published weights


@dataclass(frozen=True)
class WeightsSpec:
    """A published checkpoint.

    Attributes:
        name: registry name, e.g. ``"edsr-baseline-x2"``.
        arch: the model registry name it fits (``sr_bench.models.create(arch, scale=...)``).
        scales: the scales it serves (one for single-scale models).
        urls: where to download it, tried in order.
        file_name: the official file name (it ends in the sha256 prefix).
        sha256_prefix: the first hex digits of the file's sha256.
        paper_column: the ``method`` of ``baselines/table3.csv`` these weights should reproduce
            (``"EDSR"``, ``"MDSR"``), or None for baselines whose numbers are only in table2.csv.
        table2_column: the ``method`` of ``baselines/table2.csv``, or None.
        protocol: the evaluation protocol the paper's numbers use (``"paper"``).
        source: who published it, under which licence.
    """

    name: str
    arch: str
    scales: tuple[int, ...]
    urls: tuple[str, ...]
    file_name: str
    sha256_prefix: str
    paper_column: str | None
    table2_column: str | None = None
    protocol: str = "paper"
    source: str = "sanghyun-son/EDSR-PyTorch (MIT licence), trained on DIV2K 0001-0800"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{8,64}", self.sha256_prefix):
            raise ValueError(f"{self.name}: sha256_prefix must be lowercase hex, got {self.sha256_prefix!r}")

    @property
    def scale(self) -> int | None:
        """The scale of single-scale weights, None for multi-scale ones."""
        return self.scales[0] if len(self.scales) == 1 else None

    def create_model(self) -> nn.Module:
        """A freshly initialised model of the architecture these weights fit."""
        return registry.create(self.arch, scale=self.scale)


_WEIGHTS: Registry[WeightsSpec] = Registry("weights", hint="to load a local file pass its path",
                                           error=UnknownWeightsError)


def register_weights(spec: WeightsSpec) -> WeightsSpec:
    """Add ``spec`` to the registry (duplicate names and unknown architectures are errors)."""
    registry.get_spec(spec.arch)  # raises for an unknown architecture
    return _WEIGHTS.add(spec.name, spec)


def _official(
    name: str, arch: str, scales: tuple[int, ...], file_name: str, paper: str | None, table2: str | None
) -> WeightsSpec:
    prefix = file_name.rsplit("-", 1)[1].split(".")[0]
    return register_weights(
        WeightsSpec(
            name=name,
            arch=arch,
            scales=scales,
            urls=(OFFICIAL_BASE_URL + file_name,),
            file_name=file_name,
            sha256_prefix=prefix,
            paper_column=paper,
            table2_column=table2,
        )
    )


_BASELINE_FILES = (
    (2, "edsr_baseline_x2-1bc95232.pt"), (3, "edsr_baseline_x3-abf2a44e.pt"), (4, "edsr_baseline_x4-6b446fab.pt")
)
for _s, _f in _BASELINE_FILES:
    _official(f"edsr-baseline-x{_s}", "edsr-baseline", (_s,), _f, None, "Baseline (single-scale)")
for _s, _f in ((2, "edsr_x2-0edfb8a3.pt"), (3, "edsr_x3-ea3ef2c6.pt"), (4, "edsr_x4-4f62e9ef.pt")):
    _official(f"edsr-x{_s}", "edsr", (_s,), _f, "EDSR", "EDSR")
_official("mdsr-baseline", "mdsr-baseline", (2, 3, 4), "mdsr_baseline-a00cab12.pt", None, "Baseline (multi-scale)")
_official("mdsr", "mdsr", (2, 3, 4), "mdsr-4a78bedf.pt", "MDSR", "MDSR")
del _s, _f, _BASELINE_FILES


def weights_names(pattern: str | None = None) -> list[str]:
    """Registered weights names, sorted; ``pattern`` is a shell-style filter."""
    return _WEIGHTS.names(pattern)


def get_weights(name: str) -> WeightsSpec:
    """The :class:`WeightsSpec` registered under ``name``; unknown names list close matches."""
    return _WEIGHTS.get(name)


def weights_for(arch: str, scale: int | None = None) -> list[WeightsSpec]:
    """Registered weights that fit architecture ``arch`` (and serve ``scale``, when given)."""
    return [w for w in _WEIGHTS.values() if w.arch == arch and (scale is None or scale in w.scales)]


def published_weights(model: str, scale: int | None = None) -> WeightsSpec:
    """The published checkpoint for ``model`` at ``scale`` (the one place that decides it).

    ``scale`` may be None only for multi-scale models. Raises :class:`WeightsError` naming the
    models that do have published weights when there are none.
    """
    found = weights_for(model, scale)
    if scale is None:
        found = [w for w in found if w.scale is None]
    if found:
        return found[0]
    have = sorted({f"{w.arch} x{'/x'.join(map(str, w.scales))}" for w in _WEIGHTS.values()})
    at = f" x{scale}" if scale is not None else ""
    raise WeightsError(
        f"no published weights for {model}{at} (published: {', '.join(have)}); pass --weights with a file "
        f"you trained (e.g. from sr_bench.train)"
    )


# --------------------------------------------------------------------------------------------
# Resolving and reading files


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_weights_path(source: str | os.PathLike[str]) -> Path | None:
    """The file ``source`` names when it is a path (None for a registered name); checked up front.

    Raises :class:`MissingWeightsFileError` (a FileNotFoundError) for a path that does not exist.
    """
    if not (isinstance(source, os.PathLike) or _looks_like_path(str(source)) or Path(source).is_file()):
        return None
    path = Path(source).expanduser()
    if not path.is_file():
        raise MissingWeightsFileError(
            f"weights file {str(path)!r} does not exist; check the path, or pass a registered name "
            f"({', '.join(weights_names())})"
        )
    return path


def _looks_like_path(source: str) -> bool:
    return (
        os.sep in source
        or (os.altsep is not None and os.altsep in source)
        or source.endswith((".pt", ".pth", ".safetensors", ".ckpt", ".bin"))
        or source.startswith((".", "~"))
    )


def default_cache_dir() -> Path:
    """Where registered weights are downloaded: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


_weights_dir: Path | None = None


def set_weights_dir(path: str | os.PathLike | None) -> None:
    """Look for registered weights in ``path`` first (files under their official names, e.g.
    ``edsr_x4-4f62e9ef.pt``); None goes back to ``$SR_BENCH_WEIGHTS_DIR``. Commands call it for
    ``--weights-dir``."""
    global _weights_dir
    _weights_dir = None if path is None else Path(path).expanduser()


def current_weights_dir() -> Path | None:
    """The folder :func:`set_weights_dir` set, else ``$SR_BENCH_WEIGHTS_DIR``, else None."""
    env = os.environ.get(WEIGHTS_DIR_ENV)
    return _weights_dir if _weights_dir is not None else (Path(env).expanduser() if env else None)


def download_urls(spec: WeightsSpec) -> tuple[str, ...]:
    """Where ``spec`` is downloaded from, in order: the mirror ``$SR_BENCH_WEIGHTS_URL`` (base URL
    + official file name; ``file://`` works too), then the official URLs."""
    base = os.environ.get(WEIGHTS_URL_ENV, "").strip()
    mirror = (base.rstrip("/") + "/" + spec.file_name,) if base else ()
    return mirror + spec.urls


def _from_folder(spec: WeightsSpec, folder: Path) -> Path | None:
    path = folder / spec.file_name
    if not path.is_file():
        return None
    digest = sha256_file(path)
    if not digest.startswith(spec.sha256_prefix):
        raise WeightsDownloadError(
            f"{path}: sha256 {digest[:16]}… does not start with {spec.sha256_prefix}, so it is not the published "
            f"{spec.name!r}; replace it with the official {spec.file_name}"
        )
    return path


def _offline_help(spec: WeightsSpec, dst: Path, errors: list[str]) -> str:
    return (
        f"cannot download weights {spec.name!r}: {'; '.join(errors)}. "
        f"The official server ({OFFICIAL_BASE_URL}) has been unreachable since 2024 (EDSR-PyTorch issues "
        f"#362/#363). Get {spec.file_name} (sha256 starts with {spec.sha256_prefix}) from a mirror and either "
        f"set {WEIGHTS_URL_ENV}=<base URL> (sr_bench fetches <base URL>/{spec.file_name}, file:// works), "
        f"or put it in a folder and pass --weights-dir FOLDER (or set {WEIGHTS_DIR_ENV}=FOLDER), "
        f"or pass the file itself: --weights /path/to/{spec.file_name}, or put it at {dst}."
    )


def resolve_weights(
    source: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    weights_dir: str | os.PathLike | None = None,
) -> tuple[Path, WeightsSpec | None]:
    """Turn ``--weights NAME|PATH`` into a local file.

    A registered name is found, in order, in ``weights_dir`` (default: :func:`current_weights_dir`), in
    the download cache, or downloaded from :func:`download_urls`; every file is hash-checked.

    Returns:
        (path, spec): ``spec`` is the registered :class:`WeightsSpec` when ``source`` is a name.

    Raises:
        MissingWeightsFileError (a FileNotFoundError): a path that does not exist.
        UnknownWeightsError: an unknown name.
        WeightsDownloadError: a name whose file could not be found or downloaded or fails its hash.
    """
    path = check_weights_path(source)
    if path is not None:
        return path, None
    spec = get_weights(str(source))
    folder = Path(weights_dir).expanduser() if weights_dir is not None else current_weights_dir()
    if folder is not None and (found := _from_folder(spec, folder)) is not None:
        return found, spec
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dst = cache / spec.file_name
    if dst.is_file():
        if sha256_file(dst).startswith(spec.sha256_prefix):
            return dst, spec
        log.warning("%s: cached file fails its sha256 check (truncated?); downloading it again", dst)
        dst.unlink()
    cache.mkdir(parents=True, exist_ok=True)
    errors = [f"{folder / spec.file_name}: no such file"] if folder is not None else []
    for url in download_urls(spec):
        try:
            torch.hub.download_url_to_file(url, str(dst), hash_prefix=spec.sha256_prefix, progress=progress)
            return dst, spec
        except RuntimeError as e:  # torch.hub: "invalid hash value"
            errors.append(f"{url}: {e}")
        except (urllib.error.URLError, OSError, TimeoutError, ValueError) as e:
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
    raise WeightsDownloadError(_offline_help(spec, dst, errors))


# --------------------------------------------------------------------------------------------
# Foreign checkpoints: one table of converters


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


def _is_state_dict(obj: object) -> TypeGuard[Mapping[str, torch.Tensor]]:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _plain_entries(obj: Mapping, skip: str) -> dict[str, object]:
    return {str(k): v for k, v in obj.items() if k != skip and isinstance(v, (int, float, str, bool, type(None)))}


def _wrapped_in(key: str) -> Callable[[object], bool]:
    return lambda obj: isinstance(obj, Mapping) and not _is_state_dict(obj) and _is_state_dict(obj.get(key))


def _add_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


# DataParallel / DistributedDataParallel save "module.<key>"; torch.compile "_orig_mod.<key>".
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _wrapper_prefix(obj: object) -> str | None:
    if not _is_state_dict(obj):
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
    if _is_state_dict(obj.get("params_ema")):
        both = _is_state_dict(obj.get("params"))
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
    return _is_state_dict(obj) and needed <= set(obj)


def _mean_shifts(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from sr_bench.models.common import MeanShift

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
    CONVERTERS.add(_c.name, _c)
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
        if fits is not None and _is_state_dict(obj) and set(obj) == set(fits):
            break
        conv = next((c for c in CONVERTERS.values() if c.name not in formats and c.detect(obj)), None)
        if conv is None:
            break
        step = conv.to_sr_bench(obj)
        obj, formats = step.obj, formats + [conv.name]
        meta.update(step.metadata)
        log.info("%s: recognised %s%s", what, conv.name, f" ({step.note})" if step.note else "")
    if not _is_state_dict(obj):
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
    path: str | os.PathLike, *, fits: Collection[str] | None = None
) -> tuple[dict[str, torch.Tensor], str, dict[str, object]]:
    """Read a weights file on the CPU, convert it to sr_bench's layout and refuse NaN/Inf.

    Returns:
        (state_dict, format, metadata): format names what was recognised, ``"+"``-joined in the
        order the converters ran (``"state_dict"``: an official ``.pt`` / sr_bench plain
        state_dict; ``"safetensors"``; ``"sr_bench-checkpoint"``; ``"basicsr+basicsr-edsr"``;
        ``"lightning"``; ``"dataparallel"``, ...). Metadata holds the plain entries of training
        checkpoints and the string metadata of safetensors files.
    """
    path = Path(path)
    meta: dict[str, object] = {}
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

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
    state, formats, more = convert_checkpoint(obj, what=str(path), fits=fits)
    check_finite(state, what=str(path))
    container = ["safetensors"] if path.suffix == ".safetensors" else []
    return state, "+".join(container + formats) or "state_dict", {**meta, **more}


# --------------------------------------------------------------------------------------------
# Explaining what a state_dict is


@dataclass(frozen=True)
class ArchSummary:
    """The architecture a state_dict describes, as far as its keys and shapes tell."""

    family: str | None  # "edsr" | "mdsr" | "srresnet" | "vdsr" | None (unrecognised)
    blocks: int | None = None
    filters: int | None = None
    scales: tuple[int, ...] = ()
    batch_norm: bool = False
    in_channels: int | None = None
    head_kernel: int | None = None

    def __str__(self) -> str:
        if self.family is None:
            return "an unrecognised layout"
        if self.family == "vdsr":
            return f"VDSR-style, {self.blocks} conv layers x {self.filters} filters, {self.in_channels} channel(s)"
        ups = "/".join(f"x{s}" for s in self.scales) or "no"
        kind = {"edsr": "EDSR-style", "mdsr": "MDSR-style multi-scale", "srresnet": "SRResNet-style"}[self.family]
        bn = "with BN" if self.batch_norm else "no BN"
        plural = "s" if len(self.scales) > 1 else ""
        return f"{self.blocks} residual blocks x {self.filters} filters, {ups} upsampler{plural} ({kind}, {bn})"


def _upsampler_scale(state: Mapping[str, torch.Tensor], prefix: str) -> int | None:
    """Scale of an ``Upsampler`` stored under ``prefix`` (conv F->4F per x2 stage, F->9F for x3)."""
    convs = sorted(
        int(m.group(1))
        for k in state
        if (m := re.fullmatch(re.escape(prefix) + r"(\d+)\.weight", k)) and state[k].ndim == 4
    )
    if not convs:
        return None
    scale = 1
    for j in convs:
        w = state[f"{prefix}{j}.weight"]
        ratio = w.shape[0] // max(w.shape[1], 1)
        r = round(ratio**0.5)
        if r * r != ratio or r < 2:
            return None
        scale *= r
    return scale


def describe_state_dict(state: Mapping[str, torch.Tensor]) -> ArchSummary:
    """Infer the architecture of an EDSR / MDSR / SRResNet / VDSR state_dict from its keys."""
    keys = set(state)
    blocks = len({m.group(1) for k in keys if (m := re.fullmatch(r"body\.(\d+)\.body\.0\.weight", k))})
    bn = "body.0.body.1.running_mean" in keys
    head = state.get("head.0.weight")
    if head is None:
        if "body.0.weight" in keys and "tail.0.weight" not in keys:  # VDSR: plain conv stack
            convs = [k for k in keys if re.fullmatch(r"body\.\d+\.weight", k) and state[k].ndim == 4]
            w = state["body.0.weight"]
            return ArchSummary(
                "vdsr", blocks=len(convs), filters=w.shape[0], in_channels=w.shape[1], head_kernel=w.shape[-1]
            )
        return ArchSummary(None)
    filters, in_channels, head_kernel = head.shape[0], head.shape[1], head.shape[-1]
    if any(k.startswith("pre_process.") for k in keys):
        ks = sorted({int(m.group(1)) for k in keys if (m := re.match(r"upsample\.(\d+)\.", k))})
        scales = tuple(s for k in ks if (s := _upsampler_scale(state, f"upsample.{k}.")) is not None)
        return ArchSummary("mdsr", blocks, filters, scales, bn, in_channels, head_kernel)
    scale = _upsampler_scale(state, "tail.0.")
    family = "srresnet" if head_kernel != 3 or f"body.{blocks + 1}.running_mean" in keys else "edsr"
    return ArchSummary(family, blocks, filters, (scale,) if scale else (), bn, in_channels, head_kernel)


def _suggest(summary: ArchSummary) -> str | None:
    """A ``create(...)`` call for a registered model whose defaults match ``summary``."""
    for name in registry.names():
        spec = registry.get_spec(name)
        if (
            spec.family == summary.family
            and spec.blocks == summary.blocks
            and spec.filters == summary.filters
            and spec.batch_norm == summary.batch_norm
        ):
            if spec.multi_scale:
                return f"create({name!r})"
            if len(summary.scales) == 1:
                return f"create({name!r}, scale={summary.scales[0]})"
    if summary.family in ("edsr", "mdsr", "srresnet") and summary.blocks:
        name = {"edsr": "edsr-baseline", "mdsr": "mdsr-baseline", "srresnet": "srresnet"}[summary.family]
        extra = "" if summary.family == "mdsr" or not summary.scales else f"scale={summary.scales[0]}, "
        return f"create({name!r}, {extra}blocks={summary.blocks}, filters={summary.filters}" + (
            f", batch_norm={summary.batch_norm})" if summary.batch_norm != registry.get_spec(name).batch_norm else ")"
        )
    return None


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], *, what: str = "checkpoint") -> None:
    """Raise :class:`WeightsMismatchError` with an explanation unless ``state`` has exactly the
    model's keys with the model's shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or wrong):
        return
    theirs, ours = describe_state_dict(state), describe_state_dict(expected)
    lines = []
    if theirs != ours and theirs.family is not None:
        msg = f"{what} has {theirs}; the model has {ours}"
        hint = _suggest(theirs)
        lines.append(msg + (f": did you mean {hint}?" if hint else "."))
    else:
        prefixes = {k.split(".", 1)[0] for k in state}
        if prefixes == {"module"} or prefixes == {"_orig_mod"}:
            lines.append(
                f"{what} keys all start with '{prefixes.pop()}.' (saved from a DataParallel/compiled wrapper): "
                f"save the inner module's state_dict instead"
            )
        else:
            lines.append(f"{what} does not fit the model ({theirs} vs {ours}).")
    details = []
    for label, items in (("missing", missing), ("unexpected", unexpected)):
        if items:
            details.append(f"{len(items)} {label} key(s), e.g. {', '.join(items[:3])}")
    if wrong:
        k = wrong[0]
        details.append(
            f"{len(wrong)} shape mismatch(es), e.g. {k}: {what} {tuple(state[k].shape)} "
            f"vs model {tuple(expected[k].shape)}"
        )
    raise WeightsMismatchError(lines[0] + " [" + "; ".join(details) + "]")


# --------------------------------------------------------------------------------------------
# Loading


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


def _identify(sha256: str) -> WeightsSpec | None:
    return next((w for w in _WEIGHTS.values() if sha256.startswith(w.sha256_prefix)), None)


def load_weights(
    model: nn.Module,
    source: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> WeightsInfo:
    """Load ``source`` (a registered name or a file) into ``model`` strictly.

    The file is read on the CPU and copied into the model's parameters whatever their device and
    dtype. A local file whose sha256 matches a registered checkpoint is identified as it.

    Raises:
        WeightsMismatchError: the checkpoint is for another architecture or scale (explained).
        NonFiniteWeightsError: the file holds NaN/Inf (named).
        WeightsError, WeightsDownloadError, FileNotFoundError: see :func:`resolve_weights`.
    """
    path, spec = resolve_weights(source, cache_dir=cache_dir, progress=progress)
    digest = sha256_file(path)
    spec = spec or _identify(digest)
    state, fmt, meta = read_state_dict(path, fits=model.state_dict().keys())
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

    Every key outside ``exclude`` must exist on both sides with the same shape (else
    :class:`WeightsMismatchError`); nothing is dropped silently. ``state`` is a state_dict or
    anything :func:`resolve_weights` accepts. The report is returned and logged.
    """
    if not isinstance(state, Mapping):
        path, _ = resolve_weights(state)
        state, _, _ = read_state_dict(path)
    exclude = tuple(exclude)
    target = model.state_dict()
    want = {k for k in target if not _excluded(k, exclude)}
    have = {k for k in state if not _excluded(k, exclude)}
    bad_shape = [k for k in want & have if tuple(state[k].shape) != tuple(target[k].shape)]
    if want != have or bad_shape:
        theirs, ours = describe_state_dict(state), describe_state_dict(target)
        problems = []
        if want - have:
            problems.append(f"model keys missing from the checkpoint: {', '.join(sorted(want - have)[:3])}")
        if have - want:
            problems.append(f"checkpoint keys the model lacks: {', '.join(sorted(have - want)[:3])}")
        if bad_shape:
            k = bad_shape[0]
            problems.append(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(target[k].shape)}")
        raise WeightsMismatchError(
            f"warm start outside {exclude} does not fit: checkpoint has {theirs}; the model has {ours} "
            f"[{'; '.join(problems)}]"
        )
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
    from safetensors.torch import save

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    data = _canonical_header(save(tensors, metadata=meta))
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _canonical_header(data: bytes) -> bytes:
    """safetensors writes ``__metadata__`` in hash-map order, which changes from process to
    process; rewrite the header with it sorted (the tensor entries keep their order and offsets)."""
    import json
    import struct

    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors aligns the data to 8 bytes
    return struct.pack("<Q", len(text)) + text + data[8 + n :]
