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
    assert "Not run on Set5, Set14, B100, Urban100, DIV2K: dataset absent" in table
    assert "scikit-image photos" in table

    # A second run finds every record: nothing is evaluated again, and the table is the same.
    monkeypatch.setattr(reproduce, "evaluate", lambda *a, **k: pytest.fail("re-evaluated a finished record"))
    assert reproduce.main(args) == 0
    assert len(read_records(results / "records.jsonl")) == len(records)


def test_ablate_no_bn_smoke_writes_table_plot_and_memory(tmp_path, no_data):
    results = tmp_path / "results"
    assert ablate_main(["--no-bn", "--profile", "smoke", "--results", str(results), "--runs", str(tmp_path / "runs")]) == 0
    text = (results / "ablations.md").read_text()
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
