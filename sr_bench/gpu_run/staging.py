"""What travels to the GPU machine with the checkout, and what comes back.

The machine receives a copy of the checkout (tracked files, and untracked ones git does not
ignore) plus a few git-ignored folders named as "carried", 64 MiB in all, and returns at most 8
files of at most 16 MiB each. So:

* :func:`prepare` (run here, where ``$SR_BENCH_DATA`` is) copies the benchmark images that fit
  into the git-ignored :data:`CARRY` folder, byte for byte and in the layout of the data root,
  with their ``MANIFEST.tsv`` rows: Set5, Set14, T91 (the training set), then B100, then
  Urban100; a set that does not fit whole travels as its HR images alone when those fit (its LR
  images are then made on the machine by sr_bench's MATLAB bicubic, which reproduces every
  MATLAB-made LR file of these benchmarks bit for bit; the records say ``lr_source: generated``),
  else stays behind, and Table 3 says it was absent. It prints the exact command to run there.
* :func:`export` packs ``results/gpu`` into one ``gpu-results.tar.gz`` (with the summary and the
  log beside it, to read without unpacking); :func:`import_results` unpacks it here, safely.
"""

from __future__ import annotations

import csv
import io
import os
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sr_bench.data import DatasetNotFound, open_dataset
from sr_bench.data.check import MANIFEST, dataset_files
from sr_bench.download import extract
from sr_bench.errors import UsageError
from sr_bench.images import atomic_write
from sr_bench.records import git_commit

__all__ = ["ARCHIVE", "CARRY", "DEVICE_TREE_LIMIT", "Staged", "export", "import_results", "prepare", "run_command",
           "tree_bytes"]

#: the git-ignored folder that travels as a carried path (relative to the checkout's root)
CARRY = Path(".gpu_carry")
#: what the machine accepts: checkout and carried paths together
DEVICE_TREE_LIMIT = 64 * 2**20
#: left free under the limit: results written between now and the call, other helpers' files
MARGIN = 4 * 2**20
#: the order sets are staged in: evaluation sets from the smallest, the training set before the
#: big ones (no T91, no training), Urban100 last (136 MB of HR images: it never fits)
STAGE_ORDER = ("Set5", "Set14", "T91", "B100", "Urban100")
#: a returned file's size limit
RETURN_LIMIT = 16 * 2**20
ARCHIVE = "gpu-results.tar.gz"


@dataclass(frozen=True)
class Staged:
    """One dataset's fate: ``whole`` (HR and LR files), ``HR only``, or ``absent`` (and why)."""

    name: str
    mode: str
    files: int = 0
    nbytes: int = 0
    why: str = ""


def tree_bytes(checkout: Path) -> int:
    """Bytes of what the machine receives of the checkout: tracked files and untracked ones git
    does not ignore (``git ls-files -co --exclude-standard``)."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=checkout, check=True,
                            capture_output=True).stdout.decode()
    return sum(p.stat().st_size for name in listed.split("\0") if name and (p := checkout / name).is_file())


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _relative(file: Path, root: Path) -> Path:
    try:
        return file.relative_to(root)
    except ValueError:
        return file.resolve().relative_to(root.resolve())


def _choose(source: Path, budget: int) -> tuple[list[Staged], list[Path]]:
    """What fits ``budget`` bytes, in :data:`STAGE_ORDER`; returns the decisions and the files."""
    staged, chosen = [], []
    for name in STAGE_ORDER:
        try:
            ds = open_dataset(name, str(source))
        except DatasetNotFound:
            staged.append(Staged(name, "absent", why=f"not under {source}"))
            continue
        every, hr = dataset_files(ds), [ref.hr_path for ref in ds.images]
        for mode, files in (("whole", every), ("HR only", hr)):
            size = sum(f.stat().st_size for f in files)
            if size <= budget:  # a set without LR files is the same both ways: never "HR only"
                staged.append(Staged(name, mode, len(files), size))
                chosen += files
                budget -= size
                break
        else:
            need = sum(f.stat().st_size for f in hr) / 2**20
            staged.append(Staged(name, "absent", why=f"its HR images alone take {need:.1f} MiB; "
                                                      f"{max(budget, 0) / 2**20:.1f} MiB were left"))
    return staged, chosen


def _manifest_rows(source: Path, files: set[str]) -> str | None:
    """The source's MANIFEST.tsv lines of the staged ``files`` (all columns kept), or None."""
    path = source / MANIFEST
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(reader.fieldnames or ()), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(row for row in reader if row.get("file") in files)
    return out.getvalue()


