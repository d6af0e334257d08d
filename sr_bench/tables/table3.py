"""Table 3 (public benchmarks and DIV2K validation) as a view over result records.

Every cell is ``measured (paper, delta)`` for PSNR / SSIM; a cell that was not measured says why
when the caller knows (dataset absent, no weights, the profile skips it). One table per protocol.

Only records that verify are cells (``sr_bench.records``): a refused record (checksum mismatch,
a mean that is not the mean of its images, NaN/Inf) or one a newer sr_bench wrote is left out and
named in a note; a cell whose identity was measured with different values (a reproducibility
conflict) is marked ``‡`` and both values are listed; an unverified legacy record (schema 1/2) is
marked ``†``. Labels and paths are escaped for markdown.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from sr_bench import baselines, cli
from sr_bench.cli import command
from sr_bench.data.registry import dataset_order
from sr_bench.labels import code, markdown
from sr_bench.paths import default_results_dir
from sr_bench.protocols import PROTOCOLS
from sr_bench.records import (
    Conflict,
    Record,
    RecordKey,
    RecordSet,
    bulk,
    default_label,
    find_conflicts,
    read_records,
    records_file_problem,
)
from sr_bench.storage import refuse_same_file, write_text

__all__ = ["Column", "Skip", "table3_markdown", "write_table3", "main"]

DISPLAY = {
    "bicubic": "Bicubic", "vdsr": "VDSR", "srresnet": "SRResNet", "edsr-baseline": "EDSR-baseline",
    "mdsr-baseline": "MDSR-baseline", "edsr": "EDSR", "mdsr": "MDSR",
}


def _topological(sequences: Iterable[Sequence[str]]) -> list[str]:
    """One order agreeing with every sequence's order; ties go to the name seen first."""
    after: dict[str, set[str]] = {}
    first: dict[str, int] = {}
    for seq in sequences:
        for i, name in enumerate(seq):
            first.setdefault(name, len(first))
            after.setdefault(name, set()).update(seq[:i])
    order: list[str] = []
    while len(order) < len(after):
        ready = [n for n in after if n not in order and after[n] <= set(order)]
        if not ready:  # the tables disagree; keep the first-seen order for the rest
            ready = [n for n in after if n not in order]
        order.append(min(ready, key=first.__getitem__))
    return order


@lru_cache(maxsize=1)
def paper_model_order() -> tuple[str, ...]:
    """The registered models in the paper's column order, read from its Table 3 rows and Table 1
    columns (``baselines/``), so a model added there is placed without editing this file."""
    rows: dict[tuple[str, str, str], list[str]] = {}
    for row in baselines.read_csv("table3.csv"):
        if row["model"]:
            rows.setdefault((row["dataset"], row["scale"], row["self_ensemble"]), []).append(row["model"])
    table1 = [row["model"] for row in baselines.read_csv("table1.csv") if row["model"]]
    return tuple(_topological([*rows.values(), table1]))


@dataclass(frozen=True)
class Column:
    """A table column: a label, with or without self-ensemble. Columns are equal when their labels
    and self-ensemble are; ``model`` (the registered architecture) gives the paper's values and
    the sort rank, ``weights`` (the profile that made the weights) the default label."""

    model: str = field(compare=False)
    self_ensemble: bool
    weights: str | None = field(default=None, compare=False)  # "official", "quick", ...; None if parameter-free
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", default_label(self.model, self.weights, None))

    @property
    def title(self) -> str:
        """The column header, escaped for markdown."""
        plus = "+" if self.self_ensemble else ""
        if self.label == self.model or self.label.startswith(self.model + " ("):
            # the default label: the paper's spelling of the model, "+" before the weights' name
            return markdown(DISPLAY.get(self.model, self.model) + plus + self.label[len(self.model):])
        return markdown(self.label + plus)

    def sort_key(self) -> tuple:
        order = paper_model_order()
        rank = order.index(self.model) if self.model in order else len(order)
        return (self.self_ensemble, rank, self.label)


