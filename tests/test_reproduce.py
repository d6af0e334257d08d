"""The main job end to end (smoke profile, no data folder), and the ablation command."""

from __future__ import annotations

import json

import pytest

import sr_bench.reproduce as reproduce
from sr_bench.ablate import main as ablate_main
from sr_bench.records import read_records


@pytest.fixture
def no_data(monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)


def test_reproduce_smoke_on_the_embedded_photos_then_resumes_without_work(tmp_path, no_data, monkeypatch):
    results, runs = tmp_path / "results", tmp_path / "runs"
    args = ["--profile", "smoke", "--results", str(results), "--runs", str(runs), "--no-table1"]
    assert reproduce.main(args) == 0
    records = read_records(results / "records.jsonl")
    got = {(r.model, r.scale, r.self_ensemble, r.protocol) for r in records}
    assert {("bicubic", s, False, p) for s in (2, 3, 4) for p in ("paper", "vdsr")} <= got
    assert {("edsr-baseline", 2, False, "paper"), ("edsr-baseline", 2, True, "paper")} <= got
    assert all(r.dataset == "embedded" for r in records)
    trained = next(r for r in records if r.model == "edsr-baseline")
    assert trained.profile == "smoke" and len(trained.weights) == 64
    table = (results / "table3.md").read_text()
    assert "EDSR-baseline (smoke)" in table and "EDSR-baseline+ (smoke)" in table
    assert "the smoke profile trains edsr-baseline x2 only" in table  # cells say why they were not run
    assert "Not run on Set5, Set14, B100, Urban100, Manga109, DIV2K: dataset absent" in table
    assert "scikit-image photos" in table

    # A second run finds every record: nothing is evaluated again, and the table is the same.
    monkeypatch.setattr(reproduce, "evaluate", lambda *a, **k: pytest.fail("re-evaluated a finished record"))
    assert reproduce.main(args) == 0
    assert len(read_records(results / "records.jsonl")) == len(records)


def test_ablate_no_bn_smoke_writes_table_plot_and_memory(tmp_path, no_data):
    results = tmp_path / "results"
    argv = ["--no-bn", "--profile", "smoke", "--results", str(results), "--runs", str(tmp_path / "runs"),
            "--memory-batch", "4", "--memory-patch", "16"]  # the memory ratio holds at any size; 16x48 costs a minute
    assert ablate_main(argv) == 0
    text = (results / "ablations.md").read_text()
    assert "at batch 4 of 16x16 LR patches" in text
    assert "## `--no-bn`: edsr-baseline x2, smoke profile" in text and "**Paper's claim**" in text
    assert "no batch norm (paper)" in text and "batch norm in every residual block" in text
    assert (results / "ablations" / "no-bn.png").stat().st_size > 1000
    summary = json.loads((results / "ablations" / "summary.json").read_text())["no-bn"]
    ref, bn = summary["reference"], summary["variant"]
    # BN layers keep their inputs for backward: a structural fact, not a timing
    assert bn["memory"]["saved_for_backward_mib"] > 1.5 * ref["memory"]["saved_for_backward_mib"]
    assert bn["parameters"] - ref["parameters"] == 16 * 2 * 2 * 64  # BN weight and bias, 2 per block
    assert ref["iterations"] == bn["iterations"] and summary["verdict"]


def test_ablate_needs_a_choice(capsys):
    with pytest.raises(SystemExit):
        ablate_main([])
    assert "choose an ablation" in capsys.readouterr().err


def test_ablation_runs_that_restate_the_profile_share_the_reproduce_run(tmp_path):
    from sr_bench.ablate import AblateConfig, _run_dir

    config = AblateConfig(["loss"], runs=str(tmp_path))
    own = tmp_path / "own"
    shared = tmp_path / "quick-edsr-baseline-x2"
    assert _run_dir(config, "edsr-baseline", 2, {}, own) == shared
    assert _run_dir(config, "edsr-baseline", 2, {"model.loss": "l1"}, own) == shared  # L1 is the recipe
    assert _run_dir(config, "edsr-baseline", 2, {"model.loss": "l2"}, own) == own
    assert _run_dir(config, "edsr-baseline", 2, {"model.options": {"batch_norm": True}}, own) == own
    assert _run_dir(AblateConfig(["loss"], runs=str(tmp_path), seed=1), "edsr-baseline", 2, {}, own) == own
    assert _run_dir(config, "edsr-baseline", 4, {}, own) == own  # reproduce's x4 is warm-started from x2


