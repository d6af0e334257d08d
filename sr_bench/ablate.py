"""Ablations as commands: what each of the paper's design choices is worth, measured.

``python -m sr_bench.ablate --no-bn | --res-scale [F] | --warm-start | --loss l2
[--profile smoke|quick|gpu|paper] [--results DIR]`` trains the paired variants with identical
seeds, data and budget, evaluates both on the benchmarks present, and writes ``ablations.md``
(PSNR, delta, parameters, peak training memory, time, training stability, the paper's claim and
whether it held at this budget) and a PNG of the validation curves (for ``--warm-start``, the
paper's Figure 4).

An ablation is one :class:`Ablation` (its variants, model, scale, verdict rule and plot), made by
a function registered in :data:`ABLATIONS`; its claim is the row of ``baselines/claims.csv`` with
its name. A verdict needs runs that beat bicubic: otherwise it is "inconclusive".
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sr_bench import baselines, cli
from sr_bench.data import open_dataset
from sr_bench.evaluate import evaluate, load_candidates
from sr_bench.images import atomic_write, check_writable
from sr_bench.inference import resolve_device
from sr_bench.lookup import Registry
from sr_bench.models.registry import parse_option
from sr_bench.paths import default_results_dir, default_runs_dir
from sr_bench.records import append_records, environment, find_record, git_commit, read_records
from sr_bench.reproduce import available_datasets
from sr_bench.train import make_config, train_or_reuse
from sr_bench.train.config import PROFILES, check_fields, run_name
from sr_bench.train.memory import training_memory

__all__ = ["Ablation", "Variant", "ABLATIONS", "AblateConfig", "register_ablation", "stability", "run", "main"]

log = logging.getLogger("sr_bench.ablate")

#: profiles sized for a CPU: ablations use their ``cpu_options`` (a smaller network) there
CPU_PROFILES = ("smoke", "quick")


@dataclass(frozen=True)
class Variant:
    label: str
    changes: dict[str, Any] = field(default_factory=dict)  # TrainConfig dotted-field changes


#: (reference, variant) measured summaries -> the verdict sentence (starting "held", "partly
#: held", "did not hold" or "not observed")
VerdictRule = Callable[[dict, dict], str]


def default_verdict(ref: dict, alt: dict) -> str:
    """For an ablation without a rule of its own: final PSNR only."""
    d = ref["mean_psnr"] - alt["mean_psnr"]
    return (f"{'held' if d > 0 else 'did not hold'} at this budget: the paper's choice ends {d:+.3f} dB against the "
            f"alternative")


@dataclass(frozen=True)
class Ablation:
    name: str  # the command-line flag --NAME and the key of baselines/claims.csv
    model: str
    scale: int
    reference: Variant  # the paper's choice
    variant: Variant  # the alternative it is compared with
    verdict: VerdictRule = default_verdict
    cpu_options: dict[str, Any] = field(default_factory=dict)  # model options on CPU-sized profiles
    why_options: str = ""
    #: plot a line at the variant's best validation PSNR (Figure 4: the warm start's advantage)
    mark_best_of_variant: bool = False
    #: further networks whose training memory is measured beside the pair (the paper's reference)
    memory_of: tuple[str, ...] = ()


@dataclass
class AblateConfig:
    ablations: list[str]
    res_scale: float = 0.1
    loss: str = "l2"
    profile: str = "quick"
    results: str = "results"
    runs: str = "runs"  # training runs (checkpoints: not committed)
    data_root: str | None = None
    device: str = "auto"
    seed: int = 0
    #: dotted TrainConfig changes applied to every run (tests: tiny counts)
    overrides: dict[str, Any] = field(default_factory=dict)
    verbosity: int = 0
    #: training memory is measured for one step at the paper's batch and LR patch, whatever the
    #: profile trained with, so the column compares with the paper's claim on every machine
    memory_batch: int = 16
    memory_patch: int = 48


#: name -> a function of the command line's options that builds the ablation
ABLATIONS: Registry[Callable[[AblateConfig], Ablation]] = Registry(
    "ablation", hint="see python -m sr_bench.ablate --help")


def register_ablation(name: str) -> Callable[[Callable[[AblateConfig], Ablation]], Callable[[AblateConfig], Ablation]]:
    def add(factory: Callable[[AblateConfig], Ablation]) -> Callable[[AblateConfig], Ablation]:
        ABLATIONS.add(name, factory)
        return factory

    return add


# ---- the paper's ablations -------------------------------------------------------------------------


def _no_bn_verdict(ref: dict, alt: dict) -> str:
    d = ref["mean_psnr"] - alt["mean_psnr"]
    mem = 1 - ref["memory"]["saved_for_backward_mib"] / alt["memory"]["saved_for_backward_mib"]
    srr = ref.get("other_memory", {}).get("srresnet")
    against = "" if not srr else (
        f", {1 - ref['memory']['saved_for_backward_mib'] / srr['saved_for_backward_mib']:.0%} against SRResNet")
    return (f"{'held' if d > 0 else 'did not hold'} for accuracy at this budget ({d:+.3f} dB without BN); "
            f"memory: the network without BN keeps {mem:.0%} less activation memory for backward than with BN"
            f"{against} (paper: about 40% against SRResNet)")


def _res_scale_verdict(ref: dict, alt: dict) -> str:
    d = ref["mean_psnr"] - alt["mean_psnr"]
    if alt.get("diverged") and not ref.get("diverged"):
        return "held: training without residual scaling diverged, with it it did not"
    drop_ref = (ref.get("stability") or {}).get("largest_validation_drop_db") or 0.0
    drop_alt = (alt.get("stability") or {}).get("largest_validation_drop_db") or 0.0
    if drop_alt > max(0.5, 2 * drop_ref):
        return (f"partly held: without residual scaling the validation PSNR fell by {drop_alt:.2f} dB between two "
                f"validations (with it at most {drop_ref:.2f} dB); final PSNR {d:+.3f} dB for the paper's choice")
    return (f"not observed at this budget: both variants trained without divergence or a validation drop over 0.5 dB "
            f"({d:+.3f} dB for the paper's choice); the paper's instability appears with 256 filters and long "
            f"schedules")


def _warm_start_verdict(ref: dict, alt: dict) -> str:
    d = ref["mean_psnr"] - alt["mean_psnr"]
    pairs = zip(sorted(ref["history"], key=lambda h: h["iteration"]),
                sorted(alt["history"], key=lambda h: h["iteration"]), strict=False)
    early = [a["psnr"] - b["psnr"] for a, b in pairs]
    faster = bool(early) and all(e > 0 for e in early)
    return (f"{'held' if faster and d > 0 else 'partly held' if d > 0 or faster else 'did not hold'}: "
            f"the warm start is {'' if faster else 'not '}ahead at every validation point "
            f"and ends {d:+.3f} dB against random initialisation")


def _loss_verdict(ref: dict, alt: dict) -> str:
    d = ref["mean_psnr"] - alt["mean_psnr"]
    return (f"{'held' if d > 0 else 'did not hold'} at this budget: the paper's L1 ends {d:+.3f} dB against the "
            f"alternative")


@register_ablation("no-bn")
def _no_bn(_: AblateConfig) -> Ablation:
    return Ablation("no-bn", "edsr-baseline", 2, Variant("no batch norm (paper)"),
                    Variant("batch norm in every residual block", {"model.options.batch_norm": True}),
                    verdict=_no_bn_verdict, memory_of=("srresnet",))


@register_ablation("res-scale")
def _res_scale(c: AblateConfig) -> Ablation:
    return Ablation("res-scale", "edsr", 2,
                    Variant(f"residual scaling {c.res_scale:g} (paper)", {"model.options.res_scale": c.res_scale}),
                    Variant("no residual scaling", {"model.options.res_scale": 1.0}),
                    verdict=_res_scale_verdict, cpu_options={"blocks": 8, "filters": 128},
                    why_options="EDSR's 32 x 256 costs about 30x the baseline per update; CPU-sized profiles use "
                                "8 blocks x 128 filters (--profile gpu or paper: the real 32 x 256)")


@register_ablation("warm-start")
def _warm_start(_: AblateConfig) -> Ablation:
    return Ablation("warm-start", "edsr-baseline", 4,
                    Variant("initialised from the trained x2 model (paper)", {"model.init": "x2"}),
                    Variant("random initialisation"), verdict=_warm_start_verdict, mark_best_of_variant=True)


@register_ablation("loss")
def _loss(c: AblateConfig) -> Ablation:
    return Ablation("loss", "edsr-baseline", 2, Variant("L1 loss (paper)", {"model.loss": "l1"}),
                    Variant(f"{c.loss.upper()} loss", {"model.loss": c.loss}), verdict=_loss_verdict)


# ---- training ------------------------------------------------------------------------------------


def _claim(name: str) -> dict[str, str]:
    rows = [r for r in baselines.read_csv("claims.csv") if r.get("ablation") == name]
    if not rows:
        raise cli.DataError(f"baselines/claims.csv has no row for ablation {name!r}: add one "
                            f"(ablation,claim,quantity,paper_value,source) stating the paper's claim")
    return rows[0]


def _model_options(ab: Ablation, v: Variant, profile: str) -> dict[str, Any]:
    """``create()`` options of a variant: the CPU-sized shape (CPU profiles) and its knob."""
    options = dict(ab.cpu_options if profile in CPU_PROFILES else {})
    options.update({k.removeprefix("model.options."): val for k, val in v.changes.items()
                    if k.startswith("model.options.")})
    return options


def _config_changes(v: Variant, options: dict[str, Any]) -> dict[str, Any]:
    """The variant's TrainConfig changes with its model options folded into one ``model.options``."""
    changes = {k: val for k, val in v.changes.items() if not k.startswith("model.options.")}
    if options:
        changes["model.options"] = options
    return changes


