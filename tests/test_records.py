"""Result records: identity (label, data, image count), reading schema 1 and 2, bad lines, and
many processes appending to one file."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from record_factory import COMMITTED, legacy_line, make_record

from sr_bench.records import append_records, default_label, find_record, read_records

_rec = make_record


@pytest.mark.parametrize(("model", "profile", "source", "want"), [
    ("edsr-baseline", "quick", "runs/quick-edsr-baseline-x2/final.safetensors", "edsr-baseline (quick)"),
    ("edsr", "official", "edsr_x2", "edsr (official)"),
    ("edsr", None, "/home/me/ckpts/my_ckpt.pt", "edsr (my_ckpt)"),
    ("bicubic", None, None, "bicubic"),
])
def test_default_label(model, profile, source, want):
    assert default_label(model, profile, source) == want


def test_schema1_and_schema2_lines_still_load_with_derived_fields(tmp_path):
    lines = COMMITTED.read_text().splitlines()
    bicubic = [legacy_line(t, 1) for t in lines if '"model":"bicubic"' in t]
    assert len(bicubic) == 24
    trained = legacy_line(next(t for t in lines if '"model":"edsr-baseline"' in t), 2)
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in bicubic + [trained]))
    records = read_records(path)
    assert len(records) == 25 and all(r.legacy and r.complete for r in records)
    # schema 1 stored neither label nor n_expected: the label is the model's, the count the registry's
    assert {r.label for r in records[:24]} == {"bicubic"}
    assert {(r.dataset, r.n_expected) for r in records[:24]} == {("Set5", 5), ("Set14", 14), ("B100", 100),
                                                                 ("Urban100", 100)}
    assert records[24].label == "edsr-baseline (quick)" and records[24].schema == 2
    # a trained model's schema-1 line gets its label from the profile that made its weights
    path.write_text(json.dumps({**trained, "schema": 1, "label": ""}) + "\n")
    (r,) = read_records(path)
    assert (r.label, r.complete) == ("edsr-baseline (quick)", True)


def test_schema1_partial_line_is_recognised_as_partial(tmp_path):
    line = legacy_line(COMMITTED.read_text().splitlines()[0], 1)  # bicubic Set5 x2
    first = line["per_image"][0]
    line.update(n_images=1, per_image=[first], psnr=first["psnr"], ssim=first["ssim"])
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(line) + "\n")
    (r,) = read_records(path)
    assert (r.n_images, r.n_expected, r.complete, r.label) == (1, 5, False, "bicubic")


def test_a_partial_run_never_replaces_a_full_record_nor_counts_as_done(tmp_path):
    path = tmp_path / "r.jsonl"
    append_records(path, [_rec(psnr=36.0)])
    append_records(path, [_rec(psnr=39.5, n_images=1, n_expected=5, date="2026-11-28T11:00:00+00:00")])
    assert sorted((r.n_images, r.psnr) for r in read_records(path)) == [(1, 39.5), (5, 36.0)]
    found = find_record(read_records(path), model="edsr", weights="a" * 64, dataset="Set5", scale=2,
                        self_ensemble=False, protocol="paper")
    assert found is not None and found.psnr == 36.0


def test_find_record_is_newest_complete_and_filters_label():
    old, new = _rec(psnr=1.0), _rec(psnr=2.0, date="2026-11-28T12:00:00+00:00")
    other = _rec(psnr=3.0, label="mine", date="2026-11-28T13:00:00+00:00")
    where = dict(model="edsr", weights="a" * 64, dataset="Set5", scale=2, self_ensemble=False, protocol="paper")
    assert find_record([new, old, other], label="edsr (quick)", **where).psnr == 2.0
    assert find_record([new, old, other], **where).psnr == 3.0
    assert find_record([_rec(n_images=4, n_expected=5)], **where) is None
    assert find_record([old], **{**where, "dataset": "/data/Set5"}) is None


def test_same_key_is_one_line_that_keeps_the_older_value_other_data_or_label_are_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    append_records(path, [_rec(psnr=30.0), _rec(psnr=31.0, scale=3)])
    append_records(path, [_rec(psnr=32.0, date="2026-11-29T10:00:00+00:00")])  # the same measurement again
    append_records(path, [_rec(psnr=33.0, dataset="/elsewhere/Set5")])  # a user folder named Set5
    append_records(path, [_rec(psnr=34.0, label="second ckpt", weights="b" * 64)])
    append_records(path, [_rec(psnr=35.0, label="same weights, own column")])
    records = read_records(path)
    got = sorted((r.dataset, r.scale, r.label, r.psnr) for r in records)
    assert got == [("/elsewhere/Set5", 2, "edsr (quick)", 33.0), ("Set5", 2, "edsr (quick)", 32.0),
                   ("Set5", 2, "same weights, own column", 35.0), ("Set5", 2, "second ckpt", 34.0),
                   ("Set5", 3, "edsr (quick)", 31.0)]
    again = next(r for r in records if r.psnr == 32.0)
    assert [(m["psnr"], m["date"]) for m in again.previous] == [(30.0, "2026-11-28T10:00:00+00:00")]
    assert len(path.read_text().splitlines()) == 5


def test_bad_lines_are_reported_by_number_and_moved_aside(tmp_path, caplog):
    path = tmp_path / "records.jsonl"
    path.write_text(f"{_rec().to_json()}\n{{broken\n[1, 2]\n{_rec(scale=3).to_json()}\n")
    with caplog.at_level(logging.WARNING, logger="sr_bench"):
        assert [r.scale for r in read_records(path)] == [2, 3]
    assert "records.jsonl:2: not a JSON record" in caplog.text and "records.jsonl:3:" in caplog.text
    append_records(path, [_rec(scale=4)])
    assert [r.scale for r in read_records(path)] == [2, 3, 4]
    assert Path(f"{path}.bad").read_text() == "{broken\n[1, 2]\n"
    path.write_text(path.read_text() + '{"model": "m"}\n')
    append_records(path, [_rec(scale=5)])  # a second bad line is appended, not overwriting the first
    assert Path(f"{path}.bad").read_text() == '{broken\n[1, 2]\n{"model": "m"}\n'
    assert [r.scale for r in read_records(path)] == [2, 3, 4, 5]


# Writers with fcntl unavailable: the records lock must not depend on it (NFS without lockd).
_WRITER = textwrap.dedent("""
    import sys
    sys.modules["fcntl"] = None  # import fcntl now raises ImportError
    from sr_bench.records import Record, append_records
    path, tag = sys.argv[1], sys.argv[2]
    for i in range(int(sys.argv[3])):  # one read-merge-replace per record: many chances to interleave
        rows = [{"image": "x", "psnr": float(i), "ssim": 0.5}]
        append_records(path, [Record(model=tag, weights=None, dataset=f"d{i}", scale=2, self_ensemble=False,
                                     protocol="paper", psnr=float(i), ssim=0.5, n_images=1, per_image=rows)])
