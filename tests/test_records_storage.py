"""Where records and their companions are written: the lock (dead and silent holders taken over,
live ones not), lock files in one folder that goes away, symlinks written through, and a full
disk or read-only folder as one line with every file as it was."""

from __future__ import annotations

import csv
import errno
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from record_factory import make_record

from sr_bench import compare, storage
from sr_bench.evaluate import main as evaluate_main
from sr_bench.evaluate import per_image_text, write_per_image
from sr_bench.records import Companion, append_records, read_records
from sr_bench.storage import LockOwner, LockTimeout, StorageError, commit_files, file_lock, lock_path
from sr_bench.tables.table3 import main as table3_main

_rec = make_record


def _plant_lock(target: Path, machine: str, pid: int) -> Path:
    lock = lock_path(target)
    lock.parent.mkdir(exist_ok=True)
    lock.write_bytes(LockOwner(machine, pid, "0" * 16, "2026-11-28T10:00:00+0000").text())
    return lock


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --- the lock -------------------------------------------------------------------------------------------


def test_lock_files_live_in_one_hidden_folder_that_goes_away(tmp_path):
    target = tmp_path / "records.jsonl"
    with file_lock(target) as lock:
        assert lock == tmp_path / ".locks" / "records.jsonl.lock" and lock.is_file()
        assert LockOwner.parse(lock.read_bytes()).pid == os.getpid()
    assert list(tmp_path.iterdir()) == []
    write_per_image(tmp_path / "per_image.csv", [_rec()])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["per_image.csv"]  # no per_image.csv.lock beside it


def test_a_records_file_in_a_new_folder_is_created_with_it(tmp_path):
    path = tmp_path / "new" / "deeper" / "records.jsonl"
    append_records(path, [_rec()])
    assert len(read_records(path)) == 1 and sorted(p.name for p in path.parent.iterdir()) == ["records.jsonl"]


def test_a_lock_whose_holder_died_on_this_host_is_taken_over(tmp_path, caplog):
    target = tmp_path / "records.jsonl"
    pid = _dead_pid()
    _plant_lock(target, storage._machine(), pid)
    with caplog.at_level(logging.WARNING, logger="sr_bench"):
        with file_lock(target, timeout=30, stale_after=3600):  # only the dead pid can free it in time
            pass
    assert f"taking over a stale lock (pid {pid} on " in caplog.text


def test_a_lock_from_another_host_is_taken_over_only_when_its_beat_stops(tmp_path):
    target = tmp_path / "records.jsonl"
    _plant_lock(target, "other-host|boot|pid:[1]", 1)  # pid 1 is alive here: it must not count
    with pytest.raises(LockTimeout, match=r"\.locks/records.jsonl.lock: pid 1 on other-host since 2026-11-28"):
        with file_lock(target, timeout=0.5, stale_after=3600):
            pass
    with file_lock(target, timeout=30, stale_after=0.3):  # no beat for 0.3 s: its holder is gone
        pass


_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sr_bench import storage
    storage._machine = lambda: "other-host|boot|pid:[2]"  # as if it ran on another host
    target, held, beat = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    with storage.file_lock(target, heartbeat=beat):
        held.write_text("held")
        time.sleep(8)
