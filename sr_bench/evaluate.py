"""Evaluate registered models, or folders of SR images, on the benchmarks under a named protocol.

``python -m sr_bench.evaluate --model bicubic --datasets Set5 Set14 B100 Urban100 --scales 2 3 4
--protocol vdsr`` prints a table, appends one record per (model, dataset, scale, self-ensemble) to
``RESULTS/records.jsonl`` as each dataset finishes, and regenerates Table 3 beside it.
``--sr-dir DIR --label NAME`` scores SR images something else produced, the same way.
``--basicsr-options train.yml`` takes the network (and its ``rgb_mean`` / ``img_range``, which
BasicSR keeps outside its checkpoints) from the BasicSR option file it was trained with.

Each image is decoded once and scored for every model and scale; the next image is decoded in a
background thread while the current one runs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sr_bench import baselines, cli, sr_folder
from sr_bench import weights as wts
from sr_bench.cli import DataError, UsageError, command
from sr_bench.data import Dataset, benchmark_names, open_dataset
from sr_bench.images import as_batch, check_writable, file_kind_problem, quantize
from sr_bench.inference import memory_size_arg, parse_dtype, prepare_model, resolve_device, super_resolve_modes
from sr_bench.labels import check_label, csv_text
from sr_bench.models import create, get_spec, names, parse_option
from sr_bench.paths import default_results_dir
from sr_bench.precision import ieee_float32, math_mode
from sr_bench.protocols import PROTOCOLS, Protocol, get_protocol
from sr_bench.records import Companion, Record, append_records, default_label, environment, read_records, records_lock
from sr_bench.scoring import DataFingerprint, dataset_identity, score_image, set_fields
from sr_bench.storage import refuse_same_file, write_target, write_text
from sr_bench.tables.table3 import write_table3
from sr_bench.weights.basicsr_options import read_basicsr_options

__all__ = [
    "PARAM_KEY_OPTION", "PER_IMAGE_FIELDS", "Candidate", "EvalConfig", "dataset_identity", "evaluate", "evaluate_model",
    "label_conflicts", "load_candidates", "main", "per_image_text", "weights_identity", "with_basicsr_options",
    "write_per_image",
]

log = logging.getLogger("sr_bench.evaluate")


@dataclass
class Candidate:
    """One network at one scale, ready to run."""

    name: str
    scale: int
    module: nn.Module
    weights_sha256: str | None = None
    weights_source: str | None = None
    profile: str | None = None
    options: dict = field(default_factory=dict)
    label: str | None = None  # Table 3 column; None: default_label(name, profile, weights_source)

    @property
    def record_label(self) -> str:
        return self.label or default_label(self.name, self.profile, self.weights_source)

    @property
    def in_channels(self) -> int | None:
        """Input channels the network expects (None: any): its ``in_channels`` attribute, else its
        registered spec's, else (an in-memory network of ``evaluate_model``) its first
        convolution's; a network with no convolution takes any."""
        if hasattr(self.module, "in_channels"):
            channels = self.module.in_channels
            return channels if isinstance(channels, int) else None
        if self.name in names():
            return get_spec(self.name).in_channels
        first = next((m for m in self.module.modules() if isinstance(m, nn.Conv2d)), None)
        return first.in_channels if first is not None else None


@dataclass
class EvalConfig:
    models: list[str] = field(default_factory=list)  # empty with sr_dir
    datasets: list[str] = field(default_factory=lambda: benchmark_names(published=True))
    scales: list[int] = field(default_factory=lambda: [2, 3, 4])
    protocol: str = "paper"
    more_protocols: tuple[str, ...] = ()  # scored in the same run, after protocol (--protocol paper pytorch basicsr)
    weights: list[str] = field(default_factory=list)
    self_ensemble: str = "off"  # off | on | both
    data_root: str | None = None
    out: str | None = None  # the records file; None: <results>/records.jsonl
    table: str | None = None  # default: table3.md beside the records file
    device: str = "auto"
    dtype: str = "float32"
    tile: int | None = None
    memory_budget: str | None = None
    max_images: int | None = None
    progress: bool = True
    options: dict = field(default_factory=dict)
    results: str | None = None  # folder; None: paths.default_results_dir()
    labels: list[str] = field(default_factory=list)  # one per model (or one for sr_dir)
    per_image: str | None = None  # CSV of per-image scores
    replace: bool = False  # a label's records with other weights / SR images are superseded, not refused
    sr_dir: str | None = None
    sr_pattern: str | None = None
    allow_partial: bool = False
    param_key: str | None = None  # the entry of a file holding several state_dicts (BasicSR params/params_ema)
    basicsr_options: str | None = None  # a BasicSR option file: the model, its options, weights and param key

    @property
    def records_path(self) -> Path:
        return Path(self.out) if self.out else Path(self.results or default_results_dir()) / "records.jsonl"

    @property
    def table_path(self) -> Path:
        return Path(self.table) if self.table else self.records_path.with_name("table3.md")

    @property
    def ensemble_modes(self) -> tuple[bool, ...]:
        return {"off": (False,), "on": (True,), "both": (False, True)}[self.self_ensemble]


