"""Result records: every number sr_bench produces, with what made it. Tables are views over these.

One JSON object per line (JSON Lines). A file is only ever replaced whole (temp file + rename), so
an interrupted run never leaves a half-written line behind, and every read-merge-replace holds a
lock on ``<file>.lock`` so two processes appending to one file never lose each other's records.

Schema 2 adds ``label`` (the Table 3 column), ``n_expected`` (images the dataset has: a record with
fewer is partial), ``source`` (``"model"`` or ``"sr-folder"``) with ``sr_dir`` / ``sr_sha256``.
Schema-1 lines still read; the new fields are derived from the old ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypedDict

from sr_bench.data.registry import DATASETS
from sr_bench.errors import DataError
from sr_bench.images import atomic_write
from sr_bench.version import __version__

__all__ = [
    "BadLine",
    "LockTimeout",
    "Record",
    "RecordKey",
    "append_records",
    "default_label",
    "environment",
    "find_record",
    "git_commit",
    "read_records",
    "records_lock",
    "write_records",
]

SCHEMA_VERSION = 2

log = logging.getLogger("sr_bench.records")


def default_label(model: str, profile: str | None, weights_source: str | None) -> str:
    """A column name: the model plus the weights' short name (the profile that made them, else the
    file's stem); a parameter-free model is its own name."""
    if profile:
        return f"{model} ({profile})"
    if weights_source:
        return f"{model} ({Path(weights_source).stem or weights_source})"
    return model


@dataclass(frozen=True)
class RecordKey:
    """What identifies a measurement: the same key measured twice must give the same numbers.

    The data's identity (registered name or folder path, and the hash of the images scored) and
    the image count are part of it, so a partial or foreign-folder run never replaces a full one.
    """

    label: str
    model: str
    weights: str | None
    dataset: str
    data_sha256: str
    n_images: int
    scale: int
    self_ensemble: bool
    protocol: str


@dataclass
class Record:
    model: str  # registry name ("sr-folder" for scored SR images)
    weights: str | None  # sha256 of the weights file; None for parameter-free models and SR folders
    dataset: str  # registered name, or the resolved absolute path of a user's folder
    scale: int
    self_ensemble: bool
    protocol: str
    psnr: float  # mean over images, dB
    ssim: float
    n_images: int
    per_image: list[dict[str, Any]]  # [{"image": stem, "psnr": .., "ssim": ..}]
    weights_source: str | None = None  # registry name or path the weights came from
    profile: str | None = None  # training profile that made the weights, "official", or None
    model_options: dict[str, Any] = field(default_factory=dict)
    data_sha256: str = ""  # sha256 over the (image, HR sha256, LR sha256) list scored
    lr_source: str = ""  # "file" (MATLAB-made LR files), "generated" (sr_bench's MATLAB bicubic), "mixed"
    device: str = "cpu"
    dtype: str = "float32"
    tile: int | None = None
    seconds: float = 0.0
    sr_bench_version: str = ""
    torch_version: str = ""
    host: str = ""
    date: str = ""
    schema: int = SCHEMA_VERSION
    label: str = ""  # Table 3 column; "" means default_label(model, profile, weights_source)
    n_expected: int = 0  # images the dataset has; 0 means n_images (complete)
    source: str = "model"  # "model" | "sr-folder"
    sr_dir: str | None = None  # the SR folder scored (sr-folder records)
    sr_sha256: str | None = None  # sha256 over that folder's files (sr-folder records)

    def __post_init__(self) -> None:
        if not self.label:
            self.label = default_label(self.model, self.profile, self.weights_source)
        if not self.n_expected:
            self.n_expected = self.n_images

    @property
    def key(self) -> RecordKey:
        return RecordKey(self.label, self.model, self.weights, self.dataset, self.data_sha256, self.n_images,
                         self.scale, self.self_ensemble, self.protocol)

    @property
    def complete(self) -> bool:
        """Every image of the dataset was scored (a ``--max-images`` run is not)."""
        return self.n_images >= self.n_expected

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=False, allow_nan=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "<record>") -> Record:
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - data.keys())
        if missing:
            raise ValueError(f"{where}: record lacks {', '.join(missing)}")
        unknown = sorted(data.keys() - names)
        if unknown:
            raise ValueError(f"{where}: unknown record fields {', '.join(unknown)} (written by a newer sr_bench?)")
        data = dict(data)
        if data.get("schema", 1) < 2 and "n_expected" not in data:
            data["n_expected"] = _registered_count(data["dataset"]) or data["n_images"]
        try:
            return cls(**data)
        except TypeError as e:
            raise ValueError(f"{where}: {e}") from None


def _registered_count(dataset: str) -> int | None:
    """Images a registered dataset has (schema-1 records did not store it)."""
    return DATASETS[dataset].count if dataset in DATASETS else None


