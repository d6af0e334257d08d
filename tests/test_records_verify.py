"""Records that verify themselves: checksums, means, NaN/Inf, schemas and fields this version does
not know, reproducibility conflicts, ``records verify`` and ``records upgrade``."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re

import pytest
from record_factory import COMMITTED, legacy_line, make_record

from sr_bench import compare, records
from sr_bench.cli import DataError
from sr_bench.records import (
    CONFLICT_DB,
    Record,
    append_records,
    find_conflicts,
    read_records,
    record_line,
    upgrade_records,
    verify_records,
)
from sr_bench.tables.table3 import main as table3_main
from sr_bench.tables.table3 import table3_markdown

REPO = COMMITTED.parents[1]
_rec = make_record


def _kinds(path) -> list[str]:
    return [e.kind for e in read_records(path).entries]


def _verify(capsys, *argv) -> tuple[int, str]:
    rc = records.main(["verify", *map(str, argv)])
    return rc, capsys.readouterr().out


# --- the checksum -------------------------------------------------------------------------------


def test_a_stored_line_is_canonical_json_ending_in_its_sha256():
    line = record_line(_rec(psnr=33.5))
    data = json.loads(line)
    body = {k: v for k, v in data.items() if k != "checksum"}
    # computed here independently: sorted keys, no spaces, ASCII
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert data["checksum"] == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert line == canonical[:-1] + f',"checksum":"{data["checksum"]}"}}' and data["schema"] == 3


def test_a_line_reformatted_by_a_tool_still_verifies_a_changed_value_does_not(tmp_path):
    data = json.loads(record_line(_rec(psnr=33.5)))
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(data, indent=None, sort_keys=False) + "\n")  # spaces, other key order
    assert _kinds(path) == ["verified"]
    # a careful forger moves every value together: the means still hold, the checksum does not
    forged = {**data, "psnr": 34.5, "per_image": [{**p, "psnr": 34.5} for p in data["per_image"]]}
    path.write_text(json.dumps(forged) + "\n")
    (entry,) = read_records(path).entries
    assert entry.kind == "refused" and entry.reason.startswith("checksum mismatch")
    assert read_records(path) == []


def test_a_hand_edited_psnr_is_left_out_of_table3_with_a_note(tmp_path, capsys):
    path = tmp_path / "records.jsonl"
    append_records(path, [_rec(psnr=33.645516949860564, label="bicubic", model="bicubic", weights=None),
                          _rec(psnr=36.5)])
    text = path.read_text()
    path.write_text(text.replace('"psnr":33.645516949860564,"scale"', '"psnr":99.0,"scale"', 1))
    assert table3_main(["--records", str(path), "--out", str(tmp_path / "t3.md")]) == 0
    capsys.readouterr()
    table = (tmp_path / "t3.md").read_text()
    assert "99.00" not in table and "33.65" not in table and "| Set5 | x2 | 36.50 / 0.9000" in table
    assert f"Left out: 1 record(s) refused (they fail their checks): {path}:1: checksum mismatch" in table
    assert "psnr 99.0 is not the mean of its 5 per-image values (33.6455169498605" in table
    rc, out = _verify(capsys, path)
    assert rc == 1 and out.splitlines()[0].startswith(f"{path}:1: checksum mismatch")
    assert out.splitlines()[-1].startswith(f"{path}: FAILED: 2 lines: 1 verified, 0 unverified legacy, 1 refused")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_are_refused_by_table3_and_compare(tmp_path, value):
    good = legacy_line(COMMITTED.read_text().splitlines()[0], 2)  # bicubic Set5 x2, a legacy line
    bad = {**good, "label": "B", "psnr": value}
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")  # NaN / Infinity, as json writes them
    assert _kinds(path) == ["legacy", "refused"]
    assert read_records(path).entries[1].reason == f"psnr is {value!r}, not a finite number"
    table = table3_markdown(read_records(path))
    header = next(x for x in table.splitlines() if x.startswith("| Dataset |"))
    assert header == "| Dataset | Scale | Bicubic |"  # no column for B's record
    assert f"Left out: 1 record(s) refused (they fail their checks): {path}:2: psnr is {value!r}" in table
    with pytest.raises(DataError, match=r"r.jsonl:2: psnr is -?(nan|inf), not a finite number .*not compared"):
        compare.compare("bicubic", "B", path)


def test_records_that_cannot_hold_are_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "r.jsonl"
    append_records(path, [_rec()])
    before = path.read_bytes()
    inf = _rec(psnr=math.inf, per_image=[{"image": "a", "psnr": math.inf, "ssim": 1.0}], n_images=1, ssim=1.0)
    with pytest.raises(DataError, match="psnr is inf, not a finite number.*identical to its HR"):
        append_records(path, [_rec(scale=3), inf])
    bad_mean = _rec(ssim=0.9, scale=4)
    bad_mean.ssim = 0.5
    with pytest.raises(DataError, match=r"ssim 0.5 is not the mean of its 5 per-image values \(0.9"):
        append_records(path, [bad_mean])
    with pytest.raises(DataError, match="has no per-image values"):
        append_records(path, [Record(model="m", weights=None, dataset="Set5", scale=2, self_ensemble=False,
                                     protocol="paper", psnr=30.0, ssim=0.9, n_images=5, per_image=[])])
    assert path.read_bytes() == before


# --- what this version does not understand ------------------------------------------------------------


def test_records_from_a_newer_sr_bench_stay_in_place_and_out_of_tables(tmp_path, capsys):
    path = tmp_path / "records.jsonl"
    newer_field = {**json.loads(record_line(_rec(scale=3))), "lpips": 0.12}
    newer_schema = {**json.loads(record_line(_rec(scale=4))), "schema": 4}
    impossible = {**json.loads(record_line(_rec(scale=2, label="x"))), "schema": "three"}
    foreign = [json.dumps(newer_field), json.dumps(newer_schema), json.dumps(impossible)]
    path.write_text("".join(line + "\n" for line in foreign))
    assert _kinds(path) == ["foreign", "foreign", "refused"]
    append_records(path, [_rec(psnr=31.0)])
    assert path.read_text().splitlines()[:3] == foreign  # byte for byte, in place
    assert not (tmp_path / "records.jsonl.bad").exists()
    table = table3_markdown(read_records(path))
    assert "| Set5 | x2 | 31.00 / 0.9000" in table and "| Set5 | x3 |" not in table and "| Set5 | x4 |" not in table
    assert ("Left out: 2 record(s) written by a newer sr_bench (kept in the file, not shown): "
            f"{path}:1: unknown fields lpips") in table
    assert f"{path}:2: schema 4 is newer than this sr_bench reads (3)" in table
    rc, out = _verify(capsys, path)
    assert rc == 1 and f"{path}:3: schema 'three' is not a schema version" in out


# --- reproducibility conflicts -------------------------------------------------------------------------


def test_a_remeasurement_that_differs_is_kept_logged_and_marked(tmp_path, caplog, capsys):
    path = tmp_path / "records.jsonl"
    first = _rec(psnr=33.65, model="bicubic", weights=None, label="bicubic", device="cpu", host="x86_64, 2 cores",
                 sr_bench_commit="abc1234")
    append_records(path, [first])
    with caplog.at_level(logging.WARNING, logger="sr_bench"):
        append_records(path, [_rec(psnr=99.0, model="bicubic", weights=None, label="bicubic", device="cuda",
                                   host="NVIDIA H200", date="2026-12-01T09:00:00+00:00", sr_bench_commit="def5678")])
    assert "bicubic Set5 x2 paper re-measured as 99.000000 dB" in caplog.text and "it was 33.650000 dB" in caplog.text
    (line,) = path.read_text().splitlines()  # one identity, one line: the older value lives in it
    (r,) = read_records(path)
    assert r.psnr == 99.0 and [m["psnr"] for m in r.previous] == [33.65]
    table = table3_markdown(read_records(path))
    row = next(x for x in table.splitlines() if x.startswith("| Set5 | x2 |"))
    assert "99.00 / 0.9000 ‡ (33.66 / 0.9299" in row
    note = next(x for x in table.splitlines() if x.startswith("- bicubic Set5 x2 paper:"))
    assert "shown 99.000000 dB / 0.900000 (2026-12-01T09:00:00+00:00, cuda NVIDIA H200, commit def5678" in note
    assert "also measured 33.650000 dB / 0.900000 (2026-11-28T10:00:00+00:00, cpu x86_64, 2 cores, commit abc1234)" \
        in note
    rc, out = _verify(capsys, path)
    assert rc == 1 and f"{path}: conflict: bicubic Set5 x2 paper: shown 99.000000 dB" in out


@pytest.mark.parametrize(("delta", "conflict"), [(0.0, False), (0.9 * CONFLICT_DB, False), (1.1 * CONFLICT_DB, True),
                                                 (-3 * CONFLICT_DB, True)])
def test_a_remeasurement_within_1e_6_db_is_a_reproduction(tmp_path, delta, conflict):
    path = tmp_path / "r.jsonl"
    append_records(path, [_rec(psnr=30.0)])
    append_records(path, [_rec(psnr=30.0 + delta, date="2026-11-29T10:00:00+00:00")])
    assert bool(find_conflicts(read_records(path))) is conflict
    assert ("‡" in table3_markdown(read_records(path))) is conflict


def test_two_lines_of_one_identity_in_a_file_are_a_conflict(tmp_path, capsys):
    path = tmp_path / "r.jsonl"  # e.g. two records files concatenated
    path.write_text(record_line(_rec(psnr=33.65)) + "\n" + record_line(_rec(psnr=99.0)) + "\n")
    (c,) = find_conflicts(read_records(path), read_records(path).where)
    assert [m["psnr"] for m in c.measurements] == [99.0, 33.65]  # equal dates: the later line is shown
    assert [m["where"] for m in c.measurements] == [f"{path}:2", f"{path}:1"]
    rc, out = _verify(capsys, path)
    assert rc == 1 and "1 conflict(s)" in out


def test_replace_supersedes_without_history(tmp_path):
    path = tmp_path / "r.jsonl"
    append_records(path, [_rec(psnr=30.0)])
    append_records(path, [_rec(psnr=31.0)], supersede_by=lambda r: (r.label, r.dataset, r.scale))
    (r,) = read_records(path)
    assert (r.psnr, r.previous) == (31.0, []) and not find_conflicts([r])


def test_a_refused_record_is_replaced_by_its_remeasurement_not_kept_as_history(tmp_path):
    path = tmp_path / "r.jsonl"
    append_records(path, [_rec(psnr=30.0)])
    path.write_text(path.read_text().replace('"psnr":30.0,"scale"', '"psnr":35.0,"scale"', 1))
    assert _kinds(path) == ["refused"]
    append_records(path, [_rec(psnr=30.0)])
    assert _kinds(path) == ["verified"] and read_records(path)[0].previous == []


# --- verify and upgrade -------------------------------------------------------------------------------


def test_the_committed_records_verify(capsys):
    rc, out = _verify(capsys, "--strict", COMMITTED, REPO / "results" / "ablations" / "records.jsonl")
    assert rc == 0, out
    assert f"{COMMITTED}: ok: 30 lines: 30 verified, 0 unverified legacy, 0 refused" in out


def test_upgrade_stamps_legacy_records_and_changes_no_value(tmp_path, capsys):
    lines = COMMITTED.read_text().splitlines()
    legacy = [legacy_line(t, 1 if '"model":"bicubic"' in t else 2) for t in lines]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in legacy))
    before = read_records(path)
    assert all(r.legacy for r in before) and "†" in table3_markdown(before)
    assert _verify(capsys, "--strict", path)[0] == 1 and _verify(capsys, path)[0] == 0
    assert records.main(["upgrade", str(path)]) == 0
    assert "30 record(s) stamped as schema 3" in capsys.readouterr().out
    after = read_records(path)
    assert [e.kind for e in after.entries] == ["verified"] * 30
    for old, new, raw in zip(before, after, legacy, strict=True):
        assert {**old.to_dict(), "schema": 3} == {**new.to_dict(), "checksum": ""}  # every value, exactly
        assert all(json.loads(record_line(new))[k] == v for k, v in raw.items() if k != "schema")
    unmarked = re.sub(r"\n\n† 3?0? ?\d+ unverified legacy record\(s\)[^\n]*", "", table3_markdown(before))
    assert table3_markdown(after) == unmarked.replace(" †", "") and "†" not in table3_markdown(after)
    assert _verify(capsys, "--strict", path)[0] == 0


def test_upgrade_leaves_what_it_cannot_check_as_it_is(tmp_path, capsys):
    good = legacy_line(COMMITTED.read_text().splitlines()[0], 2)
    edited = {**good, "psnr": 40.0}  # a legacy record whose mean does not hold
    no_rows = {**good, "per_image": [], "scale": 3}  # a legacy record with nothing to check it by
    newer = {**good, "lpips": 0.1, "scale": 4}
    path = tmp_path / "r.jsonl"
    texts = [json.dumps(d) for d in (good, edited, no_rows, newer)]
    path.write_text("".join(t + "\n" for t in texts))
    report = upgrade_records(path)
    assert (report.upgraded, [e.number for e in report.left]) == (1, [2, 3, 4])
    assert path.read_text().splitlines()[1:] == texts[1:]
    assert records.main(["upgrade", str(path)]) == 1  # the three are still there
    out = capsys.readouterr().out
    assert f"{path}:3: no per-image values to verify its means by" in out


def test_verify_names_missing_files_and_defaults_to_the_results_folder(tmp_path, capsys):
    assert records.main(["verify", str(tmp_path / "none.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'none.jsonl'} does not exist") and err.count("\n") == 1
    append_records(tmp_path / "records.jsonl", [_rec()])
    assert records.main(["verify", "--results", str(tmp_path)]) == 0
    assert verify_records(tmp_path / "records.jsonl").count("verified") == 1


@pytest.mark.parametrize(("change", "reason"), [
    ({"label": ["a"]}, "label is a list (['a'])"),
    ({"scale": "2"}, "scale is a str ('2')"),
    ({"self_ensemble": 1}, "self_ensemble is a int (1)"),
    ({"dataset": None}, "dataset is a NoneType (None)"),
    ({"per_image": [["img0", 30.0, 0.9]] * 5}, "per-image psnr of image 1 is None, not a finite number"),
    ({"per_image": [{"image": ["x"], "psnr": 30.0, "ssim": 0.9}] * 5}, "per-image rows need distinct image names"),
    ({"per_image": [{"image": "same", "psnr": 30.0, "ssim": 0.9}] * 5}, "per-image rows need distinct image names"),
    ({"psnr": "30.0"}, "psnr is '30.0', not a finite number"),
])
def test_lines_of_the_wrong_types_are_refused_not_a_crash(tmp_path, capsys, change, reason):
    good = legacy_line(record_line(_rec(psnr=30.0, ssim=0.9)), 2)
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, **change, "label": change.get("label", "B")}) + "\n")
    (entry,) = read_records(path).of_kind("refused")
    assert entry.number == 2 and reason in entry.reason
    assert "| Set5 | x2 | 30.00 / 0.9000 † " in table3_markdown(read_records(path))
    rc, out = _verify(capsys, path)
    assert rc == 1 and out.startswith(f"{path}:2: ")
