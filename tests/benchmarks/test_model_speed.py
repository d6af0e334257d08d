"""Forward speed of EDSR-baseline x2 and EDSR x2 on a 1x3x256x256 LR input, beside the ceiling:
a bare 64->64 3x3 convolution on this machine, and against the official port's eager forward.

    pytest tests/benchmarks --benchmark-only          # measure
    pytest tests/benchmarks --benchmark-disable       # run each case once, as a test

Each case records ``gflop`` and, when measured, ``median_ms`` and ``gflop_per_s`` in
``benchmark.extra_info`` (``--benchmark-json`` keeps them) and prints them (``-s``).
``test_against_official_and_ceiling`` runs :mod:`sr_bench.cpu_speed`'s interleaved comparison
(ratios to the official forward and to the ceiling, on 1 and 2 threads; ``python -m
sr_bench.cpu_speed`` is the same without pytest). Nothing here asserts a timing: machines
differ; the figures go into the report.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sr_bench import models
from sr_bench.flops import count_flops
from sr_bench.inference import prepare_model

SIZE = 256


def _record(benchmark, label: str, flops: int) -> None:
    benchmark.extra_info["gflop"] = flops / 1e9
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable: ran once as a test
        return
    median = stats.stats.median
    benchmark.extra_info["median_ms"] = median * 1e3
    benchmark.extra_info["gflop_per_s"] = flops / median / 1e9
    print(f"\n{label}: {median * 1e3:.0f} ms median, {flops / 1e9:.1f} GFLOP, {flops / median / 1e9:.0f} GFLOP/s "
          f"({torch.get_num_threads()} threads)")


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_conv_ceiling(benchmark, layout):
    """A bare 64->64 3x3 convolution on a 64x256x256 map: the throughput ceiling of the body."""
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(1, 64, SIZE, SIZE).contiguous(memory_format=fmt)
    w = (torch.randn(64, 64, 3, 3) * 0.05).contiguous(memory_format=fmt)
    b = torch.zeros(64)
    with torch.inference_mode():
        y = benchmark.pedantic(F.conv2d, args=(x, w, b), kwargs={"padding": 1}, rounds=7, warmup_rounds=1)
    assert y.shape == x.shape
    _record(benchmark, f"conv 64->64 3x3 {layout}", 2 * 64 * 64 * 9 * SIZE * SIZE)


def _model_case(benchmark, name: str, dtype: str, rounds: int, **prepare) -> None:
    torch.manual_seed(0)
    model = prepare_model(models.create(name, scale=2), "cpu", dtype, **prepare)
    lr = torch.rand(1, 3, SIZE, SIZE)
    if model.head[0].weight.is_contiguous(memory_format=torch.channels_last):
        lr = lr.contiguous(memory_format=torch.channels_last)
    lr = lr.to(model.head[0].weight.dtype)
    with torch.inference_mode():
        out = benchmark.pedantic(model, args=(lr, 2), rounds=rounds, warmup_rounds=1)
    assert out.shape == (1, 3, 2 * SIZE, 2 * SIZE) and torch.isfinite(out).all()
    flops = count_flops(models.create(name, scale=2).to("meta"), 2, SIZE, SIZE)
    layout = "channels_last" if prepare.get("channels_last", True) else "contiguous"
    _record(benchmark, f"{name} x2 {dtype} {layout}", flops)


def test_edsr_baseline_x2(benchmark):
    """The default inference path (float32, channels_last on the CPU)."""
    _model_case(benchmark, "edsr-baseline", "float32", rounds=5)


def test_edsr_baseline_x2_contiguous(benchmark):
    """The official port's layout (NCHW), for comparison."""
    _model_case(benchmark, "edsr-baseline", "float32", rounds=3, channels_last=False)


def test_edsr_baseline_x2_bfloat16(benchmark):
    """bfloat16 on the CPU: only as an explicit option (it changes results)."""
    _model_case(benchmark, "edsr-baseline", "bfloat16", rounds=3)


def test_edsr_baseline_x2_unfused(benchmark):
    """The layer-by-layer forward (``fuse=False``): what the CPU fusion saves."""
    _model_case(benchmark, "edsr-baseline", "float32", rounds=3, fuse=False)


def test_against_official_and_ceiling(benchmark, capsys):
    """sr_bench's default forward against the official structure and the conv ceiling, timed
    interleaved in this process; run as a test, one small round that checks equal work."""
    from sr_bench.cpu_speed import forward_speed, to_markdown

    if benchmark.disabled:
        report = benchmark(forward_speed, size=24, rounds=1, threads=(1,))
        agreement = report["agreement"]
        assert all(agreement[k]["vs_fp64"] <= agreement["bound"] for k in ("sr_bench", "sr_bench composed"))
        ratios = report["rows"][0]["ratios"]
        assert set(ratios) == {"sr_bench", "sr_bench composed", "sr_bench unfused"}
        assert all(r["wall"]["official_over_this"] > 0 and r["cpu"]["ceiling_fraction"] > 0 for r in ratios.values())
        return
    report = benchmark.pedantic(forward_speed, kwargs={"size": SIZE, "rounds": 5}, rounds=1, iterations=1)
    for row in report["rows"]:
        for name, by_clock in row["ratios"].items():
            for kind, r in by_clock.items():
                key = f"{name.replace(' ', '_')}_{row['threads']}t_{kind}"
                benchmark.extra_info[f"{key}_official_over_this"] = r["official_over_this"]
                benchmark.extra_info[f"{key}_ceiling_fraction"] = r["ceiling_fraction"]
    with capsys.disabled():
        print("\n" + to_markdown({"machine": {"cpu": "", "cores": "", "torch": torch.__version__, "capability": ""},
                                  "load_before": "", "load_after": "", "forward": report}))


@pytest.mark.slow
def test_edsr_x2(benchmark):
    """EDSR x2 (5.3 TFLOP at 256x256: tens of seconds per forward on 2 cores)."""
    _model_case(benchmark, "edsr", "float32", rounds=2)


def test_rows_report_the_process_clock_on_more_threads():
    """On 2 threads the ratios come for the wall clock and the process's CPU time (the thread's
    CPU time would miss the second thread's work); on 1 thread for the wall and that thread."""
    from sr_bench.cpu_speed import Timing, _forward_row

    def timing(seconds: float, process: float) -> Timing:
        return Timing(wall=[seconds] * 3, cpu=[seconds / 2] * 3, process=[process] * 3)

    t = {"conv NCHW": timing(2.0, 4.0), "conv channels_last": timing(1.0, 2.0),
         "official": timing(30.0, 64.0), "sr_bench": timing(20.0, 40.0)}
    two = _forward_row(t, 2, conv_equivalents=10.0)["ratios"]["sr_bench"]
    assert set(two) == {"wall", "process"}
    assert two["wall"] == {"official_over_this": 1.5, "ceiling_fraction": 0.5}
    assert two["process"] == {"official_over_this": 1.6, "ceiling_fraction": 0.5}
    assert set(_forward_row(t, 1, conv_equivalents=10.0)["ratios"]["sr_bench"]) == {"wall", "cpu"}