@dataclass(frozen=True)
class Skip:
    """A cell that was not measured, and why. ``dataset`` / ``scale`` None: every row."""

    column: Column
    reason: str
    dataset: str | None = None
    scale: int | None = None

    def covers(self, dataset: str, scale: int) -> bool:
        return self.dataset in (None, dataset) and self.scale in (None, scale)


def column_of(record: Record) -> Column:
    weights = record.profile or (None if record.weights is None else "custom")
    return Column(record.model, record.self_ensemble, weights, record.label)


#: cell marks: a reproducibility conflict, an unverified legacy record
CONFLICT_MARK, LEGACY_MARK = "‡", "†"


def _cell(record: Record | None, paper: baselines.PaperValue | None, note: str | None, marks: str = "") -> str:
    if record is None:
        if note is not None:
            return f"not run {note}"
        return "" if paper is None else f"not run (paper {paper.psnr:.2f} / {paper.ssim:.4f})"
    measured = f"{record.psnr:.2f} / {record.ssim:.4f}{marks}"
    if paper is None:
        return f"{measured} (no paper value)"
    return (
        f"{measured} ({paper.psnr:.2f} / {paper.ssim:.4f}, "
        f"{record.psnr - paper.psnr:+.3f} / {record.ssim - paper.ssim:+.4f})"
    )


def _order_datasets(names: Iterable[str]) -> list[str]:
    names = set(names)
    known = [d for d in dataset_order() if d in names]
    return known + sorted(names - set(known))


_HEADER = [
    "# Table 3: public benchmarks and DIV2K validation (PSNR dB / SSIM)",
    "",
    "Generated by `sr_bench.tables.table3` from result records; do not edit by hand.",
    "Each cell: **measured (paper, measured - paper)** for PSNR / SSIM. The paper's values are",
    "`baselines/table3.csv` (the published Bicubic row was computed with the `vdsr` protocol; the",
    "EDSR / MDSR columns with `paper`). Datasets without published values say so.",
]


@dataclass
class _View:
    """What the table shows of a set of records, and the notes about what it does not."""

    latest: dict[tuple, Record]
    conflicts: dict[RecordKey, Conflict]
    notes: list[str]
    paper: dict[tuple[str, bool, str, int], baselines.PaperValue]


def _left_out(records: Sequence[Record]) -> tuple[list[Record], list[str]]:
    """The records that may be cells, and notes naming the lines of the file that may not."""
    notes = []
    if isinstance(records, RecordSet):
        for kind, what in (("refused", "refused (they fail their checks)"),
                           ("foreign", "written by a newer sr_bench (kept in the file, not shown)")):
            lines = records.of_kind(kind)
            if lines:
                shown = "; ".join(markdown(e.message(records.path or "records")) for e in lines[:5])
                more = f"; and {len(lines) - 5} more" if len(lines) > 5 else ""
                notes.append(f"Left out: {len(lines)} record(s) {what}: {shown}{more}. "
                             f"`python -m sr_bench.records verify` lists every problem.")
    finite = [r for r in records if _finite(r.psnr) and _finite(r.ssim)]
    if len(finite) < len(records):
        notes.append(f"Left out: {len(records) - len(finite)} record(s) whose PSNR or SSIM is not a finite number.")
    return finite, notes


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _view(records: Sequence[Record]) -> _View:
    usable, notes = _left_out(records)
    where = records.where if isinstance(records, RecordSet) else (lambda r: None)
    conflicts = {c.key: c for c in find_conflicts(usable, where)}
    latest: dict[tuple, Record] = {}
    for r in sorted((r for r in usable if r.complete), key=lambda r: r.date):
        latest[(r.protocol, column_of(r), r.dataset, r.scale)] = r
    return _View(latest, conflicts, notes, baselines.table3_values())


