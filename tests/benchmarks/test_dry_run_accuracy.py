"""How right ``reproduce --dry-run`` is: its seconds per update against a real short run, in one process.

The dry run's estimate for the quick profile's edsr-baseline x2 (16 x 48x48 updates timed through
the trainer: a warm-up, then the median of at least 3) is compared with a real run of the same config
through the trainer (data loader, log points; no validation) right after it: its mean seconds per
update after the first two, on the scikit-image photos. The ratio measured/estimated is printed and
kept in pytest-benchmark's ``extra_info``; it must lie within +-35% on the CPU (the two figures come
from the same process a minute apart, but load from other processes can change in between).

    pytest -m slow tests/benchmarks/test_dry_run_accuracy.py -s
"""

from __future__ import annotations

import tempfile
import time

import pytest

UPDATES = 40


def dry_run_vs_real(device: str = "cpu", updates: int = UPDATES) -> dict[str, float]:
    from sr_bench.reproduce import ReproduceConfig, estimate, plan
    config = ReproduceConfig(profile="quick", device=device, models=("edsr-baseline",),
                             overrides={"optim.iterations": updates, "val.every": 0})
    (est,) = estimate(config, plan(config, ["embedded"]))
    (run,) = est.runs
    predicted = run.step_s / run.end_to_end
    stamps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sr_bench_dry_run_") as tmp:
        t0 = time.perf_counter()
        from sr_bench.train import make_config, train

        cfg = make_config("quick", "edsr-baseline", 2, **{
            "out": tmp, "runtime.device": device, "optim.iterations": updates, "val.every": 0, "val.max_images": 1,
            "runtime.progress": False, "data.dataset": "embedded-train", "val.dataset": "embedded"})
        result = train(cfg, callbacks=[lambda event: stamps.append(time.perf_counter())])
        wall = time.perf_counter() - t0
    # the run's mean seconds per update after its first two (process start-up: the DataLoader worker,
    # the first oneDNN primitives), which a 750-update run amortises: the rate its progress bar shows
    measured = (stamps[-1] - stamps[1]) / (len(stamps) - 2)
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