def _train(model: str, scale: int, changes: dict[str, Any], config: AblateConfig, out: Path, label: str) -> Any:
    """Train one variant (or pick up its finished or interrupted run in ``out``)."""
    log.info("training '%s' (%s x%d, %s profile) -> %s", label, model, scale, config.profile, out)
    return train_or_reuse(config.profile, model, scale, out, data_root=config.data_root, device=config.device,
                          seed=config.seed, **{**config.overrides, **changes})


def _run_dir(config: AblateConfig, model: str, scale: int, changes: dict[str, Any], own: Path) -> Path:
    """A run whose recipe is the profile's own (no changes, or changes that restate its defaults,
    such as ``loss=l1``) is the one ``sr_bench.reproduce`` trains: share its folder instead of
    training it twice (the trainer checks again that the recipes agree). Only x2 runs: the paper
    profile's x3/x4 runs start from x2, so a from-scratch x3/x4 run is never reproduce's."""
    same = make_config(config.profile, model, scale, **changes) == make_config(config.profile, model, scale)
    if scale == 2 and config.seed == 0 and same:
        return Path(config.runs) / run_name(config.profile, model, scale)
    return own


def _train_variant(ab: Ablation, v: Variant, options: dict[str, Any], config: AblateConfig, out: Path) -> Any:
    changes = _config_changes(v, options)
    if changes.get("model.init") == "x2":  # the warm start: the same network trained at x2 first
        base = _config_changes(Variant("x2 source"), _model_options(ab, Variant("x2 source"), config.profile))
        source_dir = _run_dir(config, ab.model, 2, base, out.parent / "x2-source")
        source = _train(ab.model, 2, base, config, source_dir, "x2 source")
        changes["model.init"] = str(source.weights)
    return _train(ab.model, ab.scale, changes, config, _run_dir(config, ab.model, ab.scale, changes, out), v.label)


