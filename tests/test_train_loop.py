"""The trainer end to end on tiny models (smoke profile): outputs, resume after SIGKILL (bit-exact),
MDSR branch isolation, x2 -> x3 warm start, 2-process DistributedDataParallel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sr_bench.train import Trainer, make_config, resolve_config, train
from sr_bench.train.__main__ import main

TINY = {"blocks": 2, "filters": 16}
TINY_MDSR = {"blocks": 1, "filters": 8}


@pytest.fixture(scope="module")
def data(tmp_path_factory, textured) -> dict[str, Path]:
    """A small training folder and a one-image validation folder."""
    from PIL import Image

    root = tmp_path_factory.mktemp("train_data")
    (root / "train").mkdir()
    (root / "val").mkdir()
    for i, (h, w) in enumerate([(96, 100), (120, 96), (100, 132), (96, 96)]):
        Image.fromarray(textured(h, w, i)).save(root / "train" / f"t{i}.png")
    Image.fromarray(textured(48, 60, 99)).save(root / "val" / "v0.png")
    return {"train": root / "train", "val": root / "val", "cache": root / "cache"}


@pytest.fixture(autouse=True)
def _env(data, monkeypatch):
    monkeypatch.setenv("SR_BENCH_CACHE", str(data["cache"]))
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)


def _cli(data, out, model="edsr-baseline", scale=2, options=TINY, extra=()) -> list[str]:
    args = ["--model", model, "--profile", "smoke", "--data", str(data["train"]), "--val-data", str(data["val"]),
            "--out", str(out), "--no-progress", "--device", "cpu"]
    if scale is not None:
        args += ["--scale", str(scale)]
    for k, v in options.items():
        args += ["--option", f"{k}={v}"]
    return args + list(extra)


def _cfg(data, out, model="edsr-baseline", scale=2, options=TINY, **changes):
    return make_config(
        "smoke", model, scale,
        **{"data.dataset": str(data["train"]), "val.dataset": str(data["val"]), "model.options": dict(options),
           "out": str(out), "runtime.progress": False, "runtime.device": "cpu", **changes},
    )


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _env_vars(data) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["SR_BENCH_CACHE"] = str(data["cache"])
    env["OMP_NUM_THREADS"] = "1"  # the same intra-op threads in every process compared bitwise
    return env


def test_smoke_run_writes_checkpoint_weights_log_plot_and_config(data, tmp_path, capsys):
    from sr_bench.models import create
    from sr_bench.weights import load_weights

    out = tmp_path / "run"
    assert main(_cli(data, out)) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["iterations"] == 8 and summary["validation"][0]["scale"] == 2
    for name in ("checkpoint.pt", "final.safetensors", "log.jsonl", "val_curve.png", "config.json"):
        assert (out / name).is_file(), name
    assert (out / "val_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == 8 and ckpt["config"]["model"]["options"] == TINY
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch", "loader"}
    assert ckpt["scheduler"]["last_epoch"] == 8
    assert json.loads((out / "config.json").read_text()) == ckpt["config"]
    # the weights load strictly into a fresh model, from both files
    fresh = create("edsr-baseline", scale=2, **TINY)
    load_weights(fresh, out / "final.safetensors")
    final = load_file(out / "final.safetensors")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in final.items())
    load_weights(create("edsr-baseline", scale=2, **TINY), out / "checkpoint.pt")
    ev = _events(out / "log.jsonl")
    kinds = [e["event"] for e in ev]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("val") == 2  # every 4 updates
    lrs = [e["lr"] for e in ev if e["event"] == "train"]
    assert lrs == [1e-4] * 4 + [5e-5] * 4  # halved every lr_step = 4 updates
    assert all(e["data_wait_share"] >= 0 for e in ev if e["event"] == "train")


def test_existing_run_needs_resume_and_the_same_recipe(data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(data, out, **{"optim.iterations": 4}))
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(data, out, **{"optim.iterations": 4}))
    with pytest.raises(ValueError, match="optim.lr"):
        train(_cfg(data, out, **{"optim.iterations": 8, "optim.lr": 3e-4}), resume=True)
    # execution settings may change, the run grows to 6 updates
    res = train(_cfg(data, out, **{"optim.iterations": 6, "data.num_workers": 1}), resume=True)
    assert res.resumed_from == 4 and res.iterations == 6


_CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    import torch
    from sr_bench.train import train
    from sr_bench.train.__main__ import build_parser, config_from_args

    mode, stop_at = sys.argv[1], int(sys.argv[2])
    args = build_parser().parse_args(sys.argv[3:])
    cfg = config_from_args(args)
    if mode == "during-save":
        real_save, calls = torch.save, []
        def dying_save(obj, f, *a, **k):
            calls.append(1)
            if len(calls) == stop_at:  # write half a checkpoint, then die before the rename
                import io
                buf = io.BytesIO(); real_save(obj, buf, *a, **k)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2]); f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *a, **k)
        torch.save = dying_save
    def stall(ev):
        if mode == "external" and ev["iteration"] == stop_at:
            print("READY", flush=True)
            time.sleep(600)
    train(cfg, resume=args.resume, callbacks=[stall])
    """
)


