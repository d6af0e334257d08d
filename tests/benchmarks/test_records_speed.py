"""Speed of a large records file (reported by pytest-benchmark, never asserted as timers).

A file of ``SR_BENCH_RECORDS_LINES`` lines (2,000 by default so that the suite stays fast;
``SR_BENCH_RECORDS_LINES=200000 pytest tests/benchmarks/test_records_speed.py --benchmark-only``
is the size docs/records.md reports): 2,000-line blocks of 100 identities per label (25 datasets,
x2 and x4, with and without self-ensemble), five images each. Timed, each from a cold start (no
parse kept from an earlier round): reading it, appending one record, Table 3 from it, ``compare``
from it, and ``evaluate`` (bicubic on the embedded photos) appending to it.

Each operation is also timed with the code of ``REFERENCE_COMMIT`` (sr_bench before records
were read once per run), loaded from git into a private package, on the same file in the same
process: the ratio of the two is the figure to read, not either time (a shared machine swings
absolute times several-fold). The reference reads schema-2 files only, so both read the same
schema-2 file; ``[schema3]`` rows time the current code on the same records stamped as schema 3
(checksums verified).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sr_bench import compare, records
from sr_bench.records import Record, read_records, record_line
from sr_bench.tables.table3 import table3_markdown

#: sr_bench before one-parse reading, verification and the lock in .locks/
REFERENCE_COMMIT = "61ee94a"
LINES = int(os.environ.get("SR_BENCH_RECORDS_LINES", "2000"))
_REPO = Path(__file__).resolve().parents[2]
_DATASETS = ["Set5", "Set14", "B100", "Urban100"] + [f"/data/user/folder{i}" for i in range(21)]


def _rows(n: int) -> list[dict]:
    """``n`` schema-2 records as dicts, with means that hold."""
    out = []
    for i in range(n):
        label, rest = divmod(i, 100)
        ds, rest = divmod(rest, 4)
        scale, se = (2, 4)[rest // 2], bool(rest % 2)
        per = [{"image": f"img{k}", "psnr": 30.0 + ((i * 7 + k) % 13) / 8, "ssim": 0.9} for k in range(5)]
        psnr = sum(p["psnr"] for p in per) / 5
        out.append(dict(model="edsr", weights="a" * 64, dataset=_DATASETS[ds], scale=scale, self_ensemble=se,
                        protocol="paper", psnr=psnr, ssim=0.9, n_images=5, per_image=per, weights_source=None,
                        profile="quick", model_options={}, data_sha256="d" * 64, lr_source="file", device="cpu",
                        dtype="float32", tile=None, seconds=0.1, sr_bench_version="0.1.0", torch_version="2.13.0",
                        host="x86_64", date="2026-11-28T10:00:00+00:00", schema=2, label=f"run-{label}",
                        n_expected=5, source="model", sr_dir=None, sr_sha256=None))
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(schema-2 file, schema-3 file) of the same records."""
    folder = tmp_path_factory.mktemp("records_speed")
    rows = _rows(LINES)
    legacy, stamped = folder / "schema2.jsonl", folder / "schema3.jsonl"
    legacy.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stamped.write_text("".join(record_line(Record(**r)) + "\n" for r in rows))
    return legacy, stamped


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """records, table3, compare and evaluate as they were at ``REFERENCE_COMMIT``."""
    folder = tmp_path_factory.mktemp("reference") / "_srb_reference"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name, path in (("records", "sr_bench/records.py"), ("table3", "sr_bench/tables/table3.py"),
                       ("compare", "sr_bench/compare.py"), ("evaluate", "sr_bench/evaluate.py")):
        try:
            text = subprocess.run(["git", "show", f"{REFERENCE_COMMIT}:{path}"], cwd=_REPO, check=True,
                                  capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError):
            pytest.skip(f"the reference code ({REFERENCE_COMMIT}) is not in this checkout's git history")
        text = text.replace("from sr_bench.records import", "from _srb_reference.records import")
        text = text.replace("from sr_bench.tables.table3 import", "from _srb_reference.table3 import")
        (folder / f"{name}.py").write_text(text)
    sys.path.insert(0, str(folder.parent))
    try:
        modules = {n: importlib.import_module(f"_srb_reference.{n}") for n in ("records", "table3", "compare",
                                                                                "evaluate")}
    except ImportError as e:  # the rest of sr_bench moved on since
        pytest.skip(f"the reference code no longer imports against this sr_bench: {e}")
    finally:
        sys.path.remove(str(folder.parent))
    return modules


