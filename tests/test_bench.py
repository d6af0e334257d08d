"""python -m sr_bench.bench on tiny sizes: every figure present, and the arithmetic independent."""

from __future__ import annotations

import json

import pytest

from sr_bench.bench import main, train_flops_per_update
from sr_bench.train import make_config

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--set", 'model.options={"blocks": 1, "filters": 8}', "--set", "data.patch_size=8",
        "--set", "data.batch_size=2"]


def test_training_flops_are_three_forwards_counted_by_hand():
    cfg = make_config("smoke", "edsr-baseline", 2, **{"model.options": {"blocks": 1, "filters": 8},
                                                     "data.patch_size": 8, "data.batch_size": 2})
    # per LR pixel, 2 FLOPs per multiply-add: mean shift 1x1 3->3 (18), head 3x3 3->8 (432), one
    # block of two 3x3 8->8 (2304), body end 8->8 (1152), x2 upsampler 8->32 (4608), then at HR
    # (4 pixels per LR pixel) tail 8->3 (432 x 4) and mean shift (18 x 4)
    per_lr_pixel = 18 + 432 + 2304 + 1152 + 4608 + 4 * (432 + 18)
    assert train_flops_per_update(cfg) == 3 * per_lr_pixel * 8 * 8 * 2


def test_bench_reports_step_end_to_end_ratio_and_mfu(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)  # trains on the embedded photos
    out = tmp_path / "bench.json"
    argv = ["--model", "edsr-baseline", "--scale", "2", "--profile", "smoke", "--updates", "3", "--step-updates", "2",
            "--eval-images", "0", "--peak-tflops", "0.5", "--device", "cpu", "--out", str(out), *TINY]
    assert main(argv) == 0
    r = json.loads(out.read_text())
    assert r["device"] == "cpu" and r["patch_size"] == 8 and r["batch_size"] == 2 and r["end_to_end_updates"] == 3
    assert r["step_ms"] > 0 and r["end_to_end_updates_per_s"] > 0
    # the derived figures follow from the measured ones
    assert r["ratio"] == pytest.approx(r["end_to_end_updates_per_s"] * r["step_ms"] / 1e3)
    assert r["tflop_per_update"] == pytest.approx(3 * 10314 * 8 * 8 * 2 / 1e12)
    assert r["achieved_tflops"] == pytest.approx(r["tflop_per_update"] / (r["step_ms"] / 1e3))
    assert r["peak_tflops"] == 0.5 and r["peak_source"] == "--peak-tflops"
    assert r["mfu"] == pytest.approx(r["achieved_tflops"] / 0.5)
    table = capsys.readouterr().out
    assert "| compute-only step |" in table and "| end to end / compute-only |" in table and "| MFU |" in table


def test_bench_bad_values_fail_in_argparse(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--updates", "0"])
    assert e.value.code == 2 and "--updates" in capsys.readouterr().err


def test_time_trainer_updates_times_the_real_trainer_and_takes_the_median():
    import statistics

    from sr_bench.bench import time_trainer_updates
    from sr_bench.train import make_config

    cfg = make_config("smoke", "edsr-baseline", 2,
                      **{"model.options": {"blocks": 1, "filters": 8}, "data.num_workers": 0})
    t = time_trainer_updates(cfg, "cpu", updates=3, warmup=1, budget_s=0.0, max_updates=10)
    assert t.updates == len(t.samples) == 3 and t.seconds == statistics.median(t.samples)
    assert (t.patch_size, t.batch_size) == (16, 4) and all(s > 0 for s in t.samples)
    # a budget that cannot be spent: more updates, up to max_updates
    assert time_trainer_updates(cfg, "cpu", updates=3, warmup=1, budget_s=1e9, max_updates=5).updates == 5
