"""Training memory of one update, measured two ways (the paper's "BN costs about 40%" claim).

* ``saved_for_backward_mib``: bytes of the distinct tensors autograd keeps for backward in one
  forward pass, float32. Deterministic and device-independent: exactly what BN layers add.
* ``peak_mib``: the peak memory one optimiser step adds, everything included. On CUDA,
  ``torch.cuda.max_memory_allocated``; on the CPU, the resident-set high-water mark (Linux
  ``VmHWM``, reset just before the step) of a fresh process, so nothing of the caller counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import torch

from sr_bench.models import create

__all__ = ["saved_for_backward_bytes", "peak_step_mib", "training_memory"]


def _batch(scale: int, batch: int, patch: int, device: str):
    mf = torch.channels_last
    x = torch.rand(batch, 3, patch, patch, device=device).contiguous(memory_format=mf)
    y = torch.rand(batch, 3, scale * patch, scale * patch, device=device).contiguous(memory_format=mf)
    return x, y


def saved_for_backward_bytes(model: str, scale: int, options: dict[str, Any], batch: int = 16, patch: int = 48) -> int:
    """Bytes of the distinct storages autograd saves in one forward pass (parameters excluded)."""
    net = create(model, scale=scale, **options).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x, _ = _batch(scale, batch, patch, "cpu")
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() != 0:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x, scale=scale)
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    return sum(n for ptr, n in seen.items() if ptr not in params)


_CPU_STEP = r"""
import json, sys, torch
from sr_bench.models import create

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

name, scale, options = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
batch, patch = int(sys.argv[4]), int(sys.argv[5])
torch.manual_seed(0)
net = create(name, scale=scale, **options).to(memory_format=torch.channels_last)
opt = torch.optim.Adam(net.parameters(), 1e-4)
x = torch.rand(batch, 3, patch, patch).contiguous(memory_format=torch.channels_last)
y = torch.rand(batch, 3, scale * patch, scale * patch).contiguous(memory_format=torch.channels_last)
with torch.no_grad():  # warm the allocator and oneDNN with a one-image pass
    net(x[:1], scale=scale)
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
    f.write("5")
loss = torch.nn.functional.l1_loss(net(x, scale=scale), y)
opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
print(json.dumps({"peak_mib": (status("VmHWM") - before) / 1024}))
"""


def peak_step_mib(
    model: str, scale: int, options: dict[str, Any], device: str = "cpu", batch: int = 16, patch: int = 48
) -> float:
    """Peak memory one training step adds (MiB); NaN on a CPU platform without /proc."""
    if device.startswith("cuda"):
        net = create(model, scale=scale, **options)
        net = net.to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        opt = torch.optim.Adam(net.parameters(), 1e-4)
        x, y = _batch(scale, batch, patch, device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        loss = torch.nn.functional.l1_loss(net(x, scale=scale), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    if not os.path.exists("/proc/self/clear_refs"):
        return float("nan")
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    out = subprocess.run(
        [sys.executable, "-c", _CPU_STEP, model, str(scale), json.dumps(options), str(batch), str(patch)],
        capture_output=True, text=True, env=env, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def training_memory(
    model: str, scale: int, options: dict[str, Any], device: str = "cpu", batch: int = 16, patch: int = 48
) -> dict[str, float]:
    return {
        "saved_for_backward_mib": saved_for_backward_bytes(model, scale, options, batch, patch) / 2**20,
        "peak_mib": peak_step_mib(model, scale, options, device, batch, patch),
    }
