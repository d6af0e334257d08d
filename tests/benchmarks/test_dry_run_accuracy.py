"""How right ``reproduce --dry-run`` is: its seconds per update against a real short run, in one process.

The dry run's estimate for the quick profile's edsr-baseline x2 (the trainer's step timed at 16 x
48x48, a warm-up and the median of at least 3 updates) is compared with the seconds per update of a
real run of the same config through the trainer (data loader, log points, a checkpoint; no
validation) right after it, on the scikit-image photos. The ratio measured/estimated is printed and
kept in pytest-benchmark's ``extra_info``; it must lie within +-35% on the CPU (the two figures
come from the same process minutes apart, so load from other processes moves both).

    pytest -m slow tests/benchmarks/test_dry_run_accuracy.py -s
"""

from __future__ import annotations

import tempfile
import time

import pytest

UPDATES = 40


def dry_run_vs_real(device: str = "cpu", updates: int = UPDATES) -> dict[str, float]:
    from sr_bench.reproduce import ReproduceConfig, estimate, plan
    from sr_bench.train import train_or_reuse

    config = ReproduceConfig(profile="quick", device=device, models=("edsr-baseline",),
                             overrides={"optim.iterations": updates, "val.every": 0})
    (est,) = estimate(config, plan(config, ["embedded"]))
    (run,) = est.runs
    predicted = run.step_s / run.end_to_end
    with tempfile.TemporaryDirectory(prefix="sr_bench_dry_run_") as tmp:
        t0 = time.perf_counter()
        result = train_or_reuse("quick", "edsr-baseline", 2, tmp, device=device,
                                **{"optim.iterations": updates, "val.every": 0, "val.max_images": 1,
                                   "runtime.progress": False})
        wall = time.perf_counter() - t0
    measured = result.seconds / result.iterations  # training time: decoding and the last validation excluded
    return {"estimated_s_per_update": predicted, "measured_s_per_update": measured, "ratio": measured / predicted,
            "timed_updates": len(run.samples), "wall_s": wall, "updates": result.iterations}


@pytest.mark.slow
def test_dry_run_estimate_matches_a_real_short_run(benchmark):
    figures = benchmark.pedantic(dry_run_vs_real, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    print(f"\ndry run {figures['estimated_s_per_update']:.3f} s/update, "
          f"real run {figures['measured_s_per_update']:.3f} s/update over {figures['updates']} updates: "
          f"ratio {figures['ratio']:.2f}")
    assert 0.65 <= figures["ratio"] <= 1.35, figures


if __name__ == "__main__":
    print(dry_run_vs_real())
