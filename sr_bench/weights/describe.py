"""Explaining a state_dict: which architecture its keys and shapes describe (:class:`ArchSummary`),
the ``create(...)`` call that would fit it, and a strict key/shape check that says "checkpoint has
32 residual blocks x 256 filters, x4 upsampler; the model has 16 x 64, x2: did you mean
create('edsr', scale=4)?" instead of a wall of missing keys."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from sr_bench.models import registry
from sr_bench.weights.errors import WeightsMismatchError

__all__ = ["ArchSummary", "describe_state_dict", "suggest_create", "check_state_dict"]


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


def suggest_create(summary: ArchSummary) -> str | None:
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
        hint = suggest_create(theirs)
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

