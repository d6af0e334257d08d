"""Explaining a state_dict: which architecture its keys and shapes describe (:class:`ArchSummary`),
the ``create(...)`` call that would fit it, and a strict key/shape check that says "checkpoint has
32 residual blocks x 256 filters, x4 upsampler; the model has 16 x 64, x2: did you mean
create('edsr', scale=4)?" instead of a wall of missing keys. A suggestion is made only when the
suggested model has exactly the checkpoint's keys and shapes; otherwise the keys that differ are
named (a checkpoint missing one key is not "15 blocks")."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from sr_bench.models import registry
from sr_bench.weights.errors import WeightsMismatchError

__all__ = ["ArchSummary", "KeyDifferences", "describe_state_dict", "suggest_create", "key_differences",
           "mismatch_message", "check_state_dict"]


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
    # SRResNet normalises the body's last convolution (a BN at body.<blocks+1>); the head's kernel
    # size says nothing: an EDSR with a 5x5 head is still EDSR-style
    family = "srresnet" if f"body.{blocks + 1}.running_mean" in keys else "edsr"
    return ArchSummary(family, blocks, filters, (scale,) if scale else (), bn, in_channels, head_kernel)


def _candidates(summary: ArchSummary) -> Iterator[tuple[str, dict[str, object]]]:
    """Registered models (and options) whose build ``summary`` may describe, most specific first."""
    for name in registry.names():
        spec = registry.get_spec(name)
        if (spec.family, spec.blocks, spec.filters, spec.batch_norm) == (
            summary.family, summary.blocks, summary.filters, summary.batch_norm
        ):
            if spec.multi_scale:
                yield name, {}
            elif len(summary.scales) == 1:
                yield name, {"scale": summary.scales[0]}
    if summary.family in ("edsr", "mdsr", "srresnet") and summary.blocks:
        name = {"edsr": "edsr-baseline", "mdsr": "mdsr-baseline", "srresnet": "srresnet"}[summary.family]
        options: dict[str, object] = {} if summary.family == "mdsr" or not summary.scales else {
            "scale": summary.scales[0]}
        options.update(blocks=summary.blocks, filters=summary.filters)
        if summary.batch_norm != registry.get_spec(name).batch_norm:
            options["batch_norm"] = summary.batch_norm
        yield name, options


def _builds(name: str, options: dict[str, object], state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``create(name, **options)`` has exactly ``state``'s keys and shapes (built on the
    meta device: nothing is allocated)."""
    try:
        with torch.device("meta"):
            built = registry.create(name, **options).state_dict()  # type: ignore[arg-type]
    except Exception:  # an option combination the model refuses: not a suggestion
        return False
    return built.keys() == state.keys() and all(tuple(built[k].shape) == tuple(state[k].shape) for k in built)


def suggest_create(summary: ArchSummary, state: Mapping[str, torch.Tensor] | None = None) -> str | None:
    """A ``create(...)`` call for a registered model that matches ``summary``; with ``state``, only
    one whose model has exactly ``state``'s keys and shapes (no guess from a partial checkpoint)."""
    for name, options in _candidates(summary):
        if state is None or _builds(name, options, state):
            args = "".join(f", {k}={v}" for k, v in options.items())
            return f"create({name!r}{args})"
    return None


def _kind(t: torch.Tensor) -> str:
    return "complex" if t.is_complex() else "float" if t.is_floating_point() else "bool" if t.dtype == torch.bool \
        else "integer"


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _named(keys: list[str], limit: int = 5) -> str:
    """Up to ``limit`` key names, then how many more."""
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


@dataclass(frozen=True)
class KeyDifferences:
    """How a checkpoint's tensors differ from a model's: keys only one side has, and tensors of
    another shape, or of another kind of number (integer or bool where the model holds floats)."""

    missing: list[str]
    unexpected: list[str]
    shape: list[str]
    kind: list[str]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.shape or self.kind)

    def describe(self, state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], limit: int = 5) -> str:
        """The differences as one clause each, naming at most ``limit`` keys per clause (three
        with their shapes or dtypes)."""
        def shown(keys: list[str], label: Callable[[str], str], most: int) -> str:
            return _named([label(k) for k in keys[:most]] + keys[most:], most)

        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} model key(s) missing from the checkpoint: {_named(self.missing, limit)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s), not in the model: "
                         f"{_named(self.unexpected, limit)}")
        if self.shape:
            parts.append(f"{len(self.shape)} other shape(s): " + shown(
                self.shape, lambda k: f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}",
                min(3, limit)))
        if self.kind:
            parts.append(f"{len(self.kind)} tensor(s) of another kind: " + shown(
                self.kind, lambda k: f"{k} {_dtype(state[k])} vs model {_dtype(expected[k])}", min(3, limit)))
        return "; ".join(parts)


def key_differences(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], keys: Collection[str] | None = None
) -> KeyDifferences:
    """How ``state`` differs from ``expected`` (a model's state_dict), over ``keys`` (default: all).

    A float tensor stored as integers (or bool) is a difference, not a cast: ``load_state_dict``
    would copy the truncated values without a word. Another float type (float16 weights into a
    float32 model) is not: it converts exactly enough."""
    keys = set(expected) | set(state) if keys is None else set(keys)
    both = [k for k in expected if k in keys and k in state]
    return KeyDifferences(
        missing=[k for k in expected if k in keys and k not in state],
        unexpected=[k for k in state if k in keys and k not in expected],
        shape=[k for k in both if tuple(state[k].shape) != tuple(expected[k].shape)],
        kind=[k for k in both if tuple(state[k].shape) == tuple(expected[k].shape)
              and _kind(state[k]) != _kind(expected[k])],
    )


def mismatch_message(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], diff: KeyDifferences, what: str
) -> str:
    """One line: what the checkpoint is (when its keys say so for sure) and the key differences."""
    prefixes = {k.split(".", 1)[0] for k in state}
    if prefixes == {"module"} or prefixes == {"_orig_mod"}:
        return (f"{what} keys all start with '{prefixes.pop()}.' (saved from a DataParallel/compiled wrapper): "
                f"save the inner module's state_dict instead [{diff.describe(state, expected)}]")
    if diff.kind and not (diff.missing or diff.unexpected or diff.shape):
        return (f"{what}: {diff.describe(state, expected)}; weights cast to integers have lost their values: "
                f"load the float checkpoint")
    theirs, ours = describe_state_dict(state), describe_state_dict(expected)
    hint = suggest_create(theirs, state) if theirs.family is not None and str(theirs) != str(ours) else None
    if hint is not None:  # the checkpoint is a whole model we can build: say which (one key of each kind)
        return f"{what} has {theirs}; the model has {ours}: did you mean {hint}? [{diff.describe(state, expected, 1)}]"
    # a part differs: name the keys, guess nothing
    return f"{what} does not fit the model ({ours}) [{diff.describe(state, expected)}]"


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], *, what: str = "checkpoint") -> None:
    """Raise :class:`WeightsMismatchError` with an explanation unless ``state`` has exactly the
    model's keys, with the model's shapes and kinds of numbers (float where the model is float)."""
    expected = model.state_dict()
    diff = key_differences(expected, state)
    if diff:
        raise WeightsMismatchError(mismatch_message(expected, state, diff, what))
