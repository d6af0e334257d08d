"""The evaluation command and its records; the published Bicubic row reproduced on real data."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from sr_bench import baselines, paths, sr_folder
from sr_bench.data import open_dataset
from sr_bench.evaluate import evaluate, evaluate_model, load_candidates, main
from sr_bench.records import Record, read_records


def test_cli_on_the_embedded_photos_writes_records_and_table(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)
    out = tmp_path / "res" / "records.jsonl"
    argv = ["--model", "bicubic", "--datasets", "embedded", "--scales", "2", "4", "--out", str(out), "--no-progress"]
    assert main(argv) == 0  # --out: the deprecated spelling of --records still works
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


def test_self_ensemble_of_an_equivariant_model_changes_nothing(monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)
    cands = load_candidates("bicubic", [3], None)
    plain, plus = evaluate(cands, open_dataset("embedded"), "paper", self_ensemble=(False, True), max_images=2,
                           progress=False)
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
    deltas = {(r.dataset, r.scale): r.psnr - baselines.table3_value("bicubic", False, r.dataset, r.scale).psnr
              for r in records}
    assert len(deltas) == 12 and max(abs(d) for d in deltas.values()) < 0.03, deltas
    assert all(r.lr_source == ("generated" if r.dataset == "Urban100" and r.scale < 4 else "file") for r in records)


@pytest.mark.gpu
def test_cuda_evaluation_matches_cpu(monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)
    ds = open_dataset("embedded")
    cpu = evaluate(load_candidates("bicubic", [2], None), ds, "paper", max_images=2, progress=False)[0]
    gpu = evaluate(load_candidates("bicubic", [2], None, device="cuda"), ds, "paper", device="cuda", max_images=2,
                   progress=False)[0]
    assert gpu.psnr == pytest.approx(cpu.psnr, abs=1e-3) and torch.cuda.is_available()


# --- outputs, identity and labels ---

def _photos(folder, n=2, size=(40, 48)):
    """A user's folder of small RGB images (not a registered dataset)."""
    from sr_bench.images import write_image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        write_image(folder / f"img{i}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return folder


def _run(tmp_path, *args):
    return main(["--datasets", "embedded", "--scales", "2", "--no-progress", "-q",
                 "--records", str(tmp_path / "records.jsonl"), *args])


@pytest.mark.parametrize("bad", [["--max-images", "0"], ["--max-images", "-1"], ["--tile", "0"], ["--scales", "0"]])
def test_non_positive_counts_fail_in_argparse(bad, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _run(tmp_path, "--model", "bicubic", *bad)
    assert e.value.code == 2 and bad[0] in capsys.readouterr().err
    assert not (tmp_path / "records.jsonl").exists()


def test_model_and_sr_dir_are_exclusive_and_one_is_required(tmp_path, capsys):
    for args in ([], ["--model", "bicubic", "--sr-dir", str(tmp_path)]):
        with pytest.raises(SystemExit) as e:
            _run(tmp_path, *args)
        assert e.value.code == 2
    assert "--sr-dir" in capsys.readouterr().err


def test_unwritable_outputs_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import sr_bench.evaluate as ev

    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: pytest.fail("computed before checking the outputs"))
    (tmp_path / "folder.jsonl").mkdir()
    (tmp_path / "afile").write_text("")
    for option, value in (("--records", tmp_path / "folder.jsonl"), ("--per-image", tmp_path / "afile" / "x.csv"),
                          ("--table", tmp_path / "folder.jsonl")):
        args = ["--model", "bicubic", "--datasets", "embedded", "--scales", "2", "--no-progress", option, str(value)]
        if option != "--records":
            args += ["--records", str(tmp_path / "r.jsonl")]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {option} {value}") and err.count("\n") == 1, err


def test_each_dataset_is_stored_as_soon_as_it_finishes(tmp_path, monkeypatch):
    import sr_bench.evaluate as ev

    folder = _photos(tmp_path / "mine")
    real, calls = ev.evaluate, []

    def second_one_dies(cands, ds, *a, **k):
        calls.append(ds.name)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(cands, ds, *a, **k)

    monkeypatch.setattr(ev, "evaluate", second_one_dies)
    with pytest.raises(RuntimeError, match="killed"):
        main(["--model", "bicubic", "--datasets", "embedded", str(folder), "--scales", "2", "3", "--no-progress",
              "-q", "--records", str(tmp_path / "records.jsonl")])
    stored = [(r.dataset, r.scale) for r in read_records(tmp_path / "records.jsonl")]
    assert stored == [("embedded", 2), ("embedded", 3)]


def test_a_user_folder_named_set5_is_recorded_by_its_path(tmp_path, data_root):
    folder = _photos(tmp_path / "Set5")
    records = tmp_path / "records.jsonl"
    assert main(["--model", "bicubic", "--datasets", "Set5", str(folder), "--scales", "2", "--no-progress", "-q",
                 "--data-root", str(data_root), "--records", str(records)]) == 0
    got = {(r.dataset, r.n_images, r.n_expected) for r in read_records(records)}
    assert got == {("Set5", 5, 5), (str(folder.resolve()), 2, 2)}
    table = (tmp_path / "table3.md").read_text()
    assert "| Set5 | x2 | 33.65 / 0.9293 (33.66 / 0.9299" in table  # the real Set5, against the paper
    assert f"| `{folder.resolve()}` | x2 |" in table and "(no paper value)" in table


def test_max_images_is_a_partial_record_beside_the_full_one(tmp_path):
    assert _run(tmp_path, "--model", "bicubic") == 0
    assert _run(tmp_path, "--model", "bicubic", "--max-images", "1") == 0
    recs = read_records(tmp_path / "records.jsonl")
    assert sorted((r.n_images, r.n_expected, r.complete) for r in recs) == [(1, 5, False), (5, 5, True)]
    full = next(r for r in recs if r.complete)
    table = (tmp_path / "table3.md").read_text()
    assert f"| embedded | x2 | {full.psnr:.2f} / {full.ssim:.4f} (no paper value) |" in table
    assert "1 partial record(s)" in table and "bicubic embedded x2 (1/5)" in table


def _checkpoint(path, seed):
    from sr_bench.models import create

    torch.manual_seed(seed)
    torch.save(create("edsr-baseline", scale=2, blocks=1, filters=8).state_dict(), path)


def test_two_checkpoints_of_one_model_are_two_labelled_columns(tmp_path):
    a, b = tmp_path / "ckpt_a.pt", tmp_path / "ckpt_b.pt"
    _checkpoint(a, 1), _checkpoint(b, 2)
    opts = ["--option", "blocks=1", "--option", "filters=8", "--max-images", "1"]
    assert _run(tmp_path, "--model", "edsr-baseline", "--weights", str(a), *opts) == 0
    assert _run(tmp_path, "--model", "edsr-baseline", "--weights", str(b), *opts) == 0
    recs = read_records(tmp_path / "records.jsonl")
    assert sorted(r.label for r in recs) == ["edsr-baseline (ckpt_a)", "edsr-baseline (ckpt_b)"]
    assert len({r.weights for r in recs}) == 2


def test_a_label_with_other_weights_is_refused_unless_replace(tmp_path, capsys):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    _checkpoint(a, 1), _checkpoint(b, 2)
    opts = ["--option", "blocks=1", "--option", "filters=8", "--max-images", "1", "--label", "mine"]
    assert _run(tmp_path, "--model", "edsr-baseline", "--weights", str(a), *opts) == 0
    before = (tmp_path / "records.jsonl").read_text()
    capsys.readouterr()
    assert _run(tmp_path, "--model", "edsr-baseline", "--weights", str(b), *opts) == 2
    err = capsys.readouterr().err
    sha_a, sha_b = (hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in (a, b))
    assert err.startswith(f"error: {tmp_path / 'records.jsonl'}: label 'mine' already holds") and err.count("\n") == 1
    assert sha_a in err and sha_b in err and "--label OTHER" in err and "--replace" in err
    assert (tmp_path / "records.jsonl").read_text() == before
    assert _run(tmp_path, "--model", "edsr-baseline", "--weights", str(b), *opts, "--replace") == 0
    assert [(r.label, r.weights[:16]) for r in read_records(tmp_path / "records.jsonl")] == [("mine", sha_b)]
    capsys.readouterr()  # two networks given one label in one run: refused too, before any work
    assert _run(tmp_path, "--model", "edsr-baseline", "edsr-baseline", "--weights", str(a), str(b), *opts[:-1],
                "two", "two") == 2
    assert "label 'two' already holds other results" in capsys.readouterr().err


def test_per_image_csv_has_one_row_per_image_and_reruns_replace_rows(tmp_path):
    csv_path = tmp_path / "per_image.csv"
    for _ in range(2):
        assert _run(tmp_path, "--model", "bicubic", "--self-ensemble", "both", "--per-image", str(csv_path)) == 0
    recs = read_records(tmp_path / "records.jsonl")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["dataset", "scale", "image", "label", "self_ensemble", "psnr", "ssim"]
    assert len(rows) == 10  # 5 photos x (plain, self-ensemble), not doubled by the rerun
    want = {(r.self_ensemble, p["image"]): p for r in recs for p in r.per_image}
    for row in rows:
        p = want[(row["self_ensemble"] == "true", row["image"])]
        assert (row["dataset"], row["scale"], row["label"]) == ("embedded", "2", "bicubic")
        assert float(row["psnr"]) == p["psnr"] and float(row["ssim"]) == p["ssim"]


def test_sr_dir_routes_to_the_sr_folder_scorer(tmp_path, monkeypatch):
    seen = {}

    def score_sr_folder(sr_dir, **kwargs):
        seen.update(kwargs, sr_dir=sr_dir)
        rows = [{"image": f"i{k}", "psnr": 37.0, "ssim": 0.95} for k in range(5)]
        return [Record(model="sr-folder", weights=None, dataset="Set5", scale=2, self_ensemble=False,
                       protocol="paper", psnr=37.0, ssim=0.95, n_images=5, per_image=rows, label="theirs",
                       source="sr-folder", sr_dir=str(sr_dir), sr_sha256="f" * 64)]

    monkeypatch.setattr(sr_folder, "score_sr_folder", score_sr_folder)
    assert main(["--sr-dir", str(tmp_path), "--label", "theirs", "--datasets", "Set5", "--scales", "2", "--no-progress",
                 "-q", "--records", str(tmp_path / "r.jsonl"), "--sr-pattern", "{dataset}/{stem}.png"]) == 0
    assert seen == dict(sr_dir=str(tmp_path), label="theirs", datasets=["Set5"], scales=[2], protocol="paper",
                        data_root=None, pattern="{dataset}/{stem}.png", allow_partial=False, progress=False)
    assert [r.label for r in read_records(tmp_path / "r.jsonl")] == ["theirs"]
    assert "| theirs |" in (tmp_path / "table3.md").read_text()


def test_default_output_outside_a_clone_is_sr_bench_results(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--model", "bicubic", "--datasets", "embedded", "--scales", "2", "--no-progress", "-q"]) == 0
    (r,) = read_records(tmp_path / "sr_bench_results" / "records.jsonl")
    assert (tmp_path / "sr_bench_results" / "table3.md").is_file() and r.device == "cpu"


def test_a_refused_run_leaves_no_empty_results_folder(tmp_path, monkeypatch, capsys):
    """The output checks run before the model is built; a run refused after them (an unknown model,
    a model without weights) writes nothing, not even the default folder."""
    monkeypatch.chdir(tmp_path)
    assert main(["--model", "no-such-model", "--datasets", "embedded", "--scales", "2", "--no-progress"]) == 2
    assert main(["--model", "edsr-baseline", "--datasets", "embedded", "--scales", "2", "--no-progress",
                 "--records", str(tmp_path / "new" / "deeper" / "r.jsonl")]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_help_names_the_default_results_folder_where_records_go(tmp_path, monkeypatch, capsys):
    """What `--help` says about the default folder is where a run in a clone writes."""
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert paths.default_results_dir(Path(__file__).parent) .relative_to(paths.checkout_root()) == paths.LOCAL_RESULTS
    assert f"RESULTS defaults to {paths.LOCAL_RESULTS.as_posix()}/ inside an sr_bench clone" in text


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_bad_memory_budget_fails_in_argparse(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _run(tmp_path, "--model", "bicubic", "--memory-budget", "4XB")
    assert e.value.code == 2 and "'4XB'" in capsys.readouterr().err


def test_an_unknown_model_option_is_a_usage_error(tmp_path, capsys):
    assert _run(tmp_path, "--model", "edsr-baseline", "--weights", "random", "--option", "blockz=3") == 2
    err = _one_line_error(capsys)
    assert "'blockz'" in err and "blocks" in err


@pytest.mark.parametrize("device", ["tpu9", "cuda"])
def test_an_unusable_device_is_a_usage_error(device, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _run(tmp_path, "--model", "bicubic", "--device", device) == 2
    err = _one_line_error(capsys)
    assert repr(device) in err or f"--device {device}:" in err
    assert "--device cpu" in err or "cuda:N" in err


def test_a_missing_weights_file_is_a_data_error(tmp_path, capsys):
    missing = tmp_path / "no" / "such.pt"
    assert _run(tmp_path, "--model", "edsr-baseline", "--weights", str(missing)) == 1
    assert str(missing) in _one_line_error(capsys)


def test_a_corrupt_weights_file_is_one_line_without_torch_advice(tmp_path, capsys):
    bad = tmp_path / "random.pt"
    bad.write_bytes(bytes(range(256)) * 4)
    assert _run(tmp_path, "--model", "edsr-baseline", "--weights", str(bad)) == 1
    err = _one_line_error(capsys)
    assert str(bad) in err and "weights_only=True" in err and "state_dict" in err
    assert "weights_only=False" not in err and "Re-running" not in err
