"""Training configuration: typed dataclasses and the three profiles.

Every hyper-parameter of a run lives in one :class:`TrainConfig`. A profile
(:data:`PROFILES`: ``paper``, ``quick``, ``smoke``) is a function that returns a full config for a
model and scale; it only chooses *values*, never adds behaviour. The resolved config is saved as
``config.json`` beside the run and inside every checkpoint.

A run configuration file (``--config run.toml``, :func:`load_run_file`) holds the same dotted
fields as ``--set``, as TOML tables or dotted keys; ``train`` and ``reproduce`` apply it over the
profile (``--set`` wins), and the run's ``config.json`` keeps its path, sha256 and text
(``config_file``).

The ``paper`` profile is the recipe of Lim et al. (Section 4.2; ``docs/protocol.md#training-recipe``), field
by field: 48x48 LR patches, random horizontal flips and 90-degree rotations, DIV2K mean handled by
the model, batch 16, Adam (0.9, 0.999, 1e-8), lr 1e-4 halved every 2e5 updates, L1 loss, 3e5
updates; the loss is the model's own (SRResNet L2, Table 1); multi-scale models (MDSR, VDSR) draw
one random scale per minibatch.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import sys
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from sr_bench.errors import DataError, UsageError
from sr_bench.images import atomic_write
from sr_bench.lookup import Registry
from sr_bench.models import get_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (a dependency there)
    import tomli as tomllib

__all__ = [
    "EXECUTION_FIELDS",
    "GPU_ITERATIONS",
    "PROFILES",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RuntimeConfig",
    "TrainConfig",
    "ValConfig",
    "RunFile",
    "config_diff",
    "gpu_profile",
    "load_run_file",
    "make_config",
    "paper_profile",
    "quick_profile",
    "run_name",
    "smoke_profile",
]

CONFIG_VERSION = 1


@dataclass
class ModelConfig:
    """Which network, at which scales, built with which ``sr_bench.models.create`` options."""

    name: str = "edsr-baseline"
    #: scales trained: one for single-scale models; every scale of a multi-scale model, one of
    #: which is drawn at random for each minibatch.
    scales: tuple[int, ...] = (2,)
    #: ``create()`` options (ablation knobs: blocks, filters, res_scale, batch_norm, ...).
    options: dict[str, Any] = field(default_factory=dict)
    #: the loss; None takes the model's own (``ModelSpec.loss``: L1, SRResNet/VDSR L2).
    loss: Literal["l1", "l2"] | None = None
    #: a checkpoint to start from (``--init``); x2 weights for an x3/x4 model load everything but
    #: the upsampler.
    init: str | None = None


@dataclass
class DataConfig:
    """Where training patches come from and how they are cut."""

    #: ``DIV2K-train`` (the paper), ``T91``, ``embedded-train``, a folder path, or ``auto``
    #: (DIV2K-train when present, else T91).
    dataset: str = "DIV2K-train"
    #: data root; None means ``$SR_BENCH_DATA``.
    root: str | None = None
    #: LR patch side; the HR patch is ``patch_size * scale`` (48 -> 96/144/192).
    patch_size: int = 48
    #: global minibatch; under DistributedDataParallel every rank takes ``batch_size / world``.
    batch_size: int = 16
    hflip: bool = True
    rot90: bool = True
    #: DataLoader worker processes (0: patches are cut in the training process).
    num_workers: int = 2
    prefetch_factor: int = 4
    #: decoded images held in RAM (``memory``) or as uint8 arrays memory-mapped from
    #: ``cache_dir`` (``disk``: shared by workers and later runs, for DIV2K-sized sets).
    cache: Literal["memory", "disk"] = "memory"
    #: where ``disk`` caches live; None means ``$SR_BENCH_CACHE`` or ``~/.cache/sr_bench``.
    cache_dir: str | None = None
    #: cut batches on the device from images held there (bit-identical batches): ``auto`` on
    #: CUDA when the decoded set takes under a quarter of the free device memory; true; false.
    on_device: bool | Literal["auto"] = "auto"


@dataclass
class OptimConfig:
    """Optimiser, learning-rate schedule and length of training."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    #: the lr is multiplied by ``lr_gamma`` every ``lr_step`` updates (step decay).
    lr_step: int = 200_000
    lr_gamma: float = 0.5
    #: number of updates (minibatches).
    iterations: int = 300_000


