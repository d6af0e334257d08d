"""Paired comparison of two result sets (sr_bench.compare); scipy is the independent reference."""

from __future__ import annotations

import inspect

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
