"""Result records: every number sr_bench produces, with what made it and what verifies it.

One JSON object per line (JSON Lines); tables are views over these. Schema 3 (this version):

* every record carries its per-image values and ``checksum``: ``sha256:`` and the SHA-256 of its
  canonical JSON without that field (keys sorted, no spaces, ASCII, finite numbers); sr_bench
  writes each line as that canonical text followed by the checksum, so it verifies a line it
  wrote without re-serialising it;
* ``psnr`` / ``ssim`` must be the mean of the per-image values, to ``mean_tolerance`` (summation
  error of float64, far below a hand edit);
* ``previous`` keeps the earlier measurements of the same identity (:class:`RecordKey`): a
  re-measurement never erases the value it replaces, and one that differs by more than
  ``CONFLICT_DB`` is a reproducibility conflict;
* ``sr_bench_commit`` names the code that measured it.

Reading sorts each line into one of five kinds (see :class:`Entry`): *verified* (schema 3, checksum
and means hold), *legacy* (schema 1 or 2: no checksum, shown with a mark), *refused* (checksum
mismatch, a mean that disagrees, NaN/Inf, an impossible schema: left out of tables, an error in
``compare``), *foreign* (a newer sr_bench wrote it: kept in place, left out with a note) and
*bad* (not a record at all: moved to ``<file>.bad`` by the next write). A file is only ever
replaced whole, under :func:`records_lock` (``sr_bench.storage``), from a single parse: lines
that are kept are written back byte for byte.

``python -m sr_bench.records verify [FILE ...]`` reports all of this (exit 1 on any problem);
``python -m sr_bench.records upgrade [FILE ...]`` stamps legacy records as schema 3 after
checking them, changing no value. See ``docs/records.md``.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import functools
import gc
import hashlib
import json
import logging
import math
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

from sr_bench import cli
from sr_bench.data.registry import DATASETS
from sr_bench.images import file_kind_problem
from sr_bench.labels import label_problem
from sr_bench.paths import results_and_records
from sr_bench.storage import LockTimeout, commit_files, file_lock, storage_error, write_target
from sr_bench.version import __version__

__all__ = [
    "CONFLICT_DB", "SCHEMA_VERSION", "Companion", "bulk", "Conflict", "Entry", "LockTimeout", "Record",
    "RecordKey", "RecordSet", "append_records", "checksum_of", "default_label", "environment", "find_conflicts",
    "find_record", "git_commit", "main", "read_records", "record_line", "records_file_problem", "records_lock",
    "upgrade_records", "value_problems", "verify_records", "write_records",
]

SCHEMA_VERSION = 3
#: a re-measurement of one identity that moves PSNR (dB) or SSIM by more than this is a conflict;
#: a rerun on the same device and code repeats every value exactly
CONFLICT_DB = 1e-6

log = logging.getLogger("sr_bench.records")

#: the lock every writer of a records file (or a per-image CSV) holds around read-merge-replace
records_lock = file_lock


def default_label(model: str, profile: str | None, weights_source: str | None) -> str:
    """A column name: the model plus the weights' short name (the profile that made them, else the
    file's stem); a parameter-free model is its own name."""
    if profile:
        return f"{model} ({profile})"
    if weights_source:
        return f"{model} ({Path(weights_source).stem or weights_source})"
    return model


class RecordKey(NamedTuple):
    """What identifies a measurement: the same key measured twice must give the same numbers.

    The data's identity (registered name or folder path, and the hash of the images scored) and
    the image count are part of it, so a partial or foreign-folder run never replaces a full one.
    (A named tuple: tables build one per record of a large file.)
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

    def describe(self) -> str:
        plus = "+" if self.self_ensemble else ""
        return f"{self.label}{plus} {Path(self.dataset).name} x{self.scale} {self.protocol}"


#: what a ``previous`` entry keeps of an earlier measurement
MEASUREMENT_FIELDS = ("psnr", "ssim", "date", "device", "dtype", "math_mode", "host", "sr_bench_version",
                      "torch_version", "sr_bench_commit", "checksum")


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
    #: the math the network ran in (sr_bench.precision.math_mode): "fp32-ieee", "bf16", "fp16"
    #: ("tf32" is never used by evaluation); "" for SR folders and records written before the field
    math_mode: str = ""
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
    sr_bench_commit: str = ""  # the sr_bench checkout that measured it ("" before schema 3)
    previous: list[dict[str, Any]] = field(default_factory=list)  # earlier measurements of this key, newest first
    checksum: str = ""  # "sha256:<hex>" of the canonical JSON without this field; set when stored

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

    @property
    def legacy(self) -> bool:
        """Written before schema 3: nothing proves it was not edited."""
        return self.schema < 3

    def measurement(self) -> dict[str, Any]:
        """What ``previous`` keeps of this record when a re-measurement replaces it."""
        return {name: getattr(self, name) for name in MEASUREMENT_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The stored line of this record (canonical JSON, stamped as schema 3 with its checksum)."""
        return record_line(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "<record>") -> Record:
        """A record from a parsed line; ``ValueError`` when it cannot be one (see :func:`_classify`
        for the finer sorting of what a file holds)."""
        missing = sorted(_required_fields() - data.keys())
        if missing:
            raise ValueError(f"{where}: record lacks {', '.join(missing)}")
        unknown = sorted(data.keys() - _field_names())
        if unknown:
            raise ValueError(f"{where}: unknown record fields {', '.join(unknown)} (written by a newer sr_bench?)")
        if data.get("schema", 1) == 1 and "n_expected" not in data:
            data = {**data, "n_expected": _registered_count(data["dataset"]) or data["n_images"]}
        try:
            return cls(**data)
        except TypeError as e:
            raise ValueError(f"{where}: {e}") from None


