"""``python -m sr_bench.train`` (also ``sr-bench-train``; ``torchrun --nproc_per_node N -m sr_bench.train``).

    python -m sr_bench.train --model edsr-baseline --scale 2 --profile quick --data T91 --out runs/quick-x2
    python -m sr_bench.train --model edsr-baseline --scale 4 --init runs/x2/final.safetensors --out runs/x4
    python -m sr_bench.train --out runs/quick-x2 --resume
    python -m sr_bench.train --config run.toml --out runs/mine --set optim.lr=2e-4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from sr_bench import cli
from sr_bench.models import parse_option
from sr_bench.train.checkpoint import checkpoint_config, load_checkpoint
from sr_bench.train.config import PROFILES, RunFile, TrainConfig, load_run_file, make_config, restate_profile
from sr_bench.train.loop import train
from sr_bench.train.plan import training_dataset
from sr_bench.train.run_dir import CHECKPOINT

__all__ = ["main", "build_parser", "config_from_args"]


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _bool_or_auto(text: str) -> bool | str:
    return "auto" if text.strip().lower() == "auto" else _bool(text)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(
        "python -m sr_bench.train",
        "Train an SR model with the EDSR paper's recipe (profile paper) or a shorter profile. "
        "Writes DIR/checkpoint.pt (latest full state), DIR/final.safetensors, DIR/log.jsonl, "
        "DIR/val_curve.png and DIR/config.json. SIGTERM, SIGUSR2 (Slurm's time-limit warning) or Ctrl-C saves a "
        "checkpoint first (exit 143 / 140 / 130).",
    )
    cli.add_common_options(p, device=True, data_root=True, progress=True, verbosity=True)
    g = p.add_argument_group("run")
    g.add_argument("--model", help="registered model name (edsr-baseline, edsr, mdsr-baseline, mdsr, srresnet, vdsr)")
    g.add_argument("--scale", type=int, help="upscaling factor (multi-scale models train all of theirs)")
    g.add_argument("--profile", choices=sorted(PROFILES), default=None, help="default: paper (or the run file's)")
    g.add_argument("--out", required=True, help="output folder: empty or missing, unless --resume or --overwrite")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    g.add_argument("--overwrite", action="store_true", help="delete the sr_bench files in --out and start again")
    g.add_argument("--init", help="start from these weights (an x2 checkpoint for x3/x4 loads all but the upsampler)")
    g.add_argument("--seed", type=cli.non_negative_int)
    g.add_argument("--iterations", type=cli.non_negative_int, help="number of updates")
    g.add_argument("--save-every", type=cli.positive_int, help="checkpoint every K updates")
    g.add_argument("--config", metavar="FILE",
                   help="a run.toml of --set fields ([optim] lr = 2e-4, or optim.lr = 2e-4; profile, model.name and "
                        "model.scales choose the start) applied over the profile, the command line winning, and kept "
                        "in config.json (config_file); or a config.json to start from instead of a profile")
    g = p.add_argument_group("data")
    g.add_argument("--data", help="DIV2K (its 800 training images), T91, embedded-train, auto, or a folder of images")
    g.add_argument("--patch-size", type=cli.positive_int, help="LR patch side")
    g.add_argument("--batch-size", type=cli.positive_int, help="global minibatch (split over processes)")
    g.add_argument("--workers", type=cli.non_negative_int, help="DataLoader worker processes")
    g.add_argument("--cache", choices=("memory", "disk"), help="decoded images in RAM or memory-mapped from disk")
    g.add_argument("--cache-dir")
    g.add_argument("--on-device", type=_bool_or_auto, metavar="auto|true|false",
                   help="cut batches on the device from images held there (auto: CUDA, when they fit)")
    g = p.add_argument_group("recipe")
    g.add_argument("--lr", type=float)
    g.add_argument("--lr-step", type=cli.positive_int, help="multiply the lr by --lr-gamma every this many updates")
    g.add_argument("--lr-gamma", type=float)
    g.add_argument("--loss", choices=("l1", "l2"), help="default: the model's own (Table 1)")
    g.add_argument("--option", type=parse_option, action="append", default=[], metavar="KEY=VALUE",
                   help="model create() option, e.g. blocks=8, batch_norm=true, res_scale=0.1 (repeatable)")
    g.add_argument("--set", type=parse_option, action="append", default=[], metavar="FIELD=VALUE",
                   help="any config field by its dotted name, e.g. data.hflip=false (repeatable)")
    g = p.add_argument_group("validation")
    g.add_argument("--val-data", help="validation dataset (auto: DIV2K-val10 / Set5 / embedded)")
    g.add_argument("--val-every", type=cli.non_negative_int, help="validate every N updates (0: only at the end)")
    g.add_argument("--val-images", type=cli.positive_int, help="validate on the first N images")
    g = p.add_argument_group("execution")
    g.add_argument("--amp", choices=("auto", "bf16", "fp16", "none"),
                   help="auto: on CUDA the faster of fp32 and bf16, timed at the start")
    g.add_argument("--channels-last", type=_bool, metavar="BOOL")
    g.add_argument("--compile", choices=("none", "default", "reduce-overhead"),
                   help="torch.compile the training forward pass (reduce-overhead: CUDA graphs)")
    g.add_argument("--threads", type=cli.positive_int, help="intra-op threads of each process")
    g.add_argument("--log-every", type=cli.positive_int)
    return p


_FLAGS = {
    "seed": "seed",
    "iterations": "optim.iterations",
    "save_every": "runtime.save_every",
    "data": "data.dataset",
    "data_root": "data.root",
    "patch_size": "data.patch_size",
    "batch_size": "data.batch_size",
    "workers": "data.num_workers",
    "cache": "data.cache",
    "cache_dir": "data.cache_dir",
    "on_device": "data.on_device",
    "lr": "optim.lr",
    "lr_step": "optim.lr_step",
    "lr_gamma": "optim.lr_gamma",
    "loss": "model.loss",
    "init": "model.init",
    "val_data": "val.dataset",
    "val_every": "val.every",
    "val_images": "val.max_images",
    "device": "runtime.device",
    "amp": "runtime.amp",
    "channels_last": "runtime.channels_last",
    "compile": "runtime.compile",
    "threads": "runtime.threads",
    "log_every": "runtime.log_every",
}


def _run_file(args: argparse.Namespace) -> RunFile | None:
    """The ``--config`` run file (TOML), checked against ``--model`` / ``--scale`` / ``--profile``."""
    if not args.config or Path(args.config).suffix.lower() != ".toml":
        return None
    run = load_run_file(args.config)
    for flag, given, said in (("--model", args.model, run.model), ("--profile", args.profile, run.profile),
                              ("--scale", args.scale, run.scales[0] if run.scales and len(run.scales) == 1 else None)):
        if given is not None and said is not None and given != said:
            raise cli.UsageError(f"{flag} {given} differs from {args.config}'s {said}; change one")
    return run


def _base_config(args: argparse.Namespace, run: RunFile | None, ckpt: Path) -> TrainConfig:
    """The config the changes apply to: a config.json, the checkpoint's when resuming without a
    model, else the profile's for the model (from the flags, else the run file)."""
    model = args.model or (run.model if run else None)
    if args.config and run is None:
        try:
            return TrainConfig.load(args.config)
        except OSError as e:
            raise cli.DataError(f"--config {args.config}: cannot read it ({e.strerror or e})") from None
        except json.JSONDecodeError as e:
            raise cli.DataError(f"--config {args.config}: not valid JSON ({e}); fix the file or pass "
                                f"--profile instead") from None
    if model is None:
        return checkpoint_config(load_checkpoint(ckpt))
    scale = args.scale or (run.scales[0] if run and run.scales and len(run.scales) == 1 else None)
    return make_config(args.profile or (run.profile if run else None) or "paper", model, scale)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config the flags describe: a profile (or --config, or the checkpoint's config when
    resuming without --model), with the run file's fields, then every flag given on the command
    line, applied. It is validated and resolved once, by ``train``."""
    run = _run_file(args)
    changes: dict[str, Any] = dict(run.changes) if run else {}
    changes.update({k: getattr(args, a) for a, k in _FLAGS.items() if getattr(args, a) is not None})
    if "data.dataset" in changes:
        changes["data.dataset"] = training_dataset(changes["data.dataset"])
    if not args.progress:
        changes["runtime.progress"] = False
    changes["out"] = args.out
    for key, value in args.set:
        changes[key] = value
    if run is not None:
        changes["config_file"] = run.source
    ckpt = Path(args.out) / CHECKPOINT
    has_model = args.model is not None or (run is not None and run.model is not None)
    if not has_model and (not args.config or run is not None) and not (args.resume and ckpt.exists()):
        build_parser().error("--model is required (except with --resume of an existing run, or model.name in "
                             "the --config run file)")
    try:
        base = _base_config(args, run, ckpt)
        if args.model is not None and base.model.name != args.model:
            raise cli.UsageError(f"--model {args.model} differs from {args.config or ckpt}'s {base.model.name}")
        if args.option:
            changes["model.options"] = {**base.model.options, **changes.get("model.options", {}),
                                        **dict(args.option)}
        # the profile's note states its update count, lr, validation...: keep it true under the run
        # file, --iterations, --set (against the profile itself: base may be a saved config)
        return restate_profile(base.replace(**changes))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, cli.UserError):
            raise
        raise cli.UsageError(str(e)) from None


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbosity)
    result = train(config_from_args(args), resume=args.resume, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":
        summary = {
            "out": str(result.out_dir),
            "iterations": result.iterations,
            "validation": result.validation,
            "updates_per_s": round(result.updates_per_second, 4),
            "data_wait_share": round(result.data_wait_share, 5),
            "train_seconds": round(result.seconds, 1),
            "diverged": result.diverged,
            "weights": str(result.weights),
        }
        print(json.dumps(summary))
    return 1 if result.diverged else 0


if __name__ == "__main__":
    sys.exit(main())
