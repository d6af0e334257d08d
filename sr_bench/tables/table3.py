"""Table 3 (public benchmarks and DIV2K validation) as a view over result records.

Every cell is ``measured (paper, delta)`` for PSNR / SSIM; a cell that was not measured says why
when the caller knows (dataset absent, no weights, the profile skips it). One table per protocol.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from sr_bench import baselines, cli
from sr_bench.cli import command
from sr_bench.data.registry import dataset_order
from sr_bench.images import atomic_write
from sr_bench.paths import default_results_dir
from sr_bench.protocols import PROTOCOLS
from sr_bench.records import Record, default_label, read_records

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
        plus = "+" if self.self_ensemble else ""
        if self.label == self.model or self.label.startswith(self.model + " ("):
            # the default label: the paper's spelling of the model, "+" before the weights' name
            return DISPLAY.get(self.model, self.model) + plus + self.label[len(self.model):]
        return self.label + plus

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


def _cell(record: Record | None, paper: baselines.PaperValue | None, note: str | None) -> str:
    if record is None:
        if note is not None:
            return f"not run {note}"
        return "" if paper is None else f"not run (paper {paper.psnr:.2f} / {paper.ssim:.4f})"
    measured = f"{record.psnr:.2f} / {record.ssim:.4f}"
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


def table3_markdown(records: Sequence[Record], *, skipped: Sequence[Skip] = (), title_note: str = "") -> str:
    """The markdown text: a header, then one table per protocol found in ``records``.

    Only complete records are cells (a ``--max-images`` run is not the dataset's score); the
    newest record of each (protocol, column, dataset, scale) wins.
    """
    latest: dict[tuple, Record] = {}
    partial = [r for r in records if not r.complete]
    for r in sorted((r for r in records if r.complete), key=lambda r: r.date):
        latest[(r.protocol, column_of(r), r.dataset, r.scale)] = r
    protocols = sorted({k[0] for k in latest} | ({"paper"} if skipped else set()), key=lambda p: (p != "paper", p))
    lines = list(_HEADER)
    if title_note:
        lines += ["", title_note]
    for protocol in protocols:
        rows = {k: r for k, r in latest.items() if k[0] == protocol}
        lines += _protocol_section(protocol, rows, [s for s in skipped if protocol == "paper"])
    if partial:
        lines += ["", f"{len(partial)} partial record(s) (fewer images than the dataset has, e.g. --max-images) "
                      "are not shown: " + ", ".join(sorted({f"{r.label} {_dataset_title(r.dataset)} x{r.scale} "
                                                            f"({r.n_images}/{r.n_expected})" for r in partial})) + "."]
    return "\n".join(lines) + "\n"


def _dataset_title(dataset: str) -> str:
    return dataset if dataset in dataset_order() or not os.path.isabs(dataset) else f"`{dataset}`"


def _protocol_section(protocol: str, rows: dict[tuple, Record], skipped: Sequence[Skip]) -> list[str]:
    columns = sorted({k[1] for k in rows} | {s.column for s in skipped}, key=Column.sort_key)
    datasets = _order_datasets({k[2] for k in rows} | {s.dataset for s in skipped if s.dataset})
    scales = sorted({k[3] for k in rows} | {s.scale for s in skipped if s.scale}) or [2, 3, 4]
    lines = ["", f"## Protocol `{protocol}`", "", PROTOCOLS[protocol].summary if protocol in PROTOCOLS else "", ""]
    reasons: dict[str, str] = {}  # reason -> footnote mark
    body: list[str] = []
    unmeasured: dict[str, set[str]] = {}
    for ds in datasets:
        for s in scales:
            found = [(c, rows.get((protocol, c, ds, s))) for c in columns]
            if any(rec is not None for _, rec in found):
                cells = []
                for c, rec in found:
                    paper = baselines.table3_value(c.model, c.self_ensemble, ds, s)
                    skip = next((k for k in skipped if k.column == c and k.covers(ds, s)), None)
                    note = None if skip is None else reasons.setdefault(skip.reason, f"[{len(reasons) + 1}]")
                    cells.append(_cell(rec, paper, note))
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
        by_reason.setdefault("; ".join(sorted(why)), []).append(ds)
    lines += [""] * bool(by_reason) + [f"Not run on {', '.join(names)}: {why}." for why, names in by_reason.items()]
    return lines + _data_notes(rows.values())


def _data_notes(rows: Iterable[Record]) -> list[str]:
    rows = list(rows)
    notes = sorted({(r.dataset, r.scale, r.n_images, r.lr_source, r.data_sha256[:12]) for r in rows})
    if not notes:
        return []
    lines = ["", "<details><summary>Data behind these cells</summary>", "",
             "| Dataset | Scale | images | LR images | data sha256 |", "|---|---|---|---|---|"]
    lines += [f"| {_dataset_title(d)} | x{s} | {n} | {src} | `{sha}` |" for d, s, n, src, sha in notes]
    hosts = sorted({f"{r.device} / {r.host} / sr_bench {r.sr_bench_version} / torch {r.torch_version}" for r in rows})
    return lines + ["", "Measured on: " + "; ".join(hosts), "", "</details>"]


def write_table3(
    records: Sequence[Record], path: str | os.PathLike, *, skipped: Sequence[Skip] = (), title_note: str = ""
) -> Path:
    text = table3_markdown(records, skipped=skipped, title_note=title_note)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


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
    if not records_path.is_file():
        what = "is a folder, not a records file" if records_path.is_dir() else "does not exist"
        raise cli.DataError(f"{records_path} {what}; pass --records FILE (the records.jsonl that "
                            f"`python -m sr_bench.evaluate` wrote) or --results DIR holding one")
    path = write_table3(read_records(records_path), out)
    print(path.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