def table3_markdown(records: Sequence[Record], *, skipped: Sequence[Skip] = (), title_note: str = "") -> str:
    """The markdown text: a header, then one table per protocol found in ``records``.

    Only complete records are cells (a ``--max-images`` run is not the dataset's score); the
    newest record of each (protocol, column, dataset, scale) wins. ``records`` read from a file
    (a :class:`RecordSet`) also name the lines left out.
    """
    with bulk():
        return _markdown(records, skipped, title_note)


def _markdown(records: Sequence[Record], skipped: Sequence[Skip], title_note: str) -> str:
    view = _view(records)
    partial = [r for r in records if not r.complete]
    protocols = sorted({k[0] for k in view.latest} | ({"paper"} if skipped else set()),
                       key=lambda p: (p != "paper", p))
    lines = list(_HEADER)
    if title_note:
        lines += ["", title_note]
    for protocol in protocols:
        rows = {k: r for k, r in view.latest.items() if k[0] == protocol}
        lines += _protocol_section(protocol, rows, [s for s in skipped if protocol == "paper"], view)
    if partial:
        lines += ["", f"{len(partial)} partial record(s) (fewer images than the dataset has, e.g. --max-images) "
                      "are not shown: " + ", ".join(sorted({f"{markdown(r.label)} {_dataset_title(r.dataset)} "
                                                            f"x{r.scale} ({r.n_images}/{r.n_expected})"
                                                            for r in partial})) + "."]
    for note in view.notes:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def _dataset_title(dataset: str) -> str:
    return dataset if dataset in dataset_order() or not os.path.isabs(dataset) else code(dataset)


def _marks(record: Record, view: _View) -> str:
    return (f" {CONFLICT_MARK}" if record.key in view.conflicts else "") + (f" {LEGACY_MARK}" if record.legacy else "")


def _row_cells(protocol: str, ds: str, s: int, columns: Sequence[Column], rows: dict[tuple, Record],
               skipped: Sequence[Skip], reasons: dict[str, str], view: _View) -> list[str]:
    cells = []
    for c in columns:
        rec = rows.get((protocol, c, ds, s))
        paper = view.paper.get((c.model, c.self_ensemble, ds, s))
        skip = next((k for k in skipped if k.column == c and k.covers(ds, s)), None)
        note = None if skip is None else reasons.setdefault(skip.reason, f"[{len(reasons) + 1}]")
        cells.append(_cell(rec, paper, note, "" if rec is None else _marks(rec, view)))
    return cells


def _protocol_section(protocol: str, rows: dict[tuple, Record], skipped: Sequence[Skip], view: _View) -> list[str]:
    columns = sorted({k[1] for k in rows} | {s.column for s in skipped}, key=Column.sort_key)
    datasets = _order_datasets({k[2] for k in rows} | {s.dataset for s in skipped if s.dataset})
    scales = sorted({k[3] for k in rows} | {s.scale for s in skipped if s.scale}) or [2, 3, 4]
    present = {(k[2], k[3]) for k in rows}
    lines = ["", f"## Protocol {code(protocol)}", "", PROTOCOLS[protocol].summary if protocol in PROTOCOLS else "", ""]
    reasons: dict[str, str] = {}  # reason -> footnote mark
    body: list[str] = []
    unmeasured: dict[str, set[str]] = {}
    for ds in datasets:
        for s in scales:
            if (ds, s) in present:
                cells = _row_cells(protocol, ds, s, columns, rows, skipped, reasons, view)
                body.append(f"| {_dataset_title(ds)} | x{s} | " + " | ".join(cells) + " |")
            else:  # a row with nothing measured is listed once below, not as a row of blanks
                why = {k.reason for k in skipped if k.covers(ds, s) and k.dataset == ds} or {"not measured"}
                unmeasured.setdefault(ds, set()).update(why)
    lines.append("| Dataset | Scale | " + " | ".join(c.title for c in columns) + " |")
    lines.append("|---|---|" + "---|" * len(columns))
    lines += body
    if reasons:
        lines += [""] + [f"{m} {r}" for r, m in reasons.items()]
    by_reason: dict[str, list[str]] = {}
    for ds, why in unmeasured.items():
        by_reason.setdefault("; ".join(sorted(why)), []).append(_dataset_title(ds))
    lines += [""] * bool(by_reason) + [f"Not run on {', '.join(names)}: {why}." for why, names in by_reason.items()]
    return lines + _mark_notes(rows.values(), view) + _data_notes(rows.values())