def prepare(source: Path, checkout: Path, *, carry: Path = CARRY, limit: int = DEVICE_TREE_LIMIT,
            margin: int = MARGIN) -> list[Staged]:
    """Stage into ``checkout / carry / "data"`` the benchmark images of ``source`` that fit beside
    the checkout under ``limit`` (less ``margin`` and whatever else the carry folder holds, such
    as wheels). The folder is rebuilt from scratch (in a temporary folder, then renamed)."""
    source, folder = Path(source), checkout / carry
    if not source.is_dir():
        raise UsageError(f"--data-root {source}: no such folder; point it (or SR_BENCH_DATA) at the benchmark images")
    data = folder / "data"
    budget = limit - margin - tree_bytes(checkout) - (_folder_bytes(folder) - _folder_bytes(data))
    staged, files = _choose(source, budget)
    tmp = folder / ".data-staging"
    shutil.rmtree(tmp, ignore_errors=True)
    for file in files:
        target = tmp / _relative(file, source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    rows = _manifest_rows(source, {_relative(f, source).as_posix() for f in files})
    tmp.mkdir(parents=True, exist_ok=True)
    if rows is not None:
        (tmp / MANIFEST).write_text(rows)
    shutil.rmtree(data, ignore_errors=True)
    os.replace(tmp, data)
    return staged


def run_command(checkout: Path, *, carry: Path = CARRY, budget_min: float = 9.0) -> str:
    """The command line to give the GPU machine (from the checkout's root), installing the carried
    wheels first when there are any. It names this checkout's commit (the copy sent has no
    ``.git``), so make it after the last commit."""
    run = (f"SR_BENCH_COMMIT={shlex.quote(git_commit())} PYTHONUNBUFFERED=1 python3 -m sr_bench.gpu_run "
           f"--budget-min {budget_min:g} "
           f"--data-root {shlex.quote(str(carry / 'data'))} --export \"$OUT\"")
    wheels = checkout / carry / "wheels"
    if wheels.is_dir() and any(wheels.glob("*.whl")):
        return (f"python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "
                f"{shlex.quote(str(carry / 'wheels'))}/*.whl && export PYTHONPATH=/tmp/site || exit 1; {run}")
    return run


def _exported(out: Path) -> list[Path]:
    """The files of ``out`` that travel back: no lock files, nothing hidden."""
    return sorted(p for p in out.rglob("*") if p.is_file() and not p.name.endswith(".lock")
                  and not any(part.startswith(".") for part in p.relative_to(out).parts))


def export(out: Path, dest: Path, extra: Sequence[str] = ("summary.md", "gpu_run.log")) -> list[Path]:
    """``dest/gpu-results.tar.gz`` holding ``out`` (names relative to it), and copies of the
    ``extra`` files of ``out`` beside it; returns the files written (at most 1 + len(extra))."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / ARCHIVE

    def pack(tmp: Path) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            for path in _exported(out):
                tar.add(path, arcname=path.relative_to(out).as_posix(), recursive=False)

    written = [atomic_write(archive, pack)]
    for name in extra:
        if (out / name).is_file():
            written.append(Path(shutil.copyfile(out / name, dest / name)))
    too_big = [p for p in written if p.stat().st_size > RETURN_LIMIT]
    if too_big:
        raise UsageError(f"{', '.join(map(str, too_big))}: over the {RETURN_LIMIT // 2**20} MiB a returned file may "
                         f"take; trim {out} (a long tests.log?) and export again")
    return written


def import_results(archive: Path, out: Path) -> list[Path]:
    """Unpack an exported ``gpu-results.tar.gz`` into ``out`` (files of the same name replaced;
    entries that would leave ``out``, links and devices refused)."""
    if not Path(archive).is_file():
        raise UsageError(f"--import-results {archive}: no such file; give the {ARCHIVE} the GPU run exported")
    return extract(archive, out)