def _num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


#: the one entry of a model's recorded options that is not a ``create()`` option: which state_dict
#: of a file holding several was loaded (BasicSR's params / params_ema), so that records say it
#: and their evaluate commands (``compare``) load the same entry again
PARAM_KEY_OPTION = "param_key"


def load_candidates(
    name: str,
    scales: Sequence[int],
    weights: str | None,
    device: str = "cpu",
    dtype: str = "float32",
    options: dict | None = None,
    param_key: str | None = None,
) -> list[Candidate]:
    """Build ``name`` for every scale and load its weights.

    ``weights``: None (only for parameter-free models), ``official`` (the registered published
    checkpoint for each scale), ``random`` (untrained, for smoke runs), a registered weights name,
    or a file path; ``{scale}`` in a path is replaced by each scale. ``options`` are
    ``sr_bench.models.create`` options (ablation knobs, BasicSR's ``rgb_mean`` / ``img_range``)
    the weights were trained with, plus optionally ``param_key`` (see :data:`PARAM_KEY_OPTION`;
    the same as the ``param_key`` argument). When the file held several state_dicts, the
    candidate's options name the one loaded.
    """
    options = dict(options or {})
    recorded_key = options.pop(PARAM_KEY_OPTION, None)
    if recorded_key is not None and param_key is not None and recorded_key != param_key:
        raise UsageError(f"--param-key {param_key} and --option param_key={recorded_key} disagree; give one")
    param_key = param_key or (str(recorded_key) if recorded_key is not None else None)
    spec = get_spec(name)
    bad = [s for s in scales if s not in spec.scales]
    if bad:
        raise UsageError(f"{name} serves scales {spec.scales}, not {bad}")
    built: dict[object, Candidate] = {}
    out = []
    for s in scales:
        source = weights.format(scale=s) if weights and "{scale}" in weights else weights
        key = (None if spec.multi_scale else s, source)
        if key in built:
            out.append(dataclasses.replace(built[key], scale=s))
            continue
        torch.manual_seed(0)
        module = create(name, scale=None if spec.multi_scale else s, **options)
        sha = src = profile = loaded_key = None
        if source is None:
            if _num_parameters(module):
                raise UsageError(
                    f"{name} has {_num_parameters(module):,} parameters and no weights were given: pass "
                    f"--weights official (published checkpoints), a registered name, a file, or random"
                )
        elif source == "random":
            src, profile = "random-init (seed 0)", "untrained"
        else:
            if source == "official":
                source = wts.published_weights(name, s).name
            info = wts.load_weights(module, source, param_key=param_key, model_options=options)
            sha, src = info.sha256, info.source
            profile = "official" if info.spec is not None else str(info.metadata.get("profile", "") or "") or None
            loaded_key = info.metadata.get(PARAM_KEY_OPTION)
        module = prepare_model(module, device, dtype)
        recorded = {**options, PARAM_KEY_OPTION: loaded_key} if loaded_key else options
        cand = Candidate(name, s, module, sha, src, profile, recorded)
        built[key] = cand
        out.append(cand)
    return out


