"""Records files as editors, other systems and mistakes leave them: nested past Python's parser,
a byte-order mark, a line that is not UTF-8, a binary file, lone surrogates, FIFOs, devices and
symlink loops where a records file belongs. Each was found by tests/hostile/records_sweep.py as a
traceback, a hang or a record lost; each must now be one line, or a line left out by itself."""

from __future__ import annotations

import json
import os

import pytest
from record_factory import make_record

from sr_bench import compare, records, storage
from sr_bench.cli import DataError, UsageError
from sr_bench.evaluate import check_output
from sr_bench.labels import check_label, markdown
from sr_bench.records import append_records, read_records, record_line, verify_records
from sr_bench.storage import LockOwner, StorageError, write_target
from sr_bench.tables.table3 import main as table3_main
from sr_bench.tables.table3 import write_table3

NESTED = "[" * 100_000 + "]" * 100_000  # far past the recursion limit of json's decoder


def _lines(*records_) -> str:
    return "".join(record_line(r) + "\n" for r in records_)


def _kinds(path) -> list[str]:
    return [e.kind for e in verify_records(path).entries]


def test_a_line_nested_past_the_parser_is_a_bad_line_not_a_crash(tmp_path):
    path = tmp_path / "rec.jsonl"
    good = record_line(make_record(label="A"))
    path.write_text(good + "\n" + NESTED + "\n")
    assert [r.label for r in read_records(path)] == ["A"]
    report = verify_records(path)
    assert [e.kind for e in report.entries] == ["verified", "bad"]
    assert "nested deeper" in report.entries[1].reason
    # the next write keeps the record and moves the unreadable line aside, whole
    append_records(path, [make_record(label="B")])
    assert path.read_text().splitlines()[0] == good
    assert (tmp_path / "rec.jsonl.bad").read_text() == NESTED + "\n"


def test_a_lock_file_nested_past_the_parser_says_nothing_instead_of_crashing():
    assert LockOwner.parse(NESTED.encode()) is None


def test_a_byte_order_mark_does_not_cost_the_first_record(tmp_path):
    path = tmp_path / "rec.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _lines(make_record(label="A"), make_record(label="B", psnr=31.0)).encode())
    assert _kinds(path) == ["verified", "verified"]
    append_records(path, [make_record(label="C")])
    assert not (tmp_path / "rec.jsonl.bad").exists()
    assert [r.label for r in read_records(path)] == ["A", "B", "C"]


def test_a_line_that_is_not_utf8_is_left_out_alone_and_set_aside_byte_for_byte(tmp_path):
    path = tmp_path / "rec.jsonl"
    latin1 = json.dumps({"label": "café"}, ensure_ascii=False).encode("latin-1")
    path.write_bytes(latin1 + b"\n" + _lines(make_record(label="B")).encode())
    report = verify_records(path)
    assert [e.kind for e in report.entries] == ["bad", "verified"]
    assert "byte 0xE9 at column 15" in report.entries[0].reason
    assert [r.label for r in read_records(path)] == ["B"]
    append_records(path, [make_record(label="C")])
    assert (tmp_path / "rec.jsonl.bad").read_bytes() == latin1 + b"\n"
    assert [r.label for r in read_records(path)] == ["B", "C"]


def test_a_binary_file_is_refused_whole_and_left_as_it_is(tmp_path):
    path = tmp_path / "weights.pt"
    blob = b"PK\x03\x04\x00\x00" + bytes(range(256)) * 4
    path.write_bytes(blob)
    with pytest.raises(DataError, match=r"weights.pt: is a binary file \(a NUL byte at byte 4\)"):
        read_records(path)
    with pytest.raises(DataError, match="binary"):
        append_records(path, [make_record()])
    assert path.read_bytes() == blob and not (tmp_path / "weights.pt.bad").exists()


def test_a_lone_surrogate_escape_refuses_the_record_and_tables_still_write(tmp_path):
    # json.loads turns "\udcff" into a string no file can hold as UTF-8
    line = record_line(make_record(label="A", host="cpu \udcff"))
    assert "\\udcff" in line
    path = tmp_path / "rec.jsonl"
    path.write_text(line + "\n" + record_line(make_record(label="B")) + "\n")
    report = verify_records(path)
    assert [e.kind for e in report.entries] == ["refused", "verified"]
    assert "\\udcff" in report.entries[0].reason
    out = write_table3(read_records(path), tmp_path / "t3.md")
    assert "| B |" in out.read_text() and "udcff" in out.read_text()  # the note names it, escaped


def test_an_emoji_label_stored_as_a_surrogate_pair_is_text():
    line = record_line(make_record(label="EDSR \U0001f680"))
    assert "\\ud83d\\ude80" in line
    assert records._classify(1, line).kind == "verified"