# ---- measurements --------------------------------------------------------------------------------


def stability(log_path: Path | None, history: Sequence[dict]) -> dict[str, float | None]:
    """What final PSNR hides: from the run's ``log.jsonl`` train events, the largest loss spike
    (an interval's largest update loss over the previous interval's mean loss) and the largest
    gradient norm; from the validation history, the largest drop between two validations (dB).
    Logs without ``loss_max`` / ``grad_norm_max`` (older runs) give None for those."""
    events = []
    if log_path is not None and Path(log_path).is_file():
        for line in Path(log_path).read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == "train":
                events.append(e)
    spikes = [b["loss_max"] / a["loss"] for a, b in zip(events, events[1:], strict=False)
              if b.get("loss_max") is not None and a.get("loss")]
    norms = [e.get("grad_norm_max", e.get("grad_norm")) for e in events]
    norms = [n for n in norms if n is not None and math.isfinite(n)]
    pts = sorted((h["iteration"], h["psnr"]) for h in history)
    drops = [a[1] - b[1] for a, b in zip(pts, pts[1:], strict=False)]
    return {"largest_loss_spike": max(spikes) if spikes else None,
            "largest_grad_norm": max(norms) if norms else None,
            "largest_validation_drop_db": max([0.0, *drops]) if len(pts) > 1 else None}