def _run_cli(data, args, timeout=120):
    return subprocess.run([sys.executable, "-m", "sr_bench.train", *args], env=_env_vars(data), capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("mode", ["external", "during-save"])
def test_sigkill_then_resume_gives_bit_identical_weights(data, tmp_path, mode):
    extra = ["--iterations", "12", "--save-every", "4", "--workers", "2", "--seed", "11"]
    ref = _run_cli(data, _cli(data, tmp_path / "ref", extra=extra))
    assert ref.returncode == 0, ref.stderr[-3000:]

    out = tmp_path / "killed"
    child = tmp_path / "child.py"
    child.write_text(_CHILD)
    # external: SIGKILL from outside after update 6 (checkpoint at 4); during-save: killed in the
    # middle of writing the second checkpoint (update 8), before its rename
    stop_at = 6 if mode == "external" else 2
    proc = subprocess.Popen([sys.executable, str(child), mode, str(stop_at), *_cli(data, out, extra=extra)],
                            env=_env_vars(data), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if mode == "external":
            line = proc.stdout.readline()
            assert line.strip() == "READY", proc.stderr.read()[-3000:]
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "final.safetensors").exists()
    saved = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert saved["iteration"] == 4  # the last complete checkpoint
    if mode == "during-save":
        assert list(out.glob(".checkpoint.pt.*.tmp")), "the half-written checkpoint should be a temp file"

    res = _run_cli(data, _cli(data, out, extra=[*extra, "--resume"]))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming at update 4" in res.stderr
    a, b = load_file(tmp_path / "ref" / "final.safetensors"), load_file(out / "final.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    # same schedule: no extra halving on resume; the log holds each update once
    ref_lr = {e["iteration"]: e["lr"] for e in _events(tmp_path / "ref" / "log.jsonl") if e["event"] == "train"}
    got = [e for e in _events(out / "log.jsonl") if e["event"] == "train"]
    assert [e["iteration"] for e in got] == list(range(1, 13))
    assert {e["iteration"]: e["lr"] for e in got} == ref_lr
    ref_ckpt = torch.load(tmp_path / "ref" / "checkpoint.pt", map_location="cpu", weights_only=True)
    new_ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ref_ckpt["scheduler"] == new_ckpt["scheduler"]
    exp_avg = [s["exp_avg_sq"] for s in ref_ckpt["optimizer"]["state"].values()]
    new_state = new_ckpt["optimizer"]["state"].values()
    assert all(torch.equal(x, s["exp_avg_sq"]) for x, s in zip(exp_avg, new_state, strict=True))


def _branch(key: str) -> int | None:
    """The scale index of an MDSR per-scale parameter (pre_process.k / upsample.k), else None."""
    parts = key.split(".")
    return int(parts[1]) if parts[0] in ("pre_process", "upsample") else None


def test_mdsr_update_moves_only_the_chosen_scale_branch(data, tmp_path):
    cfg = resolve_config(_cfg(data, tmp_path, "mdsr-baseline", None, TINY_MDSR, **{"optim.lr": 1e-2}))
    trainer = Trainer(cfg, "cpu")
    net = trainer.net
    torch.manual_seed(0)

    def batch(scale):
        return torch.rand(2, 3, 12, 12), torch.rand(2, 3, 12 * scale, 12 * scale)

    # a step at every scale first, so every branch has Adam state (exp_avg) that could move it
    for s in (2, 4, 3, 2, 4):
        trainer.step(*batch(s), s)
    params = dict(net.named_parameters())
    before = {k: p.detach().clone() for k, p in params.items()}
    opt_before = {k: {n: t.clone() if torch.is_tensor(t) else t for n, t in trainer.optimizer.state[p].items()}
                  for k, p in params.items() if p in trainer.optimizer.state}
    assert {_branch(k) for k in opt_before} == {None, 0, 1, 2}

    trainer.step(*batch(3), 3)  # index 1 of scales (2, 3, 4)
    moved = {k for k, p in params.items() if not torch.equal(p.detach(), before[k])}
    for k, p in params.items():
        b = _branch(k)
        if b in (0, 2):  # x2 and x4 branches: parameters and optimiser state bit-identical
            assert torch.equal(p.detach(), before[k]), k
            st = trainer.optimizer.state[p]
            for name, value in opt_before[k].items():
                assert torch.equal(torch.as_tensor(st[name]), torch.as_tensor(value)), (k, name)
            assert p.grad is None, k
    assert any(_branch(k) == 1 for k in moved) and any(k.startswith("body.") for k in moved)
    assert any(k.startswith("tail.") for k in moved)


def test_warm_start_from_x2_loads_all_but_the_upsampler(data, tmp_path):
    from sr_bench.models import create
    from sr_bench.weights import export_safetensors

    torch.manual_seed(1)
    x2 = create("edsr-baseline", scale=2, **TINY)
    src = export_safetensors(x2, tmp_path / "x2.safetensors")
    cfg = resolve_config(_cfg(data, tmp_path / "x3", scale=3, **{"model.init": str(src)}))
    trainer = Trainer(cfg, "cpu")
    assert "loaded" in trainer.init_report and "tail.0" in trainer.init_report
    ours, theirs = trainer.net.state_dict(), x2.state_dict()
    for k, v in ours.items():
        if k.startswith("tail.0."):  # the x3 upsampler keeps its fresh initialisation
            assert k not in theirs or v.shape != theirs[k].shape or not torch.equal(v, theirs[k])
        else:
            assert torch.equal(v, theirs[k]), k
    # and through the full run, the report reaches the log
    res = train(_cfg(data, tmp_path / "x3run", scale=3, **{"model.init": str(src), "optim.iterations": 2}))
    start = _events(res.log)[0]
    assert start["event"] == "start" and "tail.0" in start["init"]


def test_multi_scale_vdsr_trains_every_scale(data, tmp_path):
    res = train(_cfg(data, tmp_path, "vdsr", None, {"layers": 3, "filters": 8}, **{"optim.iterations": 6}))
    assert sorted(r["scale"] for r in res.validation) == [2, 3, 4]
    assert np.isfinite([r["psnr"] for r in res.validation]).all()


def test_divergence_is_detected_and_reported(data, tmp_path):
    res = train(_cfg(data, tmp_path, **{"optim.lr": 1e12, "optim.iterations": 8, "optim.lr_step": 100}))
    assert res.diverged and res.iterations < 8, (res.diverged, res.iterations)
    assert res.validation == []  # a diverged model is not scored
    assert any(e["event"] == "diverged" for e in _events(res.log))
    assert (tmp_path / "final.safetensors").is_file()  # the run still ends cleanly


def test_two_process_ddp_matches_one_process(data, tmp_path):
    """torchrun with 2 CPU processes (gloo): global batch 4 = 2 x 2, MDSR's unused branches
    handled, rank 0 alone writes; the weights equal a 1-process run up to float reduction order."""
    extra = ["--iterations", "6", "--save-every", "3"]
    one = _run_cli(data, _cli(data, tmp_path / "one", "mdsr-baseline", None, TINY_MDSR, extra))
    assert one.returncode == 0, one.stderr[-3000:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sr_bench.train", *_cli(data, tmp_path / "two", "mdsr-baseline", None, TINY_MDSR, extra)]
    two = subprocess.run(cmd, env=_env_vars(data), capture_output=True, text=True, timeout=180)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "x2 processes" in two.stderr
    ev = _events(tmp_path / "two" / "log.jsonl")
    assert [e["event"] for e in ev].count("start") == 1 and ev[0]["world_size"] == 2
    assert [e["iteration"] for e in ev if e["event"] == "train"] == list(range(1, 7))
    a, b = load_file(tmp_path / "one" / "final.safetensors"), load_file(tmp_path / "two" / "final.safetensors")
    torch.manual_seed(0)  # the runs' seed: the same initial weights
    init = Trainer(resolve_config(_cfg(data, tmp_path / "init", "mdsr-baseline", None, TINY_MDSR)), "cpu")
    moved = max(float((a[k] - v).abs().max()) for k, v in init.net.state_dict().items() if k in a)
    assert moved > 1e-4  # training moved the weights well beyond the tolerance below
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=2e-6)


def test_the_plan_is_read_and_never_changed_by_the_run(data, tmp_path, monkeypatch):
    """train() resolves the config once into a RunPlan; every later phase only reads it: the
    config the plan holds when the phases start is the one it holds at the end, the one written
    to config.json and the checkpoint, and the result's. The caller's config is left alone."""
    from sr_bench.train import loop

    seen = {}
    real_run = loop._run

    def spy(plan, callbacks, say):
        seen["start"] = plan.config.to_dict()
        result = real_run(plan, callbacks, say)
        seen["end"] = plan.config.to_dict()
        return result

    monkeypatch.setattr(loop, "_run", spy)
    cfg = _cfg(data, tmp_path / "run", **{"optim.iterations": 4, "runtime.device": "auto"})
    asked = cfg.to_dict()
    result = train(cfg)
    assert seen["start"] == seen["end"] == result.config.to_dict()
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == seen["start"]
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["config"] == seen["start"]
    assert cfg.to_dict() == asked and seen["start"]["runtime"]["device"] != "auto"  # resolved in the plan only


def test_a_checkpoint_is_also_written_by_wall_time_and_changes_nothing(data, tmp_path, monkeypatch):
    """SAVE_EVERY_S: a slow run saves at the first log point after that many seconds without a
    checkpoint, whatever runtime.save_every says; the extra checkpoints leave the run bit-identical."""
    import sr_bench.train.loop as loop

    saved: list[int] = []
    real_save = loop.save_checkpoint
    monkeypatch.setattr(loop, "save_checkpoint", lambda path, state: saved.append(state["iteration"]) or
                        real_save(path, state))
    plain = train(_cfg(data, tmp_path / "plain"))  # smoke: 8 updates, save_every 4, a log point every update
    assert saved == [4, 8]
    saved.clear()
    monkeypatch.setattr(loop, "SAVE_EVERY_S", 0.0)  # every log point is "minutes since the last checkpoint"
    timed = train(_cfg(data, tmp_path / "timed"))
    assert saved == [1, 2, 3, 4, 5, 6, 7, 8]
    a, b = load_file(plain.weights), load_file(timed.weights)
    assert all(torch.equal(a[k], b[k]) for k in a)  # a checkpoint reads state, it never changes it