def model_input_tensor(
    image: np.ndarray, channels: int | None, device: torch.device | str, protocol: Protocol, name: str
) -> torch.Tensor:
    """A protocol's model input (uint8 array) as the float 0..1 batch a network with ``channels``
    input channels takes (None: any); ``figure`` uses it too, so both feed networks alike."""
    t = as_batch(image).to(device=device, dtype=torch.float32) / 255.0
    if channels is None or t.shape[1] == channels:
        return t
    if t.shape[1] == 1 and channels == 3 and not protocol.y_first:
        return t.expand(-1, 3, -1, -1)  # a gray image through an RGB network, as the official code does
    raise UsageError(
        f"{name} takes {channels}-channel input but protocol {protocol.name!r} feeds {t.shape[1]}"
        + (": the vdsr protocol feeds the Y channel; use --protocol paper for RGB models" if protocol.y_first else "")
    )


def _load(dataset: Dataset, i: int, scales: Sequence[int], need_lr: bool):
    hr, hr_sha = dataset.read_hr(i)
    if not need_lr:  # the vdsr protocol makes its own input: still refuse a too-small image by name
        for s in scales:
            dataset.check_scorable(i, hr.shape, s)
    lrs = {s: dataset.read_lr(i, s, hr, hr_sha) for s in scales} if need_lr else {}
    return hr, hr_sha, lrs


@dataclass
class _Tally:
    """What ``evaluate`` accumulates while it runs, per candidate and per scale."""

    per_image: dict[tuple[int, bool], list[dict]]
    seconds: dict[int, float]
    fingerprints: dict[int, DataFingerprint]  # per scale


def evaluate(
    candidates: Sequence[Candidate],
    dataset: Dataset,
    protocol: str | Protocol = "paper",
    *,
    self_ensemble: Sequence[bool] = (False,),
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    tile: int | None = None,
    memory_budget: str | None = None,
    max_images: int | None = None,
    progress: bool = True,
) -> list[Record]:
    """Score every candidate on ``dataset``; one record per (candidate, self-ensemble mode)."""
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    device = torch.device(resolve_device(str(device)))
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    scales = sorted({c.scale for c in candidates})
    tally = _Tally({(k, se): [] for k in range(len(candidates)) for se in self_ensemble},
                   {k: 0.0 for k in range(len(candidates))}, {s: DataFingerprint() for s in scales})
    bar = tqdm(total=n * len(candidates), desc=f"{dataset.name} ({protocol.name})", file=sys.stderr,
               disable=not progress, unit="sr")
    # IEEE float32 and no autotuning for the networks and the metrics (SSIM filters in float32),
    # whatever a training run in this process set: a float32 record is float32 on every GPU
    with ThreadPoolExecutor(max_workers=1) as pool, ieee_float32():
        pending = pool.submit(_load, dataset, 0, scales, not protocol.y_first) if n else None
        for i in range(n):
            assert pending is not None  # submitted above whenever n > 0
            hr, hr_sha, lrs = pending.result()
            if i + 1 < n:
                pending = pool.submit(_load, dataset, i + 1, scales, not protocol.y_first)
            stem = dataset.images[i].stem
            reference = protocol.reference(as_batch(hr).to(device), dataset.is_benchmark)
            inputs = {}
            for s in scales:
                lr, lr_sha, origin = lrs.get(s, (None, "y-first", "y-first"))
                tally.fingerprints[s].add(stem, hr_sha, lr_sha, origin)
                inputs[s] = protocol.model_input(reference, lr, s)
            for k, cand in enumerate(candidates):
                t0 = time.perf_counter()
                x = model_input_tensor(inputs[cand.scale], cand.in_channels, device, protocol, cand.name)
                outputs = super_resolve_modes(cand.module, x, cand.scale, tuple(self_ensemble), tile=tile,
                                              memory_budget=memory_budget,
                                              name=f"{cand.name} x{cand.scale} on {dataset.images[i].hr_path}")
                for se, out in outputs.items():
                    tally.per_image[(k, se)].append(score_image(protocol, quantize(out), reference, cand.scale, stem))
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                tally.seconds[k] += time.perf_counter() - t0
                bar.update(1)
    bar.close()
    return _records(candidates, dataset, protocol, self_ensemble, tally, str(device), dtype, tile)