def _mark_notes(rows: Iterable[Record], view: _View) -> list[str]:
    """What the marks in this protocol's cells mean, cell by cell."""
    shown = list(rows)
    conflicts = [view.conflicts[r.key] for r in shown if r.key in view.conflicts]
    legacy = sum(r.legacy for r in shown)
    lines = []
    if conflicts:
        lines += ["", f"{CONFLICT_MARK} Reproducibility conflict: the same identity (label, weights, data, "
                      f"images, scale, protocol) was measured with values more than 1e-6 apart; the newest is shown. "
                      f"Re-measure with `evaluate --replace` to settle it."]
        lines += [f"- {markdown(c.describe())}" for c in conflicts]
    if legacy:
        lines += ["", f"{LEGACY_MARK} {legacy} unverified legacy record(s) (schema 1/2, no checksum): "
                      f"`python -m sr_bench.records upgrade FILE` checks their means and stamps them."]
    return lines


def _data_notes(rows: Iterable[Record]) -> list[str]:
    rows = list(rows)
    notes = sorted({(r.dataset, r.scale, r.n_images, r.lr_source, r.data_sha256[:12]) for r in rows})
    if not notes:
        return []
    lines = ["", "<details><summary>Data behind these cells</summary>", "",
             "| Dataset | Scale | images | LR images | data sha256 |", "|---|---|---|---|---|"]
    lines += [f"| {_dataset_title(d)} | x{s} | {n} | {markdown(src)} | {code(sha)} |" for d, s, n, src, sha in notes]
    hosts = sorted(markdown(h) for h in {f"{r.device} / {r.host} / sr_bench {r.sr_bench_version} / torch "
                                         f"{r.torch_version}" for r in rows})
    return lines + ["", "Measured on: " + "; ".join(hosts), "", "</details>"]


def write_table3(
    records: Sequence[Record], path: str | os.PathLike, *, skipped: Sequence[Skip] = (), title_note: str = ""
) -> Path:
    text = table3_markdown(records, skipped=skipped, title_note=title_note)
    write_text(path, text)
    return Path(path)


def output_paths(results: str | None, records: str | None, out: str | None) -> tuple[Path, Path]:
    """(records file, Table 3 file): ``--records`` else ``<results>/records.jsonl``; ``--out``
    else ``table3.md`` beside the records file (never a committed table from someone else's records)."""
    records_path = Path(records) if records else Path(results or default_results_dir()) / "records.jsonl"
    return records_path, Path(out) if out else records_path.with_name("table3.md")


@command
def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("python -m sr_bench.tables.table3", "Regenerate Table 3 (markdown) from a records file.")
    cli.add_common_options(p, results=True)
    p.add_argument("--records", default=None, metavar="FILE", help="records file (default: RESULTS/records.jsonl)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="Table 3 markdown to write (default: table3.md beside the records file)")
    a = p.parse_args(argv)
    cli.setup_logging(a.verbosity)
    records_path, out = output_paths(a.results, a.records, a.out)
    problem = records_file_problem(records_path)
    if problem is not None:
        raise cli.DataError(f"{records_path} {problem.split(', not ')[0]}; pass --records FILE (the records.jsonl that "
                            f"`python -m sr_bench.evaluate` wrote) or --results DIR holding one")
    refuse_same_file([("--records", records_path), ("--out", out)])
    path = write_table3(read_records(records_path), out)
    print(path.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
