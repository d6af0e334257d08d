"""Paired comparison of two result sets (sr_bench.compare); scipy is the independent reference."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from sr_bench import compare
from sr_bench.records import Record, write_records

scipy_stats = pytest.importorskip("scipy.stats")


def _data(kind: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    if kind == "small":  # exact null distribution
        return np.round(rng.normal(0.05, 0.1, 12), 6)
    if kind == "large":  # normal approximation (n > 25)
        return np.round(rng.normal(0.02, 0.1, 60), 6)
    if kind == "ties-zeros":  # two-decimal values: many ties, five zeros
        return np.r_[np.round(rng.normal(0.03, 0.05, 35), 2), np.zeros(5)]
    if kind == "small-ties":  # n <= 25 with ties: normal approximation
        return np.array([0.1, 0.1, -0.2, 0.3, 0.3, 0.3, -0.1, 0.4, 0.0, 0.5, -0.5])
    raise ValueError(kind)


@pytest.mark.parametrize(("kind", "method"), [
    ("small", "exact"), ("large", "asymptotic"), ("ties-zeros", "asymptotic"), ("small-ties", "asymptotic"),
])
def test_wilcoxon_matches_scipy(kind, method):
    d = _data(kind)
    p, n = compare.wilcoxon_signed_rank(d)
    want = scipy_stats.wilcoxon(d, zero_method="wilcox", correction=True, method=method).pvalue
    assert n == int((d != 0).sum())
    assert p == pytest.approx(want, rel=1e-10, abs=1e-15)


def test_wilcoxon_exact_small_case_by_hand():
    # ranks 1..4 all positive: W+ = 10 is the largest of the 16 equally likely sign patterns
    assert compare.wilcoxon_signed_rank(np.array([0.1, 0.2, 0.3, 0.4]))[0] == pytest.approx(2 / 16)
    assert np.isnan(compare.wilcoxon_signed_rank(np.zeros(4))[0])


@pytest.mark.parametrize("kind", ["small", "large", "ties-zeros"])
def test_bootstrap_matches_scipy(kind):
    d = _data(kind)
    got = compare.bootstrap_ci(d, seed=3)
    # scipy >= 1.15 calls the generator argument rng, older releases random_state
    key = "rng" if "rng" in inspect.signature(scipy_stats.bootstrap).parameters else "random_state"
    res = scipy_stats.bootstrap((d,), np.mean, n_resamples=10_000, method="percentile", confidence_level=0.95,
                                vectorized=True, **{key: np.random.default_rng(3)})
    assert got == pytest.approx((res.confidence_interval.low, res.confidence_interval.high), rel=1e-12)


def test_bootstrap_chunks_draw_the_same_resamples():
    d = _data("large")
    assert compare.bootstrap_ci(d, chunk=10_000) == compare.bootstrap_ci(d, chunk=333)


def _record(label: str, dataset: str, scale: int, psnr: dict[str, float], *, ensemble: bool = False,
            protocol: str = "paper") -> Record:
    rows = [{"image": k, "psnr": v, "ssim": 0.8 + v / 1000} for k, v in psnr.items()]
    return Record(model="m", weights=None, dataset=dataset, scale=scale, self_ensemble=ensemble, protocol=protocol,
                  psnr=float(np.mean([r["psnr"] for r in rows])), ssim=float(np.mean([r["ssim"] for r in rows])),
                  n_images=len(rows), per_image=rows, label=label)


@pytest.fixture
def records_file(tmp_path):
    a = {"i1": 30.0, "i2": 31.0, "i3": 25.0, "i4": 28.0}
    b = {"i1": 30.5, "i2": 31.003, "i3": 24.0, "i4": 28.2}  # +0.5, tie, -1.0, +0.2
    recs = [
        _record("A", "Set5", 2, a),
        _record("B", "Set5", 2, b),
        _record("B", "Set5", 2, {k: v + 5 for k, v in b.items()}, ensemble=True),
        _record("A", "Set14", 2, {"x": 20.0, "y": 21.0}),
        _record("B", "Set14", 2, {"x": 20.1, "y": 20.9}),  # +0.1, -0.1
        _record("A", "Set5", 3, a),  # B has no x3: not compared
    ]
    path = tmp_path / "records.jsonl"
    write_records(path, recs)
    return path


def test_cli_markdown(records_file, tmp_path, capsys):
    out = tmp_path / "cmp.md"
    assert compare.main(["A", "B", "--records", str(records_file), "--out", str(out), "--worst", "2"]) == 0
    text = capsys.readouterr().out
    assert out.read_text() == text
    table, worst = text.split("loses most")
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    # dPSNR (0.5 + 0.003 - 1 + 0.2) / 4 = -0.07425
    assert rows["Set5"].startswith("| Set5 | x2 | 4 | 28.500 | 28.426 | -0.074 |")
    assert rows["Set5"].endswith("| 2/1/1 |")
    assert rows["Set14"].startswith("| Set14 | x2 | 2 | 20.500 | 20.500 | +0.000 |")
    assert rows["**all**"].startswith("| **all** |  | 6 |") and rows["**all**"].endswith("| 3/1/2 |")
    assert "x3" not in text
    assert worst.index("| i3 |") < worst.index("| y |") and "| i1 |" not in worst


def test_cli_self_ensemble_label_and_filters(records_file, tmp_path, capsys):
    args = ["A", "B+", "--records", str(records_file), "--datasets", "Set5", "--out", str(tmp_path / "c.md")]
    assert compare.main(args) == 0
    text = capsys.readouterr().out
    assert "| Set5 | x2 | 4 | 28.500 | 33.426 | +4.926 |" in text and "Set14" not in text


def test_unknown_label_lists_labels(records_file, tmp_path, capsys):
    out = tmp_path / "c.md"
    assert compare.main(["A", "C", "--records", str(records_file), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no records labelled 'C'; labels present: 'A', 'B'")
    assert not out.exists()


# --- the same comparison under several protocols ---------------------------------------------------------


@pytest.fixture
def protocols_file(tmp_path):
    """A and B on Set5 x2 (12 images) under three protocols: under paper and basicsr B gains on
    every image; under pytorch B loses a little on most of them."""
    rng = np.random.default_rng(3)
    base = {f"i{k}": float(v) for k, v in enumerate(rng.uniform(25, 35, 12))}
    gain = {k: float(g) for k, g in zip(base, rng.uniform(0.1, 0.3, 12), strict=True)}
    mixed = {k: float(g) for k, g in zip(base, np.r_[rng.uniform(-0.2, -0.05, 9), [0.3, 0.01, 0.02]], strict=True)}
    recs = []
    for protocol, delta in (("paper", gain), ("pytorch", mixed), ("basicsr", gain)):
        recs.append(_record("A", "Set5", 2, base, protocol=protocol))
        recs.append(_record("B", "Set5", 2, {k: v + delta[k] for k, v in base.items()}, protocol=protocol))
    path = tmp_path / "records.jsonl"
    write_records(path, recs)
    return path, base, gain, mixed


def test_protocols_side_by_side_flag_where_the_gain_changes(protocols_file, capsys):
    path, base, gain, mixed = protocols_file
    out = path.with_name("c.md")
    argv = ["A", "B", "--records", str(path), "--protocols", "paper", "pytorch", "basicsr", "--out", str(out)]
    assert compare.main(argv) == 0
    text = capsys.readouterr().out
    assert out.read_text() == text
    head = next(line for line in text.splitlines() if line.startswith("| dataset |"))
    assert head.startswith("| dataset | scale | images | paper dPSNR | paper 95% CI | paper p | paper W/T/L | "
                           "pytorch dPSNR")
    row = next(line for line in text.splitlines() if line.startswith("| Set5 | x2 |")).split(" | ")
    for group, delta in ((0, gain), (1, mixed), (2, gain)):
        d = np.array([delta[k] for k in base])
        dpsnr, _, p, _ = row[3 + 4 * group: 7 + 4 * group]
        assert float(dpsnr) == pytest.approx(d.mean(), abs=5e-4)  # printed to 3 decimals
        want_p = scipy_stats.wilcoxon(d, zero_method="wilcox", correction=True, method="exact").pvalue
        assert float(p) == pytest.approx(want_p, rel=0.05)  # printed to 2-3 significant digits
    changes = row[-1].rstrip(" |")
    assert changes.startswith("sign under pytorch; significance under pytorch (p ") and "basicsr" not in changes


def test_protocols_take_the_labels_after_the_protocol_names(protocols_file, capsys):
    """`compare --protocols paper pytorch basicsr A B` (argparse alone gives A and B to --protocols)
    means what `compare A B --protocols ...` means; a word that is neither is refused as before."""
    path, *_ = protocols_file
    out = path.with_name("c.md")
    assert compare.main(["A", "B", "--records", str(path), "--protocols", "paper", "pytorch", "basicsr",
                         "--out", str(out)]) == 0
    labels_first = capsys.readouterr().out
    assert compare.main(["--records", str(path), "--out", str(out), "--protocols", "paper", "pytorch", "basicsr",
                         "A", "B"]) == 0
    assert capsys.readouterr().out == labels_first
    assert compare.main(["A", "--records", str(path), "--out", str(out), "--protocols", "paper", "pytorch",
                         "basicsr", "B"]) == 0
    assert capsys.readouterr().out == labels_first
    with pytest.raises(SystemExit) as e:
        compare.main(["--records", str(path), "--protocols", "paper", "matlab", "A", "B"])
    assert e.value.code == 2 and "invalid choice: 'matlab'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        compare.main(["--records", str(path), "--protocols", "paper", "A"])
    assert e.value.code == 2 and "give the two labels A and B" in capsys.readouterr().err


def test_protocols_missing_records_name_the_evaluate_command(protocols_file, capsys):
    path, *_ = protocols_file
    kept = [line for line in path.read_text().splitlines() if not ('"label":"B"' in line and '"basicsr"' in line)]
    path.write_text("".join(line + "\n" for line in kept))
    assert compare.main(["A", "B", "--records", str(path), "--protocols", "paper", "basicsr"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lack records under some of the protocols (rows: Set5 x2)" in err
    assert err.rstrip().endswith(f"make them with: python -m sr_bench.evaluate --model m --label B --datasets Set5 "
                                 f"--scales 2 --protocol basicsr --records {path}")


def test_evaluate_command_parses_to_the_measurement_it_names(tmp_path):
    from sr_bench.evaluate import parse_args

    trained = Record(model="edsr-baseline", weights="a" * 64, dataset="/data/my set", scale=4, self_ensemble=True,
                     protocol="paper", psnr=1.0, ssim=1.0, n_images=1, per_image=[], label="my net's",
                     weights_source="runs/x/final.safetensors", model_options={"batch_norm": True, "blocks": 8})
    folder = Record(model="sr-folder", weights=None, dataset="Set5", scale=2, self_ensemble=False, protocol="paper",
                    psnr=1.0, ssim=1.0, n_images=1, per_image=[], label="theirs", source="sr-folder",
                    sr_dir="/sr out", model_options={"sr_layout": "custom", "sr_pattern": "{dataset}/{stem}.png"})
    import shlex

    for rec, want in ((trained, dict(models=["edsr-baseline"], weights=["runs/x/final.safetensors"],
                                     self_ensemble="on", options={"batch_norm": True, "blocks": 8})),
                      (folder, dict(sr_dir="/sr out", sr_pattern="{dataset}/{stem}.png", models=[]))):
        cmd = compare.evaluate_command(rec, "pytorch", [rec.dataset], [rec.scale], tmp_path / "r.jsonl")
        argv = shlex.split(cmd)
        assert argv[:3] == ["python", "-m", "sr_bench.evaluate"]
        config = parse_args(argv[3:])
        assert (config.protocol, config.labels, config.datasets, config.scales) == (
            "pytorch", [rec.label], [rec.dataset], [rec.scale])
        assert {k: getattr(config, k) for k in want} == want and config.out == str(tmp_path / "r.jsonl")


def test_a_refused_or_conflicting_record_in_a_comparison(records_file, capsys):
    from sr_bench.records import append_records, read_records

    lines = records_file.read_text().splitlines()
    n = next(i for i, t in enumerate(lines) if json.loads(t)["label"] == "B" and json.loads(t)["dataset"] == "Set14")
    psnr = json.loads(lines[n])["psnr"]
    lines[n] = lines[n].replace(f'"psnr":{psnr!r},"scale"', '"psnr":20.9,"scale"', 1)  # moved by hand
    records_file.write_text("".join(t + "\n" for t in lines))
    out = str(records_file.with_name("c.md"))
    assert compare.main(["A", "B", "--records", str(records_file), "--out", out]) == 1
    warning, err = capsys.readouterr().err.splitlines()  # the reader's warning, then the error
    assert err.startswith(f"error: {records_file}:{n + 1}: checksum mismatch") and "not compared" in err
    assert warning.startswith(f"{records_file}:{n + 1}: checksum mismatch")
    assert compare.main(["A", "B", "--records", str(records_file), "--datasets", "Set5", "--out", out]) == 0
    capsys.readouterr()  # Set5 alone does not use the refused record
    # A's Set5 x2 measured again, 0.01 dB higher on every image: compared, and said
    (a,) = [r for r in read_records(records_file) if (r.label, r.dataset, r.scale) == ("A", "Set5", 2)]
    moved = [{**p, "psnr": p["psnr"] + 0.01} for p in a.per_image]
    append_records(records_file, [Record(**{**a.to_dict(), "per_image": moved, "psnr": float(np.mean(
        [p["psnr"] for p in moved])), "date": "2026-12-01", "checksum": ""})])
    assert compare.main(["A", "B", "--records", str(records_file), "--datasets", "Set5", "--out", out]) == 0
    text = capsys.readouterr().out
    assert "## Notes on these records" in text
    assert "- reproducibility conflict: A Set5 x2 paper: shown 28.510000" in text
    assert "also measured 28.500000 dB" in text