# ---- the gpu profile ---------------------------------------------------------------------------------


def _tiny_root(tmp_path):
    """A data root with a full (5-image) Set5 of small photographs-like images, and a training folder."""
    import numpy as np

    from sr_bench.images import write_image

    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for i in range(5):
        write_image(root / "Set5" / "HR" / f"im{i}.png", rng.integers(0, 256, (24, 36, 3), dtype=np.uint8))
    for i in range(6):
        write_image(root / "train" / f"t{i}.png", rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    return root


def test_gpu_profile_end_to_end_with_tiny_counts(tmp_path, one_thread):
    root = _tiny_root(tmp_path)
    results, runs = tmp_path / "results", tmp_path / "runs"
    tiny = {"optim.iterations": 2, "data.patch_size": 8, "data.batch_size": 2, "data.num_workers": 0,
            "val.max_images": 1, "data.dataset": str(root / "train"), "model.options": '{"blocks": 1, "filters": 8}'}
    sets = [a for k, v in tiny.items() for a in ("--set", f"{k}={v}")]
    argv = ["--profile", "gpu", "--models", "bicubic", "edsr-baseline", "--data-root", str(root), "--device", "cpu",
            "--results", str(results), "--runs", str(runs), "--no-table1", "--no-progress", *sets]
    assert reproduce.main(argv) == 0
    records = read_records(results / "records.jsonl")
    got = {(r.model, r.scale, r.self_ensemble) for r in records if r.model == "edsr-baseline"}
    assert got == {("edsr-baseline", s, se) for s in (2, 3, 4) for se in (False, True)}
    assert all(r.profile == "gpu" and r.dataset == "Set5" and r.n_images == 5 for r in records
               if r.model == "edsr-baseline")
    # the paper's warm start: x3 and x4 start from the x2 run's weights, in the shared run folders
    for s in (3, 4):
        cfg = json.loads((runs / f"gpu-edsr-baseline-x{s}" / "config.json").read_text())
        assert cfg["model"]["init"] == str(runs / "gpu-edsr-baseline-x2" / "final.safetensors")
        assert cfg["optim"]["iterations"] == 2 and "gpu profile: 2 updates instead of 300000" in " ".join(cfg["notes"])
    table = (results / "table3.md").read_text()
    assert "profile **gpu**" in table and "edsr-baseline (x2 2, x3 2, x4 2 updates; train" in table
    times = json.loads((results / "times-gpu.json").read_text())
    assert times["edsr-baseline"]["updates"] == {"x2": 2, "x3": 2, "x4": 2}


def test_gpu_parts_cover_the_whole_table_once():
    from sr_bench.reproduce import GPU_PARTS, ReproduceConfig, parts_text, plan

    everything = {j.model for j in plan(ReproduceConfig(profile="gpu"), ["Set5"])}
    parted = [m for models in GPU_PARTS.values() for m in models]
    assert sorted(parted) == sorted(everything) and len(parted) == len(set(parted))
    text = parts_text()
    assert all(f"--models {' '.join(models)}" in text for models in GPU_PARTS.values())


def test_gpu_plan_trains_everything_and_says_why_div2k_has_no_self_ensemble():
    from sr_bench.reproduce import ReproduceConfig, plan

    jobs = {j.model: j for j in plan(ReproduceConfig(profile="gpu"), ["Set5", "Urban100", "DIV2K"])}
    assert all(jobs[m].weights == "train" and jobs[m].scales == (2, 3, 4) for m in jobs if m != "bicubic")
    assert jobs["edsr"].warm_start_from == 2 and jobs["mdsr"].warm_start_from is None
    assert jobs["edsr"].modes("Urban100", 4) == (False, True)
    assert all(jobs[m].modes("DIV2K", s) == (False,) for m in jobs if m != "bicubic" for s in (2, 3, 4))


def test_dry_run_arithmetic():
    from sr_bench.reproduce import Estimate, PassEstimate, ReproduceConfig, RunEstimate, dry_run_json, dry_run_text

    runs = [RunEstimate(2, 100, 0.02, "timed", 0.8, 40, 1.5), RunEstimate(3, 50, 0.03, "timed", 0.8, 40, 2.0)]
    e = Estimate("edsr", (2, 3), runs, [PassEstimate("Set5", 2, "paper", 8, 1000, 30.0)])
    # validations: x2 after 40 and 80 updates and at the end (3); x3 after 40 and at the end (2)
    train = 100 * 0.02 / 0.8 + 3 * 1.5 + 50 * 0.03 / 0.8 + 2 * 2.0
    assert e.train_s() == pytest.approx(train)
    assert e.train_s(paper=True) == pytest.approx(300_000 * (0.02 + 0.03) / 0.8 + 7500 * (1.5 + 2.0))
    config = ReproduceConfig(profile="gpu", device="cpu")
    text = dry_run_text(config, [e], ["Set5"])
    assert "| edsr | x2 100, x3 50 | 0.025 s, 0.0375 s | 1 |" in text
    assert f"Total: {train + 30.0:.0f} s for profile gpu" in text
    doc = json.loads(dry_run_json(config, [e], ["Set5"]))
    (model,) = doc["models"]
    assert [r["seconds_per_update"] for r in model["runs"]] == pytest.approx([0.025, 0.0375])
    assert [r["validations"] for r in model["runs"]] == [3, 2] and doc["total_s"] == pytest.approx(train + 30.0)
    assert model["evaluation_passes"] == [{"dataset": "Set5", "scale": 2, "protocol": "paper", "forwards": 8,
                                           "lr_pixels": 1000, "seconds": 30.0}]


def test_dry_run_times_full_size_updates_and_prints_json(monkeypatch, capsys, no_data):
    """--dry-run times each run at the profile's own patch and batch (no small-crop scaling), on the
    CPU through the real trainer, and --json carries the timed seconds per update and every evaluation pass."""
    from sr_bench.bench import StepTiming

    timed = []

    def fake_updates(cfg, device, *, updates, warmup, budget_s, **kw):
        assert not kw.get("patch_size") and not kw.get("batch_size")  # the config's own patch and batch
        timed.append((cfg.model.name, cfg.data.patch_size, cfg.data.batch_size, updates, warmup))
        return StepTiming(0.5, cfg.data.patch_size, cfg.data.batch_size, "none", 4, (0.5, 0.4, 0.6, 0.5))

    monkeypatch.setattr(reproduce, "time_trainer_updates", fake_updates)  # the CPU times through the trainer
    monkeypatch.setattr(reproduce, "time_updates", lambda *a, **k: pytest.fail("the compute-only step is for CUDA"))
    monkeypatch.setattr(reproduce, "time_forward", lambda model, scale, device, size, repeats: 1e-4 * size * size)
    assert reproduce.main(["--dry-run", "--json", "--device", "cpu"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert timed == [("edsr-baseline", 48, 16, 3, 1)]  # the quick profile: one run, timed at 16 x 48x48
    (run,) = next(m for m in doc["models"] if m["model"] == "edsr-baseline")["runs"]
    assert run["updates"] == 750 and run["seconds_per_update"] == pytest.approx(0.5)
    # quick validates every 250 updates and at the end, on the 5 photos at x2: 1e-4 s per LR pixel
    assert run["validations"] == 3 and run["validation_s"] > 0
    assert run["train_s"] == pytest.approx(750 * 0.5 + 3 * run["validation_s"])
    passes = next(m for m in doc["models"] if m["model"] == "bicubic")["evaluation_passes"]
    assert {(p["scale"], p["protocol"]) for p in passes} == {(s, p) for s in (2, 3, 4) for p in ("paper", "vdsr")}
    assert all(p["seconds"] == pytest.approx(1e-4 * p["lr_pixels"]) for p in passes)
    assert "median of at least 3 timed updates" in doc["method"]


def test_reproduce_user_errors_are_one_line(capsys):
    assert reproduce.main(["--models", "edsr-basline", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "edsr-basline" in err


def test_fixy_reproduce_bad_paths_and_set_fields(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "folder"
    rc = reproduce.main(["--models", "bicubic", "--data-root", str(missing), "--dry-run",
                         "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and str(missing) in err
    taken = tmp_path / "file.json"
    taken.write_text("{}")
    rc = reproduce.main(["--models", "bicubic", "--results", str(taken), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and str(taken) in err
    rc = reproduce.main(["--models", "bicubic", "--set", "optim.iterationz=2", "--dry-run",
                         "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "optim.iterationz" in err and "optim.iterations" in err