def _cold() -> None:
    records._PARSED.clear()


def _copy(src: Path, name: str) -> Path:
    dst = src.with_name(name)
    shutil.copyfile(src, dst)
    return dst


def _one_record(i: int) -> Record:
    return Record(**{**_rows(1)[0], "label": f"appended-{i}", "schema": 3})


# --- read ------------------------------------------------------------------------------------------


def test_read_reference(benchmark, files, reference):
    got = benchmark.pedantic(reference["records"].read_records, (files[0],), rounds=3, iterations=1)
    assert len(got) == LINES


@pytest.mark.parametrize("kind", ["schema2", "schema3"])
def test_read(benchmark, files, kind):
    path = files[kind == "schema3"]
    got = benchmark.pedantic(read_records, (path,), setup=_cold, rounds=3, iterations=1)
    assert len(got) == LINES and {e.kind for e in got.entries} == {"legacy" if kind == "schema2" else "verified"}


# --- append one record --------------------------------------------------------------------------------


def test_append_one_reference(benchmark, files, reference):
    path, done = _copy(files[0], "append-ref.jsonl"), []
    ref = reference["records"]

    def append() -> None:
        done.append(len(done))
        ref.append_records(path, [ref.Record(**{**_rows(1)[0], "label": f"appended-{done[-1]}"})])

    benchmark.pedantic(append, rounds=3, iterations=1)
    assert len(path.read_text().splitlines()) == LINES + len(done)


def test_append_one(benchmark, files):
    path, done = _copy(files[1], "append-new.jsonl"), []

    def append() -> None:
        done.append(len(done))
        records.append_records(path, [_one_record(done[-1])])

    benchmark.pedantic(append, setup=_cold, rounds=3, iterations=1)
    assert len(path.read_text().splitlines()) == LINES + len(done)


# --- Table 3 and compare from the file ----------------------------------------------------------------------


def test_table3_reference(benchmark, files, reference):
    text = benchmark.pedantic(lambda: reference["table3"].table3_markdown(reference["records"].read_records(files[0])),
                              rounds=1, iterations=1)
    assert "| Set5 | x2 |" in text


@pytest.mark.parametrize("kind", ["schema2", "schema3"])
def test_table3(benchmark, files, kind):
    path = files[kind == "schema3"]
    text = benchmark.pedantic(lambda: table3_markdown(read_records(path)), setup=_cold, rounds=1, iterations=1)
    assert "| Set5 | x2 |" in text


def test_compare_reference(benchmark, files, reference):
    text = benchmark.pedantic(reference["compare"].compare, ("run-0", "run-1", files[0]), rounds=3, iterations=1)
    assert "| **all** |" in text


@pytest.mark.parametrize("kind", ["schema2", "schema3"])
def test_compare(benchmark, files, kind):
    path = files[kind == "schema3"]
    text = benchmark.pedantic(compare.compare, ("run-0", "run-1", path), setup=_cold, rounds=3, iterations=1)
    assert "| **all** |" in text


# --- evaluate appending to the file -------------------------------------------------------------------------


def _evaluate_argv(path: Path) -> list[str]:
    return ["--model", "bicubic", "--datasets", "embedded", "--scales", "2", "--records", str(path), "--table",
            str(path.with_suffix(".md")), "--no-progress", "-q"]


def test_evaluate_reference(benchmark, files, reference):
    path = _copy(files[0], "evaluate-ref.jsonl")
    assert benchmark.pedantic(reference["evaluate"].main, (_evaluate_argv(path),), rounds=1, iterations=1) == 0


def test_evaluate(benchmark, files):
    from sr_bench.evaluate import main

    path = _copy(files[1], "evaluate-new.jsonl")
    assert benchmark.pedantic(main, (_evaluate_argv(path),), setup=_cold, rounds=1, iterations=1) == 0