def find_record(
    records: Iterable[Record],
    *,
    model: str,
    weights: str | None,
    dataset: str,
    scale: int,
    self_ensemble: bool,
    protocol: str,
    label: str | None = None,
) -> Record | None:
    """The newest complete record of this measurement, or None: a partial record never counts as
    done. ``label`` None matches any label."""
    best: Record | None = None
    for r in records:  # later lines are newer at equal dates
        if (r.model, r.weights, r.dataset, r.scale, r.self_ensemble, r.protocol) != (
                model, weights, dataset, scale, self_ensemble, protocol):
            continue
        if (label is not None and r.label != label) or not r.complete:
            continue
        if best is None or r.date >= best.date:
            best = r
    return best


class Environment(TypedDict):
    sr_bench_version: str
    torch_version: str
    host: str
    date: str


def environment(device: str) -> Environment:
    """The fields of a record that say where and when it was measured."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        host = torch.cuda.get_device_name(torch.device(device))
    else:
        cpu = platform.processor() or platform.machine()
        host = f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    return Environment(
        sr_bench_version=__version__,
        torch_version=torch.__version__,
        host=host,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def git_commit() -> str:
    """The sr_bench checkout's short commit, with ``+uncommitted`` when the code or the published
    numbers (``sr_bench/``, ``baselines/``) have local changes; generated results do not count."""
    here = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                              check=False, capture_output=True, text=True, cwd=here, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sr_bench", "baselines"],
                               check=False, capture_output=True, text=True, cwd=here, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    return head.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")


@dataclass(frozen=True)
class BadLine:
    """A line of a records file that is not a record."""

    number: int
    text: str
    reason: str


class LockTimeout(TimeoutError):
    """Another process held the records lock for too long."""

    exit_code = 1


@contextlib.contextmanager
def records_lock(path: str | os.PathLike, timeout: float = 600.0) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (``fcntl.flock`` on POSIX; elsewhere the lock
    file's existence, created exclusively, with a stale lock older than ``timeout`` broken)."""
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX
        fcntl = None  # type: ignore[assignment]
    if fcntl is not None:
        with open(lock, "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return
    with _exclusive_file_lock(lock, timeout):
        yield


@contextlib.contextmanager
def _exclusive_file_lock(lock: Path, timeout: float) -> Iterator[None]:
    start = time.monotonic()
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - lock.stat().st_mtime > timeout:  # its holder died without removing it
                    lock.unlink()
                    continue
            if time.monotonic() - start > timeout:
                raise LockTimeout(f"{lock}: another sr_bench process has held this lock for over {timeout:.0f} s; "
                                  f"if none is running, delete the file") from None
            time.sleep(0.05)
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


def _parse(path: Path) -> tuple[list[Record], list[BadLine]]:
    records, bad = [], []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            bad.append(BadLine(n, line, f"{path}:{n}: not a JSON record ({e})"))
            continue
        if not isinstance(data, dict):
            bad.append(BadLine(n, line, f"{path}:{n}: a JSON {type(data).__name__}, not a record"))
            continue
        try:
            records.append(Record.from_dict(data, f"{path}:{n}"))
        except ValueError as e:
            bad.append(BadLine(n, line, str(e)))
    return records, bad


def read_records(path: str | os.PathLike) -> list[Record]:
    """All records of a JSON Lines file; a missing file has none. A line that is not a record is
    skipped with a warning naming its line number (the next append moves it to ``<file>.bad``)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        records, bad = _parse(path)
    except (UnicodeDecodeError, IsADirectoryError) as e:
        why = ("is a folder" if isinstance(e, IsADirectoryError)
               else f"is not a text file ({e.reason} at byte {e.start})")
        raise DataError(f"{path}: {why}, not a records file (JSON Lines, as `python -m sr_bench.evaluate` "
                        f"writes); pass --records FILE with one") from None
    for b in bad:
        log.warning("%s; skipped (the next write moves it to %s.bad)", b.reason, path.name)
    return records


def write_records(path: str | os.PathLike, records: Iterable[Record]) -> Path:
    text = "".join(r.to_json() + "\n" for r in records)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def _set_aside(path: Path, bad: list[BadLine]) -> None:
    """Append unreadable lines to ``<file>.bad`` so rewriting ``path`` loses nothing."""
    aside = Path(f"{path}.bad")
    with open(aside, "a") as f:
        f.writelines(b.text + "\n" for b in bad)
        f.flush()
        os.fsync(f.fileno())
    for b in bad:
        log.warning("%s; moved to %s", b.reason, aside)


def append_records(
    path: str | os.PathLike,
    records: Iterable[Record],
    *,
    replace: bool = True,
    supersedes: Any = None,
) -> Path:
    """Add records to a file under its lock; with ``replace``, a new record supersedes an old one
    of the same key. ``supersedes(old, new) -> bool`` drops further old records (``--replace``)."""
    path = Path(path)
    new = list(records)
    keys = {r.key for r in new}
    with records_lock(path):
        old, bad = _parse(path) if path.exists() else ([], [])
        if bad:
            _set_aside(path, bad)
        kept = [r for r in old if not (replace and r.key in keys)
                and not (supersedes is not None and any(supersedes(r, n) for n in new))]
        return write_records(path, kept + new)