def _records(candidates: Sequence[Candidate], dataset: Dataset, protocol: Protocol, self_ensemble: Sequence[bool],
             tally: _Tally, device: str, dtype: str, tile: int | None) -> list[Record]:
    env = environment(device)
    records = []
    for k, cand in enumerate(candidates):
        for se in self_ensemble:
            records.append(
                Record(
                    model=cand.name,
                    weights=cand.weights_sha256,
                    scale=cand.scale,
                    self_ensemble=se,
                    protocol=protocol.name,
                    weights_source=cand.weights_source,
                    profile=cand.profile,
                    model_options=cand.options,
                    device=device,
                    dtype=dtype,
                    math_mode=math_mode(parse_dtype(dtype), device, tf32=False),
                    tile=tile,
                    seconds=round(tally.seconds[k], 3),
                    label=cand.record_label,
                    **set_fields(dataset, tally.per_image[(k, se)], tally.fingerprints[cand.scale]),
                    **env,
                )
            )
    return records


def weights_identity(model: nn.Module) -> str:
    """The sha256 that identifies an in-memory network in records: that of its weights written by
    :func:`sr_bench.weights.export_safetensors` (a function of the tensors alone), so the same
    network evaluated from that file has the same identity."""
    with tempfile.TemporaryDirectory(prefix="sr_bench-") as tmp:
        return wts.sha256_file(wts.export_safetensors(model, Path(tmp) / "weights.safetensors"))


def evaluate_model(
    model: nn.Module,
    dataset: Dataset | str,
    scales: Sequence[int],
    protocol: str = "paper",
    *,
    self_ensemble: bool = False,
    device: str | torch.device = "cpu",
    max_images: int | None = None,
    progress: bool = False,
    name: str = "model",
    data_root: str | None = None,
    records: str | os.PathLike | None = None,
    label: str | None = None,
    replace: bool = False,
) -> list[Record]:
    """Score an in-memory model (e.g. during training) without touching its mode or device
    for good: it is put in eval mode for the call and restored after.

    ``records``: also append the records to this file (under its lock, as ``evaluate`` does), so
    ``compare`` and ``python -m sr_bench.tables.table3 --records FILE`` use them. The network is
    identified by :func:`weights_identity`; a ``label`` (default ``name``) that already holds
    another network's results there is refused unless ``replace``.
    """
    ds = open_dataset(dataset, data_root) if isinstance(dataset, str) else dataset
    sha = weights_identity(model) if records is not None and any(True for _ in model.parameters()) else None
    if label is not None:
        check_label(label)
    cands = [Candidate(name, s, model, weights_sha256=sha, label=label) for s in scales]
    path = Path(records) if records is not None else None
    if path is not None:
        check_output(path, "records.jsonl", "records=")
        planned = [Record(model=c.name, weights=sha, dataset=dataset_identity(ds), scale=c.scale,
                          self_ensemble=self_ensemble, protocol=protocol, psnr=0.0, ssim=0.0, n_images=0,
                          per_image=[], label=c.record_label) for c in cands]
        if not replace:
            label_conflicts(read_records(path), planned, path)
    was_training = model.training
    model.eval()
    try:
        out = evaluate(cands, ds, protocol, self_ensemble=(self_ensemble,), device=device, max_images=max_images,
                       progress=progress)
    finally:
        model.train(was_training)
    if path is not None:
        append_records(path, out, supersede_by=_slot if replace else None)
    return out


def _fmt_delta(measured: float, paper: float | None, digits: int) -> str:
    return "" if paper is None else f"{measured - paper:+.{digits}f}"


def summary_rows(records: Sequence[Record]) -> list[list[object]]:
    rows: list[list[object]] = []
    for r in records:
        found = baselines.table3_value(r.model, r.self_ensemble, r.dataset, r.scale)
        paper = found if r.protocol in ("paper", "vdsr") and r.complete else None
        rows.append([
            r.label + ("+" if r.self_ensemble else ""), r.dataset, f"x{r.scale}", r.protocol,
            f"{r.psnr:.2f}", f"{r.ssim:.4f}",
            f"{paper.psnr:.2f} / {paper.ssim:.4f}" if paper is not None else "",
            _fmt_delta(r.psnr, None if paper is None else paper.psnr, 3),
            _fmt_delta(r.ssim, None if paper is None else paper.ssim, 4),
            r.n_images if r.complete else f"{r.n_images} of {r.n_expected}", f"{r.seconds:.1f}",
        ])
    return rows