class _Measurer:
    """Evaluation and memory for one ``run``: finished records are reused by key (a run shared by
    two ablations, or met again on a rerun, is evaluated once), memory is measured once per network."""

    def __init__(self, config: AblateConfig, folder: Path, datasets: list[str]) -> None:
        self.config, self.folder, self.datasets = config, folder, datasets
        self.device = resolve_device(config.device)
        self.records = read_records(folder / "records.jsonl")
        self.memory: dict[str, dict[str, float]] = {}

    def peak_memory(self, model: str, scale: int, options: dict[str, Any]) -> dict[str, float]:
        key = json.dumps([model, scale, options], sort_keys=True)
        if key not in self.memory:
            self.memory[key] = training_memory(model, scale, options, device=self.device,
                                               batch=self.config.memory_batch, patch=self.config.memory_patch)
        return self.memory[key]

    def scores(self, cands: list, model: str, scale: int) -> list:
        out = []
        for ds in self.datasets:
            found = find_record(self.records, model=model, weights=cands[0].weights_sha256, dataset=ds, scale=scale,
                                self_ensemble=False, protocol="paper")
            if found is None:
                new = evaluate(cands, open_dataset(ds, self.config.data_root), "paper", progress=False,
                               device=self.device)
                append_records(self.folder / "records.jsonl", new)
                self.records += new
                found = new[0]
            out.append(found)
        return out

    def bicubic(self, scale: int) -> float:
        """Mean PSNR of bicubic on the same images: the bar a verdict's runs must clear."""
        recs = self.scores(load_candidates("bicubic", [scale], None, self.device), "bicubic", scale)
        return sum(r.psnr for r in recs) / len(recs)

    def variant(self, ab: Ablation, key: str, v: Variant) -> dict[str, Any]:
        out = Path(self.config.runs) / "ablations" / ab.name / self.config.profile / key
        options = _model_options(ab, v, self.config.profile)
        result = _train_variant(ab, v, options, self.config, out)
        cands = load_candidates(ab.model, [ab.scale], str(result.weights), self.device, options=options)
        for c in cands:
            c.profile = f"ablation {ab.name}: {v.label}"
        recs = self.scores(cands, ab.model, ab.scale)
        history = [h for h in result.history if h.get("scale") == ab.scale]
        return {
            "label": v.label,
            "psnr": {r.dataset: r.psnr for r in recs},
            "ssim": {r.dataset: r.ssim for r in recs},
            "mean_psnr": sum(r.psnr for r in recs) / len(recs),
            "parameters": sum(p.numel() for p in cands[0].module.parameters()),
            "memory": self.peak_memory(ab.model, ab.scale, options),
            "train_seconds": result.total_seconds,
            "iterations": result.iterations,
            "diverged": result.diverged,
            "history": history,
            "stability": stability(getattr(result, "log", None), history),
        }


def verdict(ab: Ablation, ref: dict, alt: dict, bicubic_psnr: float | None) -> str:
    """The ablation's own rule, once both runs beat bicubic on the same images; else inconclusive."""
    if bicubic_psnr is not None and min(ref["mean_psnr"], alt["mean_psnr"]) <= bicubic_psnr:
        return (f"inconclusive: the runs did not beat bicubic ({ref['mean_psnr']:.2f} and {alt['mean_psnr']:.2f} dB "
                f"against bicubic's {bicubic_psnr:.2f} dB on the same images), so this budget says nothing about "
                f"the claim (train longer: --profile quick, gpu or paper)")
    return ab.verdict(ref, alt)


def _summary(ab: Ablation, config: AblateConfig, m: _Measurer, measured: dict[str, dict]) -> dict[str, Any]:
    ref, alt = measured["reference"], measured["variant"]
    val_on = ref["history"][0]["dataset"] if ref["history"] else "-"
    plot = _plot({ref["label"]: ref["history"], alt["label"]: alt["history"]}, m.folder / f"{ab.name}.png",
                 f"--{ab.name}: {ab.model} x{ab.scale}, {config.profile} profile, validation on {val_on}",
                 best_of=alt["label"] if ab.mark_best_of_variant else None)
    env = environment(m.device)
    bicubic = m.bicubic(ab.scale)
    return {"profile": config.profile, "model": ab.model, "scale": ab.scale, "datasets": m.datasets,
            "measured_on": f"{env['host']}, torch {env['torch_version']}, sr_bench commit {git_commit()}, "
                           f"{env['date'][:10]}; data: {', '.join(m.datasets)}",
            "why_options": ab.why_options if config.profile in CPU_PROFILES else "",
            "updates": ref["iterations"], "bicubic_mean_psnr": bicubic,
            "memory_step": {"batch": config.memory_batch, "lr_patch": config.memory_patch},
            "claim": _claim(ab.name), "verdict": verdict(ab, ref, alt, bicubic), "plot": plot.name, **measured}


