"""``python -m sr_bench.models`` (``sr-bench-models``): what this installation can run, at a glance.

Four sections, each one line per entry (``--json`` for the same as data):

* models: registry name, family, scales, parameter count per scale, torch.hub entry point;
* published weights: name, the model and scales it fits, official file name, sha256 prefix, and
  whether it is reachable here: a file under its official name in ``--weights-dir`` /
  ``$SR_BENCH_WEIGHTS_DIR`` or in the download cache, or a mirror (``$SR_BENCH_WEIGHTS_URL``);
  otherwise it is not, since the authors' server has been offline since 2024;
* datasets: present under ``--data-root`` / ``$SR_BENCH_DATA`` (image count, folder, which scales
  have LR files) or absent, with how to get them;
* protocols: one line each.

Nothing is loaded, decoded or downloaded: weights are found by file name (their sha256 is checked
when they are loaded), datasets by listing their folders (``python -m sr_bench.data check``
decodes every image).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sr_bench import cli
from sr_bench.cli import UsageError, UserError
from sr_bench.data import DATASETS, DatasetNotFound, data_root, open_dataset
from sr_bench.models.registry import get_spec, names
from sr_bench.protocols import PROTOCOLS
from sr_bench.weights import (
    WEIGHTS_DIR_ENV,
    WEIGHTS_URL_ENV,
    current_weights_dir,
    default_cache_dir,
    get_weights,
    weights_names,
)

__all__ = ["ModelRow", "WeightsRow", "DatasetRow", "ProtocolRow", "model_rows", "weights_rows", "dataset_rows",
           "protocol_rows", "main"]

SECTIONS = ("models", "weights", "datasets", "protocols")
SCALES = (2, 3, 4)


@dataclass(frozen=True)
class ModelRow:
    name: str
    family: str
    scales: tuple[int, ...]
    multi_scale: bool
    params: dict[int, int | None]  # per scale (one network for every scale: the same count)
    hub: str  # torch.hub entry point (hubconf.py of a clone)


@dataclass(frozen=True)
class WeightsRow:
    name: str
    model: str
    scales: tuple[int, ...]
    file: str
    sha256_prefix: str
    reachable: bool
    where: str  # the file found, the mirror URL, or why it is not reachable


@dataclass(frozen=True)
class DatasetRow:
    name: str
    kind: str
    present: bool
    images: int | None  # found (present) or expected (absent)
    location: str | None
    lr_files: tuple[int, ...]  # scales (of 2, 3, 4) with an LR file for every image
    note: str  # how to get it (absent), or what is wrong with what was found


@dataclass(frozen=True)
class ProtocolRow:
    name: str
    summary: str


def model_rows() -> list[ModelRow]:
    rows = []
    for name in names():
        spec = get_spec(name)
        params = {s: spec.num_params(s) for s in spec.scales}
        rows.append(ModelRow(name, spec.family, spec.scales, spec.multi_scale, params, name.replace("-", "_")))
    return rows


def _weights_status(file_name: str, weights_dir: Path | None, cache: Path, mirror: str) -> tuple[bool, str]:
    for folder, what in ((weights_dir, "weights folder"), (cache, "download cache")):
        if folder is not None and (folder / file_name).is_file():
            return True, f"{folder / file_name} ({what})"
    if mirror:
        return True, f"mirror {mirror.rstrip('/')}/{file_name} (${WEIGHTS_URL_ENV}; not contacted here)"
    return False, "not reachable (the authors' server has been offline since 2024)"


def weights_rows(weights_dir: str | None = None) -> list[WeightsRow]:
    """Published checkpoints and where each would come from; ``weights_dir`` None: the folder
    ``--weights-dir`` / ``$SR_BENCH_WEIGHTS_DIR`` names, if any."""
    folder = Path(weights_dir).expanduser() if weights_dir else current_weights_dir()
    mirror = os.environ.get(WEIGHTS_URL_ENV, "").strip()
    rows = []
    for name in weights_names():
        spec = get_weights(name)
        reachable, where = _weights_status(spec.file_name, folder, default_cache_dir(), mirror)
        rows.append(WeightsRow(name, spec.arch, spec.scales, spec.file_name, spec.sha256_prefix, reachable, where))
    return rows


def _dataset_row(name: str, root: str | None) -> DatasetRow:
    spec = DATASETS[name]
    try:
        ds = open_dataset(name, root)
    except DatasetNotFound as e:
        note = str(e) if e.partial else (f"to get it: {spec.how_to_get}" if spec.how_to_get else str(e))
        return DatasetRow(name, spec.kind, False, spec.count, None, (), note)
    except UserError as e:  # a broken link or an unreadable folder: say so, list the rest
        return DatasetRow(name, spec.kind, False, spec.count, None, (), str(e))
    lr_files = tuple(s for s in SCALES if ds.images and ds.lr_source(s) == "file")
    return DatasetRow(name, spec.kind, True, len(ds), ds.location, lr_files, "")


def dataset_rows(root: str | None = None) -> list[DatasetRow]:
    """Every registered dataset in table order, found under ``root`` (default ``$SR_BENCH_DATA``)."""
    ordered = sorted(DATASETS.values(), key=lambda s: s.order)
    return [_dataset_row(spec.name, root) for spec in ordered]


def protocol_rows() -> list[ProtocolRow]:
    return [ProtocolRow(name, PROTOCOLS[name].summary) for name in PROTOCOLS]


def _millions(n: int | None) -> str:
    return "?" if n is None else "0" if n == 0 else f"{n / 1e6:.2f}M"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]


def _models_text(rows: list[ModelRow]) -> list[str]:
    table = [["name", "family", "scales", "parameters", "torch.hub (a clone's hubconf.py)"]]
    for r in rows:
        params = (_millions(next(iter(r.params.values()))) + " (one network)" if r.multi_scale
                  else " / ".join(_millions(p) for p in r.params.values()))
        table.append([r.name, r.family, " ".join(f"x{s}" for s in r.scales), params, r.hub])
    return ["models: sr_bench.models.create(NAME, scale=S), or --model NAME", *_table(table)]


def _weights_text(rows: list[WeightsRow]) -> list[str]:
    table = [["name", "model", "file", "sha256", "reachable"]]
    for r in rows:
        scales = "/".join(f"x{s}" for s in r.scales)
        status = f"yes: {r.where}" if r.reachable else r.where
        table.append([r.name, f"{r.model} {scales}", r.file, r.sha256_prefix, status])
    found = sum(r.reachable for r in rows)
    lines = [f"published weights: --weights NAME ({found} of {len(rows)} reachable here)", *_table(table)]
    if found < len(rows):
        lines.append(f"  to use one: put its file (from a mirror) in --weights-dir DIR / ${WEIGHTS_DIR_ENV}, set "
                     f"${WEIGHTS_URL_ENV}=<mirror base URL>, or pass --weights /path/to/FILE")
    return lines


def _datasets_text(rows: list[DatasetRow], root: str | None) -> list[str]:
    base = data_root(root)
    lines = [f"datasets under {base if base else '(no data root: pass --data-root DIR or set SR_BENCH_DATA)'}"]
    table = [["name", "kind", "status", "where"]]
    for r in rows:
        if r.present:
            lr = f"LR files x{' x'.join(map(str, r.lr_files))}" if r.lr_files else "LR made by MATLAB-exact bicubic"
            table.append([r.name, r.kind, f"present, {r.images} images", f"{r.location} ({lr})"])
        else:
            table.append([r.name, r.kind, "absent", r.note])
    return lines + _table(table)


def _protocols_text(rows: list[ProtocolRow]) -> list[str]:
    return ["protocols: --protocol NAME, sr_bench.score(sr, hr, scale, protocol=NAME)",
            *_table([["name", "summary"], *([r.name, r.summary] for r in rows)])]


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m sr_bench.models", __doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("sections", nargs="*", metavar="SECTION",
                   help=f"only these sections ({', '.join(SECTIONS)}); default: all four")
    p.add_argument("--json", action="store_true", help="one JSON object: {section: [row, ...]}")
    cli.add_common_options(p, data_root=True, weights_dir=True, verbosity=False)
    return p


def _sections(a: argparse.Namespace) -> dict[str, tuple[Callable[[], list], Callable[[list], list[str]]]]:
    """section -> (its rows, their text), for the sections asked for, in the fixed order."""
    unknown = [s for s in a.sections if s not in SECTIONS]
    if unknown:
        raise UsageError(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)} (or none for all)")
    every: dict[str, tuple[Callable[[], list], Callable[[list], list[str]]]] = {
        "models": (model_rows, _models_text),
        "weights": (lambda: weights_rows(a.weights_dir), _weights_text),
        "datasets": (lambda: dataset_rows(a.data_root), lambda rows: _datasets_text(rows, a.data_root)),
        "protocols": (protocol_rows, _protocols_text),
    }
    return {s: every[s] for s in SECTIONS if not a.sections or s in a.sections}


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    rows = {name: make() for name, (make, _) in _sections(a).items()}
    if a.json:
        print(json.dumps({name: [asdict(r) for r in found] for name, found in rows.items()}, indent=1))
    else:
        texts = _sections(a)
        print("\n\n".join("\n".join(texts[name][1](found)) for name, found in rows.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