SUMMARY_HEADERS = ["label", "dataset", "scale", "protocol", "PSNR", "SSIM", "paper", "dPSNR", "dSSIM", "images", "s"]
PER_IMAGE_FIELDS = ("dataset", "scale", "image", "label", "self_ensemble", "psnr", "ssim")


def check_output(path: Path, what: str, option: str) -> None:
    """Refuse an output path that cannot be written, before any work is done. Folders made to
    check are removed again: a run refused later (an unknown model, no data) leaves no empty
    results folder behind; the writers make them when there is something to write."""
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file path, e.g. {path / Path(what).name}")
    problem = file_kind_problem(path, "a file sr_bench can replace")
    if problem is not None and problem != "does not exist" and not problem.startswith("is a symlink to"):
        raise UsageError(f"{option} {path} {problem}; pass the path of a regular file (or a new name)")
    check_writable(path)  # a probe file (a full or read-only disk: one line); folders made for it are removed again


def _slot(r: Record) -> tuple:
    """One Table 3 cell of one label."""
    return (r.label, r.dataset, r.scale, r.protocol, r.self_ensemble)


def _origin(r: Record) -> tuple:
    """What made a record's numbers: the network and its weights (and which entry of the file),
    or the SR images."""
    return (r.model, r.weights, r.model_options.get(PARAM_KEY_OPTION), r.sr_sha256)


def _origin_text(r: Record) -> str:
    if r.sr_sha256:
        return f"SR images sha256 {r.sr_sha256[:16]}"
    key = r.model_options.get(PARAM_KEY_OPTION)
    entry = f" [{key}]" if key else ""
    return f"{r.model} weights sha256 {r.weights[:16]}{entry}" if r.weights else f"{r.model} (no weights)"


def label_conflicts(existing: Sequence[Record], planned: Sequence[Record], path: Path) -> None:
    """Refuse planned cells whose label already holds numbers from other weights or SR images, in
    the records file or earlier in this run (two models given one label)."""
    held: dict[tuple, Record] = {}
    for r in existing:
        held.setdefault(_slot(r), r)
    problems: dict[str, list[str]] = {}
    for new in planned:
        old = held.setdefault(_slot(new), new)
        if _origin(old) != _origin(new):
            problems.setdefault(new.label, []).append(
                f"{new.dataset} x{new.scale} {new.protocol}{' +' if new.self_ensemble else ''}: "
                f"{_origin_text(old)} there, {_origin_text(new)} now")
    if problems:
        label, cells = next(iter(problems.items()))
        more = f" and {len(cells) - 3} more" if len(cells) > 3 else ""
        raise UsageError(f"{path}: label {label!r} already holds other results ({'; '.join(cells[:3])}{more}); "
                         f"pass --label OTHER for a new column, or --replace to supersede them")


def per_image_text(path: Path, records: Sequence[Record]) -> str:
    """The per-image CSV at ``path`` with one row per image of ``records`` added (a rerun of the
    same image replaces its row). Text cells a spreadsheet would run as a formula (a leading
    ``=``, ``+``, ``-``, ``@``, tab or CR) get a ``'`` in front."""
    new = [{"dataset": csv_text(r.dataset), "scale": r.scale, "image": csv_text(str(p["image"])),
            "label": csv_text(r.label), "self_ensemble": str(r.self_ensemble).lower(), "psnr": repr(float(p["psnr"])),
            "ssim": repr(float(p["ssim"]))}
           for r in records for p in r.per_image]
    key = lambda row: tuple(str(row[k]) for k in ("dataset", "scale", "image", "label", "self_ensemble"))  # noqa: E731
    old = []
    if path.exists():
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != PER_IMAGE_FIELDS:
                raise DataError(f"{path}: not a per-image CSV of sr_bench (columns {reader.fieldnames}, expected "
                                f"{', '.join(PER_IMAGE_FIELDS)}); pass another --per-image file")
            old = list(reader)
    fresh = {key(row) for row in new}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PER_IMAGE_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows([row for row in old if key(row) not in fresh] + new)
    return buf.getvalue()


