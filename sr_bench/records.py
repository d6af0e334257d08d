"""Result records: every number sr_bench produces, with what made it. Tables are views over these.

One JSON object per line (JSON Lines). A file is only ever replaced whole (temp file + rename), so
an interrupted run never leaves a half-written line behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from sr_bench.images import atomic_write

__all__ = ["Record", "RecordKey", "read_records", "append_records", "write_records", "environment", "git_commit"]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RecordKey:
    """What identifies a measurement: the same key measured twice must give the same numbers."""

    model: str
    weights: str | None
    dataset: str
    scale: int
    self_ensemble: bool
    protocol: str


@dataclass
class Record:
    model: str  # registry name
    weights: str | None  # sha256 of the weights file; None for parameter-free models
    dataset: str
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

    @property
    def key(self) -> RecordKey:
        return RecordKey(self.model, self.weights, self.dataset, self.scale, self.self_ensemble, self.protocol)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=False, allow_nan=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "<record>") -> "Record":
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - data.keys())
        if missing:
            raise ValueError(f"{where}: record lacks {', '.join(missing)}")
        unknown = sorted(data.keys() - names)
        if unknown:
            raise ValueError(f"{where}: unknown record fields {', '.join(unknown)} (written by a newer sr_bench?)")
        return cls(**data)


def environment(device: str) -> dict[str, str]:
    """The fields of a record that say where and when it was measured."""
    import torch

    from sr_bench import __version__

    if device.startswith("cuda") and torch.cuda.is_available():
        host = torch.cuda.get_device_name(torch.device(device))
    else:
        host = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    return {
        "sr_bench_version": __version__,
        "torch_version": torch.__version__,
        "host": host,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def git_commit() -> str:
    """The sr_bench checkout's short commit, with ``+uncommitted`` when the code or the published
    numbers (``sr_bench/``, ``baselines/``) have local changes; generated results do not count."""
    here = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sr_bench", "baselines"],
                               capture_output=True, text=True, cwd=here, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    return head.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")


def read_records(path: str | os.PathLike) -> list[Record]:
    """All records of a JSON Lines file; a missing file has none."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not a JSON record ({e}); fix or delete that line") from None
        records.append(Record.from_dict(data, f"{path}:{n}"))
    return records


def write_records(path: str | os.PathLike, records: Iterable[Record]) -> Path:
    text = "".join(r.to_json() + "\n" for r in records)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def append_records(path: str | os.PathLike, records: Iterable[Record], *, replace: bool = True) -> Path:
    """Add records to a file; with ``replace``, a new record supersedes an old one of the same key."""
    new = list(records)
    keys = {r.key for r in new}
    old = [r for r in read_records(path) if not (replace and r.key in keys)]
    return write_records(path, old + new)
