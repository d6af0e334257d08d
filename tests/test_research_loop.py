"""The loop a researcher runs with no extra flags: ``upscale --dataset`` -> ``evaluate --sr-dir``
(no ``--sr-pattern``) -> ``compare --protocols``, with the SR-folder records equal to ``evaluate
--model`` for the same network, and the commands ``compare`` gives for missing protocols working
for SR-folder labels; and ``evaluate_model(..., records=)`` feeding ``compare``."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
import torch

from sr_bench import compare, evaluate, models, upscale
from sr_bench.evaluate import evaluate_model
from sr_bench.records import read_records
from sr_bench.weights import export_safetensors

pytestmark = pytest.mark.usefixtures("one_thread")

SCALES = (2, 3, 4)
TINY = ("--option", "blocks=2", "--option", "filters=8")
#: evaluate --sr-dir decodes the PNG that upscale wrote from the same quantised output evaluate
#: scores; the scores are then the same float64 computation on the same uint8 pixels
PER_IMAGE_DB = 1e-6


@pytest.fixture(scope="module")
def which_data():
    """Real Set5 when the benchmark images are there, else the photos bundled with scikit-image."""
    root = os.environ.get("SR_BENCH_DATA")
    if root and Path(root, "Set5", "HR").is_dir():
        return "Set5", root
    return "embedded", None


def _tiny_weights(folder: Path) -> str:
    """A tiny EDSR-baseline per scale, random but fixed, as files with ``{scale}`` in the name."""
    for s in SCALES:
        torch.manual_seed(s)
        net = models.create("edsr-baseline", scale=s, blocks=2, filters=8)
        export_safetensors(net, folder / f"tiny_x{s}.safetensors")
    return str(folder / "tiny_x{scale}.safetensors")


def _data_args(data_root: str | None) -> list[str]:
    return ["--data-root", data_root] if data_root else []


def _per_image(records, label):
    return {(Path(r.dataset).name, r.scale, p["image"]): p["psnr"] for r in records if r.label == label
            for p in r.per_image}


def test_upscale_then_sr_dir_then_compare_protocols(tmp_path, which_data, capsys):
    name, data_root = which_data
    weights = _tiny_weights(tmp_path)
    out, records = tmp_path / "sr", str(tmp_path / "records.jsonl")
    for s in SCALES:
        common = ["--scale", str(s), "--dataset", name, "--device", "cpu", *_data_args(data_root), "-q"]
        assert upscale.main(["--model", "bicubic", "--out", str(out / "bicubic"), *common]) == 0
        assert upscale.main(["--model", "edsr-baseline", "--weights", weights.format(scale=s), *TINY,
                             "--out", str(out / "tiny"), *common]) == 0
    assert sorted(p.relative_to(out / "tiny").as_posix() for p in (out / "tiny").rglob("*.png"))[:1] == [
        f"{name}/x2/{sorted(p.stem for p in (out / 'tiny' / name / 'x2').iterdir())[0]}.png"]
    scored = ["--datasets", name, "--scales", *map(str, SCALES), "--records", records, *_data_args(data_root),
              "--no-progress", "-q"]
    for label in ("bicubic", "tiny"):
        assert evaluate.main(["--sr-dir", str(out / label), "--label", f"{label}-sr", *scored]) == 0
    assert evaluate.main(["--model", "edsr-baseline", "--weights", weights, *TINY, "--label", "tiny-model",
                          *scored]) == 0
    got = read_records(records)
    folder, model = _per_image(got, "tiny-sr"), _per_image(got, "tiny-model")
    assert folder.keys() == model.keys() and len(folder) == len(SCALES) * len({k[2] for k in folder})
    assert max(abs(folder[k] - model[k]) for k in folder) <= PER_IMAGE_DB
    assert {r.model_options["sr_layout"] for r in got if r.source == "sr-folder"} == {"sr_bench"}

    # compare under three protocols: the records of the other two are missing, and compare says how to make them
    argv = ["bicubic-sr", "tiny-sr", "--protocols", "paper", "pytorch", "basicsr", "--records", records,
            "--results", str(tmp_path)]
    capsys.readouterr()
    assert compare.main(argv) == 2
    err = capsys.readouterr().err
    commands = err.split("make them with: ", 1)[1].strip().split(" ; ")
    # one command per label, scoring both missing protocols in one run
    assert len(commands) == 2 and all("--sr-dir" in c and "--protocol pytorch basicsr" in c for c in commands), commands
    for command in commands:
        words = shlex.split(command)
        assert words[:3] == ["python", "-m", "sr_bench.evaluate"]
        assert evaluate.main([*words[3:], *_data_args(data_root), "--no-progress", "-q"]) == 0
    assert compare.main(argv) == 0
    table = capsys.readouterr().out
    assert "| paper dPSNR |" in table and "| basicsr dPSNR |" in table and "| **all** |" in table


def test_one_evaluate_scores_a_folder_under_several_protocols(tmp_path, which_data, capsys):
    """`evaluate --sr-dir OUT --protocol paper pytorch basicsr` gives each protocol's record, equal to
    one run per protocol, so `compare --protocols` needs no further command."""
    name, data_root = which_data
    out = tmp_path / "sr"
    for label, model in (("a", ["--model", "bicubic"]), ("b", ["--model", "edsr-baseline", "--weights",
                                                               _tiny_weights(tmp_path).format(scale=2), *TINY])):
        assert upscale.main([*model, "--out", str(out / label), "--scale", "2", "--dataset", name, "--device", "cpu",
                             *_data_args(data_root), "-q"]) == 0
    common = ["--datasets", name, "--scales", "2", *_data_args(data_root), "--no-progress", "-q"]
    together, apart = str(tmp_path / "together.jsonl"), str(tmp_path / "apart.jsonl")
    for label in ("a", "b"):
        assert evaluate.main(["--sr-dir", str(out / label), "--label", label, *common, "--records", together,
                              "--protocol", "paper", "pytorch", "basicsr"]) == 0
        for protocol in ("paper", "pytorch", "basicsr"):
            assert evaluate.main(["--sr-dir", str(out / label), "--label", label, *common, "--records", apart,
                                  "--protocol", protocol]) == 0
    key = lambda r: (r.label, r.protocol)  # noqa: E731
    one, three = sorted(read_records(together), key=key), sorted(read_records(apart), key=key)
    assert [key(r) for r in one] == [(x, p) for x in "ab" for p in ("basicsr", "paper", "pytorch")]
    scores = lambda recs: [(key(r), r.psnr, r.ssim, r.per_image) for r in recs]  # noqa: E731
    assert scores(one) == scores(three)
    capsys.readouterr()
    assert compare.main(["--protocols", "paper", "pytorch", "basicsr", "a", "b", "--records", together,
                         "--results", str(tmp_path)]) == 0
    assert "| basicsr dPSNR |" in capsys.readouterr().out
    assert evaluate.main(["--sr-dir", str(out / "a"), "--label", "a", *common, "--records", together,
                          "--protocol", "paper", "basicsr", "--per-image", str(tmp_path / "p.csv")]) == 2
    assert "the CSV has no protocol column" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()


def test_lr_named_inputs_map_back_to_the_hr_stem(tmp_path, data_root):
    """``upscale Set5/LR_bicubic/X2 --out OUT/Set5/x2`` writes ``baby_x2.png``, which the
    ``upscale`` layout of ``evaluate --sr-dir`` finds, with the scores of ``--dataset``."""
    records = str(tmp_path / "r.jsonl")
    lr = data_root / "Set5" / "LR_bicubic" / "X2"
    out = tmp_path / "sr"
    assert upscale.main(["--model", "bicubic", "--scale", "2", str(lr), "--out", str(out / "Set5" / "x2"), "-q"]) == 0
    assert sorted(p.name for p in (out / "Set5" / "x2").iterdir()) == [
        "baby_x2.png", "bird_x2.png", "butterfly_x2.png", "head_x2.png", "woman_x2.png"]
    assert upscale.main(["--model", "bicubic", "--scale", "2", "--dataset", "Set5", "--out", str(tmp_path / "ds"),
                         "--data-root", str(data_root), "-q"]) == 0
    for folder, label in ((out, "files"), (tmp_path / "ds", "dataset")):
        assert evaluate.main(["--sr-dir", str(folder), "--label", label, "--datasets", "Set5", "--scales", "2",
                              "--data-root", str(data_root), "--records", records, "--no-progress", "-q"]) == 0
    got = read_records(records)
    assert {r.label: r.model_options["sr_layout"] for r in got} == {"files": "upscale", "dataset": "sr_bench"}
    assert _per_image(got, "files") == _per_image(got, "dataset")  # the same pixels in, the same bits out


def test_an_empty_sr_folder_does_not_suggest_allow_partial(tmp_path, which_data, capsys):
    name, data_root = which_data
    (tmp_path / "sr" / "nothing").mkdir(parents=True)
    argv = ["--sr-dir", str(tmp_path / "sr"), "--label", "x", "--datasets", name, "--scales", "2",
            "--records", str(tmp_path / "r.jsonl"), *_data_args(data_root), "--no-progress"]
    assert evaluate.main(argv) == 1
    err = capsys.readouterr().err
    assert "no SR image of" in err and "allow-partial" not in err


def test_evaluate_model_writes_records_that_compare_reads(tmp_path):
    name, data_root = "embedded", None  # its gray photo: an in-memory EDSR takes it as RGB, as evaluate does
    records = tmp_path / "records.jsonl"
    nets = {}
    for seed in (1, 2):
        torch.manual_seed(seed)
        nets[seed] = models.create("edsr-baseline", scale=2, blocks=2, filters=8)
        evaluate_model(nets[seed], name, scales=[2], name=f"net{seed}", data_root=data_root, records=records)
    (a, b) = sorted(read_records(records), key=lambda r: r.label)
    assert (a.label, b.label, a.schema, a.checksum.startswith("sha256:")) == ("net1", "net2", 3, True)
    # identified as the file export_safetensors writes: evaluating that file gives the same identity
    assert a.weights == evaluate.weights_identity(nets[1]) != b.weights
    text = compare.compare("net1", "net2", records)
    assert "net2" in text and "net1" in text
    # one label, another network: refused, as evaluate refuses it
    with pytest.raises(Exception, match="label 'net1' already holds other results"):
        evaluate_model(nets[2], name, scales=[2], name="net1", data_root=data_root, records=records)
    assert len(read_records(records)) == 2


def test_gray_images_score_as_evaluate_scores_them(tmp_path):
    """A gray LR image through an RGB network: ``upscale --dataset`` writes the RGB output that
    ``evaluate`` scores (not the gray mean it writes for a gray photo of yours)."""
    weights = _tiny_weights(tmp_path)
    records = str(tmp_path / "r.jsonl")
    assert upscale.main(["--model", "edsr-baseline", "--weights", weights.format(scale=2), *TINY, "--scale", "2",
                         "--dataset", "embedded", "--out", str(tmp_path / "sr"), "-q"]) == 0
    scored = ["--datasets", "embedded", "--scales", "2", "--records", records, "--no-progress", "-q"]
    assert evaluate.main(["--sr-dir", str(tmp_path / "sr"), "--label", "folder", *scored]) == 0
    assert evaluate.main(["--model", "edsr-baseline", "--weights", weights, *TINY, "--label", "model", *scored]) == 0
    got = read_records(records)
    folder, model = _per_image(got, "folder"), _per_image(got, "model")
    assert ("embedded", 2, "camera") in folder  # scikit-image's gray photo
    assert max(abs(folder[k] - model[k]) for k in folder) <= PER_IMAGE_DB
