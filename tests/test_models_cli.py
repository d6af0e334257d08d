"""``python -m sr_bench.models``: models, published weights, datasets and protocols at a glance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sr_bench import models
from sr_bench.data import DATASETS
from sr_bench.models import __main__ as listing
from sr_bench.protocols import PROTOCOLS
from sr_bench.weights import weights_names

SET5 = ("baby", "bird", "butterfly", "head", "woman")


@pytest.fixture(autouse=True)
def _no_weights_anywhere(tmp_path, monkeypatch):
    """No weights folder, an empty download cache, no mirror, and no download ever attempted."""
    monkeypatch.delenv("SR_BENCH_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("SR_BENCH_WEIGHTS_URL", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_download(*args, **kwargs):
        raise AssertionError("the listing must not download anything")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr("sr_bench.weights.files.fetch", no_download)  # how sr_bench downloads weights


def test_every_model_with_its_parameter_counts_per_scale():
    rows = {r.name: r for r in listing.model_rows()}
    assert list(rows) == models.names()
    assert rows["edsr-baseline"].params == {2: 1369883, 3: 1554523, 4: 1517595}  # the paper's 1.5M, per scale
    assert rows["mdsr"].params == {2: 7954011, 3: 7954011, 4: 7954011} and rows["mdsr"].multi_scale
    assert rows["edsr-baseline"].hub == "edsr_baseline"
    text = "\n".join(listing._models_text(list(rows.values())))
    assert "edsr-baseline  edsr      x2 x3 x4  1.37M / 1.55M / 1.52M     edsr_baseline" in text
    assert "7.95M (one network)" in text


def test_weights_are_reachable_only_where_a_file_or_a_mirror_is(tmp_path, monkeypatch):
    rows = {r.name: r for r in listing.weights_rows()}
    assert list(rows) == weights_names()
    assert not any(r.reachable for r in rows.values())
    assert rows["edsr-x4"].where == "not reachable (the authors' server has been offline since 2024)"
    assert (rows["edsr-x4"].file, rows["edsr-x4"].sha256_prefix) == ("edsr_x4-4f62e9ef.pt", "4f62e9ef")
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "edsr_x4-4f62e9ef.pt").write_bytes(b"found by name; hashed when loaded")
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "mdsr-4a78bedf.pt").write_bytes(b"x")
    rows = {r.name: r for r in listing.weights_rows(str(folder))}
    assert rows["edsr-x4"].reachable and rows["edsr-x4"].where == f"{folder / 'edsr_x4-4f62e9ef.pt'} (weights folder)"
    assert rows["mdsr"].reachable and rows["mdsr"].where == f"{cache / 'mdsr-4a78bedf.pt'} (download cache)"
    assert not rows["edsr-x2"].reachable
    monkeypatch.setenv("SR_BENCH_WEIGHTS_DIR", str(folder))  # the environment names the same folder
    assert {r.name for r in listing.weights_rows() if r.reachable} == {"edsr-x4", "mdsr"}
    monkeypatch.setenv("SR_BENCH_WEIGHTS_URL", "https://mirror.example/edsr/")
    rows = {r.name: r for r in listing.weights_rows()}
    assert all(r.reachable for r in rows.values())
    assert rows["edsr-x2"].where.startswith("mirror https://mirror.example/edsr/edsr_x2-0edfb8a3.pt ")


def _touch(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"not decoded by the listing")


def test_datasets_present_absent_and_incomplete_without_decoding(tmp_path):
    root = tmp_path / "data"
    _touch(root / "Set5" / "HR", [f"{s}.png" for s in SET5])  # not real PNGs: counting only
    _touch(root / "Set5" / "LR_bicubic" / "X4", [f"{s}x4.png" for s in SET5])
    _touch(root / "Set5" / "LR_bicubic" / "X2", [f"{s}x2.png" for s in SET5[:4]])  # one missing: not "file"
    _touch(root / "Set14" / "HR", ["a.png", "b.png", "c.png"])
    rows = {r.name: r for r in listing.dataset_rows(str(root))}
    assert (rows["Set5"].present, rows["Set5"].images, rows["Set5"].lr_files) == (True, 5, (4,))
    assert rows["Set5"].location == str(root / "Set5" / "HR")
    assert not rows["Set14"].present and "has 3 images, expected 14" in rows["Set14"].note
    assert not rows["B100"].present and rows["B100"].note == f"to get it: {DATASETS['B100'].how_to_get}"
    assert rows["embedded"].present and rows["embedded"].images == 5  # ships with scikit-image
    order = list(rows)
    assert order.index("Set5") < order.index("Set14") < order.index("B100") < order.index("Urban100")
    text = "\n".join(listing._datasets_text(list(rows.values()), str(root)))
    assert f"datasets under {root}" in text
    assert f"present, 5 images   {root / 'Set5' / 'HR'} (LR files x4)" in text


@pytest.mark.data
def test_the_real_data_root(data_root):
    rows = {r.name: r for r in listing.dataset_rows(str(data_root))}
    assert {n: (rows[n].images, rows[n].lr_files) for n in ("Set5", "Set14", "B100", "Urban100")} == {
        "Set5": (5, (2, 3, 4)), "Set14": (14, (2, 3, 4)), "B100": (100, (2, 3, 4)), "Urban100": (100, (4,))}
    assert rows["T91"].present and rows["T91"].images == 91


def test_protocols_one_line_each():
    rows = listing.protocol_rows()
    assert [r.name for r in rows] == list(PROTOCOLS) == ["paper", "vdsr", "pytorch", "basicsr"]
    assert all(r.summary == PROTOCOLS[r.name].summary and "\n" not in r.summary for r in rows)


def test_main_text_json_sections_and_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)
    assert listing.main([]) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert [h.split(":")[0].split(" ")[0] for h in heads] == ["models", "published", "datasets", "protocols"]
    assert "0 of 8 reachable here" in out and "to use one: put its file" in out
    assert "datasets under (no data root: pass --data-root DIR or set SR_BENCH_DATA)" in out
    assert listing.main(["protocols", "models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["models", "protocols"]  # the fixed order, whatever the order asked
    assert data["models"][0] == {"name": "bicubic", "family": "bicubic", "scales": [2, 3, 4], "multi_scale": True,
                                 "params": {"2": 0, "3": 0, "4": 0}, "hub": "bicubic"}
    assert listing.main(["weights", "--weights-dir", str(tmp_path), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["weights"]) == len(weights_names())
    assert listing.main(["modles"]) == 2
    assert "error: unknown section 'modles'; choose from models, weights, datasets" in capsys.readouterr().err


def test_evaluate_help_points_to_the_listing(capsys):
    from sr_bench import evaluate

    with pytest.raises(SystemExit):
        evaluate._parser().parse_args(["--help"])
    assert "python -m sr_bench.models" in " ".join(capsys.readouterr().out.split())  # argparse rewraps it
