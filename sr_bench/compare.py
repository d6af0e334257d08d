"""Compare two labelled result sets image by image: is B's gain over A more than noise?

    python -m sr_bench.compare bicubic "edsr-baseline (quick)" --datasets B100 --scales 2

A and B are record labels (the Table 3 columns); ``NAME+`` means NAME's self-ensemble records.
Images are paired by (dataset, scale, image). For each (dataset, scale) and for all pairs pooled:

* mean dPSNR and dSSIM (always B - A) with a 95% percentile bootstrap interval of the mean
  (10,000 paired resamples of the images, fixed seed, so a rerun prints the same interval);
* the two-sided paired Wilcoxon signed-rank p-value (zero differences dropped, average ranks for
  ties; exact null distribution for n <= 25 without ties, else the normal approximation with tie
  and continuity corrections);
* wins / ties / losses of B, where a tie is |dPSNR| < 0.005 dB: below what a 2-decimal table shows;
* the images where B loses most.

The pooled row weighs each image once, so big datasets (B100, Urban100) weigh more than Set5.
The markdown goes to stdout and, atomically, to ``--out`` (default ``RESULTS/compare-A-vs-B.md``,
long labels cut to a bounded name ending in a hash).

``--protocols paper pytorch basicsr`` puts the same paired statistics under each protocol side by
side and flags the rows where the sign of the gain or its significance (p < 0.05) changes with
the protocol: does the gain survive a change of evaluation code?

Only records that verify are compared (``sr_bench.records``): a refused record of A or B is an
error naming its line; a reproducibility conflict or an unverified legacy record is noted.
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sr_bench import cli
from sr_bench.data.registry import dataset_order
from sr_bench.labels import markdown, slug
from sr_bench.paths import results_and_records
from sr_bench.protocols import PROTOCOLS
from sr_bench.records import Record, RecordSet, find_conflicts, read_records, records_file_problem
from sr_bench.storage import refuse_same_file, write_text

__all__ = ["ALPHA", "TIE_DB", "Pair", "Stats", "bootstrap_ci", "wilcoxon_signed_rank", "pair_records", "compare",
           "compare_protocols", "evaluate_command", "main"]

log = logging.getLogger("sr_bench.compare")

#: |dPSNR| below this is a tie (dB): a difference a two-decimal table cannot show
TIE_DB = 0.005
N_RESAMPLES = 10_000
SEED = 0
#: exact Wilcoxon null distribution up to this many non-zero differences (when there are no ties)
EXACT_MAX_N = 25
#: --protocols calls a difference significant at p below this
ALPHA = 0.05


def bootstrap_ci(d: np.ndarray, *, confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED, chunk: int = 1000) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(d)``: resample the n paired differences with
    replacement (``default_rng(seed).integers(0, n, (n_resamples, n))``, drawn in row chunks
    to bound memory; the draws are the same as in one call)."""
    d = np.asarray(d, dtype=np.float64)
    n = d.size
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        means[start:start + rows] = d[rng.integers(0, n, (rows, n))].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``a``, tied values sharing the mean of their ranks."""
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_a)) + 1]
    ends = np.r_[starts[1:], a.size]
    ranks = np.empty(a.size)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _exact_two_sided(w_plus: float, n: int) -> float:
    """P-value of W+ under the exact null: all 2^n sign patterns of ranks 1..n equally likely."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):  # counts of subsets of {1..k} by their sum
        counts[k:] = counts[k:] + counts[:-k].copy()
    pmf = counts / counts.sum()
    w = int(round(w_plus))
    p = 2 * min(pmf[: w + 1].sum(), pmf[w:].sum())
    return float(min(1.0, p))