def write_per_image(path: str | os.PathLike, records: Sequence[Record]) -> Path:
    """Add one CSV row per image of ``records`` to ``path``, under the file's lock and atomically
    (``evaluate`` writes it together with the records instead: see ``_store``)."""
    with records_lock(path):
        return write_text(path, per_image_text(write_target(path), records))


def _store(config: EvalConfig, records: list[Record]) -> None:
    """Append finished records and their per-image rows in one all-or-nothing step: a failure of
    either write (disk full, read-only) leaves both files as they were."""
    csv_path = Path(config.per_image) if config.per_image else None
    companions = [Companion(csv_path, lambda p: per_image_text(p, records))] if csv_path else []
    append_records(config.records_path, records, supersede_by=_slot if config.replace else None,
                   companions=companions)


def _open_datasets(config: EvalConfig) -> list[Dataset]:
    try:
        return [open_dataset(name, config.data_root) for name in config.datasets]
    except FileNotFoundError as e:
        if isinstance(getattr(type(e), "exit_code", None), int):
            raise
        raise DataError(str(e)) from e


def _model_candidates(config: EvalConfig) -> list[Candidate]:
    dtype = parse_dtype(config.dtype)
    device = resolve_device(config.device)
    if torch.device(device).type == "cpu" and dtype == torch.float16:
        raise UsageError("--dtype float16 is for CUDA; on the CPU use float32 or bfloat16")
    weights: list[str | None] = list(config.weights) or [None]
    if len(weights) == 1:
        weights = weights * len(config.models)
    if len(weights) != len(config.models):
        raise UsageError(f"give one --weights for all models or one per model ({len(config.models)}), "
                         f"got {len(weights)}")
    labels: list[str | None] = list(config.labels) or [None] * len(config.models)
    if len(labels) != len(config.models):
        raise UsageError(f"give one --label per model ({len(config.models)}: {' '.join(config.models)}), "
                         f"got {len(labels)}")
    candidates = []
    for name, w, label in zip(config.models, weights, labels, strict=True):
        for cand in load_candidates(name, config.scales, None if w in (None, "none") else w, device, config.dtype,
                                    config.options, config.param_key):
            candidates.append(dataclasses.replace(cand, label=label))
    return candidates


def _planned(candidates: Sequence[Candidate], datasets: Sequence[Dataset], config: EvalConfig) -> list[Record]:
    """Stand-in records of what this run will measure, for the label check."""
    return [Record(model=c.name, weights=c.weights_sha256, dataset=dataset_identity(ds), scale=c.scale,
                   self_ensemble=se, protocol=config.protocol, psnr=0.0, ssim=0.0, n_images=0, per_image=[],
                   label=c.record_label)
            for ds in datasets for c in candidates for se in config.ensemble_modes]


def _score_models(config: EvalConfig, existing: list[Record]) -> list[Record]:
    datasets = _open_datasets(config)  # fail before any work
    candidates = _model_candidates(config)
    if not config.replace:
        label_conflicts(existing, _planned(candidates, datasets, config), config.records_path)
    records = []
    for ds in datasets:
        recs = evaluate(
            candidates, ds, config.protocol, self_ensemble=config.ensemble_modes, device=resolve_device(config.device),
            dtype=config.dtype, tile=config.tile, memory_budget=config.memory_budget,
            max_images=config.max_images, progress=config.progress,
        )
        _store(config, recs)  # each dataset's (model, scale) records as soon as they are measured
        records += recs
    return records


def _score_sr_folder(config: EvalConfig, existing: list[Record]) -> list[Record]:
    if len(config.labels) != 1:
        raise UsageError("--sr-dir needs one --label NAME: the Table 3 column these SR images are shown as")
    records = sr_folder.score_sr_folder(
        str(config.sr_dir), label=config.labels[0], datasets=config.datasets, scales=config.scales,
        protocol=config.protocol, data_root=config.data_root, pattern=config.sr_pattern,
        allow_partial=config.allow_partial, progress=config.progress,
    )
    if not config.replace:
        label_conflicts(existing, records, config.records_path)
    _store(config, records)
    return records


