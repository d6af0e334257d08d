"""MATLAB bicubic (``imresize``) against torch's own antialiased bicubic kernel, in one process.

A real photograph (scikit-image's astronaut, enlarged to DIV2K size 2040 x 1356 with PIL) is
shrunk by 4, as numpy HWC and as a torch (1, 3, H, W) tensor, on 1 and 2 intra-op threads, on an
idle machine and with two busy processes competing for the cores. Each case times imresize and
``F.interpolate(uint8, mode="bicubic", antialias=True)`` interleaved, call for call, so both see
the same load, and reports the ratio of the medians (the target: 3x or less).

``pytest tests/benchmarks/test_resize_speed.py --benchmark-only -s`` prints one line per case;
``python tests/benchmarks/test_resize_speed.py`` prints the same table without pytest, and
``python -m sr_bench.cpu_speed`` times it beside the model forward (with thread CPU times).
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sr_bench import imresize
from sr_bench.cpu_speed import photograph

ROUNDS = 15


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def load(busy: int) -> Iterator[None]:
    """``busy`` spinning processes competing for the cores while the block runs."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(0.2 if busy else 0)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def interleaved(ours: Callable[[], object], reference: Callable[[], object], rounds: int = ROUNDS) -> tuple[float, ...]:
    """Median seconds of ``ours`` and ``reference``, called alternately."""
    ours(), reference()  # warm-up: plans, caches, thread pools
    a, b = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        ours()
        t1 = time.perf_counter()
        reference()
        t2 = time.perf_counter()
        a.append(t1 - t0)
        b.append(t2 - t1)
    return statistics.median(a), statistics.median(b)


def case(image: np.ndarray, kind: str) -> tuple[Callable[[], object], Callable[[], object]]:
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()
    x = image if kind == "numpy" else tensor
    return (lambda: imresize(x, 1 / 4)), (
        lambda: F.interpolate(tensor, scale_factor=0.25, mode="bicubic", antialias=True)
    )


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return photograph()


@pytest.mark.parametrize("busy", [0, 2], ids=["idle", "loaded"])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_imresize_against_torch_kernel(benchmark, capsys, image, kind, n_threads, busy):
    ours, reference = case(image, kind)
    if benchmark.disabled:  # a plain test run: one call per input kind, no load, no timing
        if n_threads != 1 or busy:
            pytest.skip("a timing case: run with --benchmark-only")
        out = benchmark(ours)
        assert tuple(out.shape[:2] if kind == "numpy" else out.shape[-2:]) == (339, 510)
        return
    with threads(n_threads), load(busy):
        benchmark.pedantic(ours, rounds=3, iterations=1)
        mine, torchs = interleaved(ours, reference)
    benchmark.extra_info.update(imresize_ms=mine * 1e3, torch_ms=torchs * 1e3, ratio=mine / torchs)
    with capsys.disabled():
        print(f"\n{kind:6s} {n_threads} thread(s) {'loaded' if busy else 'idle':6s}: imresize {mine * 1e3:6.1f} ms, "
              f"torch {torchs * 1e3:5.1f} ms, ratio {mine / torchs:.2f}")


def main() -> None:
    image = photograph()
    print("input   threads load    imresize ms  torch ms  ratio")
    for busy in (0, 2):
        for n in (1, 2):
            for kind in ("numpy", "tensor"):
                with threads(n), load(busy):
                    mine, torchs = interleaved(*case(image, kind))
                label = "loaded" if busy else "idle"
                print(f"{kind:7s} {n:7d} {label:7s} {mine * 1e3:11.1f} {torchs * 1e3:9.1f} {mine / torchs:6.2f}")


if __name__ == "__main__":
    main()