def wilcoxon_signed_rank(d: np.ndarray) -> tuple[float, int]:
    """Two-sided p-value of the paired Wilcoxon signed-rank test on differences ``d`` and the
    number of non-zero differences it used; NaN when all are zero."""
    d = np.asarray(d, dtype=np.float64)
    d = d[d != 0]  # Wilcoxon's zero method: zero differences carry no sign
    n = d.size
    if n == 0:
        return math.nan, 0
    ranks = _average_ranks(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    _, tie_counts = np.unique(np.abs(d), return_counts=True)
    ties = bool((tie_counts > 1).any())
    if n <= EXACT_MAX_N and not ties:
        return _exact_two_sided(w_plus, n), n
    mean = n * (n + 1) / 4
    var = n * (n + 1) * (2 * n + 1) / 24 - float((tie_counts**3 - tie_counts).sum()) / 48
    if var <= 0:
        return math.nan, n
    diff = w_plus - mean
    z = (diff - 0.5 * np.sign(diff)) / math.sqrt(var)  # continuity correction towards the mean
    return float(min(1.0, math.erfc(abs(z) / math.sqrt(2)))), n


@dataclass(frozen=True)
class Pair:
    dataset: str
    scale: int
    image: str
    psnr_a: float
    psnr_b: float
    ssim_a: float
    ssim_b: float

    @property
    def dpsnr(self) -> float:
        return self.psnr_b - self.psnr_a

    @property
    def dssim(self) -> float:
        return self.ssim_b - self.ssim_a


@dataclass(frozen=True)
class Stats:
    """B - A over a group of paired images."""

    n: int
    psnr_a: float
    psnr_b: float
    dpsnr: float
    dpsnr_ci: tuple[float, float]
    p_psnr: float
    dssim: float
    dssim_ci: tuple[float, float]
    p_ssim: float
    wins: int
    ties: int
    losses: int

    @classmethod
    def of(cls, pairs: Sequence[Pair]) -> Stats:
        dp = np.array([p.dpsnr for p in pairs])
        ds = np.array([p.dssim for p in pairs])
        return cls(
            n=len(pairs), psnr_a=float(np.mean([p.psnr_a for p in pairs])),
            psnr_b=float(np.mean([p.psnr_b for p in pairs])),
            dpsnr=float(dp.mean()), dpsnr_ci=bootstrap_ci(dp), p_psnr=wilcoxon_signed_rank(dp)[0],
            dssim=float(ds.mean()), dssim_ci=bootstrap_ci(ds), p_ssim=wilcoxon_signed_rank(ds)[0],
            wins=int((dp >= TIE_DB).sum()), ties=int((np.abs(dp) < TIE_DB).sum()), losses=int((dp <= -TIE_DB).sum()),
        )


def _split_label(label: str, labels: set[str]) -> tuple[str, bool | None]:
    """(record label, self-ensemble) for a command-line label; ``X+`` is X's self-ensemble."""
    if label in labels:
        return label, None
    if label.endswith("+") and label[:-1] in labels:
        return label[:-1], True
    shown = ", ".join(repr(x) for x in sorted(labels)) or "none"
    raise cli.UsageError(f"no records labelled {label!r}; labels present: {shown} (NAME+ selects NAME's self-ensemble)")


def _pick(records: Sequence[Record], label: str, protocol: str, datasets: set[str] | None,
          scales: set[int] | None) -> dict[tuple[str, int], Record]:
    """The newest (complete first) record of ``label`` per (dataset, scale)."""
    name, ensemble = _split_label(label, {r.label for r in records})
    chosen: dict[tuple[str, int], Record] = {}
    for r in records:
        if r.label != name or r.protocol != protocol:
            continue
        if r.self_ensemble != bool(ensemble):
            continue
        if (datasets and r.dataset not in datasets) or (scales and r.scale not in scales):
            continue
        k = (r.dataset, r.scale)
        if k in chosen and (r.weights, r.data_sha256) != (chosen[k].weights, chosen[k].data_sha256):
            # one label, two networks or two image sets: say which one is compared
            log.warning("%s has several %s x%d records (other weights or images); comparing the newest complete one",
                        label, r.dataset, r.scale)
        if k not in chosen or (r.complete, r.date) >= (chosen[k].complete, chosen[k].date):
            chosen[k] = r
    return chosen


def pair_records(records: Sequence[Record], a: str, b: str, *, protocol: str = "paper",
                 datasets: Sequence[str] | None = None, scales: Sequence[int] | None = None) -> list[Pair]:
    """The images A and B were both scored on, in (dataset, scale, A's image order)."""
    ds, sc = set(datasets or []) or None, set(scales or []) or None
    ra, rb = _pick(records, a, protocol, ds, sc), _pick(records, b, protocol, ds, sc)
    common = [k for k in ra if k in rb]
    if not common:
        def have(x: dict) -> str:
            return ", ".join(f"{d} x{s}" for d, s in sorted(x)) or "nothing"
        raise cli.UsageError(
            f"{a!r} and {b!r} share no (dataset, scale) under protocol {protocol!r}: {a!r} has {have(ra)}; "
            f"{b!r} has {have(rb)}; evaluate both on the same datasets and scales, or change "
            f"--datasets/--scales/--protocol"
        )
    pairs = []
    order = {name: i for i, name in enumerate(dataset_order())}  # Table 3's row order, then the rest
    for k in sorted(common, key=lambda k: (order.get(k[0], len(order)), k[0], k[1])):
        by_b = {p["image"]: p for p in rb[k].per_image}
        for pa in ra[k].per_image:
            pb = by_b.get(pa["image"])
            if pb is not None:
                pairs.append(Pair(k[0], k[1], pa["image"], pa["psnr"], pb["psnr"], pa["ssim"], pb["ssim"]))
    if not pairs:
        raise cli.DataError(f"{a!r} and {b!r} have no image in common (different image names?)")
    return pairs


def _ci(ci: tuple[float, float], digits: int) -> str:
    return f"[{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]"


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _row(name: str, scale: str, s: Stats) -> str:
    """A table row; ``name`` is markdown already."""
    return (f"| {name} | {scale} | {s.n} | {s.psnr_a:.3f} | {s.psnr_b:.3f} | {s.dpsnr:+.3f} | {_ci(s.dpsnr_ci, 3)} | "
            f"{_p(s.p_psnr)} | {s.dssim:+.4f} | {_ci(s.dssim_ci, 4)} | {_p(s.p_ssim)} | {s.wins}/{s.ties}/{s.losses} |")


def render(a: str, b: str, pairs: Sequence[Pair], protocol: str, source: str, worst: int = 5,
           notes: Sequence[str] = ()) -> str:
    """The comparison as markdown (labels escaped)."""
    groups: dict[tuple[str, int], list[Pair]] = {}
    for p in pairs:
        groups.setdefault((p.dataset, p.scale), []).append(p)
    source, a, b = markdown(source), markdown(a), markdown(b)
    lines = [
        f"# {b} vs {a}",
        "",
        f"Records: {source}, protocol `{protocol}`. Differences are B - A ({b} minus {a}) per image; "
        f"95% CI: percentile bootstrap of the mean ({N_RESAMPLES:,} paired resamples, seed {SEED}); "
        f"p: two-sided paired Wilcoxon signed-rank; W/T/L: images where B wins / ties (|dPSNR| < {TIE_DB} dB) / loses.",
        "",
        f"| dataset | scale | images | {a} PSNR | {b} PSNR | dPSNR | 95% CI | p | dSSIM | 95% CI | p | W/T/L |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(markdown(Path(d).name), f"x{s}", Stats.of(g)) for (d, s), g in groups.items()]
    if len(groups) > 1:
        lines.append(_row("**all**", "", Stats.of(pairs)))
    losers = sorted((p for p in pairs if p.dpsnr <= -TIE_DB), key=lambda p: p.dpsnr)[:worst]
    lines += ["", f"## Where {b} loses most", ""]
    if losers:
        lines += [f"| dataset | scale | image | {a} PSNR | {b} PSNR | dPSNR | dSSIM |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {markdown(Path(p.dataset).name)} | x{p.scale} | {markdown(p.image)} | {p.psnr_a:.3f} | "
                  f"{p.psnr_b:.3f} | {p.dpsnr:+.3f} | {p.dssim:+.4f} |" for p in losers]
    else:
        lines.append(f"{b} loses on no image (by {TIE_DB} dB or more).")
    return "\n".join(lines + _notes_section(notes)) + "\n"


def _notes_section(notes: Sequence[str]) -> list[str]:
    return ["", "## Notes on these records", ""] + [f"- {markdown(n)}" for n in notes] if notes else []


def _read(records_file: str | Path) -> RecordSet:
    path = Path(records_file)
    problem = records_file_problem(path)
    if problem == "does not exist":
        raise cli.UsageError(f"--records {path}: no such file; run python -m sr_bench.evaluate first or pass --records")
    if problem is not None:
        raise cli.UsageError(f"--records {path} {problem}; pass the records file (the records.jsonl that "
                             f"`python -m sr_bench.evaluate` wrote)")
    return read_records(path)


def _label_set(records: RecordSet) -> set[str]:
    """Labels of the usable records and of the refused ones (so a label only refused records hold
    is an error about them, not an unknown label)."""
    return {r.label for r in records} | {e.record.label for e in records.of_kind("refused") if e.record is not None}


def _refuse_unverified(records: RecordSet, labels: Sequence[str], protocols: Sequence[str],
                       datasets: Sequence[str] | None, scales: Sequence[int] | None) -> None:
    """A refused record of a label being compared is an error naming its line."""
    known = _label_set(records)
    wanted = {(name, bool(ensemble)) for name, ensemble in (_split_label(label, known) for label in labels)}
    for e in records.of_kind("refused"):
        r = e.record
        if r is None or (r.label, r.self_ensemble) not in wanted or r.protocol not in protocols:
            continue
        if (not datasets or r.dataset in datasets) and (not scales or r.scale in scales):
            raise cli.DataError(f"{e.message(records.path or 'records')}: this record fails its checks, so it is not "
                                f"compared; re-measure it (python -m sr_bench.evaluate ... --replace) or remove the "
                                f"line; `python -m sr_bench.records verify {records.path}` lists every problem")


def _record_notes(records: RecordSet, chosen: Sequence[Record]) -> list[str]:
    """Conflicts and legacy marks of the records a comparison uses."""
    keys = {r.key for r in chosen}
    mine = [r for r in records if r.key in keys]
    notes = [f"reproducibility conflict: {c.describe()}" for c in find_conflicts(mine, records.where)]
    legacy = [r for r in chosen if r.legacy]
    if legacy:
        notes.append(f"{len(legacy)} unverified legacy record(s) (schema 1/2, no checksum): "
                     + ", ".join(sorted(r.key.describe() for r in legacy))
                     + f"; `python -m sr_bench.records upgrade {records.path}` checks and stamps them")
    return notes


def _chosen(records: Sequence[Record], labels: Sequence[str], protocol: str, datasets: Sequence[str] | None,
            scales: Sequence[int] | None) -> list[Record]:
    ds, sc = set(datasets or []) or None, set(scales or []) or None
    return [r for label in labels for r in _pick(records, label, protocol, ds, sc).values()]


def compare(a: str, b: str, records_file: str | Path, *, protocol: str = "paper",
            datasets: Sequence[str] | None = None, scales: Sequence[int] | None = None, worst: int = 5) -> str:
    """Markdown comparing labels ``a`` and ``b`` in ``records_file``."""
    records = _read(records_file)
    _refuse_unverified(records, [a, b], [protocol], datasets, scales)
    pairs = pair_records(records, a, b, protocol=protocol, datasets=datasets, scales=scales)
    notes = _record_notes(records, _chosen(records, [a, b], protocol, datasets, scales))
    return render(a, b, pairs, protocol, str(records_file), worst, notes)


# --- the same comparison under several protocols ------------------------------------------------


def evaluate_command(template: Record, protocol: str | Sequence[str], datasets: Sequence[str], scales: Sequence[int],
                     records_file: str | Path) -> str:
    """The ``python -m sr_bench.evaluate`` command that measures ``template``'s label (its model and
    weights, or its SR folder) under ``protocol`` (one, or several in one run) on ``datasets`` x ``scales``."""
    protocols = [protocol] if isinstance(protocol, str) else list(protocol)
    if template.source == "sr-folder":
        cmd = ["--sr-dir", str(template.sr_dir)]
        pattern = template.model_options.get("sr_pattern")
        cmd += ["--sr-pattern", str(pattern)] if pattern else []
    else:
        cmd = ["--model", template.model]
        source = template.weights_source
        if source:
            cmd += ["--weights", "random" if source.startswith("random-init") else source]
        for key, value in template.model_options.items():
            cmd += ["--option", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
        cmd += ["--self-ensemble"] if template.self_ensemble else []
    cmd += ["--label", template.label, "--datasets", *datasets, "--scales", *map(str, scales),
            "--protocol", *protocols, "--records", str(records_file)]
    return "python -m sr_bench.evaluate " + shlex.join(cmd)


def _template(records: Sequence[Record], label: str) -> Record:
    """A record of ``label`` (any protocol): what its evaluate command is made from."""
    name, ensemble = _split_label(label, {r.label for r in records})
    return next(r for r in reversed(records) if r.label == name and r.self_ensemble == bool(ensemble))


def _missing(records: Sequence[Record], labels: Sequence[str], protocols: Sequence[str],
             datasets: Sequence[str] | None, scales: Sequence[int] | None,
             records_file: str | Path) -> tuple[list[tuple[str, int]], list[str]]:
    """The (dataset, scale) rows (those both labels have under some protocol, else those either
    has), and the evaluate commands that would fill the cells missing under the others."""
    ds, sc = set(datasets or []) or None, set(scales or []) or None
    have = {(label, p): _pick(records, label, p, ds, sc) for label in labels for p in protocols}
    shared = {k for p in protocols for k in have[(labels[0], p)] if all(k in have[(x, p)] for x in labels)}
    rows = sorted(shared or {k for got in have.values() for k in got}, key=_row_order)
    needed: dict[tuple[str, tuple[str, ...], tuple[int, ...]], list[str]] = {}  # one command per label and gap
    for (label, p), got in have.items():
        gap = [k for k in rows if k not in got]
        if gap:
            where = (tuple(sorted({d for d, _ in gap}, key=lambda d: _row_order((d, 0)))),
                     tuple(sorted({s for _, s in gap})))
            needed.setdefault((label, *where), []).append(p)
    commands = [evaluate_command(_template(records, label), ps, list(ds), list(sc), records_file)
                for (label, ds, sc), ps in needed.items()]
    return rows, commands


def _row_order(k: tuple[str, int]) -> tuple[int, str, int]:
    order = {name: i for i, name in enumerate(dataset_order())}
    return order.get(k[0], len(order)), k[0], k[1]


def _sign(d: float) -> int:
    return 0 if abs(d) < TIE_DB else (1 if d > 0 else -1)


def _changes(stats: dict[str, Stats], protocols: Sequence[str]) -> str:
    """Where the sign of dPSNR (a tie below TIE_DB) or its significance differs from the first protocol."""
    first = stats[protocols[0]]
    flags = []
    for p in protocols[1:]:
        s = stats[p]
        if _sign(s.dpsnr) != _sign(first.dpsnr):
            flags.append(f"sign under {p}")
        if (s.p_psnr < ALPHA) != (first.p_psnr < ALPHA):  # NaN (all ties) is not significant
            flags.append(f"significance under {p} (p {_p(s.p_psnr)})")
    return "; ".join(flags)


def render_protocols(a: str, b: str, groups: dict[str, dict[tuple[str, int], list[Pair]]], protocols: Sequence[str],
                     source: str, notes: Sequence[str] = ()) -> str:
    """One table: rows dataset x scale (and all pooled), a column group per protocol."""
    ea, eb = markdown(a), markdown(b)
    head = " | ".join(f"{p} dPSNR | {p} 95% CI | {p} p | {p} W/T/L" for p in protocols)
    lines = [f"# {eb} vs {ea} across protocols", "",
             f"Records: {markdown(source)}. Per protocol: mean dPSNR = B - A ({eb} minus {ea}) per image, its 95% "
             f"bootstrap CI ({N_RESAMPLES:,} paired resamples, seed {SEED}), the two-sided paired Wilcoxon p and "
             f"W/T/L (ties: |dPSNR| < {TIE_DB} dB). *changes*: where the sign of dPSNR (a tie counts as 0) or its "
             f"significance (p < {ALPHA}) differs from `{protocols[0]}`.", "",
             f"| dataset | scale | images | {head} | changes |",
             "|---|---|---|" + "---|---|---|---|" * len(protocols) + "---|"]
    rows = list(next(iter(groups.values())))
    keys: list[tuple[str, int] | None] = [*rows, None] if len(rows) > 1 else list(rows)
    for k in keys:
        stats = {p: Stats.of(groups[p][k] if k else [x for g in groups[p].values() for x in g]) for p in protocols}
        n = "/".join(dict.fromkeys(str(s.n) for s in stats.values()))
        cells = " | ".join(f"{s.dpsnr:+.3f} | {_ci(s.dpsnr_ci, 3)} | {_p(s.p_psnr)} | {s.wins}/{s.ties}/{s.losses}"
                           for s in stats.values())
        name, scale = (markdown(Path(k[0]).name), f"x{k[1]}") if k else ("**all**", "")
        lines.append(f"| {name} | {scale} | {n} | {cells} | {_changes(stats, protocols)} |")
    return "\n".join(lines + _notes_section(notes)) + "\n"


def compare_protocols(a: str, b: str, records_file: str | Path, protocols: Sequence[str], *,
                      datasets: Sequence[str] | None = None, scales: Sequence[int] | None = None) -> str:
    """Markdown comparing ``a`` and ``b`` under each of ``protocols``, side by side. Every
    (label, protocol, dataset, scale) cell must exist; a missing one is an error giving the
    evaluate commands that make them."""
    records = _read(records_file)
    _refuse_unverified(records, [a, b], protocols, datasets, scales)
    rows, commands = _missing(records, [a, b], protocols, datasets, scales, records_file)
    if not rows:
        raise cli.UsageError(f"{a!r} and {b!r} have no records under {', '.join(protocols)} on these datasets and "
                             f"scales; evaluate them first, or change --datasets/--scales")
    if commands:
        raise cli.UsageError(f"{a!r} and {b!r} lack records under some of the protocols (rows: "
                             f"{', '.join(f'{d} x{s}' for d, s in rows)}); make them with: " + " ; ".join(commands))
    groups: dict[str, dict[tuple[str, int], list[Pair]]] = {}
    for p in protocols:
        pairs = pair_records(records, a, b, protocol=p, datasets=[d for d, _ in rows], scales=[s for _, s in rows])
        groups[p] = {k: [x for x in pairs if (x.dataset, x.scale) == k] for k in rows}
    chosen = [r for p in protocols for r in _chosen(records, [a, b], p, datasets, scales)]
    return render_protocols(a, b, groups, protocols, str(records_file), _record_notes(records, chosen))


def output_path(results: Path, out: str | None, a: str, b: str, protocols: Sequence[str] | None) -> Path:
    """``--out``, else ``RESULTS/compare-A-vs-B[-protocols].md`` with labels made bounded slugs."""
    if out:
        return Path(out)
    return results / f"compare-{slug(a)}-vs-{slug(b)}{'-protocols' if protocols else ''}.md"


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m sr_bench.compare", __doc__.split("\n\n")[0])
    # nargs="?": `--protocols P ... A B` hands the labels to --protocols; labels_and_protocols takes them back
    p.add_argument("a", metavar="A", nargs="?", help="label of the reference result set")
    p.add_argument("b", metavar="B", nargs="?", help="label of the result set compared with A (differences are B - A)")
    p.add_argument("--datasets", nargs="+", default=None, help="only these datasets (default: all A and B share)")
    p.add_argument("--scales", nargs="+", type=cli.positive_int, default=None, help="only these scales")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--protocol", choices=list(PROTOCOLS), default="paper")
    which.add_argument("--protocols", nargs="+", default=None, metavar="P",
                       help=f"compare under each protocol side by side ({', '.join(PROTOCOLS)})")
    p.add_argument("--records", default=None, help="records file (default: RESULTS/records.jsonl)")
    p.add_argument("--out", default=None, help="markdown file to write (default: RESULTS/compare-A-vs-B.md)")
    p.add_argument("--worst", type=cli.non_negative_int, default=5, help="how many of B's worst images to list")
    cli.add_common_options(p, results=True)
    return p


def labels_and_protocols(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Set ``args.a``, ``args.b`` and ``args.protocols`` as meant when the labels come after
    ``--protocols`` (``--protocols paper pytorch basicsr A B``, the order the flag is often written
    in): argparse gives every value after the flag to it, so the values after the last protocol
    name are the labels. Anything else that is not a protocol name is refused as argparse would."""
    labels = [x for x in (args.a, args.b) if x is not None]
    if args.protocols:
        names = list(args.protocols)
        cut = len(names)
        while cut > 0 and names[cut - 1] not in PROTOCOLS and len(labels) + len(names) - cut < 2:
            cut -= 1
        labels += names[cut:]
        args.protocols = names[:cut]
        wrong = [x for x in args.protocols if x not in PROTOCOLS]
        if wrong or not args.protocols:
            choices = ", ".join(repr(x) for x in PROTOCOLS)
            parser.error(f"argument --protocols: invalid choice: {(wrong or names)[0]!r} (choose from {choices})")
    if len(labels) != 2:
        parser.error("give the two labels A and B (before the options, or after the protocol names of "
                     "--protocols); an option that takes several values (--datasets, --scales) takes the words "
                     "after it, so put the labels first")
    args.a, args.b = labels


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    labels_and_protocols(parser, args)
    cli.setup_logging(args.verbosity)
    results, records = results_and_records(args.results, args.records)
    out = output_path(results, args.out, args.a, args.b, args.protocols)
    refuse_same_file([("--records", records), ("--out", out)])
    if args.protocols:
        protocols = list(dict.fromkeys(args.protocols))
        text = compare_protocols(args.a, args.b, records, protocols, datasets=args.datasets, scales=args.scales)
    else:
        text = compare(args.a, args.b, records, protocol=args.protocol, datasets=args.datasets, scales=args.scales,
                       worst=args.worst)
    write_text(out, text)
    print(text, end="")
    log.info("written to %s", out.resolve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