@functools.cache
def _field_names() -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(Record))


@functools.cache
def _required_fields() -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(Record)
                     if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


@functools.cache
def _defaults() -> tuple[dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...]]:
    """(plain defaults, (name, factory) pairs) of Record's fields."""
    plain = {f.name: f.default for f in dataclasses.fields(Record) if f.default is not dataclasses.MISSING}
    made = tuple((f.name, f.default_factory) for f in dataclasses.fields(Record)
                 if f.default_factory is not dataclasses.MISSING)
    return plain, made


def _record_of(data: dict[str, Any]) -> Record:
    """``Record(**data)`` for a line whose field names were checked, without the generated
    ``__init__`` (a third of the time of reading a large file): the same attributes, then
    ``__post_init__``."""
    record = object.__new__(Record)
    plain, made = _defaults()
    attributes = record.__dict__
    attributes.update(plain)
    for name, factory in made:
        attributes[name] = factory()
    attributes.update(data)
    record.__post_init__()
    return record


def _registered_count(dataset: str) -> int | None:
    """Images a registered dataset has (schema-1 records did not store it)."""
    return DATASETS[dataset].count if dataset in DATASETS else None


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while many records are built or walked. Records
    hold no reference cycles, and each full collection walks every object alive: with it running,
    reading a 50,000-line file took 2.8x as long and finding its conflicts 7x (measured in one
    process). Collection resumes, and catches up once, on exit."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- checksums and the values a record must hold ------------------------------------------------


def canonical_json(data: dict[str, Any]) -> str:
    """The text a checksum is computed over: sorted keys, no spaces, ASCII; NaN/Inf refused."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def checksum_of(data: dict[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``data`` without its ``checksum`` field."""
    body = {k: v for k, v in data.items() if k != "checksum"}
    return "sha256:" + hashlib.sha256(canonical_json(body).encode()).hexdigest()


def record_line(record: Record) -> str:
    """``record`` as a stored line: schema 3, canonical JSON, the checksum as the last field."""
    data = record.to_dict()
    data.pop("checksum")
    data["schema"] = SCHEMA_VERSION
    text = canonical_json(data)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f'{text[:-1]},"checksum":"sha256:{digest}"}}'


def _checksum_holds(line: str, data: dict[str, Any]) -> bool:
    stored = data.get("checksum")
    if not isinstance(stored, str) or not stored.startswith("sha256:"):
        return False
    tail = f',"checksum":"{stored}"}}'
    if line.endswith(tail) and hashlib.sha256((line[:-len(tail)] + "}").encode()).hexdigest() == stored[7:]:
        return True  # the line is as sr_bench wrote it: no need to re-serialise
    try:
        return checksum_of(data) == stored
    except (ValueError, RecursionError):  # NaN / Inf, or nested too deeply: not canonical JSON
        return False


def mean_tolerance(values: Sequence[float]) -> float:
    """How far a stored mean may be from ``math.fsum(values) / n``: numpy's pairwise sum of n
    float64 values errs by at most about n * eps * max|v|; 4x that, and at least 1e-12."""
    biggest = max(map(abs, values), default=1.0)
    return max(1e-12, 4 * len(values) * sys.float_info.epsilon * max(1.0, biggest))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_NUMBER_TYPES = {int, float}


