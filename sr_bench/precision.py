"""How float32 math runs on CUDA, set for a scope and put back after: TF32 or IEEE float32, and
cuDNN's autotuner (``torch.backends.cudnn.benchmark``). Also the name of the math a computation
used (:func:`math_mode`), which records and training logs carry.

PyTorch's process-wide defaults let cuDNN run float32 convolutions in TF32 (a 10-bit mantissa,
against float32's 23) on Ampere and later GPUs, and ``cudnn.benchmark`` picks each convolution's
kernel by timing the candidates, per input shape. Both are process-wide switches, so sr_bench
never flips them for good: :func:`backend_flags` sets them for a ``with`` block and restores the
values it found, whatever happens inside.

* Evaluation and inference (:func:`ieee_float32`): IEEE float32 and no autotuning, always. A
  record that says float32 holds float32 results on any GPU (simulated on the CPU: TF32 changes
  1.1% of the uint8 pixels of an EDSR-baseline x2 output, and a tiled forward then no longer
  matches the whole image to 1e-4), and the kernels do not depend on timing noise or on the
  sizes of the images scored before.
* Training (:func:`training_flags`): TF32 as ``runtime.tf32`` says, and the autotuner on CUDA,
  where the patch size is fixed and each convolution is tuned once.

Two APIs set TF32: the booleans ``cudnn.allow_tf32`` / ``cuda.matmul.allow_tf32`` (every torch
release) and, since torch 2.9, the per-operator ``fp32_precision`` strings. Torch refuses to read
the booleans once the strings were set to disagree with them, so this module uses the booleans,
and keeps to the strings in a process where someone else already used them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

__all__ = ["MATH_MODES", "backend_flags", "cuda_bf16_native", "ieee_float32", "math_mode", "tf32_capable",
           "tf32_enabled", "training_flags"]

#: the names :func:`math_mode` gives, from most to least precise float32 math
MATH_MODES = ("fp32-ieee", "tf32", "fp16", "bf16")


def _backend(name: str) -> Any:
    """``torch.backends.<name>`` untyped: its per-operator settings are attributes torch adds at
    run time, which the stubs do not list."""
    return getattr(torch.backends, name)


def _cudnn_tf32_get() -> Any:
    try:
        return bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:  # the per-operator strings were set in this process: keep to them
        cudnn = _backend("cudnn")
        return ("strings", cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision)


def _cudnn_tf32_set(value: Any) -> None:
    if isinstance(value, bool):
        torch.backends.cudnn.allow_tf32 = value
    else:
        cudnn = _backend("cudnn")
        cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = value[1], value[2]


def _matmul_tf32_get() -> Any:
    # torch.set_float32_matmul_precision sets cuBLAS's and oneDNN's matmul precision together
    # (sr_bench.resize uses it too); cuda.matmul.allow_tf32 sets cuBLAS's alone, after which torch
    # refuses to read the precision: so matrix products go through the former
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        return ("strings", _backend("cuda").matmul.fp32_precision, _backend("mkldnn").matmul.fp32_precision)


def _matmul_tf32_set(value: Any) -> None:
    if isinstance(value, str):
        torch.set_float32_matmul_precision(value)
    else:
        _backend("cuda").matmul.fp32_precision, _backend("mkldnn").matmul.fp32_precision = value[1], value[2]


def _benchmark_set(value: Any) -> None:
    torch.backends.cudnn.benchmark = bool(value)


#: each switch: (read its value, write a value read earlier or made by :func:`_as`)
_SWITCHES: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
    "cudnn_tf32": (_cudnn_tf32_get, _cudnn_tf32_set),
    "matmul_tf32": (_matmul_tf32_get, _matmul_tf32_set),
    "cudnn_benchmark": (lambda: bool(torch.backends.cudnn.benchmark), _benchmark_set),
}


def _as(current: Any, on: bool) -> Any:
    """``on`` in the form ``current`` was read in: a boolean, a matmul precision ("high" allows
    TF32, "highest" is IEEE), or the per-operator strings."""
    if isinstance(current, bool):
        return on
    if isinstance(current, str):
        return "high" if on else "highest"
    value = "tf32" if on else "ieee"
    return (current[0], *([value] * (len(current) - 1)))


def tf32_enabled() -> bool:
    """Whether float32 convolutions may run in TF32 now (on a GPU that has it)."""
    value = _cudnn_tf32_get()
    return value if isinstance(value, bool) else value[1] == "tf32"


@contextlib.contextmanager
def backend_flags(*, tf32: bool | None = None, cudnn_benchmark: bool | None = None) -> Iterator[None]:
    """Inside the block: TF32 for float32 convolutions and matrix products on (``tf32=True``) or
    off, and cuDNN's autotuner on or off; None leaves a switch as it is. Every switch is restored
    on exit, also after an exception. The switches exist (and do nothing) on CPU-only builds."""
    wanted = {"cudnn_tf32": tf32, "matmul_tf32": tf32, "cudnn_benchmark": cudnn_benchmark}
    saved = {name: _SWITCHES[name][0]() for name, on in wanted.items() if on is not None}
    try:
        for name, before in saved.items():
            on = wanted[name]
            assert on is not None
            _SWITCHES[name][1](_as(before, on))
        yield
    finally:
        for name, before in saved.items():
            _SWITCHES[name][1](before)


def ieee_float32() -> contextlib.AbstractContextManager[None]:
    """The flags of evaluation and inference: IEEE float32 (no TF32) and no autotuning."""
    return backend_flags(tf32=False, cudnn_benchmark=False)


def training_flags(device: torch.device | str, tf32: bool) -> contextlib.AbstractContextManager[None]:
    """The flags of training on ``device``: on CUDA, TF32 as given and the autotuner on (fixed
    patch sizes: each convolution is tuned once); elsewhere both stay as they are (a CPU trains
    in IEEE float32 or its bf16 autocast, and "high" matmul precision could let oneDNN use bf16)."""
    on_cuda = torch.device(device).type == "cuda"
    return backend_flags(tf32=tf32 if on_cuda else None, cudnn_benchmark=True if on_cuda else None)


def _capability(device: torch.device | str) -> tuple[int, int]:
    device = torch.device(device)
    if device.type != "cuda":
        return (0, 0)
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def tf32_capable(device: torch.device | str) -> bool:
    """Whether ``device`` has TF32 tensor cores (CUDA compute capability 8.0 and later)."""
    return _capability(device) >= (8, 0)


def cuda_bf16_native(device: torch.device | str) -> bool:
    """Whether ``device`` runs bf16 natively (compute capability 8.0 and later). Older GPUs (V100,
    T4) emulate it through float32, slower than float32 itself, though
    ``torch.cuda.is_bf16_supported()`` says yes there by default (and asks the current device,
    not a given one)."""
    return _capability(device) >= (8, 0)


#: dtypes and autocast precisions that name a half-precision math mode
_HALF: dict[Any, str] = {torch.bfloat16: "bf16", "bfloat16": "bf16", "bf16": "bf16",
                         torch.float16: "fp16", "float16": "fp16", "fp16": "fp16"}


def math_mode(precision: str | torch.dtype, device: torch.device | str, *, tf32: bool) -> str:
    """The name of the math a computation runs in: ``bf16`` / ``fp16`` for those dtypes or
    autocast precisions, else ``tf32`` where TF32 was allowed on a device that has it, else
    ``fp32-ieee`` (float32, or autocast ``none``)."""
    if precision in _HALF:
        return _HALF[precision]
    return "tf32" if tf32 and tf32_capable(device) else "fp32-ieee"
