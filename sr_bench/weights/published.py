"""The registry of published checkpoints: :class:`WeightsSpec` entries for the official EDSR /
MDSR files (URL, file name, sha256 prefix, the architecture they fit, the paper's Table 3 column)
and the one place that decides which published checkpoint serves (model, scale).

Finding the files on disk or downloading them is :mod:`sr_bench.weights.files`; this module only
says what exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from sr_bench.lookup import Registry
from sr_bench.models import registry
from sr_bench.weights.errors import UnknownWeightsError, WeightsError

__all__ = [
    "OFFICIAL_BASE_URL", "WeightsSpec", "register_weights", "weights_names", "get_weights", "weights_for",
    "published_weights", "identify_weights",
]

OFFICIAL_BASE_URL = "https://cv.snu.ac.kr/research/EDSR/models/"



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



def identify_weights(sha256: str) -> WeightsSpec | None:
    """The registered checkpoint whose sha256 prefix ``sha256`` starts with, or None."""
    return next((w for w in _WEIGHTS.values() if sha256.startswith(w.sha256_prefix)), None)