def run(config: AblateConfig) -> Path:
    if config.profile not in PROFILES:
        raise cli.UsageError(f"--profile: {PROFILES.unknown_message(config.profile)}")
    results = Path(config.results)
    folder = results / "ablations"
    datasets, _ = available_datasets(config.data_root)
    if config.profile in CPU_PROFILES:
        datasets = [d for d in datasets if d not in ("Urban100", "DIV2K")] or datasets
    chosen = [ABLATIONS.get(name)(config) for name in config.ablations]
    for ab in chosen:
        _claim(ab.name)  # a missing claim fails before hours of training, not after
    for out in (folder / "summary.json", results / "ablations.md", *(folder / f"{ab.name}.png" for ab in chosen)):
        check_writable(out)  # a read-only or full results folder fails now too
    summaries = _read_summaries(folder / "summary.json")
    m = _Measurer(config, folder, datasets)
    for ab in chosen:
        measured = {key: m.variant(ab, key, v) for key, v in (("reference", ab.reference), ("variant", ab.variant))}
        if ab.memory_of:  # the paper's memory claim is against another network (no-bn: SRResNet)
            measured["reference"]["other_memory"] = {n: m.peak_memory(n, ab.scale, {}) for n in ab.memory_of}
        summaries[ab.name] = _summary(ab, config, m, measured)
        _write_summaries(folder / "summary.json", summaries)
    path = _write_markdown(results / "ablations.md", summaries)
    log.info("wrote %s", path.resolve())
    return path


# ---- output --------------------------------------------------------------------------------------


def _plot(curves: dict[str, list[dict]], path: Path, title: str, best_of: str | None = None) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)  # no pyplot: drawing changes no global matplotlib state
    ax = fig.subplots()
    colours = {0: "tab:blue", 1: "tab:green"}
    for i, (label, history) in enumerate(curves.items()):
        pts = sorted((h["iteration"], h["psnr"]) for h in history)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", ms=3, color=colours.get(i), label=label)
    if best_of and curves.get(best_of):
        best = max(h["psnr"] for h in curves[best_of])
        ax.axhline(best, color="tab:red", ls="--", lw=1, label=f"best of '{best_of}'")
    ax.set_xlabel("updates")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))