""")


def test_a_live_holder_on_another_host_keeps_its_lock(tmp_path):
    target, held = tmp_path / "records.jsonl", tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(target), str(held), "0.05"])
    try:
        for _ in range(600):
            if held.exists() or holder.poll() is not None:
                break
            time.sleep(0.05)
        assert held.exists()
        with pytest.raises(LockTimeout):  # its beat changes every 0.05 s: never 2 s without one
            with file_lock(target, timeout=4, stale_after=2):
                pass
    finally:
        holder.kill()
        holder.wait()


# --- symlinks -----------------------------------------------------------------------------------------


def test_a_symlinked_records_file_is_written_through_to_its_target(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (tmp_path / "results").mkdir()
    link = tmp_path / "results" / "records.jsonl"
    link.symlink_to(shared / "records.jsonl")
    csv_link = tmp_path / "results" / "per_image.csv"
    csv_link.symlink_to(shared / "per_image.csv")
    append_records(link, [_rec(psnr=30.0)])
    append_records(link, [_rec(psnr=31.0, scale=3)],
                   companions=[Companion(csv_link, lambda p: per_image_text(p, [_rec(psnr=31.0, scale=3)]))])
    assert link.is_symlink() and csv_link.is_symlink()
    assert [r.psnr for r in read_records(shared / "records.jsonl")] == [30.0, 31.0]
    assert len((shared / "per_image.csv").read_text().splitlines()) == 6
    assert lock_path(link) == lock_path(shared / "records.jsonl")  # one file, one lock
    assert sorted(p.name for p in shared.iterdir()) == ["per_image.csv", "records.jsonl"]


def test_a_symlink_into_a_missing_folder_is_refused_by_name(tmp_path):
    link = tmp_path / "records.jsonl"
    link.symlink_to(tmp_path / "unmounted" / "records.jsonl")
    with pytest.raises(StorageError, match="is a symlink to .*unmounted/records.jsonl, whose folder does not exist"):
        append_records(link, [_rec()])
    assert not (tmp_path / "unmounted").exists()


# --- full disks and read-only folders ---------------------------------------------------------------------




def _state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_disk_full_while_writing_the_csv_leaves_records_and_csv_in_step(tmp_path, disk_full_for):
    records, table = tmp_path / "records.jsonl", tmp_path / "per_image.csv"
    append_records(records, [_rec(psnr=30.0)], companions=[Companion(table, lambda p: per_image_text(p, [_rec()]))])
    before = _state(tmp_path)
    disk_full_for("per_image.csv")  # the records' temp is written; the CSV's is not
    new = [_rec(psnr=31.0, scale=3)]
    with pytest.raises(StorageError) as caught:
        append_records(records, new, companions=[Companion(table, lambda p: per_image_text(p, new))])
    message = str(caught.value)
    assert message.startswith(f"{table}: cannot write (No space left on device [ENOSPC]); nothing was changed")
    assert "\n" not in message and caught.value.exit_code == 1 and caught.value.errno == errno.ENOSPC
    assert _state(tmp_path) == before  # both files as they were, no temp left, no lock folder


def test_a_rename_that_fails_after_the_first_puts_the_first_back(tmp_path, monkeypatch):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    real = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(StorageError, match=r"b.txt: cannot replace \(Input/output error \[EIO\]\)"):
        commit_files([(a, "new a"), (b, "new b")])
    assert _state(tmp_path) == {"a.txt": b"old a"}


def test_evaluate_with_a_read_only_csv_folder_stores_nothing(tmp_path, read_only, capsys):
    (tmp_path / "ro").mkdir()
    read_only(tmp_path / "ro")
    rc = evaluate_main(["--model", "bicubic", "--datasets", "embedded", "--scales", "2", "--no-progress", "-q",
                        "--records", str(tmp_path / "records.jsonl"), "--per-image", str(tmp_path / "ro" / "x.csv")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: {tmp_path / 'ro'}") and "Read-only file system [EROFS]" in err
    assert not (tmp_path / "records.jsonl").exists()  # the record is not stored without its CSV rows


def test_table3_and_compare_into_a_read_only_folder_are_one_line(tmp_path, read_only, capsys):
    records = tmp_path / "records.jsonl"
    append_records(records, [_rec(label="A", psnr=30.0), _rec(label="B", psnr=31.0)])
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "t3.md").write_text("kept")
    read_only(tmp_path / "ro")
    assert table3_main(["--records", str(records), "--out", str(tmp_path / "ro" / "t3.md")]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: {tmp_path / 'ro' / 't3.md'}: cannot write (Read-only file system [EROFS]); nothing was "
                   f"changed: free space, or pass a path in a writable folder\n")
    assert (tmp_path / "ro" / "t3.md").read_text() == "kept"
    assert compare.main(["A", "B", "--records", str(records), "--out", str(tmp_path / "ro" / "c.md")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'ro' / 'c.md'}: cannot write (") and err.count("\n") == 1


def test_a_records_folder_that_refuses_the_lock_is_one_line(tmp_path, read_only):
    read_only(tmp_path)
    with pytest.raises(StorageError, match=r"\.locks/r.jsonl.lock: cannot create the lock \(Read-only file system"):
        append_records(tmp_path / "r.jsonl", [_rec()])


def test_per_image_csv_rows_read_back(tmp_path):
    path = tmp_path / "per_image.csv"
    write_per_image(path, [_rec(psnr=30.5)])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["image"], float(r["psnr"])) for r in rows] == [(f"img{k}", 30.5) for k in range(5)]
