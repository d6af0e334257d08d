"""The evaluation command and its records; the published Bicubic row reproduced on real data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sr_bench import baselines
from sr_bench.data import open_dataset
from sr_bench.evaluate import evaluate, evaluate_model, load_candidates, main
from sr_bench.records import Record, append_records, read_records


def test_cli_on_the_embedded_photos_writes_records_and_table(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)
    out = tmp_path / "res" / "records.jsonl"
    assert main(["--model", "bicubic", "--datasets", "embedded", "--scales", "2", "4", "--out", str(out), "--no-progress"]) == 0
    records = read_records(out)
    assert [(r.model, r.dataset, r.scale, r.self_ensemble, r.protocol) for r in records] == [
        ("bicubic", "embedded", 2, False, "paper"), ("bicubic", "embedded", 4, False, "paper")]
    r = records[0]
    assert r.n_images == 5 and len(r.per_image) == 5 and r.weights is None
    assert r.psnr == pytest.approx(np.mean([p["psnr"] for p in r.per_image]))
    assert r.lr_source == "generated" and len(r.data_sha256) == 64 and r.date and r.sr_bench_version
    assert 20 < records[1].psnr < records[0].psnr < 45  # x4 is harder than x2
    table = (tmp_path / "res" / "table3.md").read_text()
    assert "| embedded | x2 |" in table and "(no paper value)" in table
    assert "bicubic" in capsys.readouterr().out


def test_records_replace_same_key_and_reject_bad_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    base = dict(model="m", weights=None, dataset="Set5", scale=2, self_ensemble=False, protocol="paper",
                ssim=0.9, n_images=1, per_image=[])
    append_records(path, [Record(psnr=30.0, **base), Record(psnr=31.0, **{**base, "scale": 3})])
    append_records(path, [Record(psnr=32.0, **base)])
    assert sorted((r.scale, r.psnr) for r in read_records(path)) == [(2, 32.0), (3, 31.0)]
    path.write_text(path.read_text() + "{broken\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:3: not a JSON record"):
        read_records(path)
    path.write_text(json.dumps({"model": "m"}) + "\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:1: record lacks"):
        read_records(path)


def test_self_ensemble_of_an_equivariant_model_changes_nothing(monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)
    cands = load_candidates("bicubic", [3], None)
    plain, plus = evaluate(cands, open_dataset("embedded"), "paper", self_ensemble=(False, True), max_images=2, progress=False)
    assert plus.self_ensemble and not plain.self_ensemble
    assert plus.psnr == pytest.approx(plain.psnr, abs=1e-3)


def test_evaluate_model_restores_training_mode():
    from sr_bench.models import create

    model = create("edsr-baseline", scale=2, blocks=1, filters=8).train()
    recs = evaluate_model(model, "embedded", [2], max_images=1)
    assert model.training and recs[0].n_images == 1 and np.isfinite(recs[0].psnr)


def test_parameterised_model_without_weights_is_refused():
    with pytest.raises(ValueError, match=r"edsr-baseline has 1,369,883 parameters and no weights"):
        load_candidates("edsr-baseline", [2], None)


def _bicubic_rows(data_root, protocol, datasets):
    cands = load_candidates("bicubic", [2, 3, 4], None)
    records = []
    for name in datasets:
        records += evaluate(cands, open_dataset(name, data_root), protocol, progress=False)
    return records


def test_published_bicubic_row_with_the_vdsr_protocol(data_root):
    """All 12 Set5/Set14/B100/Urban100 x2/x3/x4 cells within 0.01 dB and 0.001 SSIM of the paper."""
    records = _bicubic_rows(data_root, "vdsr", ["Set5", "Set14", "B100", "Urban100"])
    assert len(records) == 12
    for r in records:
        paper = baselines.table3_value("bicubic", False, r.dataset, r.scale)
        assert abs(r.psnr - paper.psnr) < 0.01, (r.dataset, r.scale, r.psnr, paper.psnr)
        assert abs(r.ssim - paper.ssim) < 0.001, (r.dataset, r.scale, r.ssim, paper.ssim)


def test_bicubic_with_the_paper_protocol_is_within_003_db(data_root):
    records = _bicubic_rows(data_root, "paper", ["Set5", "Set14", "B100", "Urban100"])
    deltas = {(r.dataset, r.scale): r.psnr - baselines.table3_value("bicubic", False, r.dataset, r.scale).psnr for r in records}
    assert len(deltas) == 12 and max(abs(d) for d in deltas.values()) < 0.03, deltas
    assert all(r.lr_source == ("generated" if r.dataset == "Urban100" and r.scale < 4 else "file") for r in records)


@pytest.mark.gpu
def test_cuda_evaluation_matches_cpu(monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)
    ds = open_dataset("embedded")
    cpu = evaluate(load_candidates("bicubic", [2], None), ds, "paper", max_images=2, progress=False)[0]
    gpu = evaluate(load_candidates("bicubic", [2], None, device="cuda"), ds, "paper", device="cuda", max_images=2, progress=False)[0]
    assert gpu.psnr == pytest.approx(cpu.psnr, abs=1e-3) and torch.cuda.is_available()
