"""Table 3 as a view over records: labelled columns in the paper's order, complete records only."""

from __future__ import annotations

from pathlib import Path

from sr_bench.records import Record, read_records
from sr_bench.tables.table3 import main, paper_model_order, table3_markdown

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _rec(model="edsr", label="", psnr=38.0, **changes) -> Record:
    n = changes.get("n_images", 5)
    rows = [{"image": f"img{k}", "psnr": psnr, "ssim": 0.96} for k in range(n)]  # the means hold exactly
    base = dict(model=model, weights=None if model == "bicubic" else "a" * 64, dataset="Set5", scale=2,
                self_ensemble=False, protocol="paper", psnr=psnr, ssim=0.96, n_images=5, per_image=rows,
                profile=None if model == "bicubic" else "official", label=label, date="2026-11-28T10:00:00+00:00")
    return Record(**{**base, **changes})


def _cells(markdown: str) -> dict[tuple[str, str, str, str], str]:
    """(protocol, column title, dataset, scale) -> cell, for every measured cell of a Table 3 text."""
    cells, protocol, header = {}, None, None
    for line in markdown.splitlines():
        if line.startswith("## Protocol `"):
            protocol, header = line.split("`")[1], None
        elif line.startswith("| Dataset | Scale | "):  # a Table 3 header, or the data table's (no cells)
            header = None if "| images |" in line else [c.strip() for c in line.strip("|").split("|")]
        elif header and line.startswith("| ") and not line.startswith("|---"):
            row = [c.strip() for c in line.strip("|").split("|")]
            if len(row) != len(header):
                header = None  # the "data behind these cells" table
                continue
            for title, cell in zip(header[2:], row[2:], strict=True):
                if cell and not cell.startswith("not run"):
                    cells[(protocol, title, row[0], row[1])] = cell
    return cells


def test_committed_records_give_the_committed_cells():
    committed = _cells((RESULTS / "table3.md").read_text())
    now = _cells(table3_markdown(read_records(RESULTS / "records.jsonl")))
    assert len(committed) == 12 + 4 + 2 + 12  # bicubic (paper), EDSR-baseline, EDSR-baseline+, bicubic (vdsr)
    assert now == committed


def test_paper_model_order_comes_from_the_published_tables():
    # the column order of the paper's Tables 1 and 3
    assert paper_model_order() == ("bicubic", "vdsr", "srresnet", "edsr-baseline", "mdsr-baseline", "edsr", "mdsr")


def test_columns_are_labels_in_paper_order_with_the_paper_value_of_their_model():
    records = [_rec("sr-folder", label="zzz theirs", weights=None, profile=None), _rec("bicubic", psnr=33.6),
               _rec(label="aaa mine", weights="b" * 64, psnr=37.0), _rec(psnr=38.2), _rec("vdsr", psnr=37.5),
               _rec("mdsr", psnr=38.0, self_ensemble=True)]
    text = table3_markdown(records)
    header = next(line for line in text.splitlines() if line.startswith("| Dataset | Scale |"))
    titles = ["Bicubic", "VDSR (official)", "aaa mine", "EDSR (official)", "zzz theirs", "MDSR+ (official)"]
    assert header == "| Dataset | Scale | " + " | ".join(titles) + " |"
    row = next(line for line in text.splitlines() if line.startswith("| Set5 | x2 |"))
    # two checkpoints of EDSR: two columns, each compared with the paper's EDSR (38.11 / 0.9601)
    assert "37.00 / 0.9600 (38.11 / 0.9601, -1.110 / -0.0001)" in row
    assert "38.20 / 0.9600 (38.11 / 0.9601, +0.090 / -0.0001)" in row
    assert "38.00 / 0.9600 (38.17 / 0.9605, -0.170 / -0.0005)" in row  # MDSR+ from the paper's MDSR+ column


def test_a_partial_record_is_never_a_cell():
    full = _rec(psnr=38.0)
    partial = _rec(psnr=41.5, n_images=1, n_expected=5, date="2026-11-28T11:00:00+00:00")  # newer, but 1 of 5
    text = table3_markdown([full, partial])
    assert "38.00 / 0.9600 (38.11" in text and "41.50" not in text.split("partial record")[0]
    assert "1 partial record(s)" in text and "edsr (official) Set5 x2 (1/5)" in text
    assert "| Set5 |" not in table3_markdown([partial])


def test_a_user_folder_is_its_own_row_without_paper_values():
    text = table3_markdown([_rec(dataset="/data/mine/Set5", psnr=30.0), _rec(psnr=38.0)])
    assert "| `/data/mine/Set5` | x2 | 30.00 / 0.9600 (no paper value) |" in text
    assert "| Set5 | x2 | 38.00 / 0.9600 (38.11 / 0.9601, -0.110 / -0.0001) |" in text


def test_missing_records_file_is_an_error_not_an_empty_table(tmp_path, capsys):
    out = tmp_path / "t3.md"
    assert main(["--records", str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'missing.jsonl'} does not exist") and err.count("\n") == 1
    assert not out.exists()


def test_cli_writes_the_table_beside_the_records_by_default(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a wrong default must not land in the clone's results/
    records = tmp_path / "r.jsonl"
    records.write_text(_rec(psnr=38.0).to_json() + "\n")
    assert main(["--records", str(records)]) == 0
    assert "| Set5 | x2 | 38.00 / 0.9600 (38.11" in (tmp_path / "table3.md").read_text()


def test_fixy_table3_binary_records_and_out_folder(tmp_path, capsys):
    binary = tmp_path / "records.jsonl"
    binary.write_bytes(bytes(range(256)) * 4)
    rc = main(["--records", str(binary), "--out", str(tmp_path / "t3.md")])
    err = capsys.readouterr().err
    assert rc == 1 and str(binary) in err and err.startswith("error:")
    binary.write_text("")
    folder = tmp_path / "adir"
    folder.mkdir()
    rc = main(["--records", str(binary), "--out", str(folder)])
    err = capsys.readouterr().err
    assert rc == 2 and str(folder) in err and "is a folder" in err