def _column_sum(rows: list[Any], name: str) -> tuple[list[float], float] | None:
    """(the per-image values of ``name``, their exact sum) when every one is a finite number, else
    None. The common case runs at C speed: one read per row, ``math.fsum``, one set of types."""
    try:
        values = [row[name] for row in rows]
        total = math.fsum(values)
    except (KeyError, TypeError, ValueError, OverflowError):  # a row without it, a string, inf - inf
        return None
    if not math.isfinite(total) or not set(map(type, values)) <= _NUMBER_TYPES:
        return None
    return values, total


def _first_bad(rows: list[Any], name: str) -> str:
    for i, row in enumerate(rows):
        value = row.get(name) if isinstance(row, dict) else None
        if not _number(value):
            return f"per-image {name} of image {i + 1} is {value!r}, not a finite number"
    return f"per-image {name} values overflow"


def value_problems(record: Record) -> list[str]:
    """What is wrong with the values of ``record`` (empty when they hold): NaN/Inf, per-image rows
    that do not match ``n_images``, and means that are not the mean of the per-image values."""
    problems = [f"{name} is {getattr(record, name)!r}, not a finite number"
                for name in ("psnr", "ssim") if not _number(getattr(record, name))]
    rows = record.per_image
    if not rows:
        return problems + (["has no per-image values"] if not record.legacy else [])
    if not isinstance(rows, list):
        return [*problems, f"per_image is a {type(rows).__name__}, not a list"]
    if len(rows) != record.n_images:
        problems.append(f"has {len(rows)} per-image values for n_images {record.n_images}")
    try:
        names = [row["image"] for row in rows]
    except (KeyError, TypeError):  # a row that is not an object, or has no name
        names = [None]
    if set(map(type, names)) != {str} or len(set(names)) != len(rows):
        problems.append("per-image rows need distinct image names")
    for name in ("psnr", "ssim"):
        found = _column_sum(rows, name)
        if found is None:
            problems.append(_first_bad(rows, name))
            continue
        values, total = found
        mean, stored = total / len(values), getattr(record, name)
        if _number(stored) and abs(stored - mean) > 1e-12 and abs(stored - mean) > mean_tolerance(values):
            problems.append(f"{name} {stored!r} is not the mean of its {len(values)} per-image values ({mean!r})")
    return problems


def label_problems(record: Record) -> list[str]:
    problem = label_problem(record.label)
    return [] if problem is None else [f"label {record.label!r} {problem}"]


# --- reading --------------------------------------------------------------------------------


@dataclass
class Entry:
    """One non-empty line of a records file and what it is.

    ``kind``: ``verified`` | ``legacy`` | ``refused`` | ``foreign`` | ``bad``; ``record`` is set for
    the first three; ``reason`` says what is wrong (refused, foreign, bad)."""

    number: int
    text: str
    kind: str
    record: Record | None = None
    reason: str = ""

    def message(self, path: str | os.PathLike) -> str:
        """``FILE:LINE: reason``, naming the record when there is one."""
        what = f" [{self.record.key.describe()}]" if self.record is not None else ""
        return f"{path}:{self.number}: {self.reason}{what}"

    @property
    def shown(self) -> bool:
        """Whether tables and comparisons use it."""
        return self.kind in ("verified", "legacy")


