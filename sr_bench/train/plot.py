"""The validation curve of a run: PSNR against updates (one line per dataset and scale), with the
training loss on a second panel. Drawn with matplotlib's Agg canvas directly (no pyplot, no
global backend switch), so importing this module or calling it changes nothing for the caller."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sr_bench.images import atomic_write

__all__ = ["plot_log", "read_log"]


def read_log(path: str | os.PathLike) -> list[dict]:
    """The records of a ``log.jsonl`` (lines that do not parse, e.g. cut by a kill, are skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def plot_log(log: str | os.PathLike | list[dict], png: str | os.PathLike, title: str = "") -> Path:
    """Draw ``png`` from a run's log (a path or its records); returns the path written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_log(log) if not isinstance(log, list) else log
    val = [r for r in records if r.get("event") == "val"]
    trn = [r for r in records if r.get("event") == "train"]
    fig = Figure(figsize=(7.5, 6.0), dpi=100)
    FigureCanvasAgg(fig)
    ax_psnr, ax_loss = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    series: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for r in val:
        series.setdefault((r["dataset"], int(r["scale"])), []).append((int(r["iteration"]), float(r["psnr"])))
    for (ds, s), pts in sorted(series.items()):
        pts.sort()
        ax_psnr.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"{ds} x{s}")
        ax_psnr.annotate(f"{pts[-1][1]:.2f}", pts[-1], textcoords="offset points", xytext=(4, 0), fontsize=8)
    protocol = val[0].get("protocol", "paper") if val else "paper"
    ax_psnr.set_ylabel(f"PSNR (dB, {protocol} protocol)")
    if series:
        ax_psnr.legend(loc="lower right", fontsize=8)
    else:
        ax_psnr.text(0.5, 0.5, "no validation yet", transform=ax_psnr.transAxes, ha="center")
    ax_psnr.grid(alpha=0.3)
    if trn:
        ax_loss.plot([r["iteration"] for r in trn], [r["loss"] for r in trn], lw=1, color="tab:gray")
        ax_loss.set_yscale("log")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_xlabel("updates")
    ax_loss.grid(alpha=0.3)
    if title:
        ax_psnr.set_title(title)
    fig.tight_layout()
    return atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))