@dataclass
class ValConfig:
    """PSNR/SSIM on a few images while training (the evaluation core, paper protocol)."""

    #: a dataset name or path; ``auto``: DIV2K-val10 when training on DIV2K, else Set5, else the
    #: embedded photos.
    dataset: str = "auto"
    #: images used (the paper validates on 10).
    max_images: int | None = 10
    #: validate every this many updates, and at the end; 0 disables it (except at the end).
    every: int = 1000
    protocol: str = "paper"


@dataclass
class RuntimeConfig:
    """How the run executes; these never change the recipe (see :data:`EXECUTION_FIELDS`)."""

    #: ``auto`` (cuda when available), ``cpu``, ``cuda``, ``cuda:1``, ...
    device: str = "auto"
    #: autocast precision: ``auto`` (on CUDA the faster of fp32 and bf16, timed at the start of
    #: a run; on the CPU bf16 where it has native bf16 instructions), ``bf16``, ``fp16`` (CUDA,
    #: with a GradScaler) or ``none``.
    amp: Literal["auto", "bf16", "fp16", "none"] = "auto"
    #: float32 convolutions and matrix products of training in TF32 on GPUs that have it (Ampere
    #: and later; a 10-bit mantissa): PyTorch's own default for cuDNN convolutions, what the gpu
    #: profile's update counts were measured with, and finer than the bf16 that ``amp auto`` may
    #: pick. False: IEEE float32, as the paper's 2017 GPUs computed. Evaluation is IEEE float32
    #: either way (sr_bench.precision); the run's log says which math it trained in.
    tf32: bool = True
    channels_last: bool = True
    #: ``torch.compile`` mode for the training forward pass (``reduce-overhead``: CUDA graphs).
    compile: Literal["none", "default", "reduce-overhead"] = "none"
    #: intra-op threads of the training process; None leaves torch's default.
    threads: int | None = None
    save_every: int = 5000
    log_every: int = 100
    progress: bool = True


@dataclass
class TrainConfig:
    """One training run. ``to_dict``/``from_dict`` round-trip it through JSON."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    val: ValConfig = field(default_factory=ValConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    seed: int = 0
    #: output folder (checkpoint.pt, final.safetensors, log.jsonl, val_curve.png, config.json).
    out: str = "runs/train"
    #: the profile the values came from, and what it changed against the paper's recipe.
    profile: str = "paper"
    notes: tuple[str, ...] = ()
    #: the run configuration file (``--config run.toml``) the values came from: its ``path``,
    #: ``sha256`` and ``text``; empty when there was none.
    config_file: dict[str, Any] = field(default_factory=dict)
    version: int = CONFIG_VERSION

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """A config from its plain form; configs and checkpoints written before ``runtime.compile``
        took a mode stored it as true/false, and still load."""
        runtime = dict(d.get("runtime", {}))
        if isinstance(runtime.get("compile"), bool):
            runtime["compile"] = "default" if runtime["compile"] else "none"
            d = {**d, "runtime": runtime}
        return _from_plain(cls, d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def save(self, path: str | Path) -> Path:
        text = self.to_json() + "\n"
        return atomic_write(path, lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with dotted fields changed: ``cfg.replace(**{"optim.lr": 2e-4, "seed": 1})``."""
        check_fields(changes)
        new = TrainConfig.from_dict(self.to_dict())
        for key, value in changes.items():
            obj = new
            *parents, last = key.split(".")
            for p in parents:
                obj = getattr(obj, p)
            setattr(obj, last, value)
        return TrainConfig.from_dict(new.to_dict())  # re-coerce types

    @property
    def multi_scale(self) -> bool:
        return len(self.model.scales) > 1

    def validate(self) -> None:
        """Raise ValueError on values that cannot run."""
        errors = []
        if not self.model.scales or any(int(s) != s or s < 2 for s in self.model.scales):
            errors.append(f"model.scales must be integers >= 2, got {self.model.scales}")
        if self.model.loss not in (None, "l1", "l2"):
            errors.append(f"model.loss must be 'l1', 'l2' or None, got {self.model.loss!r}")
        if self.data.patch_size < 1 or self.data.batch_size < 1:
            errors.append("data.patch_size and data.batch_size must be positive")
        if self.data.num_workers < 0:
            errors.append("data.num_workers must be >= 0")
        if self.data.cache not in ("memory", "disk"):
            errors.append(f"data.cache must be 'memory' or 'disk', got {self.data.cache!r}")
        if self.optim.iterations < 0 or self.optim.lr_step < 1:
            errors.append("optim.iterations must be >= 0 and optim.lr_step >= 1")
        if self.runtime.amp not in ("auto", "bf16", "fp16", "none"):
            errors.append(f"runtime.amp must be auto, bf16, fp16 or none, got {self.runtime.amp!r}")
        if self.runtime.save_every < 1 or self.runtime.log_every < 1:
            errors.append("runtime.save_every and runtime.log_every must be >= 1")
        if self.val.every < 0:
            errors.append("val.every must be >= 0")
        if errors:
            raise ValueError("invalid training config: " + "; ".join(errors))


