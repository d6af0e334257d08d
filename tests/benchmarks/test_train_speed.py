"""Training performance figures (reported, never asserted as timers).

* updates per second of edsr-baseline x2 at the paper's batch (16 x 48x48 LR patches), fp32 and
  (where the CPU has native bf16) bf16 autocast, channels_last;
* the share of step time spent waiting for data, through the real loop with a DataLoader worker;
* peak training memory of the baseline with and without BN, and of SRResNet, two ways:
  (a) bytes of the tensors autograd saves for backward in one forward pass (deterministic,
  device-independent: what BN adds), and (b) the peak resident-memory increase of one training
  step in a fresh process (``resource.getrusage`` ``ru_maxrss``, everything included).

Run them with ``pytest -m slow tests/benchmarks -s`` (figures are printed and kept in
pytest-benchmark's ``extra_info``), or as a script: ``python tests/benchmarks/test_train_speed.py``.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

BATCH, PATCH = 16, 48
MEMORY_MODELS = {
    "edsr-baseline": {},
    "edsr-baseline+bn": {"batch_norm": True},
    "srresnet": {},
}


def _trainer(amp: str, channels_last: bool = True, model: str = "edsr-baseline", options: dict | None = None):
    from sr_bench.train import Trainer, make_config

    cfg = make_config(
        "paper", model, 2,
        **{"runtime.amp": amp, "runtime.channels_last": channels_last, "runtime.device": "cpu",
           "model.options": options or {}, "data.dataset": "T91"},
    )
    torch.manual_seed(0)
    return Trainer(cfg, "cpu")


def _batch(channels_last: bool):
    mf = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(BATCH, 3, PATCH, PATCH).contiguous(memory_format=mf)
    y = torch.rand(BATCH, 3, 2 * PATCH, 2 * PATCH).contiguous(memory_format=mf)
    return x, y


def updates_per_second(amp: str, channels_last: bool = True, steps: int = 4) -> float:
    trainer = _trainer(amp, channels_last)
    x, y = _batch(channels_last)
    trainer.step(x, y, 2)  # warm-up: oneDNN primitives, Adam state
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step(x, y, 2)
    return steps / (time.perf_counter() - t0)


def memory_report() -> dict[str, dict[str, float]]:
    from sr_bench.train.memory import training_memory

    report = {}
    for label, options in MEMORY_MODELS.items():
        m = training_memory(label.split("+")[0], 2, options, "cpu", BATCH, PATCH)
        report[label] = {"saved_for_backward_mib": m["saved_for_backward_mib"], "peak_rss_increase_mib": m["peak_mib"]}
    return report


def data_wait_share(iterations: int = 30) -> dict[str, float]:
    """Run the real loop (T91 when $SR_BENCH_DATA has it, else the scikit-image photos) at the
    paper's batch and patch size with one DataLoader worker; returns the measured figures."""
    import tempfile

    from sr_bench.data import DatasetNotFound, open_dataset
    from sr_bench.train import make_config, train

    try:
        open_dataset("T91")
        data = "T91"
    except DatasetNotFound:
        data = "embedded-train"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(
            "quick", "edsr-baseline", 2,
            **{"data.dataset": data, "optim.iterations": iterations, "val.every": 0, "val.dataset": "embedded",
               "val.max_images": 1, "runtime.progress": False, "out": tmp, "runtime.log_every": 10,
               "runtime.save_every": 10**6},
        )
        res = train(cfg, log=lambda m: None)
    return {"data": data, "updates_per_s": res.updates_per_second, "data_wait_share": res.data_wait_share,
            "workers": cfg.data.num_workers, "amp": res.config.runtime.amp}


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


AMPS = ["none", "bf16"]


@pytest.mark.slow
@pytest.mark.parametrize("amp", AMPS)
def test_updates_per_second(benchmark, amp):
    from sr_bench.train.trainer import cpu_has_native_bf16

    if amp == "bf16" and not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16 instructions")
    trainer = _trainer(amp)
    x, y = _batch(True)
    trainer.step(x, y, 2)
    benchmark.pedantic(trainer.step, args=(x, y, 2), rounds=4, iterations=1, warmup_rounds=1)
    ups = 1.0 / benchmark.stats.stats.mean
    benchmark.extra_info.update({"updates_per_s": ups, "amp": amp, "load_avg": _load(),
                                 "threads": torch.get_num_threads()})
    print(f"\nedsr-baseline x2, batch {BATCH} x {PATCH}x{PATCH}, amp {amp}, channels_last: {ups:.3f} updates/s "
          f"(load average {_load()})")
    assert ups > 0


@pytest.mark.slow
def test_data_wait_share(benchmark):
    figures = benchmark.pedantic(data_wait_share, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    print(f"\nloop with {figures['workers']} worker on {figures['data']}: {figures['updates_per_s']:.3f} updates/s, "
          f"data wait {100 * figures['data_wait_share']:.2f}% of step time (goal < 5%)")
    assert 0.0 <= figures["data_wait_share"] < 1.0


@pytest.mark.slow
def test_training_memory_with_and_without_bn(benchmark):
    report = benchmark.pedantic(memory_report, rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in report.items()})
    base, bn, srr = report["edsr-baseline"], report["edsr-baseline+bn"], report["srresnet"]
    for label, r in report.items():
        print(f"\n{label:18s} saved for backward {r['saved_for_backward_mib']:7.1f} MiB, "
              f"peak RSS increase of a step {r['peak_rss_increase_mib']:7.1f} MiB")
    for key in ("saved_for_backward_mib", "peak_rss_increase_mib"):
        print(f"{key}: baseline saves {100 * (1 - base[key] / bn[key]):.0f}% against baseline+BN, "
              f"{100 * (1 - base[key] / srr[key]):.0f}% against SRResNet (paper: about 40%)")
    # structural, not a timer: BN layers keep their inputs for backward
    assert bn["saved_for_backward_mib"] > base["saved_for_backward_mib"]


if __name__ == "__main__":
    from sr_bench.train.trainer import cpu_has_native_bf16

    print(f"load average {_load()}, {torch.get_num_threads()} threads")
    for amp in AMPS if cpu_has_native_bf16() else ["none"]:
        print(f"edsr-baseline x2 batch 16 48x48 amp {amp}: {updates_per_second(amp):.3f} updates/s")
    print(json.dumps(data_wait_share(), indent=1))
    print(json.dumps(memory_report(), indent=1))
