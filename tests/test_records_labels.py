"""Labels in every output format: refused with control characters where they are made, escaped
in markdown (Table 3, compare), neutralised in the per-image CSV, bounded in file names."""

from __future__ import annotations

import csv
import io

import pytest
from record_factory import make_record

from sr_bench import compare, labels
from sr_bench.cli import DataError, UsageError
from sr_bench.evaluate import main as evaluate_main
from sr_bench.evaluate import per_image_text
from sr_bench.records import append_records
from sr_bench.tables.table3 import table3_markdown

HOSTILE = ["a|b", "x\\|y", "<img src=x onerror=alert(1)>", "**bold** `code`", "ends\\"]


def _cells(row: str) -> list[str]:
    """A GFM table row split as a GitHub renderer splits it (a backslash escapes the next
    character, an unescaped ``|`` ends a cell), each cell unescaped."""
    cells, cell, escaped = [], "", False
    for ch in row.strip()[1:-1] if row.strip().endswith("|") and not row.strip().endswith("\\|") else row.strip()[1:]:
        if escaped:
            cell, escaped = cell + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == "|":
            cells.append(cell.strip())
            cell = ""
        else:
            cell += ch
    return [c.replace("&lt;", "<") for c in [*cells, cell.strip()]]


@pytest.mark.parametrize("bad", ["two\nlines", "tab\there", "cr\r", "esc\x1b[31m", "rtl\u202eoverride", "sep\u2028"])
def test_control_characters_are_refused_where_a_label_is_made(tmp_path, capsys, bad):
    rc = evaluate_main(["--model", "bicubic", "--label", bad, "--datasets", "embedded", "--scales", "2",
                        "--no-progress", "--records", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: --label {bad!r} has the control character U+") and err.count("\n") == 1
    assert not (tmp_path / "r.jsonl").exists()
    rc = evaluate_main(["--sr-dir", str(tmp_path), "--label", bad, "--datasets", "embedded", "--scales", "2",
                        "--records", str(tmp_path / "r.jsonl")])
    assert rc == 2 and "has the control character" in capsys.readouterr().err
    with pytest.raises(DataError, match="control character"):  # and by the library, for any other writer
        append_records(tmp_path / "r.jsonl", [make_record(label=bad)])
    with pytest.raises(UsageError):
        labels.check_label(bad)


@pytest.mark.parametrize("label", HOSTILE)
def test_table3_cells_and_titles_survive_any_label(label):
    records = [make_record(label=label, psnr=31.0), make_record(label="plain", psnr=30.0),
               make_record(label=label, psnr=29.0, dataset="/data/my|set`s")]
    text = table3_markdown(records)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "Dataset | Scale" not in line]
    header = _cells(next(line for line in text.splitlines() if line.startswith("| Dataset | Scale |")))
    assert label in header and "plain" in header and len(header) == 4
    table = [_cells(r) for r in rows if _cells(r)[1] == "x2"][:2]
    assert [len(r) for r in table] == [4, 4]
    assert {r[0] for r in table} == {"Set5", "/data/my|set`s"}
    assert "<img" not in text  # no HTML reaches the page


def test_compare_markdown_survives_any_label(tmp_path, capsys):
    path = tmp_path / "records.jsonl"
    label = "mine | <b>yours</b>"
    append_records(path, [make_record(label="ref", psnr=30.0), make_record(label=label, psnr=31.0)])
    assert compare.main(["ref", label, "--records", str(path), "--out", str(tmp_path / "c.md")]) == 0
    text = capsys.readouterr().out
    head = next(line for line in text.splitlines() if line.startswith("| dataset |"))
    row = next(line for line in text.splitlines() if line.startswith("| Set5 |"))
    assert len(_cells(head)) == len(_cells(row)) == 12 and _cells(head)[4] == f"{label} PSNR"
    assert text.splitlines()[0] == "# mine \\| &lt;b>yours&lt;/b> vs ref"


@pytest.mark.parametrize("label", ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "plain", "'quoted"])
def test_per_image_csv_cells_never_start_a_formula(tmp_path, label):
    rec = make_record(label=label, per_image=[{"image": "-3", "psnr": 30.0, "ssim": 0.9}], n_images=1,
                      dataset="=cmd|' /C calc'!A0")
    rows = list(csv.DictReader(io.StringIO(per_image_text(tmp_path / "none.csv", [rec]))))
    (row,) = rows
    for name in ("label", "image", "dataset"):
        assert not row[name].startswith(("=", "+", "-", "@", "\t", "\r")), row
    assert row["label"] == (label if label[0] not in "=+-@" else "'" + label)
    assert (row["image"], row["dataset"]) == ("'-3", "'=cmd|' /C calc'!A0")
    assert (float(row["psnr"]), float(row["ssim"])) == (30.0, 0.9)  # numbers are left as numbers


def test_a_1000_character_label_compares_and_names_a_bounded_file(tmp_path, capsys):
    a, b = "A" * 999 + "1", "A" * 999 + "2"  # the same first 999 characters
    path = tmp_path / "records.jsonl"
    append_records(path, [make_record(label=a, psnr=30.0), make_record(label=b, psnr=31.0)])
    assert compare.main([a, b, "--records", str(path), "--results", str(tmp_path)]) == 0
    assert compare.main([b, a, "--records", str(path), "--results", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.glob("compare-*.md"))
    assert len(written) == 2 and all(len(name.encode()) <= 255 for name in written)
    assert "| Set5 | x2 | 5 | 30.000 | 31.000 | +1.000 |" in capsys.readouterr().out


def test_slug_is_bounded_and_distinct():
    assert labels.slug("edsr-baseline (quick)") == "edsr-baseline_quick"
    long_a, long_b = labels.slug("x" * 500 + "a"), labels.slug("x" * 500 + "b")
    assert len(long_a) == len(long_b) == labels.SLUG_MAX and long_a != long_b
    assert labels.markdown("a\nb|c") == "a\\u000ab\\|c"