def with_basicsr_options(config: EvalConfig) -> EvalConfig:
    """``config`` with the model, options, scale, weights, param key and label that its BasicSR
    option file states; what the command line gives wins, except a scale the network lacks."""
    if not config.basicsr_options:
        return config
    net = read_basicsr_options(config.basicsr_options)
    if config.models or config.sr_dir:
        raise UsageError("--basicsr-options names the model: leave out --model and --sr-dir")
    if config.scales and set(config.scales) != {net.scale}:
        raise UsageError(f"--scales {' '.join(map(str, config.scales))}: {net.path} describes an x{net.scale} "
                         f"network (network_g.upscale); pass --scales {net.scale} or leave --scales out")
    weights = list(config.weights) or ([net.weights] if net.weights else [])
    if not weights:
        raise UsageError(f"--basicsr-options {net.path} names no weights (path.pretrain_network_g is empty, as in a "
                         f"training file): pass --weights, e.g. --weights {net.weights_hint}")
    options = {**net.options, **config.options}
    key = config.param_key or str(options.pop(PARAM_KEY_OPTION, "") or "") or net.param_key
    why = "--param-key" if config.param_key else net.param_key_why
    log.info("%s: BasicSR EDSR x%d -> %s %s; weights %s, param key %r (%s)", net.path, net.scale, net.model,
             " ".join(f"{k}={v}" for k, v in options.items()), weights[0], key, why)
    return dataclasses.replace(config, models=[net.model], scales=[net.scale], options=options, weights=weights,
                               param_key=key, labels=list(config.labels) or [net.name], basicsr_options=None)


def run(config: EvalConfig) -> list[Record]:
    from tabulate import tabulate

    config = with_basicsr_options(config)
    if bool(config.models) == bool(config.sr_dir):
        raise UsageError("give either --model NAME ... or --sr-dir DIR --label NAME (one, not both)")
    if config.param_key and config.sr_dir:
        raise UsageError("--param-key chooses the weights of a model; --sr-dir scores images: leave it out")
    for label in config.labels:  # it names a table column and CSV cells: refuse control characters now
        check_label(label)
    if config.per_image and set(config.more_protocols) - {config.protocol}:
        raise UsageError(f"--per-image {config.per_image}: the CSV has no protocol column, so it holds one "
                         f"protocol's scores; give one --protocol with --per-image (the records keep every "
                         f"protocol's per-image scores)")
    check_output(config.records_path, "records.jsonl", "--records")
    check_output(config.table_path, "table3.md", "--table")
    if config.per_image:
        check_output(Path(config.per_image), "per_image.csv", "--per-image")
    refuse_same_file([("--records", config.records_path), ("--table", config.table_path),
                      ("--per-image", config.per_image)])
    existing = read_records(config.records_path)
    score = _score_sr_folder if config.sr_dir else _score_models
    records: list[Record] = []
    for protocol in dict.fromkeys((config.protocol, *config.more_protocols)):  # each its own records
        records += score(dataclasses.replace(config, protocol=protocol, more_protocols=()), existing)
    print(tabulate(summary_rows(records), headers=SUMMARY_HEADERS, tablefmt="github"))
    table = write_table3(read_records(config.records_path), config.table_path)
    log.info("\nrecords: %s\ntable:   %s%s", config.records_path.resolve(), table.resolve(),
             f"\nper-image: {Path(config.per_image).resolve()}" if config.per_image else "")
    return records


