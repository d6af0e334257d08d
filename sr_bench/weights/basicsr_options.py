"""BasicSR option files: the network a BasicSR run trained or tested, read from the ``.yml`` it ran
with (``options/train/EDSR/train_EDSR_Mx2.yml`` and the like), as sr_bench sees it.

BasicSR keeps ``rgb_mean`` and ``img_range`` in ``network_g`` of that file, not in its checkpoints,
so the file is where they are stated. :func:`read_basicsr_options` returns the registered model
(``edsr`` for 32 x 256 with residual scaling 0.1, else ``edsr-baseline`` with the
``blocks``/``filters``/``res_scale`` options the file gives), its ``create()`` options (always
``rgb_mean`` and ``img_range``, as stated or as BasicSR's defaults), the scale, the run's
``name`` (BasicSR's default suffix of the images it saves), and the weights entry and file
BasicSR would load: ``path.param_key_g``, else ``params_ema`` when the file trains with EMA (its
validation runs the EMA weights), else ``params`` (BasicSR's loader default); and
``path.pretrain_network_g``, relative to the current folder as BasicSR reads it.

PyYAML reads the file; it is an optional dependency (``pip install pyyaml``, or the ``basicsr``
extra). See docs/basicsr.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sr_bench.errors import DataError, UsageError

__all__ = ["BasicsrNetwork", "read_basicsr_options", "BASICSR_EDSR_DEFAULTS"]

#: BasicSR 1.4.2 ``basicsr/archs/edsr_arch.py``: ``EDSR.__init__`` keyword defaults
BASICSR_EDSR_DEFAULTS: dict[str, Any] = {
    "num_feat": 64, "num_block": 16, "upscale": 4, "res_scale": 1.0, "img_range": 255.0,
    "rgb_mean": [0.4488, 0.4371, 0.4040],
}
_REQUIRED = ("num_in_ch", "num_out_ch")
#: sr_bench's registered presets: (num_feat, num_block, res_scale) -> model name
_PRESETS = {(256, 32, 0.1): "edsr", (64, 16, 1.0): "edsr-baseline"}


@dataclass(frozen=True)
class BasicsrNetwork:
    """What a BasicSR option file says about its ``network_g`` and the weights it loads."""

    path: Path
    name: str  # the run's name (experiments/<name>/, and the suffix of its saved images)
    model: str  # sr_bench registry name
    scale: int
    options: dict[str, Any] = field(default_factory=dict)  # create() options
    weights: str | None = None  # path.pretrain_network_g, or None
    param_key: str = "params"
    param_key_why: str = ""

    @property
    def weights_hint(self) -> str:
        """Where BasicSR saves the weights of this run (for a message when none were given)."""
        return f"experiments/{self.name}/models/net_g_latest.pth"


def _load_yaml(path: Path) -> Mapping[str, Any]:
    try:
        import yaml  # optional dependency: only this reader needs it
    except ImportError:
        raise UsageError(f"--basicsr-options {path}: reading BasicSR option files needs PyYAML: "
                         f"pip install pyyaml (or pip install 'sr_bench[basicsr]')") from None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--basicsr-options {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"--basicsr-options {path}: cannot read it ({e}); pass BasicSR's .yml option file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        why = f" ({problem})" if problem else ""
        raise DataError(f"--basicsr-options {path}: not valid YAML{at}{why}; pass BasicSR's .yml option file") from None
    if not isinstance(data, Mapping):
        raise DataError(f"--basicsr-options {path}: holds {type(data).__name__}, not BasicSR options (a mapping with "
                        f"network_g)")
    return data


def _network_g(path: Path, data: Mapping[str, Any]) -> dict[str, Any]:
    net = data.get("network_g")
    if not isinstance(net, Mapping):
        raise DataError(f"--basicsr-options {path}: no network_g section; pass the option file the model was "
                        f"trained or tested with")
    kind = net.get("type")
    if kind != "EDSR":
        raise DataError(f"--basicsr-options {path}: network_g.type is {kind!r}; sr_bench reads BasicSR's EDSR only "
                        f"(for another network, pass --model package.module:factory)")
    unknown = sorted(set(net) - {"type", *_REQUIRED, *BASICSR_EDSR_DEFAULTS})
    if unknown:
        raise DataError(f"--basicsr-options {path}: network_g has {', '.join(unknown)}, which BasicSR's EDSR does "
                        f"not take (it takes {', '.join([*_REQUIRED, *BASICSR_EDSR_DEFAULTS])})")
    for key in _REQUIRED:
        if net.get(key, 3) != 3:
            raise DataError(f"--basicsr-options {path}: network_g.{key} is {net[key]!r}; sr_bench's EDSR is RGB "
                            f"(3 channels in and out)")
    return {**BASICSR_EDSR_DEFAULTS, **{k: v for k, v in net.items() if k != "type"}}


def _number(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DataError(f"--basicsr-options {path}: network_g.{key} is {value!r}, not a number")
    try:
        return float(value)  # BasicSR writes !!float 1e-4 and 255.
    except ValueError:
        raise DataError(f"--basicsr-options {path}: network_g.{key} is {value!r}, not a number") from None


def _model(path: Path, net: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    feat, blocks = int(_number(path, "num_feat", net["num_feat"])), int(_number(path, "num_block", net["num_block"]))
    res_scale = _number(path, "res_scale", net["res_scale"])
    name = _PRESETS.get((feat, blocks, res_scale), "edsr-baseline")
    options: dict[str, Any] = {}
    if name == "edsr-baseline" and (feat, blocks, res_scale) != (64, 16, 1.0):
        options = {"blocks": blocks, "filters": feat, "res_scale": res_scale}
    mean = net["rgb_mean"]
    if not isinstance(mean, (list, tuple)) or len(mean) != 3:
        raise DataError(f"--basicsr-options {path}: network_g.rgb_mean is {mean!r}, not three numbers")
    options["rgb_mean"] = [_number(path, "rgb_mean", m) for m in mean]
    options["img_range"] = _number(path, "img_range", net["img_range"])
    return name, options


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    return value if isinstance(value, Mapping) else {}


def _param_key(data: Mapping[str, Any]) -> tuple[str, str]:
    paths, train = _section(data, "path"), _section(data, "train")
    if paths.get("param_key_g"):
        return str(paths["param_key_g"]), "path.param_key_g"
    ema = train.get("ema_decay") or 0
    if isinstance(ema, (int, float)) and not isinstance(ema, bool) and ema > 0:
        return "params_ema", "train.ema_decay > 0: BasicSR validates this run with its EMA weights"
    return "params", "BasicSR's loader default (no path.param_key_g)"


def read_basicsr_options(path: str | os.PathLike) -> BasicsrNetwork:
    """The EDSR a BasicSR option file describes; :class:`UsageError` / :class:`DataError` naming
    the file and the field when it cannot be one."""
    path = Path(path).expanduser()
    data = _load_yaml(path)
    net = _network_g(path, data)
    scale = int(_number(path, "upscale", net["upscale"]))
    top = data.get("scale")
    if top is not None and int(_number(path, "scale", top)) != scale:
        raise DataError(f"--basicsr-options {path}: scale is {top} but network_g.upscale is {scale}; BasicSR needs "
                        f"them equal: fix the file")
    model, options = _model(path, net)
    weights = _section(data, "path").get("pretrain_network_g")
    key, why = _param_key(data)
    return BasicsrNetwork(path=path, name=str(data.get("name") or path.stem), model=model, scale=scale,
                          options=options, weights=str(weights) if weights else None, param_key=key,
                          param_key_why=why)