class UnknownFieldError(KeyError):
    """A dotted config name that is not a field; the message lists close names."""

    exit_code = 2  # a usage error under sr_bench.cli's policy

    def __str__(self) -> str:
        return str(self.args[0])


def field_names() -> list[str]:
    """Every dotted field of :class:`TrainConfig` (``model.options`` is one field)."""
    return sorted(_flatten(TrainConfig().to_dict()))


def check_fields(keys: typing.Iterable[str], where: str = "--set") -> None:
    """Raise :class:`UnknownFieldError` naming the first unknown dotted field and close matches
    (``where``: what gave it, ``--set`` or a run file)."""
    known = field_names()
    for key in keys:
        if key not in known:
            leaf = key.rsplit(".", 1)[-1]
            same_leaf = [k for k in known if k.rsplit(".", 1)[-1] == leaf]  # a field under another section
            close = list(dict.fromkeys(same_leaf + difflib.get_close_matches(key, known, n=3, cutoff=0.6)))[:3]
            hint = f"did you mean {', '.join(close)}?" if close else f"fields: {', '.join(known)}"
            raise UnknownFieldError(f"{where} {key}: TrainConfig has no field {key!r}; {hint}")


def restate_iterations(cfg: TrainConfig) -> TrainConfig:
    """Keep a profile's note true when ``optim.iterations`` differs from the count it states (the
    profile's, or the one a saved config's note states)."""
    said = re.compile(rf"^{re.escape(str(cfg.profile))} profile: \d+ updates")
    now = f"{cfg.profile} profile: {cfg.optim.iterations} updates"
    cfg.notes = tuple(said.sub(now, note, count=1) for note in cfg.notes)
    return cfg



#: Fields that only change how a run executes. ``--resume`` accepts new values for these;
#: anything else must equal the checkpoint's config (the recipe of a run never changes midway).
#: ``optim.iterations`` may grow: the schedule is a function of the update count alone.
EXECUTION_FIELDS = (
    "config_file",
    "data.root",
    "data.num_workers",
    "data.prefetch_factor",
    "data.cache",
    "data.cache_dir",
    "data.on_device",
    "optim.iterations",
    "val.dataset",
    "val.max_images",
    "val.every",
    "val.protocol",
    "runtime.device",
    "runtime.amp",
    "runtime.tf32",
    "runtime.channels_last",
    "runtime.compile",
    "runtime.threads",
    "runtime.save_every",
    "runtime.log_every",
    "runtime.progress",
    "out",
    "profile",
    "notes",
)


#: fields whose value is a mapping (one field, not a section of fields)
_MAPPING_FIELDS = ("model.options", "config_file")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in _MAPPING_FIELDS:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_diff(a: TrainConfig, b: TrainConfig, ignore: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    """Dotted field -> (a's value, b's value) for every field that differs."""
    fa, fb = _flatten(a.to_dict()), _flatten(b.to_dict())
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if k not in ignore and fa.get(k) != fb.get(k)}


#: what a profile's note is followed by when fields it sets were changed
CHANGED_HERE = "; changed here: "
#: fields left out of that list: how a run executes (not its recipe; validation is listed, as the
#: notes state it), the update count the note already states, and the seed, which no note states
_NOT_RESTATED = tuple(f for f in EXECUTION_FIELDS if not f.startswith("val.")) + ("seed",)