""")


def test_four_processes_appending_to_one_file_lose_nothing_without_fcntl(tmp_path):
    path = tmp_path / "records.jsonl"
    n, tags = 30, ("a", "b", "c", "d")
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), tag, str(n)]) for tag in tags]
    assert [p.wait(timeout=600) for p in procs] == [0] * len(tags)
    got = sorted((r.model, r.dataset) for r in read_records(path))
    assert got == sorted((tag, f"d{i}") for tag in tags for i in range(n))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.jsonl"]  # no lock folder, no temp left


def test_fixy_read_records_binary_file_is_data_error(tmp_path):
    from sr_bench.cli import DataError

    path = tmp_path / "blob.jsonl"
    path.write_bytes(b"\xff\xfe\x00\x81" * 64)
    with pytest.raises(DataError, match="blob.jsonl"):
        read_records(path)


def test_a_measured_record_names_the_commit_that_measured_it(tmp_path):
    from sr_bench.evaluate import main
    from sr_bench.records import git_commit

    assert main(["--model", "bicubic", "--datasets", "embedded", "--scales", "2", "--no-progress", "-q",
                 "--records", str(tmp_path / "r.jsonl")]) == 0
    (r,) = read_records(tmp_path / "r.jsonl")
    assert r.sr_bench_commit == git_commit() != "" and r.schema == 3
    # appending a copy of an old record does not claim today's commit for it
    old = _rec(psnr=31.0)
    append_records(tmp_path / "r.jsonl", [old])
    assert next(x for x in read_records(tmp_path / "r.jsonl") if x.psnr == 31.0).sr_bench_commit == ""