_EPILOG = """outputs: records are appended to RESULTS/records.jsonl (--records FILE to choose the file) and
Table 3 is regenerated as table3.md beside the records file (--table FILE). RESULTS defaults to
results/local/ inside an sr_bench clone (git-ignored), else ./sr_bench_results in the current folder;
sr_bench never writes into its package folder. Models, published weights, datasets and protocols:
python -m sr_bench.models."""


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m sr_bench.evaluate", __doc__.split("\n\n")[0])
    p.epilog = _EPILOG
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", "--models", dest="models", nargs="+", help="registered model name(s)")
    what.add_argument("--sr-dir", default=None, metavar="DIR",
                      help="score SR images another program wrote (needs --label)")
    what.add_argument("--basicsr-options", default=None, metavar="FILE.yml",
                      help="the BasicSR option file the weights were trained or tested with: its EDSR network_g "
                           "(with rgb_mean and img_range, which BasicSR keeps outside its checkpoints), scale, "
                           "path.pretrain_network_g and path.param_key_g; label: its name (needs PyYAML)")
    p.add_argument("--label", dest="labels", nargs="+", default=[], metavar="NAME",
                   help="Table 3 column name, one per model (default: model plus the weights' short name)")
    p.add_argument("--sr-pattern", default=None, metavar="PAT",
                   help="SR file path under --sr-dir with {dataset} {scale} {stem}")
    p.add_argument("--allow-partial", action="store_true",
                   help="with --sr-dir: score the images present; the record says how many")
    p.add_argument("--weights", nargs="+", default=[],
                   help="per model: official | random | NAME | PATH (PATH may contain {scale})")
    p.add_argument("--option", type=parse_option, action="append", default=[], metavar="KEY=VALUE",
                   help="model option the weights were trained with, e.g. batch_norm=true, or for BasicSR's EDSR "
                        "rgb_mean=0.5,0.5,0.5 img_range=1 (repeatable)")
    p.add_argument("--param-key", default=None, metavar="KEY",
                   help="the entry of a checkpoint holding several state_dicts: params or params_ema for BasicSR "
                        "(default: params_ema when both are there, said in a warning)")
    p.add_argument("--datasets", nargs="+", default=benchmark_names(published=True),
                   help="registered names or folders of images (a folder is recorded by its absolute path)")
    p.add_argument("--scales", nargs="+", type=cli.positive_int, default=None,
                   help="default: 2 3 4 (with --basicsr-options: the file's scale)")
    p.add_argument("--protocol", "--protocols", nargs="+", choices=list(PROTOCOLS), default=["paper"], metavar="P",
                   help=f"{', '.join(PROTOCOLS)}; several score the same images under each, one record per "
                        f"protocol (as compare --protocols reads them); default paper")
    p.add_argument("--self-ensemble", nargs="?", const="on", default="off", choices=["off", "on", "both"],
                   help="geometric self-ensemble (the paper's '+' models); 'both' records with and without")
    cli.add_common_options(p, device=True, data_root=True, results=True, progress=True, weights_dir=True)
    p.add_argument("--records", default=None, metavar="FILE", help="records file (default: RESULTS/records.jsonl)")
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)  # deprecated spelling of --records
    p.add_argument("--table", default=None, metavar="FILE",
                   help="Table 3 markdown (default: table3.md beside the records)")
    p.add_argument("--per-image", default=None, metavar="FILE.csv", help="also write one CSV row per image")
    p.add_argument("--replace", action="store_true",
                   help="supersede a label's records made with other weights or SR images")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--tile", type=cli.positive_int, default=None, help="LR tile size (default: whole image)")
    p.add_argument("--memory-budget", type=memory_size_arg, default=None,
                   help="size tiles to this much memory, e.g. 4GB")
    p.add_argument("--max-images", type=cli.positive_int, default=None,
                   help="only the first N images of each dataset (a partial record: never a Table 3 cell)")
    return p


def parse_args(argv: Sequence[str] | None = None) -> EvalConfig:
    a = _parser().parse_args(argv)
    cli.setup_logging(a.verbosity)
    wts.set_weights_dir(a.weights_dir)  # a process-wide setting of the command line, as $SR_BENCH_WEIGHTS_DIR
    if a.out is not None:
        if a.records is not None and a.records != a.out:
            raise UsageError(f"--out {a.out} and --records {a.records} disagree; --out is the old name of "
                             f"--records, give one")
        log.warning("--out is deprecated; use --records FILE (or --results DIR)")
    return EvalConfig(
        models=a.models or [], datasets=a.datasets,
        scales=a.scales if a.scales is not None else ([] if a.basicsr_options else [2, 3, 4]),
        protocol=a.protocol[0], more_protocols=tuple(a.protocol[1:]), weights=a.weights,
        self_ensemble=a.self_ensemble, data_root=a.data_root, out=a.records or a.out, table=a.table, device=a.device,
        dtype=a.dtype, tile=a.tile, memory_budget=a.memory_budget, max_images=a.max_images, progress=a.progress,
        options=dict(a.option), results=a.results, labels=a.labels, per_image=a.per_image, replace=a.replace,
        sr_dir=a.sr_dir, sr_pattern=a.sr_pattern, allow_partial=a.allow_partial, param_key=a.param_key,
        basicsr_options=a.basicsr_options,
    )


@command
def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