def _read_summaries(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_summaries(path: Path, summaries: dict) -> None:
    text = json.dumps(summaries, indent=1, default=str)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _variant_row(v: dict, ref: dict, ds: list[str]) -> str:
    mem, st = v["memory"], v.get("stability") or {}
    return (f"| {v['label']} | " + " | ".join(f"{v['psnr'].get(d, float('nan')):.2f}" for d in ds)
            + f" | {v['mean_psnr']:.3f} | {v['mean_psnr'] - ref['mean_psnr']:+.3f} | {v['parameters']:,} | "
            f"{mem['saved_for_backward_mib']:.1f} | {mem.get('peak_mib', float('nan')):.1f} | "
            f"{v.get('iterations', '-')} | {_duration(v['train_seconds'])} | "
            f"{_fmt(st.get('largest_loss_spike'), '.2f')} | {_fmt(st.get('largest_grad_norm'), '.3g')} | "
            f"{_fmt(st.get('largest_validation_drop_db'), '.2f')} |")


def _write_markdown(path: Path, summaries: dict) -> Path:
    lines = ["# Ablations", "", "Generated by `python -m sr_bench.ablate`; do not edit by hand. Each pair is trained "
             "with", "identical seeds, data and number of updates; PSNR is the paper protocol (Y channel, shave = "
             "scale). Loss spike: an interval's largest update loss over the previous interval's mean; validation "
             "drop: the largest fall of validation PSNR between two validations.", ""]
    for name, s in summaries.items():
        ref, alt = s["reference"], s["variant"]
        lines += [f"## `--{name}`: {s['model']} x{s['scale']}, {s['profile']} profile, "
                  f"{s.get('updates', ref.get('iterations', '?'))} updates per variant", "",
                  f"**Paper's claim** ({s['claim']['source']}): {s['claim']['claim']}", "",
                  f"**Measured:** {s['verdict']}.", "",
                  f"Measured on {s.get('measured_on', 'unknown')}."
                  + (f" Bicubic on the same images: {s['bicubic_mean_psnr']:.3f} dB (mean)."
                     if s.get("bicubic_mean_psnr") is not None else ""), ""]
        if s.get("why_options"):
            lines += [f"Note: {s['why_options']}.", ""]
        if s.get("memory_step"):
            b, lr = s["memory_step"]["batch"], s["memory_step"]["lr_patch"]
            lines += [f"Memory: one training step (forward, backward, Adam) at batch {b} of {lr}x{lr} LR patches.", ""]
        ds = s["datasets"]
        lines.append("| variant | " + " | ".join(f"{d} PSNR" for d in ds) + " | mean | delta | parameters | "
                     "activation memory (MiB) | peak step memory (MiB) | updates | train time | largest loss spike | "
                     "largest grad norm | largest validation drop (dB) |")
        lines.append("|---|" + "---|" * (len(ds) + 11))
        lines += [_variant_row(v, ref, ds) for v in (ref, alt)]
        lines += ["", f"![{name} validation curves](ablations/{s['plot']})", ""]
    text = "\n".join(lines) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


# ---- command line --------------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    """argparse ``type=`` for a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m sr_bench.ablate", __doc__.split("\n\n")[0])
    cli.add_common_options(p, device=True, data_root=True, results=True)
    p.add_argument("--no-bn", action="store_true", help="batch norm in the residual blocks vs none (Sec. 3.1)")
    p.add_argument("--res-scale", nargs="?", const=0.1, type=_positive_float, default=None, metavar="F",
                   help="residual scaling F (default 0.1) vs none, on a wide model")
    p.add_argument("--warm-start", action="store_true", help="x4 from the trained x2 model vs random init (Figure 4)")
    p.add_argument("--loss", choices=["l2"], default=None, help="L1 (paper) vs this loss")
    for name in ABLATIONS.names():  # ablations registered beyond the paper's four: a flag each
        if name not in ("no-bn", "res-scale", "warm-start", "loss"):
            p.add_argument(f"--{name}", dest=f"ablation_{name}", action="store_true", help=f"the {name} ablation")
    p.add_argument("--all", action="store_true", help="every ablation")
    p.add_argument("--profile", choices=PROFILES.names(), default="quick")
    p.add_argument("--runs", default=None,
                   help="folder for the training runs (default: runs/ of the clone, else ./runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory-batch", type=cli.positive_int, default=16,
                   help="batch of the one training step whose memory is measured (default: the paper's 16)")
    p.add_argument("--memory-patch", type=cli.positive_int, default=48,
                   help="LR patch size of that step (default: the paper's 48)")
    p.add_argument("--set", type=parse_option, action="append", default=[], metavar="FIELD=VALUE",
                   help="change a training config field in every run, e.g. optim.iterations=2 (tests)")
    return p


def parse_args(argv: Sequence[str] | None = None) -> AblateConfig:

    p = build_parser()
    a = p.parse_args(argv)
    flags = {"no-bn": a.no_bn, "res-scale": a.res_scale is not None, "warm-start": a.warm_start,
             "loss": a.loss is not None}
    chosen = [n for n in ABLATIONS if flags.get(n, getattr(a, f"ablation_{n}", False)) or a.all]
    if not chosen:
        p.error("choose an ablation: " + ", ".join(f"--{n}" for n in ABLATIONS) + " (or --all)")
    check_fields(k for k, _ in a.set)  # an unknown --set field fails now, not after the first run
    return AblateConfig(chosen, res_scale=a.res_scale or 0.1, loss=a.loss or "l2", profile=a.profile,
                        results=str(a.results or default_results_dir()),
                        runs=str(a.runs or default_runs_dir()), data_root=a.data_root, device=a.device,
                        seed=a.seed, overrides=dict(a.set), verbosity=a.verbosity, memory_batch=a.memory_batch,
                        memory_patch=a.memory_patch)


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    cli.setup_logging(config.verbosity)
    run(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