def _schema_problem(data: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, reason) for a line this version cannot read as a record, else None."""
    schema = data.get("schema", 1)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        return "refused", f"schema {schema!r} is not a schema version"
    if schema > SCHEMA_VERSION:
        return "foreign", f"schema {schema} is newer than this sr_bench reads ({SCHEMA_VERSION}); upgrade sr_bench"
    keys = data.keys()
    if keys <= _field_names() and _required_fields() <= keys:
        return None
    unknown = sorted(keys - _field_names())
    if unknown:
        return "foreign", f"unknown fields {', '.join(unknown)} (written by a newer sr_bench?); upgrade sr_bench"
    return "bad", f"record lacks {', '.join(sorted(_required_fields() - keys))}"


_NONE = type(None)
#: the JSON types each field may have (a JSON value parses to exactly one of these types)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "weights": (str, _NONE), "dataset": (str,), "scale": (int,), "self_ensemble": (bool,),
    "protocol": (str,), "n_images": (int,), "per_image": (list,), "weights_source": (str, _NONE),
    "profile": (str, _NONE), "model_options": (dict,), "data_sha256": (str,), "lr_source": (str,), "device": (str,),
    "dtype": (str,), "math_mode": (str,), "tile": (int, _NONE), "sr_bench_version": (str,), "torch_version": (str,),
    "host": (str,), "date": (str,), "label": (str,), "n_expected": (int,), "source": (str,), "sr_dir": (str, _NONE),
    "sr_sha256": (str, _NONE), "sr_bench_commit": (str,), "previous": (list,), "checksum": (str,),
}


def _type_problems(data: dict[str, Any]) -> list[str]:
    """Fields whose JSON type no sr_bench writes (psnr, ssim and seconds are checked as numbers)."""
    return [f"{name} is a {type(value).__name__} ({value!r:.40})" for name, value in data.items()
            if name in _FIELD_TYPES and type(value) not in _FIELD_TYPES[name]]


def _classify(number: int, text: str) -> Entry:
    """What line ``number`` (``text``) of a records file is; reasons do not repeat the location."""
    try:
        data = json.loads(text)
    except ValueError as e:
        return Entry(number, text, "bad", reason=f"not a JSON record ({e})")
    except RecursionError:
        return Entry(number, text, "bad", reason="not a record (JSON nested deeper than Python can parse)")
    if not isinstance(data, dict):
        return Entry(number, text, "bad", reason=f"a JSON {type(data).__name__}, not a record")
    if _has_escaped_surrogate(text) and (lone := _lone_surrogate(data)) is not None:
        return Entry(number, text, "refused", reason=f"holds {lone}, a \\u escape of a lone surrogate (not text: bytes "
                                                     f"that were not UTF-8?)")
    found = _schema_problem(data)
    if found is not None:
        return Entry(number, text, found[0], reason=found[1])
    wrong = _type_problems(data)
    if wrong:
        return Entry(number, text, "refused", reason="; ".join(wrong))
    if data.get("schema", 1) == 1 and "n_expected" not in data:
        data = {**data, "n_expected": _registered_count(data["dataset"]) or data["n_images"]}
    record = _record_of(data)
    problems = value_problems(record)
    if record.schema >= 3 and not _checksum_holds(text, data):
        problems.insert(0, "checksum mismatch (edited after it was written?)" if "checksum" in data
                        else "schema 3 without a checksum")
    if problems:
        return Entry(number, text, "refused", record, "; ".join(problems))
    return Entry(number, text, "legacy" if record.legacy else "verified", record)


#: how ``_load`` shows a byte that is not UTF-8 (``surrogateescape``: U+DC80..U+DCFF)
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _has_escaped_surrogate(line: str) -> bool:
    """Whether ``line`` may hold a JSON escape of a UTF-16 surrogate (canonical JSON writes an
    emoji as a pair of them; only a lone one is not text): a cheap test before the real one."""
    return "\\ud" in line or "\\uD" in line


def _lone_surrogate(data: Any) -> str | None:
    """The first string in ``data`` that holds a lone surrogate (no UTF-8 encoding exists), as
    ``\\uXXXX``; None when every string is text."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
        return None
    except UnicodeEncodeError as e:
        return f"\\u{ord(e.object[e.start]):04x}"
    except (ValueError, RecursionError):  # NaN, or too deep: judged elsewhere
        return None