def _brief(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def restate_profile(cfg: TrainConfig, profile: TrainConfig | None = None) -> TrainConfig:
    """Keep a profile's note true when the run changes what it states: the update count is
    rewritten in place, and every other recipe or validation field that differs from ``profile``
    (the profile's own config; default: ``cfg.profile`` made again for its model and scale) is
    listed after it (``; changed here: optim.lr 0.0006 -> 0.0002``), replacing any such list a
    saved config carried."""
    if profile is None:
        if cfg.profile not in PROFILES:
            return cfg
        scales = cfg.model.scales
        profile = PROFILES.get(cfg.profile)(cfg.model.name, scales[0] if len(scales) == 1 else None)
    cfg = restate_iterations(cfg)
    changed = config_diff(profile, cfg, ignore=_NOT_RESTATED)
    suffix = CHANGED_HERE + ", ".join(f"{k} {_brief(a)} -> {_brief(b)}" for k, (a, b) in changed.items())
    said = f"{cfg.profile} profile: "
    cfg.notes = tuple(note.split(CHANGED_HERE)[0] + (suffix if changed else "") if note.startswith(said) else note
                      for note in cfg.notes)
    return cfg


# ---- run configuration files -------------------------------------------------------------------


@dataclass(frozen=True)
class RunFile:
    """A run configuration file: the dotted changes it makes, and the profile, model and scales
    it names (which choose the starting config rather than change it)."""

    changes: dict[str, Any]
    profile: str | None
    model: str | None
    scales: tuple[int, ...] | None
    source: dict[str, Any]  # TrainConfig.config_file: path, sha256, text


def _parse_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except OSError as e:
        raise DataError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
        return tomllib.loads(text), text
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise DataError(f"--config {path}: not valid TOML ({e}); write fields as in --set, e.g. [optim] lr = 2e-4 "
                        f"or optim.lr = 2e-4") from None


def load_run_file(path: str | Path) -> RunFile:
    """Read a TOML run configuration: the fields of ``--set`` as tables (``[optim]`` ``lr = 2e-4``)
    or dotted keys (``optim.lr = 2e-4``); ``model.options`` is one table. ``profile``,
    ``model.name`` and ``model.scales`` choose the starting config. An unknown field, or a value
    that does not fit its field, is refused naming the file."""
    path = Path(path).expanduser()
    data, text = _parse_toml(path)
    changes = _flatten(data)
    where = f"--config {path}:"
    try:
        check_fields(changes, where=where)
    except UnknownFieldError as e:
        raise UsageError(f"{e} (in TOML, the keys after a [table] header belong to that table)") from None
    profile, model, scales = changes.pop("profile", None), changes.pop("model.name", None), changes.pop(
        "model.scales", None)
    try:
        TrainConfig().replace(**changes)  # every value must fit its field
        scales = tuple(_coerce(tuple[int, ...], scales, "model.scales")) if scales is not None else None
    except (TypeError, ValueError) as e:
        raise UsageError(f"{where} {e}") from None
    for name, value in (("profile", profile), ("model.name", model)):
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{where} {name} must be a string, got {value!r}")
    source = {"path": str(path.resolve()), "sha256": hashlib.sha256(text.encode()).hexdigest(), "text": text}
    return RunFile(changes, profile, model, scales, source)


# ---- profiles -------------------------------------------------------------------------------


def _model_defaults(name: str, scale: int | None) -> ModelConfig:
    spec = get_spec(name)
    if spec.multi_scale:
        if scale is not None and scale not in spec.scales:
            raise ValueError(f"{name} serves scales {spec.scales}; x{scale} is not one of them")
        scales = tuple(spec.scales)
    else:
        if scale is None:
            raise ValueError(f"{name} is a single-scale model: give a scale, one of {spec.scales}")
        scales = (int(scale),)
    return ModelConfig(name=name, scales=scales, loss=spec.loss)


def paper_profile(model: str = "edsr-baseline", scale: int | None = 2) -> TrainConfig:
    """The paper's recipe (Section 4.2) for ``model`` at ``scale`` (multi-scale models train all)."""
    cfg = TrainConfig(model=_model_defaults(model, scale), profile="paper")
    cfg.data.cache = "disk"  # DIV2K: 800 2K images, memory-mapped and shared by the workers
    notes = []
    if cfg.model.name in ("edsr", "edsr-baseline") and cfg.model.scales[0] != 2:
        notes.append(
            "paper: x3/x4 EDSR start from the trained x2 model (all but the upsampler): pass --init X2_CHECKPOINT"
        )
    cfg.notes = tuple(notes)
    return cfg


#: quick-profile values, chosen by measurement on a 2-core CPU (see the module docstring of
#: sr_bench.train and the training README section).
QUICK_ITERATIONS = 750
QUICK_LR = 6e-4
QUICK_LR_STEP = 500


def quick_profile(model: str = "edsr-baseline", scale: int | None = 2) -> TrainConfig:
    """The paper's recipe with far fewer updates, for minutes on a CPU.

    Same patches, augmentation, batch, optimiser and loss. Changed: 750 updates instead of 3e5;
    lr 6e-4 halved after 500 updates (the paper halves after 2/3 of its run too; the higher lr
    makes up for 400x fewer updates: measured 36.11 dB on Set5 x2 after 600 updates against
    35.3 after 500 at lr 2e-4); DIV2K-train when present, else T91; validation on Set5 every
    250 updates.
    """
    cfg = paper_profile(model, scale)
    cfg.profile = "quick"
    cfg.data.dataset = "auto"
    cfg.data.cache = "memory"
    cfg.data.num_workers = 1
    cfg.optim.iterations = QUICK_ITERATIONS
    cfg.optim.lr = QUICK_LR
    cfg.optim.lr_step = QUICK_LR_STEP
    cfg.val.dataset = "auto"
    cfg.val.every = 250
    cfg.val.max_images = None
    cfg.runtime.save_every = 250
    cfg.runtime.log_every = 25
    cfg.notes = cfg.notes + (
        (f"quick profile: {QUICK_ITERATIONS} updates instead of 300000, lr {QUICK_LR:g} instead of 1e-4, "
         f"halved every {QUICK_LR_STEP} instead of 200000 updates; data DIV2K-train when present, else T91; "
         f"validation every 250 updates; patches, augmentation, batch 16, Adam and loss as the paper"),
    )
    return cfg


def smoke_profile(model: str = "edsr-baseline", scale: int | None = 2) -> TrainConfig:
    """Seconds: a handful of updates on small patches, for tests and installation checks."""
    cfg = paper_profile(model, scale)
    cfg.profile = "smoke"
    cfg.data.dataset = "auto"
    cfg.data.cache = "memory"
    cfg.data.patch_size = 16
    cfg.data.batch_size = 4
    cfg.data.num_workers = 0
    cfg.optim.iterations = 8
    cfg.optim.lr_step = 4
    cfg.val.dataset = "auto"
    cfg.val.every = 4
    cfg.val.max_images = 1
    cfg.runtime.save_every = 4
    cfg.runtime.log_every = 1
    cfg.runtime.amp = "none"
    cfg.notes = cfg.notes + (
        "smoke profile: 8 updates of 4 16x16 patches, lr halved every 4 updates, validation on 1 image; for tests only",
    )
    return cfg


#: gpu-profile updates per (model, scale); multi-scale models (key scale None) train all their
#: scales in one run. Chosen so the whole Table 3 (training and evaluation) fits 12 minutes on one
#: H100/H200 in two ``--models`` parts of at most 6 minutes. Estimates from speeds measured on an
#: H200 with ``python -m sr_bench.bench`` before the trainer's speed work of November 2026
#: (edsr-baseline x2 55-61 updates/s end to end, edsr x2 28.7 ms per update in bf16), until a GPU
#: run of ``reproduce --profile gpu`` measures them:
#: edsr 2,500 + 2 x 800 updates ~ 2.0 min, every other model together ~ 3 min at those speeds.
GPU_ITERATIONS: dict[tuple[str, int | None], int] = {
    ("edsr-baseline", 2): 3000,
    ("edsr-baseline", 3): 1000,
    ("edsr-baseline", 4): 1000,
    ("edsr", 2): 2500,
    ("edsr", 3): 800,
    ("edsr", 4): 800,
    ("mdsr-baseline", None): 2000,
    ("mdsr", None): 1000,
    ("srresnet", 2): 1000,
    ("srresnet", 3): 500,
    ("srresnet", 4): 500,
    ("vdsr", None): 1500,
}
#: models whose published results came from much longer training with their own recipes; the gpu
#: profile trains them briefly with the EDSR recipe (and says so in the table)
GPU_BRIEF = ("srresnet", "vdsr")


def _gpu_updates(model: str, scales: tuple[int, ...]) -> int:
    key = (model, None if len(scales) > 1 else scales[0])
    if key not in GPU_ITERATIONS:
        raise ValueError(f"the gpu profile has no update count for {model} x{'/'.join(map(str, scales))}; "
                         f"add it to GPU_ITERATIONS in sr_bench/train/config.py")
    return GPU_ITERATIONS[key]


def gpu_profile(model: str = "edsr-baseline", scale: int | None = 2) -> TrainConfig:
    """The paper's recipe at a budget: the whole Table 3 in 12 minutes on one H100/H200.

    Unchanged: 48x48 LR patches, batch 16, augmentation, Adam, lr 1e-4, the model's loss, x2 warm
    start for x3/x4 EDSR (``reproduce`` passes ``--init``), one random scale per minibatch for
    multi-scale models. Changed: :data:`GPU_ITERATIONS` updates instead of 3e5 (1e6), the lr halved
    after 2/3 of them (where the paper halves: 2e5 of 3e5); DIV2K-train when present, else T91,
    decoded into RAM; validation on Set5 (DIV2K-val10 with DIV2K) every 500 updates.
    """
    cfg = paper_profile(model, scale)
    cfg.profile = "gpu"
    n = _gpu_updates(cfg.model.name, cfg.model.scales)
    cfg.data.dataset = "auto"
    cfg.data.cache = "memory"
    cfg.optim.iterations = n
    cfg.optim.lr_step = max(1, round(n * 2 / 3))
    cfg.val.dataset = "auto"
    cfg.val.every = 500
    cfg.runtime.save_every = 1000
    cfg.runtime.log_every = 50
    brief = (f"; {cfg.model.name}'s published numbers come from its own, much longer training: this is a brief "
             f"run of its architecture with the EDSR recipe") if cfg.model.name in GPU_BRIEF else ""
    cfg.notes = cfg.notes + (
        (f"gpu profile: {n} updates instead of 300000, lr 1e-4 halved after {cfg.optim.lr_step} instead of "
         f"200000; data DIV2K-train when present, else T91; patches, augmentation, batch 16, Adam and loss as the "
         f"paper{brief}"),
    )
    return cfg


PROFILES: Registry[typing.Callable[..., TrainConfig]] = Registry(
    "training profile", hint="pass --profile with one of the registered names"
)
PROFILES.add("paper", paper_profile)
PROFILES.add("quick", quick_profile)
PROFILES.add("smoke", smoke_profile)
PROFILES.add("gpu", gpu_profile)


def run_name(profile: str, model: str, scale: int) -> str:
    """The run folder of ``profile``'s ``model`` at ``scale``: ``{profile}-{model}-x{scale}``. One
    spelling, used by ``reproduce`` and ``ablate``, so that they share runs."""
    return f"{profile}-{model}-x{scale}"


def make_config(profile: str, model: str, scale: int | None, **changes: Any) -> TrainConfig:
    """``PROFILES[profile](model, scale)`` with dotted-field changes applied."""
    if profile not in PROFILES:
        raise ValueError(PROFILES.unknown_message(profile))
    cfg = PROFILES.get(profile)(model, scale)
    if changes:
        # a profile's note states its update count, lr, validation...: keep it true when they are changed
        cfg = restate_profile(cfg.replace(**changes), cfg)
    cfg.validate()
    return cfg


# ---- plain-data conversion -----------------------------------------------------------------


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any or value is None:
        return value
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        for a in members:
            try:
                return _coerce(a, value, where)
            except (TypeError, ValueError):
                continue
        raise TypeError(f"{where}: {value!r} does not fit {tp}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f"{where}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value, strict=True))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _from_plain(tp, value)
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise TypeError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _from_plain(cls: type, d: dict[str, Any]) -> Any:
    if not isinstance(d, dict):
        raise TypeError(f"{cls.__name__}: expected a mapping, got {d!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(sorted(unknown))}")
    kwargs = {k: _coerce(hints[k], v, f"{cls.__name__}.{k}") for k, v in d.items()}
    return cls(**kwargs)