def test_a_label_from_bytes_that_are_not_utf8_is_refused_by_name():
    label = os.fsdecode(b"run\xff")  # what Python makes of such bytes on a command line
    with pytest.raises(UsageError, match="not UTF-8 text .* position 3"):
        check_label(label)
    assert markdown(label) == "run\\udcff"


@pytest.fixture
def odd_files(tmp_path):
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to("loop.jsonl")
    device = tmp_path / "dev.jsonl"
    device.symlink_to(os.devnull)
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    return {"a FIFO": fifo, "a symlink loop": loop, "a device": device, "a folder": folder}


@pytest.mark.parametrize("kind", ["a FIFO", "a symlink loop", "a device", "a folder"])
def test_records_paths_that_are_not_files_are_named_for_what_they_are(odd_files, kind, capsys):
    path = odd_files[kind]
    with pytest.raises(DataError, match=f"{path.name}: is {kind}"):
        read_records(path)  # a FIFO would block here for ever, a device read as an empty file
    with pytest.raises(DataError, match=f"{path.name} is {kind}"):
        verify_records(path)
    assert table3_main(["--records", str(path), "--out", str(path.parent / "t3.md")]) == 1
    assert f"is {kind}" in capsys.readouterr().err
    with pytest.raises(UsageError, match=f"--records {path} is {kind}"):
        compare.compare("A", "B", path)


@pytest.mark.parametrize("kind", ["a FIFO", "a symlink loop", "a device"])
def test_outputs_that_are_not_regular_files_are_refused_before_any_work(odd_files, kind):
    with pytest.raises(UsageError, match=f"--per-image {odd_files[kind]} is {kind}"):
        check_output(odd_files[kind], "per_image.csv", "--per-image")


def test_writing_through_a_symlink_loop_is_one_line(odd_files):
    with pytest.raises(StorageError, match="loop.jsonl: is a symlink loop"):
        write_target(odd_files["a symlink loop"])
    assert storage.file_kind_problem(odd_files["a FIFO"], "a records file") == "is a FIFO, not a records file"


# --- an output that is the records it is made from ------------------------------------------------


@pytest.fixture
def stored(tmp_path):
    path = tmp_path / "rec.jsonl"
    path.write_text(_lines(make_record(label="A"), make_record(label="B", psnr=31.0)))
    return path


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link", "dot-dot"])
def test_a_table_written_over_its_own_records_is_refused(stored, how, capsys):
    before = stored.read_bytes()
    out = {"same path": stored, "symlink": stored.parent / "t3.md", "hard link": stored.parent / "t3.md",
           "dot-dot": stored.parent / "sub" / ".." / stored.name}[how]
    if how == "symlink":
        out.symlink_to(stored)
    elif how == "hard link":
        os.link(stored, out)
    assert table3_main(["--records", str(stored), "--out", str(out)]) == 2
    assert f"--out {out} is the same file as --records {stored}" in capsys.readouterr().err
    assert compare.main(["A", "B", "--records", str(stored), "--out", str(out)]) == 2
    assert "is the same file as --records" in capsys.readouterr().err
    assert stored.read_bytes() == before


def test_evaluate_refuses_a_table_or_csv_over_its_records_before_any_work(stored, capsys):
    from sr_bench.evaluate import main as evaluate_main

    before = stored.read_bytes()
    for option in ("--table", "--per-image"):  # --per-image: it waited for ever on its own lock
        argv = ["--model", "bicubic", "--datasets", str(stored.parent / "no-such-folder"), "--scales", "2",
                "--records", str(stored), option, str(stored), "--no-progress"]
        assert evaluate_main(argv) == 2
        assert f"{option} {stored} is the same file as --records {stored}" in capsys.readouterr().err
    assert stored.read_bytes() == before


def test_distinct_files_that_do_not_exist_yet_pass(tmp_path):
    storage.refuse_same_file([("--records", tmp_path / "a.jsonl"), ("--out", tmp_path / "b.md"), ("--x", None)])
    with pytest.raises(UsageError, match="--out .*new.md is the same file as --records"):
        storage.refuse_same_file([("--records", tmp_path / "new.md"), ("--out", tmp_path / "d" / ".." / "new.md")])


def test_a_figure_written_over_its_records_is_refused(stored, capsys):
    from sr_bench.figure import main as figure_main

    before = stored.read_bytes()
    argv = ["--image", "Set5/baby", "--box", "0", "0", "8", "8", "--labels", "bicubic", "--scale", "2",
            "--records", str(stored), "--out", str(stored)]
    assert figure_main(argv) == 2
    assert f"--out {stored} is the same file as --records {stored}" in capsys.readouterr().err
    assert stored.read_bytes() == before


def test_a_path_under_a_file_says_so(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match="afile/rec.jsonl cannot be there: a part of its path is a file"):
        check_output(tmp_path / "afile" / "rec.jsonl", "records.jsonl", "--records")