def records_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a records file ("does not exist" included), or None."""
    return file_kind_problem(path, "a records file (JSON Lines, as `python -m sr_bench.evaluate` writes)")


def _not_utf8(number: int, text: str) -> Entry | None:
    """A bad entry for a line holding a byte that was not UTF-8 (see ``_text_of``), else None."""
    found = _UNDECODABLE.search(text)
    if found is None:
        return None
    byte, column = ord(found.group()) - 0xDC00, found.start() + 1
    return Entry(number, text, "bad", reason=f"not UTF-8 text (byte 0x{byte:02X} at column {column})")


def _parse(text: str, lossy: bool = False) -> list[Entry]:
    """The entries of a file's text; ``lossy``: it held bytes that were not UTF-8 (each line is
    searched for them; a clean file, the rule, is not)."""
    entries = []
    for n, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            entries.append((lossy and _not_utf8(n, line)) or _classify(n, line))
    return entries


@dataclass
class _Parsed:
    signature: tuple[int, ...]
    entries: list[Entry]


#: the last parse of each records file, by resolved path: a file read again unchanged (same inode,
#: size, mtime and ctime, taken from the open file so NFS revalidates them) is not parsed again
_PARSED: dict[Path, _Parsed] = {}
_PARSED_MAX = 4


def _signature(st: os.stat_result) -> tuple[int, ...]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _remember(target: Path, signature: tuple[int, ...], entries: list[Entry]) -> None:
    _PARSED.pop(target, None)
    while len(_PARSED) >= _PARSED_MAX:
        _PARSED.pop(next(iter(_PARSED)))
    _PARSED[target] = _Parsed(signature, entries)


def _load(path: Path) -> tuple[list[Entry], bool]:
    """The entries of ``path`` and whether they were parsed now (False: the cached parse)."""
    problem = records_file_problem(path)
    if problem == "does not exist":
        return [], False
    if problem is not None:  # never open a FIFO (blocks for ever) or a device (never ends)
        raise cli.DataError(f"{path}: {problem}; pass --records FILE with one")
    target = path.resolve()
    try:
        f = open(target, "rb")
    except FileNotFoundError:
        return [], False
    except OSError as e:
        raise storage_error(path, e, "read") from None
    with f:
        signature = _signature(os.fstat(f.fileno()))
        cached = _PARSED.get(target)
        if cached is not None and cached.signature == signature:
            return cached.entries, False
        data = f.read()
    text, lossy = _text_of(path, data)
    with bulk():
        entries = _parse(text, lossy)
    _remember(target, signature, entries)
    return entries, True


def _text_of(path: Path, data: bytes) -> tuple[str, bool]:
    """The text of a records file, and whether it held bytes that were not UTF-8. A UTF-8
    byte-order mark (an editor's) is dropped. A byte that is not UTF-8 makes its own line
    unusable (``_not_utf8``), not the file; a NUL byte means a binary file (a checkpoint, an
    image passed as --records), refused whole before anything would move its "lines" aside."""
    if b"\0" in data:
        at = data.index(b"\0")
        raise cli.DataError(f"{path}: is a binary file (a NUL byte at byte {at}), not a records file (JSON Lines, as "
                            f"`python -m sr_bench.evaluate` writes); pass --records FILE with one")
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:  # kept as U+DC80..U+DCFF, so a line set aside keeps its bytes
        return data.decode("utf-8", "surrogateescape"), True


class RecordSet(list):  # list[Record]; mypy cannot subclass a generic alias here without noise
    """The records of a file that tables may show (verified and legacy), as a list, plus what the
    file also holds: ``entries`` (every line, sorted into kinds) and ``path``."""

    def __init__(self, entries: Sequence[Entry] = (), path: Path | None = None):
        super().__init__(e.record for e in entries if e.shown)
        self.path = path
        self.entries = list(entries)
        self._lines = {id(e.record): e.number for e in self.entries if e.record is not None}

    def of_kind(self, *kinds: str) -> list[Entry]:
        return [e for e in self.entries if e.kind in kinds]

    def line_of(self, record: Record) -> int | None:
        return self._lines.get(id(record))

    def where(self, record: Record) -> str:
        line = self.line_of(record)
        return f"{self.path}:{line}" if self.path is not None and line is not None else record.key.describe()


def _warn_unusable(path: Path, entries: Sequence[Entry]) -> None:
    """One warning per kind of unusable line, with up to three examples."""
    advice = {"bad": f"the next write moves them to {path.name}.bad",
              "refused": "left out of tables and comparisons",
              "foreign": "kept in the file, left out of tables"}
    for kind, what in advice.items():
        lines = [e for e in entries if e.kind == kind]
        if lines:
            more = f"; and {len(lines) - 3} more" if len(lines) > 3 else ""
            log.warning("%s (%s; `python -m sr_bench.records verify %s` lists all)",
                        "; ".join(e.message(path) for e in lines[:3]) + more, what, path)


def read_records(path: str | os.PathLike) -> RecordSet:
    """The records of a JSON Lines file that tables may show (a missing file has none), as a
    :class:`RecordSet`. Unusable lines are logged once per parse (see :class:`Entry`)."""
    path = Path(path)
    entries, fresh = _load(path)
    if fresh:
        _warn_unusable(path, entries)
    return RecordSet(entries, path)


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


# --- conflicts ------------------------------------------------------------------------------


def _differs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return any(not (_number(a.get(k)) and _number(b.get(k))) or abs(a[k] - b[k]) > CONFLICT_DB
               for k in ("psnr", "ssim"))


def _describe(m: dict[str, Any]) -> str:
    psnr, ssim = m.get("psnr"), m.get("ssim")
    values = f"{psnr:.6f} dB / {ssim:.6f}" if _number(psnr) and _number(ssim) else f"{psnr!r} / {ssim!r}"
    where = f", {m['where']}" if m.get("where") else ""
    return (f"{values} ({m.get('date') or 'no date'}, {m.get('device') or '?'} {m.get('host') or ''}".rstrip()
            + f", commit {m.get('sr_bench_commit') or 'not recorded'}{where})")


@dataclass(frozen=True)
class Conflict:
    """One identity measured more than once with values more than ``CONFLICT_DB`` apart.
    ``measurements``: the shown one first, then the others newest first."""

    key: RecordKey
    measurements: tuple[dict[str, Any], ...]

    def describe(self) -> str:
        shown, *others = self.measurements
        return (f"{self.key.describe()}: shown {_describe(shown)}; also measured "
                + "; ".join(_describe(m) for m in others))


def find_conflicts(records: Sequence[Record], where: Callable[[Record], str | None] = lambda r: None
                   ) -> list[Conflict]:
    """Identities whose measurements (records of one key, and each one's ``previous``) differ by
    more than ``CONFLICT_DB``. The newest record of a key (date, then file order) is the one shown."""
    groups: dict[RecordKey, list[Record]] = {}
    with bulk():
        for r in records:
            groups.setdefault(r.key, []).append(r)
    found = []
    for key, group in groups.items():
        if len(group) == 1 and not group[0].previous:
            continue
        ordered = sorted(enumerate(group), key=lambda ir: (ir[1].date, ir[0]), reverse=True)
        current = ordered[0][1]
        shown = {**current.measurement(), "where": where(current)}
        others = [{**r.measurement(), "where": where(r)} for _, r in ordered[1:]]
        others += [m for _, r in ordered for m in r.previous if isinstance(m, dict)]
        others.sort(key=lambda m: str(m.get("date") or ""), reverse=True)
        if any(_differs(shown, m) for m in others):
            found.append(Conflict(key, (shown, *others)))
    return found


# --- writing --------------------------------------------------------------------------------


def _to_store(records: Iterable[Record]) -> list[Record]:
    """``records`` checked before anything is written: values that hold and printable labels."""
    out = list(records)
    for r in out:
        problems = value_problems(r) + label_problems(r)
        if problems:
            hint = " (an SR image identical to its HR gives PSNR inf)" if "finite" in problems[0] else ""
            raise cli.DataError(f"record {r.key.describe()} cannot be stored: {'; '.join(problems)}{hint}")
    return out


def write_records(path: str | os.PathLike, records: Iterable[Record]) -> Path:
    """Replace ``path`` with exactly ``records`` (stamped as schema 3), under its lock."""
    lines = [record_line(r) for r in _to_store(records)]
    with records_lock(path):
        commit_files([(path, "".join(line + "\n" for line in lines))])
    return Path(path)


@dataclass(frozen=True)
class Companion:
    """A file written together with the records (all or nothing): ``update(path)`` returns its new
    text, called under the file's own lock (the per-image CSV of ``evaluate --per-image``)."""

    path: Path
    update: Callable[[Path], str]


def _history(new: Record, olds: Sequence[Record], path: Path) -> Record:
    """``new`` with the measurements it replaces kept in ``previous`` (newest first); a
    difference above ``CONFLICT_DB`` is logged with both values."""
    earlier = [o.measurement() for o in olds] + [m for o in olds for m in o.previous]
    earlier.sort(key=lambda m: str(m.get("date") or ""), reverse=True)
    now = new.measurement()
    for m in earlier:
        if _differs(now, m):
            log.warning("%s: %s re-measured as %s; it was %s: a reproducibility conflict (Table 3 marks it; "
                        "evaluate --replace drops the older value)", path, new.key.describe(),
                        _describe(now), _describe(m))
            break
    return dataclasses.replace(new, previous=earlier + list(new.previous))


def _merge(entries: Sequence[Entry], new: list[Record], path: Path, replace: bool,
           supersede_by: Callable[[Record], Hashable] | None) -> tuple[list[Entry], list[Record]]:
    """(entries kept as they are, the new records with their history): one pass over ``entries``.
    Bad lines are not kept (they are moved aside after the write)."""
    keys = {r.key for r in new} if replace else set()
    slots = {supersede_by(r) for r in new} if supersede_by is not None else set()
    kept: list[Entry] = []
    replaced: dict[RecordKey, list[Record]] = {}
    superseded = 0
    for e in entries:
        r = e.record
        if e.kind == "bad":
            continue
        if r is not None and supersede_by is not None and supersede_by(r) in slots:
            superseded += 1
        elif r is not None and r.key in keys:
            if e.kind == "refused":
                log.warning("%s; replaced by the new measurement", e.message(path))
            else:
                replaced.setdefault(r.key, []).append(r)
        else:
            kept.append(e)
    if superseded:
        log.info("%s: %d record(s) superseded (--replace)", path, superseded)
    return kept, [_history(n, replaced.get(n.key, []), path) for n in new]


def _stamp(record: Record) -> tuple[Record, str]:
    """The record as stored (schema 3, its checksum) and its line."""
    line = record_line(record)
    return dataclasses.replace(record, schema=SCHEMA_VERSION, checksum=line[-73:-2]), line


def _renumbered(kept: Sequence[Entry], stored: Sequence[tuple[Record, str]]) -> list[Entry]:
    """The entries of the file just written, as a parse of it would give them."""
    out = []
    for n, e in enumerate(kept, start=1):
        out.append(Entry(n, e.text, e.kind, e.record) if e.shown else _classify(n, e.text))
    out += [Entry(len(kept) + i, line, "verified", r) for i, (r, line) in enumerate(stored, start=1)]
    return out


def append_records(
    path: str | os.PathLike,
    records: Iterable[Record],
    *,
    replace: bool = True,
    supersede_by: Callable[[Record], Hashable] | None = None,
    companions: Sequence[Companion] = (),
) -> Path:
    """Add records to a file under its lock, from one parse, keeping every other line as it is.

    With ``replace``, a new record replaces an old one of the same key and keeps its values in
    ``previous`` (a refused old record is dropped). ``supersede_by`` (``--replace``) drops every
    old record whose ``supersede_by(old)`` equals a new record's, with no history. ``companions``
    are written in the same all-or-nothing step. A full disk or read-only folder raises
    :class:`sr_bench.storage.StorageError` with every file as it was."""
    path = Path(path)
    new = _to_store(records)
    target = write_target(path)
    with records_lock(target), contextlib.ExitStack() as held:
        for c in companions:  # always after the records lock: no two writers wait on each other
            held.enter_context(records_lock(c.path))
        entries, _ = _load(target)
        with bulk():
            kept, merged = _merge(entries, new, path, replace, supersede_by)
            stored = [_stamp(r) for r in merged]
            text = "".join(e.text + "\n" for e in kept) + "".join(line + "\n" for _, line in stored)
        commit_files([(target, text)] + [(c.path, c.update(write_target(c.path))) for c in companions])
        with bulk():
            _remember(target.resolve(), _signature(os.stat(target)), _renumbered(kept, stored))
        bad = [e for e in entries if e.kind == "bad"]
        if bad:
            _set_aside(path, bad)
    return path


def _set_aside(path: Path, bad: Sequence[Entry]) -> None:
    """Append unreadable lines to ``<file>.bad`` (after the rewrite that dropped them)."""
    aside = Path(f"{path}.bad")
    try:  # byte for byte: a line that was not UTF-8 goes back as the bytes it was
        with open(aside, "a", encoding="utf-8", errors="surrogateescape") as f:
            f.writelines(b.text + "\n" for b in bad)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise storage_error(aside, e, "append the unreadable lines to") from None
    for b in bad:
        log.warning("%s; moved to %s", b.message(path), aside)


# --- where and when ---------------------------------------------------------------------------


class Environment(TypedDict):
    sr_bench_version: str
    torch_version: str
    host: str
    date: str
    sr_bench_commit: str


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
        sr_bench_commit=_commit_of_this_code(),
    )


@functools.cache
def _commit_of_this_code() -> str:
    """:func:`git_commit`, asked once per process (two git calls)."""
    return git_commit()


def git_commit() -> str:
    """The sr_bench checkout's short commit, with ``+uncommitted`` when the code or the published
    numbers (``sr_bench/``, ``baselines/``) have local changes; generated results do not count.
    A copy of a checkout without its ``.git`` (the tree sent to a GPU machine) says so, with the
    commit its sender put in ``$SR_BENCH_COMMIT`` (``python -m sr_bench.gpu_run --prepare`` does)."""
    here = Path(__file__).resolve().parents[1]
    given = os.environ.get("SR_BENCH_COMMIT", "")
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                              check=False, capture_output=True, text=True, cwd=here, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sr_bench", "baselines"],
                               check=False, capture_output=True, text=True, cwd=here, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return f"{given} (copy without .git)" if given else "unknown"
    if head.returncode != 0:
        return f"{given} (copy without .git)" if given else "unknown (not a git checkout)"
    return head.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")


# --- verify and upgrade -----------------------------------------------------------------------


_KIND_WORDS = {"verified": "verified", "legacy": "unverified legacy", "refused": "refused",
               "foreign": "not understood (newer sr_bench)", "bad": "not records"}


@dataclass
class VerifyReport:
    """What ``verify`` found in one records file."""

    path: Path
    entries: list[Entry]
    conflicts: list[Conflict]

    def count(self, kind: str) -> int:
        return sum(e.kind == kind for e in self.entries)

    def failed(self, strict: bool = False) -> bool:
        """Any refused, foreign or bad line or any conflict (with ``strict``, any legacy record too)."""
        kinds = ("refused", "foreign", "bad") + (("legacy",) if strict else ())
        return bool(self.conflicts) or any(e.kind in kinds for e in self.entries)

    def lines(self, strict: bool = False) -> list[str]:
        out = [e.message(self.path) for e in self.entries if e.kind in ("refused", "foreign", "bad")]
        out += [f"{self.path}: conflict: {c.describe()}" for c in self.conflicts]
        legacy = [e.number for e in self.entries if e.kind == "legacy"]
        if legacy:
            out.append(f"{self.path}: {len(legacy)} unverified legacy record(s) (schema 1/2, no checksum; lines "
                       f"{_ranges(legacy)}){' fail --strict' if strict else ''}: `python -m sr_bench.records upgrade "
                       f"{self.path}` checks their means and stamps them")
        counts = ", ".join(f"{self.count(k)} {w}" for k, w in _KIND_WORDS.items())
        verdict = "FAILED" if self.failed(strict) else "ok"
        out.append(f"{self.path}: {verdict}: {len(self.entries)} lines: {counts}, {len(self.conflicts)} conflict(s)")
        return out


def _ranges(numbers: Sequence[int]) -> str:
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _existing(path: Path, doing: str) -> Path:
    problem = records_file_problem(path)
    if problem is not None:
        raise cli.DataError(f"{path} {problem.split(', not ')[0]}; pass the records file to {doing} (the "
                            f"records.jsonl that `python -m sr_bench.evaluate` wrote)")
    return path


def verify_records(path: str | os.PathLike) -> VerifyReport:
    """Every line of ``path`` sorted into kinds, and the conflicts among its usable records."""
    path = _existing(Path(path), "verify")
    records = RecordSet(_load(path)[0], path)
    return VerifyReport(path, records.entries, find_conflicts(records, records.where))


@dataclass
class UpgradeReport:
    path: Path
    upgraded: int
    already: int
    left: list[Entry]

    def lines(self) -> list[str]:
        out = [f"{e.message(self.path)}: left as it is" for e in self.left]
        out.append(f"{self.path}: {self.upgraded} record(s) stamped as schema {SCHEMA_VERSION}, {self.already} "
                   f"already verified, {len(self.left)} left as they are")
        return out


def upgrade_records(path: str | os.PathLike) -> UpgradeReport:
    """Stamp every legacy record whose values hold (finite, means equal to their per-image
    values) as schema 3 with its checksum, under the lock. No value changes: the stamped record
    is the parsed one (schema 1's derived ``n_expected`` and a default ``label`` become explicit);
    every other line is kept byte for byte."""
    path = _existing(Path(path), "upgrade")
    target = write_target(path)
    with records_lock(target):
        entries, _ = _load(target)
        lines, upgraded, left = [], 0, []
        for e in entries:
            if e.kind == "legacy" and e.record is not None and e.record.per_image:
                lines.append(record_line(e.record))
                upgraded += 1
            else:
                lines.append(e.text)
                if e.kind != "verified":
                    left.append(e if e.kind != "legacy" else dataclasses.replace(
                        e, reason="no per-image values to verify its means by"))
        if upgraded:
            commit_files([(target, "".join(line + "\n" for line in lines))])
    return UpgradeReport(path, upgraded, sum(e.kind == "verified" for e in entries), left)


def _files(args: Any) -> list[Path]:
    return [Path(f) for f in args.files] or [results_and_records(args.results, None)[1]]


def build_parser() -> Any:
    p = cli.parser("python -m sr_bench.records", "Check and upgrade result records files.")
    sub = p.add_subparsers(dest="action", required=True, metavar="{verify,upgrade}")
    verify = sub.add_parser("verify", help="report every record that fails its checksum or means, every line not "
                                           "understood and every reproducibility conflict (exit 1 if any)")
    verify.add_argument("--strict", action="store_true", help="unverified legacy records (schema 1/2) fail too")
    upgrade = sub.add_parser("upgrade", help="stamp legacy records (schema 1/2) as schema 3 after checking them; "
                                             "no value changes")
    for q in (verify, upgrade):
        q.add_argument("files", nargs="*", metavar="FILE", help="records files (default: RESULTS/records.jsonl)")
        cli.add_common_options(q, results=True)
    return p


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbosity)
    failed = False
    for path in _files(args):
        if args.action == "verify":
            report = verify_records(path)
            print("\n".join(report.lines(args.strict)))
            failed |= report.failed(args.strict)
        else:
            done = upgrade_records(path)
            print("\n".join(done.lines()))
            failed |= bool(done.left)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
