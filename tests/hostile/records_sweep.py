"""Hostile sweep of what sr_bench *stores and shows*: records files, labels, hostile archives,
full and read-only disks under tables and comparisons, and the messages for mixed-up paths.

Not collected by pytest (no ``test_`` prefix): a script that runs each scenario as a command in a
subprocess, in a fresh temporary folder, with a timeout, and sorts what happened into

* ``ok``: a command that should work did, and its check passed (a table that leaves a broken
  record out *with a note* is ok);
* ``clear error``: one ``error: ...`` line, last on stderr, holding the expected words, exit 1 or
  2, no traceback, and the check passed (nothing half-written, nothing outside the folders given);
* ``unclear``: an error, but not one line, or without the words, or with another exit status;
* ``traceback``: a Python traceback without ``--debug``;
* ``silently wrong``: exit 0 where an error or a note was due (a hand-edited value shown as
  measured, a conflict not marked), or a failed check;
* ``hang``: still running at the timeout;
* ``loss``: something already stored is gone or changed (a record, a line kept for a newer
  sr_bench, the shared target of a symlink);
* ``injection``: what a label or file name holds changed the structure of an output (a markdown
  row split or widened, a CSV cell a spreadsheet runs as a formula, HTML in a table, a file
  written outside the folder given);
* ``n/a``: the scenario needs something this machine lacks (an unprivileged mount namespace).

    python tests/hostile/records_sweep.py               # every scenario, counts at the end
    python tests/hostile/records_sweep.py -k archive    # those whose name holds "archive"
    python tests/hostile/records_sweep.py --markdown    # and the table as markdown

The world is made once per run: a folder dataset of three small images scored by two real
``evaluate`` runs (labels ``A``: bicubic, ``B``: a tiny random EDSR), whose records every scenario
copies and breaks in its own way (checksums are recomputed here, independently of sr_bench, where
a scenario needs a forged record that *passes* its checksum). Archives are fed to
``python -m sr_bench.data download Set5`` from a ``file://`` mirror with ``--sha256`` of the
hostile file, as a user's own mirror would serve them. Full and read-only disks are real tmpfs
mounts in an unprivileged mount namespace (``unshare -rm``). Nothing touches the network.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import run_command, unshare_works  # tests/hostile/, the script's own folder

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATASETS = Path(os.environ.get("SR_BENCH_DATA", "/work/shared/datasets"))

OUTCOMES = ("ok", "clear error", "unclear", "traceback", "silently wrong", "hang", "loss", "injection", "n/a")


@dataclass
class Run:
    rc: int | None  # None: killed at the timeout
    out: str
    err: str
    seconds: float
    work: Path


Judge = Callable[[Run], tuple[str, str]]


@dataclass
class Scenario:
    name: str
    klass: str  # which class of the problem list it attacks ("2", "5", "7", "9", "10", "13", "also")
    what: str
    #: makes the scenario's files in ``work`` and returns the sr_bench command (argv after python)
    setup: Callable[[Path], list[str]]
    judge: Judge
    disk: str | None = None  # "full" | "ro": ``work/disk`` is such a tmpfs holding ``work/stage``'s files
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 120.0


# --- the world ---------------------------------------------------------------------------------


@dataclass
class World:
    root: Path
    ds: Path  # the folder dataset
    records: Path  # two verified records: A (bicubic) and B (tiny random EDSR), x2 on ds
    csv: Path  # their per-image CSV
    python: str

    def lines(self) -> list[str]:
        return self.records.read_text().splitlines()

    def record(self, label: str) -> dict:
        return next(json.loads(line) for line in self.lines() if json.loads(line)["label"] == label)


EVAL_A = ["-m", "sr_bench.evaluate", "--model", "bicubic", "--scales", "2", "--no-progress"]
EVAL_B = ["-m", "sr_bench.evaluate", "--model", "edsr-baseline", "--weights", "random", "--option", "blocks=1",
          "--option", "filters=8", "--scales", "2", "--no-progress"]


CODE = ROOT  # the sr_bench tree the commands run (--code)


def _env(work: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(CODE), "HOME": str(work / "home"), "SR_BENCH_CACHE": str(work / "cache"),
           "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "SR_BENCH_DATA": str(DATASETS), **extra}
    for name in ("SR_BENCH_DEBUG", "SR_BENCH_DATA_URL", "SR_BENCH_WEIGHTS_URL", "SR_BENCH_WEIGHTS_DIR"):
        if name not in extra:
            env.pop(name, None)
    return {k: v for k, v in env.items() if v != "<unset>"}


def build_world(root: Path, python: str) -> World:
    import numpy as np
    from PIL import Image

    ds = root / "ds"
    ds.mkdir(parents=True)
    for i in range(3):
        rng = np.random.default_rng(i)
        Image.fromarray((rng.random((48, 64, 3)) * 255).astype("uint8")).save(ds / f"im{i}.png")
    (root / "home").mkdir()
    out = root / "base"
    for argv, label in ((EVAL_A, "A"), (EVAL_B, "B")):
        done = subprocess.run([python, *argv, "--datasets", str(ds), "--label", label, "--records",
                               str(out / "records.jsonl"), "--per-image", str(out / "per_image.csv")],
                              env=_env(root, {}), capture_output=True, text=True, timeout=300, cwd=root)
        if done.returncode != 0:
            raise SystemExit(f"could not make the world's records:\n{done.stderr}")
    return World(root, ds, out / "records.jsonl", out / "per_image.csv", python)


WORLD: World  # set by main()


# --- forging records (independently of sr_bench) ------------------------------------------------


def seal(data: dict) -> str:
    """``data`` as a line whose checksum holds: sha256 of its canonical JSON without ``checksum``."""
    body = {k: v for k, v in data.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return json.dumps({**body, "checksum": "sha256:" + hashlib.sha256(text.encode()).hexdigest()})


def consistent(data: dict, psnr: float) -> dict:
    """``data`` with every per-image PSNR moved so that their mean is ``psnr`` (a forgery that a
    checksum and the mean check both pass)."""
    shift = psnr - data["psnr"]
    rows = [{**p, "psnr": p["psnr"] + shift} for p in data["per_image"]]
    return {**data, "per_image": rows, "psnr": sum(p["psnr"] for p in rows) / len(rows)}


def write_records(work: Path, lines: list[str], name: str = "rec.jsonl", ending: str = "\n") -> Path:
    path = work / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + ending for line in lines).encode("utf-8", "surrogatepass"))
    return path


def table3(records: str = "rec.jsonl", out: str = "t3.md") -> list[str]:
    return ["-m", "sr_bench.tables.table3", "--records", records, "--out", out]


def compare(records: str = "rec.jsonl", out: str = "cmp.md", a: str = "A", b: str = "B") -> list[str]:
    return ["-m", "sr_bench.compare", a, b, "--records", records, "--out", out]


def verify(*files: str) -> list[str]:
    return ["-m", "sr_bench.records", "verify", *files]


def evaluate_a(records: str = "rec.jsonl", *extra: str, label: str = "C") -> list[str]:
    return [*EVAL_A, "--datasets", str(WORLD.ds), f"--label={label}", "--records", records, *extra]


# --- judging -----------------------------------------------------------------------------------


def basic(r: Run) -> tuple[str, str]:
    if r.rc is None:
        return "hang", f"killed after {r.seconds:.0f} s"
    if "Traceback (most recent call last)" in r.err:
        return "traceback", [ln for ln in r.err.strip().splitlines() if ln.strip()][-1][:200]
    if r.rc == 0:
        return "ok", ""
    lines = [ln for ln in r.err.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    if r.rc in (1, 2) and len(errors) == 1 and lines[-1] == errors[0]:
        return "clear error", errors[0]
    return "unclear", (f"exit {r.rc}: " + (lines[-1] if lines else "no message"))[:220]


def _all(*checks: Callable[[Run], str | None]) -> Callable[[Run], tuple[str, str] | None]:
    """The first check that finds a problem, as (outcome, note); checks return ``"outcome: note"``."""
    def run(r: Run) -> tuple[str, str] | None:
        for check in checks:
            problem = check(r)
            if problem:
                outcome, _, note = problem.partition(": ")
                return outcome, note
        return None
    return run


def refused(*words: str, checks: tuple[Callable[[Run], str | None], ...] = ()) -> Judge:
    """Refusing is right: a clear error holding ``words``; exit 0 is silently wrong."""
    def judge(r: Run) -> tuple[str, str]:
        outcome, note = basic(r)
        found = _all(*checks)(r)
        if found and found[0] in ("loss", "injection"):
            return found
        if outcome == "ok":
            return "silently wrong", "exit 0: " + ((r.err.strip().splitlines() or [""])[-1])[:160]
        if outcome != "clear error":
            return outcome, note
        missing = [w for w in words if w.lower() not in note.lower()]
        if missing:
            return "unclear", f"{note[:160]} (lacks {missing})"
        return found or (outcome, note)
    return judge


def works(*checks: Callable[[Run], str | None], stderr: tuple[str, ...] = ()) -> Judge:
    """Working is right: exit 0, each check passes, stderr says each of ``stderr`` (a note)."""
    def judge(r: Run) -> tuple[str, str]:
        outcome, note = basic(r)
        found = _all(*checks)(r)
        if found and found[0] in ("loss", "injection"):
            return found
        if outcome != "ok":
            return ("unclear", f"refused what should work: {note}") if outcome == "clear error" else (outcome, note)
        silent = [w for w in stderr if w.lower() not in r.err.lower()]
        if silent:
            return "silently wrong", f"no note saying {silent}"
        return found or ("ok", "")
    return judge


def either(*checks: Callable[[Run], str | None], words: tuple[str, ...] = ()) -> Judge:
    """Working (with the checks) or a clear refusal (holding ``words``) are both right."""
    def judge(r: Run) -> tuple[str, str]:
        outcome, _ = basic(r)
        return works(*checks)(r) if outcome == "ok" else refused(*words)(r)
    return judge


# checks: each returns None, or "outcome: what is wrong"

def lacks(path: str, *texts: str, outcome: str = "silently wrong") -> Callable[[Run], str | None]:
    """No table row (a line starting with ``|``) of ``path`` shows any of ``texts``."""
    def check(r: Run) -> str | None:
        p = r.work / path
        if not p.exists():
            return None
        body = "\n".join(ln for ln in p.read_text(errors="replace").splitlines() if ln.startswith("|"))
        shown = [t for t in texts if t in body]
        return f"{outcome}: {path} shows {shown}" if shown else None
    return check


def holds(path: str, *texts: str, outcome: str = "silently wrong") -> Callable[[Run], str | None]:
    def check(r: Run) -> str | None:
        p = r.work / path
        if not p.exists():
            return f"{outcome}: no {path}"
        body = p.read_text(errors="replace")
        missing = [t for t in texts if t not in body]
        return f"{outcome}: {path} lacks {missing}" if missing else None
    return check


def absent(*paths: str) -> Callable[[Run], str | None]:
    def check(r: Run) -> str | None:
        left = [p for p in paths if (r.work / p).exists() or (r.work / p).is_symlink()]
        return f"silently wrong: left {left}" if left else None
    return check


def lines_kept(path: str | tuple[str, ...], originals: Callable[[], list[str]],
               outcome: str = "loss") -> Callable[[Run], str | None]:
    """Every line in ``originals()`` is still in ``path`` (or one of several), byte for byte."""
    paths = (path,) if isinstance(path, str) else path

    def check(r: Run) -> str | None:
        now = {line for p in paths if (r.work / p).exists()
               for line in (r.work / p).read_bytes().decode("utf-8", "surrogateescape").splitlines()}
        gone = [line[:60] for line in originals() if line not in now]
        return f"{outcome}: {' / '.join(paths)} lost {len(gone)} line(s): {gone[:1]}" if gone else None
    return check


def file_unchanged(path: str, digest: Callable[[Path], str]) -> Callable[[Run], str | None]:
    def check(r: Run) -> str | None:
        p = r.work / path
        if not p.exists():
            return f"loss: {path} is gone"
        return None if hashlib.sha256(p.read_bytes()).hexdigest() == digest(r.work) else f"loss: {path} changed"
    return check


_PIPE = re.compile(r"(?<!\\)\|")


def markdown_sound(path: str) -> Callable[[Run], str | None]:
    """Every markdown table in ``path`` keeps one cell count per table, and no raw HTML tag."""
    def check(r: Run) -> str | None:
        p = r.work / path
        if not p.exists():
            return None
        text = p.read_text(errors="replace")
        block: list[int] = []
        for n, line in enumerate(text.split("\n") + [""], start=1):
            if not line.startswith("|"):
                block = []
                continue
            block.append(len(_PIPE.findall(line.replace("\\\\", ""))))
            if len(set(block)) > 1:
                return f"injection: {path}:{n}: a table row with {block[-1] - 1} cells among rows of {block[0] - 1}"
        tag = re.search(r"<(script|img|iframe|a |b>|svg)", re.sub(r"`[^`\n]*`", "", text), re.I)
        return f"injection: {path}: raw HTML {tag.group()!r}" if tag else None
    return check


def csv_sound(path: str) -> Callable[[Run], str | None]:
    """No text cell of the CSV starts like a formula (a number such as -0.5 is fine)."""
    def check(r: Run) -> str | None:
        p = r.work / path
        if not p.exists():
            return None
        with open(p, newline="", encoding="utf-8", errors="replace") as f:
            for row in csv.reader(f):
                for cell in row:
                    if cell.startswith(("=", "+", "-", "@", "\t", "\r")):
                        try:
                            float(cell)
                        except ValueError:
                            return f"injection: {path}: cell {cell[:40]!r} runs as a formula"
        return None
    return check


def nothing_outside(r: Run) -> str | None:
    """No file named ``escaped*`` appeared outside the data root (escapes aim at ``work/..``)."""
    box = r.work.parent
    outside = [p.relative_to(box).as_posix() for p in box.rglob("escaped*")
               if not p.is_relative_to(r.work / "root") and not p.is_relative_to(r.work / "www")]
    return f"injection: wrote {outside} outside the folder given" if outside else None


# --- the scenarios -------------------------------------------------------------------------------


def scenarios() -> list[Scenario]:
    S: list[Scenario] = []

    def add(*args, **kwargs) -> None:
        S.append(Scenario(*args, **kwargs))

    def with_lines(make: Callable[[], list[str]], argv: list[str], ending: str = "\n") -> Callable[[Path], list[str]]:
        def setup(work: Path) -> list[str]:
            write_records(work, make(), ending=ending)
            return argv
        return setup

    def a() -> dict:
        return WORLD.record("A")

    def b_line() -> str:
        return next(line for line in WORLD.lines() if json.loads(line)["label"] == "B")

    def a_line() -> str:
        return next(line for line in WORLD.lines() if json.loads(line)["label"] == "A")

    # ---- 2: records trusted blindly ---------------------------------------------------------------
    edited = lambda: [json.dumps({**a(), "psnr": 99.0}), b_line()]  # noqa: E731 - checksum now stale
    add("hand-edited-psnr-table3", "2", "PSNR edited to 99.0 by hand: table3", with_lines(edited, table3()),
        works(lacks("t3.md", "99.00"), holds("t3.md", "B"), stderr=("rec.jsonl:1", "checksum")))
    add("hand-edited-psnr-compare", "2", "PSNR edited to 99.0 by hand: compare A B", with_lines(edited, compare()),
        refused("rec.jsonl:1", "checksum"))
    add("hand-edited-psnr-verify", "2", "PSNR edited to 99.0 by hand: records verify",
        with_lines(edited, verify("rec.jsonl")), refused_verify("rec.jsonl:1", "checksum"))
    resealed = lambda: [seal({**a(), "psnr": 99.0}), b_line()]  # noqa: E731
    add("resealed-psnr-mean-off", "2", "PSNR 99.0 with its checksum recomputed (per-image mean does not match)",
        with_lines(resealed, table3()), works(lacks("t3.md", "99.00"), stderr=("rec.jsonl:1", "not the mean")))
    add("resealed-ssim-mean-off-verify", "2", "SSIM changed, checksum recomputed: verify",
        with_lines(lambda: [seal({**a(), "ssim": 0.99}), b_line()], verify("rec.jsonl")),
        refused_verify("rec.jsonl:1", "ssim"))
    add("resealed-one-image-dropped", "2", "one per-image row dropped, mean and checksum recomputed (n_images 3)",
        with_lines(lambda: [seal(dropped_row(a())), b_line()], verify("rec.jsonl")),
        refused_verify("rec.jsonl:1", "per-image"))
    add("duplicate-identity-differs", "2", "the same identity twice: 33.65-like and 99.0, both sealed",
        with_lines(lambda: [a_line(), seal(consistent({**a(), "date": "2099-01-01T00:00:00+00:00"}, 99.0)), b_line()],
                   table3()), works(holds("t3.md", "Reproducibility conflict", "99.000000")))
    add("duplicate-identity-differs-compare", "2", "the same identity twice, different values: compare",
        with_lines(lambda: [a_line(), seal(consistent({**a(), "date": "2099-01-01T00:00:00+00:00"}, 99.0)), b_line()],
                   compare()), either(holds("cmp.md", "conflict"), words=("conflict",)))
    add("duplicate-identity-differs-verify", "2", "the same identity twice, different values: verify",
        with_lines(lambda: [a_line(), seal(consistent({**a(), "date": "2099-01-01T00:00:00+00:00"}, 99.0)), b_line()],
                   verify("rec.jsonl")), refused_verify("conflict", "99.0"))
    add("duplicate-identity-1e-7-apart", "2", "the same identity twice, 1e-7 dB apart (within the bound)",
        with_lines(lambda: [a_line(), seal(consistent({**a(), "date": "2099-01-01T00:00:00+00:00"},
                                                      a()["psnr"] + 1e-7)), b_line()], verify("rec.jsonl")),
        works())
    nan = lambda: [json.dumps({**a(), "psnr": float("nan")}), b_line()]  # noqa: E731
    add("nan-psnr-table3", "2", "psnr NaN: table3", with_lines(nan, table3()),
        works(lacks("t3.md", "nan", "NaN"), stderr=("rec.jsonl:1",)))
    add("nan-psnr-compare", "2", "psnr NaN: compare", with_lines(nan, compare()), refused("rec.jsonl:1"))
    add("inf-per-image-compare", "2", "one per-image PSNR Infinity: compare",
        with_lines(lambda: [json.dumps(inf_row(a())), b_line()], compare()), refused("rec.jsonl:1"))
    add("huge-number-1e400", "2", "psnr 1e400 (parses as inf): verify",
        with_lines(lambda: [a_line().replace(f'"psnr":{json.dumps(a()["psnr"])}', '"psnr":1e400', 1), b_line()],
                   verify("rec.jsonl")), refused_verify("rec.jsonl:1"))
    add("psnr-string", "2", 'psnr "33.6" (a string), sealed',
        with_lines(lambda: [seal({**a(), "psnr": str(a()["psnr"])}), b_line()], table3()),
        works(holds("t3.md", "B"), stderr=("rec.jsonl:1", "psnr")))
    add("schema-99", "2", "schema 99 (a newer sr_bench): table3",
        with_lines(lambda: [json.dumps({**a(), "schema": 99}), b_line()], table3()),
        works(stderr=("rec.jsonl:1", "newer")))
    for bad_schema in ("-1", '"3"', "true", "3.5"):
        add(f"schema-{bad_schema.strip(chr(34))}", "2", f"schema {bad_schema}: verify",
            with_lines(lambda s=bad_schema: [a_line().replace('"schema":3', f'"schema":{s}'), b_line()],
                       verify("rec.jsonl")), refused_verify("rec.jsonl:1", "schema"))
    nested = lambda: [a_line(), "[" * 200_000 + "]" * 200_000]  # noqa: E731
    add("deeply-nested-json-verify", "2", "a line of 200,000 nested arrays: verify",
        with_lines(nested, verify("rec.jsonl")), refused_verify("rec.jsonl:2"))
    add("deeply-nested-json-table3", "2", "a line of 200,000 nested arrays: table3", with_lines(nested, table3()),
        works(holds("t3.md", "A"), stderr=("rec.jsonl:2",)))
    add("deeply-nested-object-in-field", "2", "model_options nested 100,000 deep: evaluate appends beside it",
        with_lines(lambda: [a_line().replace('"model_options":{}', '"model_options":' + '{"a":' * 100_000 + "1"
                                             + "}" * 100_000)], evaluate_a()),
        works(lines_kept(("rec.jsonl", "rec.jsonl.bad"), lambda: [a_line().replace(
            '"model_options":{}', '"model_options":' + '{"a":' * 100_000 + "1" + "}" * 100_000)])))
    add("json-array-line", "2", "a line that is a JSON array: table3",
        with_lines(lambda: [a_line(), "[1, 2, 3]", b_line()], table3()), works(holds("t3.md", "A", "B"),
                                                                              stderr=("rec.jsonl:2",)))
    add("previous-garbage", "2", "previous holds strings and NaN, sealed: table3",
        with_lines(lambda: [seal({**a(), "previous": ["x", {"psnr": 1.0, "ssim": "y"}]}), b_line()], table3()),
        either(markdown_sound("t3.md"), words=("rec.jsonl",)))
    add("date-not-a-date", "2", 'two records of one identity, date "zzz" and a real one: verify',
        with_lines(lambda: [seal(consistent({**a(), "date": "zzz"}, 50.0)), a_line()], verify("rec.jsonl")),
        refused_verify("conflict"))

    # ---- also: a record from a newer sr_bench, and the files themselves --------------------------------
    newer = lambda: [seal({**a(), "lpips": 0.1}), b_line()]  # noqa: E731
    add("unknown-field-kept-on-append", "also", "a record with an unknown field (newer sr_bench); evaluate appends",
        with_lines(newer, evaluate_a()),
        works(lines_kept("rec.jsonl", lambda: newer()), absent("rec.jsonl.bad"), stderr=("rec.jsonl:1",)))
    add("schema-4-kept-on-append", "also", "a schema-4 record; evaluate appends",
        with_lines(lambda: [a_line().replace('"schema":3', '"schema":4')], evaluate_a()),
        works(lines_kept("rec.jsonl", lambda: [a_line().replace('"schema":3', '"schema":4')]), absent("rec.jsonl.bad")))
    add("unknown-field-table3-note", "also", "a record with an unknown field: table3 leaves it out with a note",
        with_lines(newer, table3()), works(holds("t3.md", "B"), stderr=("rec.jsonl:1", "newer")))
    add("crlf-records-table3", "also", "records with CRLF line ends (edited on Windows): table3 shows both",
        with_lines(lambda: WORLD.lines(), table3(), ending="\r\n"), works(holds("t3.md", "| A | B |")))
    add("crlf-records-verify", "also", "records with CRLF line ends: verify",
        with_lines(lambda: WORLD.lines(), verify("rec.jsonl"), ending="\r\n"), works())
    add("bom-records-table3", "also", "records saved with a UTF-8 BOM (Notepad): table3 shows both",
        bom_setup(table3()), works(holds("t3.md", "| A | B |")))
    add("bom-records-append", "also", "records with a UTF-8 BOM; evaluate appends (first record kept usable)",
        bom_setup(evaluate_a()), works(absent("rec.jsonl.bad")))
    add("truncated-last-line-append", "also", "the last line cut mid-record; evaluate appends",
        with_lines(lambda: [a_line(), b_line()[:200]], evaluate_a()),
        works(lines_kept("rec.jsonl", lambda: [a_line()]), holds("rec.jsonl.bad", b_line()[:200], outcome="loss")))
    add("no-final-newline-append", "also", "the last line lacks its newline; evaluate appends",
        no_newline_setup, works(lines_kept("rec.jsonl", lambda: WORLD.lines()), absent("rec.jsonl.bad")))
    add("zero-byte-records-table3", "also", "a 0-byte records file: table3", with_lines(lambda: [], table3()),
        either(markdown_sound("t3.md"), words=("rec.jsonl",)))
    add("zero-byte-records-compare", "also", "a 0-byte records file: compare", with_lines(lambda: [], compare()),
        refused("'A'"))
    add("records-is-folder-evaluate", "also", "--records names a folder: evaluate", folder_records(evaluate_a()),
        refused("rec.jsonl", "folder"))
    add("records-is-folder-compare", "also", "--records names a folder: compare", folder_records(compare()),
        refused("rec.jsonl", "folder"))
    add("records-is-folder-verify", "also", "a folder given to records verify", folder_records(verify("rec.jsonl")),
        refused("rec.jsonl", "folder"))
    add("records-binary", "also", "a records file of random bytes: table3", binary_records(table3()),
        refused("rec.jsonl"))
    add("records-latin1-line", "also", "one line with a Latin-1 byte in a label: table3", latin1_records(table3()),
        either(holds("t3.md", "B"), words=("rec.jsonl",)))
    add("records-latin1-line-append", "also", "one line with a Latin-1 byte; evaluate appends (the line set aside "
        "byte for byte)", latin1_records(evaluate_a()),
        works(latin1_set_aside, holds("rec.jsonl", '"label":"B"')))
    add("records-is-a-checkpoint", "also", "--records names a torch checkpoint by mistake: evaluate",
        checkpoint_records,
        refused("rec.jsonl", checks=(file_unchanged("rec.jsonl", lambda w: (w / "sha").read_text()),
                                     absent("rec.jsonl.bad"))))
    add("record-host-lone-surrogate", "also", 'a sealed record whose host is "cpu \\udcff" (a lone surrogate): table3',
        with_lines(lambda: [seal({**a(), "host": "cpu \udcff"}), b_line()], table3()),
        either(holds("t3.md", "| B |"), words=("rec.jsonl",)))
    add("records-fifo", "also", "--records names a FIFO: table3", fifo_records(table3()), refused("rec.jsonl", "fifo"),
        timeout=30)
    add("records-dev-zero", "also", "--records is a symlink to /dev/zero: verify",
        dev_zero_records(verify("rec.jsonl")), refused("rec.jsonl", "device"), timeout=30)
    add("records-fifo-evaluate", "also", "--records names a FIFO: evaluate (nothing writes to it)",
        fifo_records(evaluate_a()), refused("rec.jsonl", "fifo"), timeout=60)
    add("per-image-fifo-evaluate", "also", "--per-image names a FIFO: evaluate", fifo_csv, refused("pi.csv", "fifo"),
        timeout=60)
    # outputs that are the records they are made from
    same = lambda argv: with_lines(lambda: WORLD.lines(), argv)  # noqa: E731
    unchanged = file_unchanged("rec.jsonl", lambda w: hashlib.sha256(WORLD.records.read_bytes()).hexdigest())
    add("table3-out-is-records", "also", "table3 --records rec.jsonl --out rec.jsonl",
        same(table3("rec.jsonl", "rec.jsonl")), refused("same file", checks=(unchanged,)))
    add("compare-out-is-records", "also", "compare --out ./rec.jsonl (the records, spelled another way)",
        same(compare("rec.jsonl", "./rec.jsonl")), refused("same file", checks=(unchanged,)))
    add("table3-out-symlink-to-records", "also", "table3 --out t3.md, a symlink to the records",
        lambda w: (same(table3())(w), (w / "t3.md").symlink_to("rec.jsonl"))[0],
        refused("same file", checks=(unchanged,)))
    add("evaluate-table-is-records", "also", "evaluate --table rec.jsonl --records rec.jsonl",
        same(evaluate_a("rec.jsonl", "--table", "rec.jsonl")), refused("same file", checks=(unchanged,)))
    add("evaluate-per-image-is-records", "also", "evaluate --per-image rec.jsonl --records rec.jsonl",
        same(evaluate_a("rec.jsonl", "--per-image", "rec.jsonl")), refused("same file", checks=(unchanged,)),
        timeout=60)
    add("evaluate-per-image-hard-link-to-records", "also", "--per-image pi.csv, a hard link to the records",
        lambda w: (same(evaluate_a("rec.jsonl", "--per-image", "pi.csv"))(w),
                   os.link(w / "rec.jsonl", w / "pi.csv"))[0],
        refused("same file", checks=(unchanged,)), timeout=60)
    add("per-image-no-lock-left", "also", "evaluate --per-image leaves no .lock beside the CSV",
        lambda w: evaluate_a("rec.jsonl", "--per-image", "pi.csv"), works(no_lock_files))
    add("concurrent-appends", "also", "four evaluates append to one records file at once", concurrent_setup,
        works(lambda r: None if len(_lines(r.work / "rec.jsonl")) == 4 else
              f"loss: {len(_lines(r.work / 'rec.jsonl'))} of 4 records"), timeout=300)

    # ---- 5: records through a symlink ---------------------------------------------------------------
    add("records-symlink-written-through", "5", "records.jsonl is a symlink to a shared file; evaluate appends",
        symlink_setup("shared/rec.jsonl"),
        works(symlink_kept, holds("shared/rec.jsonl", '"label":"C"', outcome="loss")))
    add("records-symlink-relative-chain", "5", "a relative symlink to a symlink to the shared file",
        chain_setup, works(symlink_kept, holds("shared/real.jsonl", '"label":"C"', outcome="loss")))
    add("records-symlink-dangling-folder", "5", "records.jsonl links into a folder that does not exist",
        dangling_setup, refused("rec.jsonl", "symlink"))
    add("records-symlink-loop", "5", "records.jsonl is a symlink to itself: evaluate", loop_setup(evaluate_a()),
        refused("rec.jsonl", "loop"))
    add("records-symlink-loop-table3", "5", "records.jsonl is a symlink to itself: table3", loop_setup(table3()),
        refused("rec.jsonl", "loop"))
    add("records-symlink-loop-compare", "5", "records.jsonl is a symlink to itself: compare", loop_setup(compare()),
        refused("rec.jsonl", "loop"))
    add("records-symlink-loop-verify", "5", "records.jsonl is a symlink to itself: verify",
        loop_setup(verify("rec.jsonl")), refused("rec.jsonl", "loop"))
    add("table-out-symlink", "5", "table3 --out is a symlink to a shared table", table_symlink_setup,
        works(lambda r: None if (r.work / "t3.md").is_symlink() else "loss: the link was replaced by a file",
              holds("shared/t3.md", "| A | B |", outcome="loss")))

    # ---- 7: labels -------------------------------------------------------------------------------------
    for name, label in (("newline", "a\nb"), ("pipe", "a|b"), ("tab", "a\tb"), ("escape", "\x1b[31mred"),
                        ("bidi-override", "abc\u202edcba"), ("line-separator", "a\u2028b"),
                        ("only-spaces", "   "), ("del", "a\x7fb")):
        expect = works(markdown_sound("t3.md")) if name == "pipe" else refused("--label")
        add(f"label-{name}", "7", f"evaluate --label {label!r}",
            lambda w, lab=label: evaluate_a("rec.jsonl", "--table", "t3.md", label=lab), expect)
    for start in ("=", "+", "-", "@"):
        add(f"label-formula-{start}", "7", f"--label {start}HYPERLINK(...) with --per-image",
            lambda w, s=start: evaluate_a("rec.jsonl", "--per-image", "pi.csv", label=f'{s}HYPERLINK("http://x","y")'),
            works(csv_sound("pi.csv"), holds("pi.csv", "HYPERLINK")))
    add("label-html", "7", "--label '<img src=x onerror=alert(1)>'",
        lambda w: evaluate_a("rec.jsonl", "--table", "t3.md", label="<img src=x onerror=alert(1)>"),
        works(markdown_sound("t3.md")))
    add("label-backtick-pipe", "7", "--label 'a`|`b' (breaks code spans)",
        lambda w: evaluate_a("rec.jsonl", "--table", "t3.md", label="a`|`b"), works(markdown_sound("t3.md")))
    add("label-unicode", "7", "--label 'EDSR 残差 🚀 ünï'",
        lambda w: evaluate_a("rec.jsonl", "--table", "t3.md", label="EDSR 残差 🚀 ünï"),
        works(holds("t3.md", "残差 🚀")))
    add("label-zero-width", "7", "--label with a zero-width joiner and a combining mark",
        lambda w: evaluate_a("rec.jsonl", "--table", "t3.md", label="A\u200d\u0301"), either(markdown_sound("t3.md")))
    add("label-non-utf8-bytes", "7", "--label given as the bytes b'\\xff\\xfe' (not UTF-8)",
        lambda w: evaluate_a("rec.jsonl", "--per-image", "pi.csv", label=os.fsdecode(b"\xff\xfe")),
        either(csv_sound("pi.csv"), words=("--label",)))
    add("label-1000-compare", "7", "compare two 1000-character labels (the output file name)", long_labels_setup,
        works(lambda r: None if list(r.work.glob("res/compare-*.md")) else "silently wrong: no comparison written"))
    add("label-slash-dotdot-compare", "7", "compare labels '../../escaped' and 'B' (file name from a label)",
        slash_label_setup, works(nothing_outside, lambda r: None if list(r.work.glob("res/compare-*.md"))
                                 else "silently wrong: no comparison written"))
    add("record-label-newline", "7", "a sealed record whose label holds a newline: table3",
        with_lines(lambda: [seal({**a(), "label": "x\n| y | z |"}), b_line()], table3()),
        either(markdown_sound("t3.md"), words=("rec.jsonl",)))
    add("record-label-formula-csv", "7", "a folder dataset image named '=1+1.png' with --per-image",
        formula_image_setup, works(csv_sound("pi.csv"), holds("pi.csv", "1+1")))
    add("record-dataset-pipe", "7", "a folder dataset named 'a|b' (the Dataset cell): table3", pipe_dataset_setup,
        works(markdown_sound("t3.md")))

    # ---- 9: hostile archives ------------------------------------------------------------------------------
    for kind, what in ARCHIVES.items():
        add(f"archive-{kind}", "9", what, archive_setup(kind), archive_judge(kind), timeout=120)

    # ---- 10: full and read-only disks under outputs -------------------------------------------------------
    for mode in ("full", "ro"):
        add(f"compare-out-{mode}", "10", f"compare --out on a {mode} disk",
            disk_setup(compare("rec.jsonl", "disk/cmp.md")), refused("disk/cmp.md", checks=(absent("disk/cmp.md"),)),
            disk=mode)
        add(f"table3-out-{mode}", "10", f"table3 --out on a {mode} disk",
            disk_setup(table3("rec.jsonl", "disk/t3.md")), refused("disk/t3.md", checks=(absent("disk/t3.md"),)),
            disk=mode)
        add(f"evaluate-records-{mode}", "10", f"evaluate --records on a {mode} disk (a record there already)",
            disk_setup(evaluate_a("disk/rec.jsonl"), stage_records=True),
            refused("disk/", "rec.jsonl", checks=(disk_unchanged("rec.jsonl"),)), disk=mode)
        add(f"evaluate-per-image-{mode}", "10", f"--per-image on a {mode} disk, records elsewhere: in step",
            disk_setup(evaluate_a("rec.jsonl", "--per-image", "disk/pi.csv")),
            refused("disk/", "pi.csv", checks=(in_step,)), disk=mode)
        add(f"records-upgrade-{mode}", "10", f"records upgrade on a {mode} disk",
            disk_setup(["-m", "sr_bench.records", "upgrade", "disk/rec.jsonl"], stage_records=True, legacy=True),
            refused("disk/", "rec.jsonl", checks=(disk_unchanged("rec.jsonl"),)), disk=mode)
        add(f"evaluate-results-{mode}", "10", f"evaluate --results on a {mode} disk",
            disk_setup([*EVAL_A, "--datasets", str(WORLD_DS), "--label", "C", "--results", "disk/res"]),
            refused("disk", checks=(absent("disk/res/records.jsonl"),)), disk=mode)
    add("verify-read-only", "10", "records verify on a read-only disk (reading needs no write)",
        disk_setup(verify("disk/rec.jsonl"), stage_records=True), works(), disk="ro")
    add("table3-reads-read-only", "10", "table3 of records on a read-only disk, --out elsewhere",
        disk_setup(table3("disk/rec.jsonl", "t3.md"), stage_records=True), works(holds("t3.md", "| A | B |")),
        disk="ro")
    add("compare-reads-read-only", "10", "compare of records on a read-only disk, --out elsewhere",
        disk_setup(compare("disk/rec.jsonl", "cmp.md"), stage_records=True), works(holds("cmp.md", "A")), disk="ro")
    add("per-image-csv-nearly-full", "10", "--per-image where the records fit but the CSV does not",
        disk_setup(evaluate_a("disk/rec.jsonl", "--per-image", "disk/pi.csv"), stage_records=True, big_csv=True),
        refused("disk", checks=(disk_unchanged("rec.jsonl"),)), disk="nearly-full")

    # ---- 13: mixed-up paths (variants of the first sweep's) --------------------------------------------------
    add("weights-symlink-to-folder", "13", "--weights is a symlink to a folder", weights_link_setup,
        refused("w.pt", "folder"))
    add("weights-module-prefix", "13", "a DataParallel checkpoint (every key under 'module.'): loaded, and said",
        ckpt_setup("module"), works(stderr=("module.",)))
    add("weights-wrapped-state-dict", "13", "a checkpoint {'state_dict': ..., 'epoch': 3}", ckpt_setup("wrapped"),
        either(words=("w.pt", "state_dict")))
    add("weights-other-scale", "13", "an x3 checkpoint given for x2 (tail shapes differ)", ckpt_setup("x3"),
        refused("w.pt", "tail"))
    add("weights-zip-not-torch", "13", "a zip file that is not a torch checkpoint", ckpt_setup("zip"), refused("w.pt"))
    add("weights-pickle-code", "13", "a pickle that would run code when loaded unsafely", ckpt_setup("pickle"),
        refused("w.pt", checks=(absent("pwned"),)))
    add("data-root-empty-string", "13", "SR_BENCH_DATA='' (set but empty), a registered dataset",
        lambda w: [*EVAL_A, "--datasets", "Set5", "--records", "rec.jsonl"], refused("Set5"),
        env={"SR_BENCH_DATA": ""})
    add("data-root-fifo", "13", "--data-root names a FIFO", fifo_root, refused("root"), timeout=30)
    add("cache-is-a-file", "13", "SR_BENCH_CACHE names a file", lambda w: (w / "cachefile").write_text("x") and
        evaluate_a(), either(words=("cachefile",)), env={"SR_BENCH_CACHE": "cachefile"})
    add("results-is-a-file", "13", "--results names a file",
        lambda w: (w / "resfile").write_text("x") and [*EVAL_A, "--datasets", str(WORLD_DS), "--label", "C",
                                                       "--results", "resfile"], refused("resfile"))
    add("records-parent-is-file", "13", "--records under a path whose parent is a file",
        lambda w: (w / "afile").write_text("x") and evaluate_a("afile/rec.jsonl"), refused("afile"))
    return S


def refused_verify(*words: str) -> Judge:
    """``records verify`` finding a problem: exit 1, the words on stdout (its report), no traceback."""
    def judge(r: Run) -> tuple[str, str]:
        outcome, note = basic(r)
        if outcome in ("hang", "traceback"):
            return outcome, note
        if r.rc == 0:
            return "silently wrong", "verify passed: " + (r.out.strip().splitlines() or [""])[-1][:160]
        report = r.out + r.err
        missing = [w for w in words if w.lower() not in report.lower()]
        if r.rc != 1 or missing:
            return "unclear", f"exit {r.rc}, lacks {missing}: " + (report.strip().splitlines() or [""])[0][:160]
        return "clear error", [ln for ln in report.splitlines() if ln.strip()][0][:200]
    return judge


WORLD_DS = Path()  # set by main(), for argv built at import of the scenario list


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


def dropped_row(data: dict) -> dict:
    rows = data["per_image"][:-1]
    return {**data, "per_image": rows, "psnr": sum(p["psnr"] for p in rows) / len(rows),
            "ssim": sum(p["ssim"] for p in rows) / len(rows)}


def inf_row(data: dict) -> dict:
    rows = [{**data["per_image"][0], "psnr": float("inf")}, *data["per_image"][1:]]
    return {**data, "per_image": rows}


def bom_setup(argv: list[str]) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        (work / "rec.jsonl").write_bytes(b"\xef\xbb\xbf" + WORLD.records.read_bytes())
        return argv
    return setup


def no_newline_setup(work: Path) -> list[str]:
    (work / "rec.jsonl").write_bytes(WORLD.records.read_bytes().rstrip(b"\n"))
    return evaluate_a()


def folder_records(argv: list[str]) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        (work / "rec.jsonl").mkdir()
        return argv
    return setup


def binary_records(argv: list[str]) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        (work / "rec.jsonl").write_bytes(bytes(range(256)) * 64)
        return argv
    return setup


def latin1_records(argv: list[str]) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        bad = json.dumps({**WORLD.record("A"), "label": "café"}, ensure_ascii=False).encode("latin-1")
        lines = [ln.encode() for ln in WORLD.lines() if json.loads(ln)["label"] == "B"]
        (work / "rec.jsonl").write_bytes(bad + b"\n" + b"\n".join(lines) + b"\n")
        return argv
    return setup


def latin1_set_aside(r: Run) -> str | None:
    aside = r.work / "rec.jsonl.bad"
    if not aside.exists():
        return "loss: the Latin-1 line is gone (no rec.jsonl.bad)"
    return None if b"caf\xe9" in aside.read_bytes() else "loss: rec.jsonl.bad lacks the line's bytes"


def checkpoint_records(work: Path) -> list[str]:
    import torch

    torch.save({"w": torch.arange(1000.0)}, work / "rec.jsonl")
    (work / "sha").write_text(hashlib.sha256((work / "rec.jsonl").read_bytes()).hexdigest())
    return evaluate_a()


def fifo_records(argv: list[str]) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        os.mkfifo(work / "rec.jsonl")
        return argv
    return setup


def fifo_csv(work: Path) -> list[str]:
    os.mkfifo(work / "pi.csv")
    return evaluate_a("rec.jsonl", "--per-image", "pi.csv")


def dev_zero_records(argv: list[str]) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        (work / "rec.jsonl").symlink_to("/dev/zero")
        return argv
    return setup


def no_lock_files(r: Run) -> str | None:
    locks = [p.relative_to(r.work).as_posix() for p in r.work.rglob("*") if p.name.endswith(".lock")
             or p.name == ".locks"]
    return f"silently wrong: lock files left: {locks}" if locks else None


def concurrent_setup(work: Path) -> list[str]:
    code = (
        "import subprocess, sys\n"
        f"ps = [subprocess.Popen([sys.executable, *{EVAL_A!r}, '--datasets', {str(WORLD.ds)!r}, '--label', f'L{{i}}', "
        "'--records', 'rec.jsonl', '--per-image', 'pi.csv'], stderr=subprocess.PIPE, text=True) for i in range(4)]\n"
        "rcs = [p.wait() for p in ps]\n"
        "errs = [p.stderr.read() for p in ps]\n"
        "sys.stderr.write(''.join(errs))\n"
        "sys.exit(max(rcs))\n"
    )
    return ["-c", code]


def symlink_setup(target: str) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        shared = work / target
        shared.parent.mkdir(parents=True)
        shutil.copy(WORLD.records, shared)
        (work / "rec.jsonl").symlink_to(shared)
        return evaluate_a()
    return setup


def symlink_kept(r: Run) -> str | None:
    return None if (r.work / "rec.jsonl").is_symlink() else "loss: the symlink was replaced by a regular file"


def chain_setup(work: Path) -> list[str]:
    (work / "shared").mkdir()
    shutil.copy(WORLD.records, work / "shared" / "real.jsonl")
    (work / "shared" / "link.jsonl").symlink_to("real.jsonl")
    (work / "rec.jsonl").symlink_to("shared/link.jsonl")
    return evaluate_a()


def dangling_setup(work: Path) -> list[str]:
    (work / "rec.jsonl").symlink_to(work / "unmounted" / "rec.jsonl")
    return evaluate_a()


def loop_setup(argv: list[str]) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        (work / "rec.jsonl").symlink_to("rec.jsonl")
        return argv
    return setup


def table_symlink_setup(work: Path) -> list[str]:
    shutil.copy(WORLD.records, work / "rec.jsonl")
    (work / "shared").mkdir()
    (work / "shared" / "t3.md").write_text("old table\n")
    (work / "t3.md").symlink_to(work / "shared" / "t3.md")
    return table3()


def long_labels_setup(work: Path) -> list[str]:
    lines = []
    for line in WORLD.lines():
        data = json.loads(line)
        lines.append(seal({**data, "label": data["label"] * 1000}))
    write_records(work, lines)
    return ["-m", "sr_bench.compare", "A" * 1000, "B" * 1000, "--records", "rec.jsonl", "--results", "res"]


def slash_label_setup(work: Path) -> list[str]:
    lines = []
    for line in WORLD.lines():
        data = json.loads(line)
        lines.append(seal({**data, "label": "../../escaped" if data["label"] == "A" else "B"}))
    write_records(work, lines)
    return ["-m", "sr_bench.compare", "../../escaped", "B", "--records", "rec.jsonl", "--results", "res"]


def formula_image_setup(work: Path) -> list[str]:
    ds = work / "=cmd|' -C calc'!A0"
    ds.mkdir()
    for i, p in enumerate(sorted(WORLD.ds.iterdir())):
        shutil.copy(p, ds / (["=1+1", "@SUM(1)", "-2+3"][i] + ".png"))
    return [*EVAL_A, "--datasets", str(ds), "--label", "C", "--records", "rec.jsonl", "--per-image", "pi.csv"]


def pipe_dataset_setup(work: Path) -> list[str]:
    ds = work / "a|b<script>"
    shutil.copytree(WORLD.ds, ds)
    return [*EVAL_A, "--datasets", str(ds), "--label", "C", "--records", "rec.jsonl", "--table", "t3.md"]


def fifo_root(work: Path) -> list[str]:
    os.mkfifo(work / "root")
    return [*EVAL_A, "--datasets", "Set5", "--records", "rec.jsonl", "--data-root", "root"]


# --- archives --------------------------------------------------------------------------------------------

ARCHIVES = {
    "ok": "a sound benchmark.tar holding Set5 (the real files)",
    "tar-dotdot": "tar entry ../escaped",
    "tar-absolute": "tar entry /tmp/<work>/escaped (absolute)",
    "tar-symlink-out": "tar symlink entry pointing outside, then a file through it",
    "tar-hardlink-out": "tar hard link to a file outside (../../escaped_target)",
    "tar-hardlink-inside": "tar hard link to a file inside the archive",
    "tar-chardev": "tar character device entry",
    "tar-fifo": "tar FIFO entry",
    "tar-setuid": "tar file with mode 4755 (setuid)",
    "tar-duplicate": "the same file twice with different content",
    "tar-file-then-dir": "a file 'benchmark/Set5' then 'benchmark/Set5/HR/x.png'",
    "tar-truncated": "a tar cut in the middle of an entry",
    "tar-long-name": "an entry with a 300-character file name",
    "tar-huge-declared": "an entry whose header declares 1 TB (the archive ends after it)",
    "zip-dotdot": "a zip (named benchmark.tar) with entry ../escaped",
    "zip-absolute": "a zip entry /escaped",
    "zip-backslash": "a zip entry ..\\..\\escaped (Windows separators)",
    "zip-symlink": "a zip entry with symlink mode bits pointing to /etc",
    "zip-bomb-overlap": "300 zip entries sharing one 256 MB deflate of zeros (75 GB from 250 KB)",
    "zip-size-lies": "a zip entry whose header says 10 bytes but inflates to 10 MB",
    "not-an-archive": "benchmark.tar that is a PNG",
    "empty-file": "a 0-byte benchmark.tar",
}


def _tar_bytes(add: Callable[[tarfile.TarFile], None], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        add(tf)
    return buf.getvalue()


def _member(tf: tarfile.TarFile, name: str, data: bytes = b"x", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data) if info.isreg() else None)


def _set5(tf: tarfile.TarFile) -> None:
    src = DATASETS / "Set5"
    for p in sorted(src.rglob("*.png")):
        tf.add(p, f"benchmark/Set5/{p.relative_to(src).as_posix()}")


def _zip_bytes(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def _overlapping_zip(copies: int, size: int) -> bytes:
    """A zip whose central directory lists ``copies`` entries, all pointing at one deflated
    ``size``-byte file of zeros (the overlapping-entries bomb: declared sizes add up, data does not)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf, \
            zf.open("benchmark/Set5/HR/z000.png", "w") as f:
        chunk = b"\0" * (1 << 20)
        for _ in range(size // len(chunk)):
            f.write(chunk)
    data = buf.getvalue()
    start, end = data.rfind(b"PK\x01\x02"), data.rfind(b"PK\x05\x06")
    central = data[start:end]
    eocd = bytearray(data[end:])
    eocd[8:10] = eocd[10:12] = copies.to_bytes(2, "little")
    eocd[12:16] = (len(central) * copies).to_bytes(4, "little")
    named = b"".join(central.replace(b"z000.png", f"z{i:03d}.png".encode()) for i in range(copies))
    return data[:start] + named + bytes(eocd)


def make_archive(kind: str, work: Path) -> bytes:
    escaped = str(work.parent / "escaped")
    if kind == "ok":
        return _tar_bytes(_set5)
    if kind == "tar-dotdot":
        return _tar_bytes(lambda tf: (_set5(tf), _member(tf, "benchmark/../../../escaped_dotdot")))
    if kind == "tar-absolute":
        return _tar_bytes(lambda tf: (_set5(tf), _member(tf, escaped + "_abs")))
    if kind == "tar-symlink-out":
        return _tar_bytes(lambda tf: (_set5(tf), _member(tf, "benchmark/out", type=tarfile.SYMTYPE,
                                                         linkname=str(work.parent)),
                                      _member(tf, "benchmark/out/escaped_via_link")))
    if kind == "tar-hardlink-out":
        (work.parent / "target_do_not_touch").touch(exist_ok=True)
        return _tar_bytes(lambda tf: (_set5(tf), _member(tf, "benchmark/hl", type=tarfile.LNKTYPE,
                                                         linkname="../../target_do_not_touch")))
    if kind == "tar-hardlink-inside":
        return _tar_bytes(lambda tf: (_set5(tf), _member(tf, "benchmark/Set5/copy.png", type=tarfile.LNKTYPE,
                                                         linkname="benchmark/Set5/HR/baby.png")))
    if kind == "tar-chardev":
        return _tar_bytes(lambda tf: (_set5(tf), _member(tf, "benchmark/null", type=tarfile.CHRTYPE, devmajor=1,
                                                         devminor=3)))
    if kind == "tar-fifo":
        return _tar_bytes(lambda tf: (_set5(tf), _member(tf, "benchmark/fifo", type=tarfile.FIFOTYPE)))
    if kind == "tar-setuid":
        return _tar_bytes(lambda tf: (_set5(tf), _member(tf, "benchmark/run.sh", b"#!/bin/sh\n", mode=0o4755)))
    if kind == "tar-duplicate":
        return _tar_bytes(lambda tf: (_set5(tf), _member(tf, "benchmark/Set5/HR/baby.png", b"not a png")))
    if kind == "tar-file-then-dir":
        return _tar_bytes(lambda tf: (_member(tf, "benchmark/Set5", b"a file"), _set5(tf)))
    if kind == "tar-truncated":
        whole = _tar_bytes(_set5)
        return whole[: len(whole) // 2 + 100]
    if kind == "tar-long-name":
        return _tar_bytes(lambda tf: (_set5(tf), _member(tf, "benchmark/" + "n" * 300 + ".png")))
    if kind == "tar-huge-declared":
        info = tarfile.TarInfo("benchmark/huge")
        info.size = 1 << 40  # the header says 1 TB; the archive ends after it
        buf = io.BytesIO()
        tf = tarfile.open(fileobj=buf, mode="w")  # not closed: no end-of-archive blocks before the header
        _set5(tf)
        return buf.getvalue()[:tf.offset] + info.tobuf(tarfile.GNU_FORMAT) + b"\0" * 1024
    if kind == "zip-dotdot":
        return _zip_bytes([("benchmark/Set5/HR/a.png", b"x"), ("../../escaped_zip", b"x")])
    if kind == "zip-absolute":
        return _zip_bytes([(escaped + "_zipabs", b"x")])
    if kind == "zip-backslash":
        return _zip_bytes([("..\\..\\escaped_bs", b"x")])
    if kind == "zip-symlink":
        info = zipfile.ZipInfo("benchmark/up")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        return _zip_bytes([(info, str(work.parent).encode()), ("benchmark/up/escaped_zl", b"x")])
    if kind == "zip-bomb-overlap":
        return _overlapping_zip(300, 256 << 20)
    if kind == "zip-size-lies":
        real = _zip_bytes([("benchmark/Set5/HR/lie.png", b"\0" * (10 << 20))])
        return _patch_zip_sizes(real, 10)
    if kind == "not-an-archive":
        return (DATASETS / "Set5" / "HR" / "baby.png").read_bytes()
    if kind == "empty-file":
        return b""
    raise KeyError(kind)


def _patch_zip_sizes(data: bytes, size: int) -> bytes:
    """Rewrite the uncompressed size in the local header and the central directory to ``size``."""
    out = bytearray(data)
    local = out.find(b"PK\x03\x04")
    out[local + 22:local + 26] = size.to_bytes(4, "little")
    central = out.find(b"PK\x01\x02")
    out[central + 24:central + 28] = size.to_bytes(4, "little")
    return bytes(out)


def archive_setup(kind: str) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        www = work / "www"
        www.mkdir()
        data = make_archive(kind, work)
        (www / "benchmark.tar").write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        return ["-m", "sr_bench.data", "download", "Set5", "--data-root", "root", "--sha256", digest, "--no-progress",
                "--retries", "0"]
    return setup


def archive_judge(kind: str) -> Judge:
    def unpacked_nothing(r: Run) -> str | None:
        root = r.work / "root"
        left = [p.relative_to(root).as_posix() for p in root.rglob("*") if root.exists()
                and not p.relative_to(root).as_posix().startswith("downloads") and p.is_file()] if root.exists() else []
        return f"silently wrong: left partial files {left[:3]}" if left else None

    def target_untouched(r: Run) -> str | None:
        t = r.work.parent / "target_do_not_touch"
        return "injection: a file outside was changed" if t.exists() and t.stat().st_size else None

    if kind == "ok":
        return works(holds("root/benchmark/Set5/HR/baby.png", ""), holds("root/DOWNLOADS.tsv", "benchmark.tar"))
    if kind in ("tar-hardlink-inside", "tar-setuid", "tar-long-name"):
        return either(nothing_outside, target_untouched, words=("benchmark.tar",))
    return refused("benchmark.tar", checks=(nothing_outside, target_untouched, unpacked_nothing))


# --- disks -------------------------------------------------------------------------------------------------


def disk_setup(argv: list[str], stage_records: bool = False, legacy: bool = False,
               big_csv: bool = False) -> Callable[[Path], list[str]]:
    """``work/rec.jsonl`` (for commands reading it beside the disk) and ``work/stage`` (the disk's
    files); ``legacy``: schema-2 records (so that upgrade has work); ``big_csv``: leave room for
    the records' write, not for the CSV's."""
    def setup(work: Path) -> list[str]:
        shutil.copy(WORLD.records, work / "rec.jsonl")
        (work / "stage").mkdir()
        if stage_records:
            lines = WORLD.lines()
            if legacy:
                lines = [json.dumps({k: v for k, v in {**json.loads(ln), "schema": 2}.items() if k != "checksum"})
                         for ln in lines]
            write_records(work / "stage", lines)
        if big_csv:
            shutil.copy(WORLD.csv, work / "stage" / "pi.csv")
            with open(work / "stage" / "pi.csv", "a") as f:
                for i in range(3000):
                    f.write(f"{WORLD.ds},2,pad{i},Z,false,30.0,0.9\n")
        return argv
    return setup


def disk_unchanged(name: str) -> Callable[[Run], str | None]:
    def check(r: Run) -> str | None:
        before = r.work / "stage" / name
        after = r.work / "disk_after" / name
        if not before.exists():
            return None
        if not after.exists():
            return f"loss: disk/{name} is gone"
        return None if before.read_bytes() == after.read_bytes() else f"loss: disk/{name} changed"
    return check


def in_step(r: Run) -> str | None:
    """The records gained no record whose per-image rows did not reach the CSV."""
    recs = [json.loads(ln) for ln in _lines(r.work / "rec.jsonl")]
    return "loss: a record was appended though its per-image CSV was not written" if len(recs) > 2 else None


def _disk_script(work: Path, mode: str) -> str:
    disk, stage, after = work / "disk", work / "stage", work / "disk_after"
    fill = (f"dd if=/dev/zero of={disk}/.filler bs=4k >/dev/null 2>&1; "
            f"dd if=/dev/zero of={disk}/.filler2 bs=64 >/dev/null 2>&1; ") if mode in ("full", "nearly-full") else ""
    if mode == "nearly-full":  # room for the records' rewrite (a few KB), not for the CSV's (~150 KB)
        fill += f"rm {disk}/.filler2; truncate -s -24K {disk}/.filler; "
    ro = f"mount -o remount,ro {disk} && " if mode == "ro" else ""
    return (f"mount -t tmpfs -o size=2m tmpfs {disk} && cp -a {stage}/. {disk}/ && {fill}{ro}"
            f"\"$@\"; rc=$?; mkdir -p {after}; cp -a {disk}/. {after}/ 2>/dev/null; rm -f {after}/.filler*; exit $rc")



# --- mixed-up paths ------------------------------------------------------------------------------------


def weights_link_setup(work: Path) -> list[str]:
    (work / "wdir").mkdir()
    (work / "w.pt").symlink_to(work / "wdir")
    return [*EVAL_B[:5], "w.pt", *EVAL_B[6:], "--datasets", str(WORLD.ds), "--records", "rec.jsonl"]


def ckpt_setup(kind: str) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        import torch

        from sr_bench import models

        sd = models.create("edsr-baseline", scale=3 if kind == "x3" else 2, blocks=1, filters=8).state_dict()
        path = work / "w.pt"
        if kind == "module":
            torch.save({f"module.{k}": v for k, v in sd.items()}, path)
        elif kind == "wrapped":
            torch.save({"state_dict": sd, "epoch": 3}, path)
        elif kind == "x3":
            torch.save(sd, path)
        elif kind == "zip":
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("readme.txt", "hello")
        elif kind == "pickle":
            import pickle

            class Evil:
                def __reduce__(self):
                    return (os.system, (f"touch {work / 'pwned'}",))

            path.write_bytes(pickle.dumps({"head.0.weight": Evil()}))
        return [*EVAL_B[:5], "w.pt", *EVAL_B[6:], "--datasets", str(WORLD.ds), "--records", "rec.jsonl"]
    return setup


# --- running -----------------------------------------------------------------------------------------------


def run_one(s: Scenario, work: Path, unshare: bool) -> tuple[str, str, float]:
    work.mkdir(parents=True)
    (work / "home").mkdir()
    (work / "disk").mkdir()
    try:
        argv = [WORLD.python, *s.setup(work)]
    except Exception as e:  # noqa: BLE001 - a setup this machine cannot do is n/a, not a finding
        return "n/a", f"setup failed: {type(e).__name__}: {e}", 0.0
    env = _env(work, {**s.env, "SR_BENCH_DATA_URL": f"file://{work / 'www'}"})
    if "SR_BENCH_DATA" in s.env:
        env["SR_BENCH_DATA"] = s.env["SR_BENCH_DATA"]
    if s.disk is not None:
        if not unshare:
            return "n/a", "needs unshare -rm (a mount namespace) for a real tmpfs", 0.0
        argv = ["unshare", "-rm", "sh", "-c", _disk_script(work, s.disk), "sh", *argv]
    t0 = time.monotonic()
    rc, out, err = run_command(argv, work, env, s.timeout)
    r = Run(rc, out, err, time.monotonic() - t0, work)
    outcome, note = s.judge(r)
    return outcome, note.replace(str(work), "<work>"), r.seconds


def main() -> int:
    global WORLD, WORLD_DS, CODE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--code", type=Path, default=ROOT, help="the sr_bench tree to run (default: this checkout)")
    ap.add_argument("-k", default="", help="only scenarios whose name holds this")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    CODE = args.code.resolve()
    top = Path(tempfile.mkdtemp(prefix="sr_bench_records_sweep_"))
    rows = []
    try:
        WORLD = build_world(top / "world", sys.executable)
        WORLD_DS = WORLD.ds
        chosen = [s for s in scenarios() if args.k in s.name]
        unshare = unshare_works()
        for i, s in enumerate(chosen):
            box = top / f"s{i:03d}"  # each scenario's own parent: archive escapes land in it, beside work
            box.mkdir()
            outcome, note, seconds = run_one(s, box / "work", unshare)
            for p in box.iterdir():  # a clean slate for the next: nothing outside survives into it
                if p.name != "work":
                    p.unlink() if not p.is_dir() or p.is_symlink() else shutil.rmtree(p)
            rows.append((s, outcome, note))
            print(f"{s.name:36} {outcome:15} {seconds:5.1f}s  {note[:150]}", flush=True)
    finally:
        if args.keep:
            print(f"kept {top}")
        else:
            shutil.rmtree(top, ignore_errors=True)
    counts = {k: sum(o == k for _, o, _ in rows) for k in OUTCOMES}
    print("\n" + ", ".join(f"{k}: {v}" for k, v in counts.items() if v) + f" ({len(rows)} scenarios)")
    if args.markdown:
        print("\n| scenario | class | what | result | message |\n|---|---|---|---|---|")
        for s, outcome, note in rows:
            print(f"| {s.name} | {s.klass} | {s.what} | {outcome} | {note[:200].replace('|', '/')} |")
    bad = sum(v for k, v in counts.items() if k not in ("ok", "clear error", "n/a"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
