"""SIGTERM and Ctrl-C during training: the trainer finishes the update, saves a checkpoint,
logs it and exits (143 / 130); --resume then ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TINY = {"blocks": 2, "filters": 16}

# The real command line, with each update slowed to 0.15 s so that the signal lands mid-run.
_SLOW_CHILD = textwrap.dedent(
    """
    import sys, time
    from sr_bench.train import trainer
    from sr_bench.train.__main__ import main

    real_step = trainer.Trainer.step
    def slow_step(self, *a, **k):
        time.sleep(0.15)
        return real_step(self, *a, **k)
    trainer.Trainer.step = slow_step
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.fixture(scope="module")
def data(small_train_folders) -> dict[str, Path]:
    return small_train_folders


def _env(data) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(SR_BENCH_CACHE=str(data["cache"]), OMP_NUM_THREADS="1")
    return env


def _args(data, out, iterations, workers, *extra) -> list[str]:
    args = ["--model", "edsr-baseline", "--scale", "2", "--profile", "smoke", "--data", str(data["train"]),
            "--val-data", str(data["val"]), "--out", str(out), "--no-progress", "--device", "cpu", "--seed", "5",
            "--iterations", str(iterations), "--workers", str(workers)]
    for k, v in TINY.items():
        args += ["--option", f"{k}={v}"]
    return args + list(extra)


def _train_events(log: Path) -> list[dict]:
    events = []
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return events


TOTAL = 24


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """The uninterrupted run's final weights (batches do not depend on the number of workers)."""
    out = tmp_path_factory.mktemp("reference")
    ref = subprocess.run([sys.executable, "-m", "sr_bench.train", *_args(data, out, TOTAL, 0)],
                         env=_env(data), capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]
    return out / "final.safetensors"


@pytest.mark.parametrize(("sig", "status", "workers"), [(signal.SIGTERM, 143, 2), (signal.SIGINT, 130, 0)])
def test_a_signal_saves_a_checkpoint_and_resume_ends_bit_identical(data, reference, tmp_path, sig, status, workers):
    total = TOTAL

    out = tmp_path / "stopped"
    child = tmp_path / "child.py"
    child.write_text(_SLOW_CHILD)
    proc = subprocess.Popen([sys.executable, str(child), *_args(data, out, 400, workers)], env=_env(data),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not any(e["event"] == "train" and e["iteration"] >= 3 for e in _train_events(out / "log.jsonl")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    # the hint is a command that works: train's --resume reads the run's own config from the folder
    assert f"{sig.name} at update" in err and f"python -m sr_bench.train --out {out} --resume" in err, err[-2000:]
    saved = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    stopped_at = saved["iteration"]
    assert 3 <= stopped_at < total
    events = _train_events(out / "log.jsonl")
    assert events[-1]["event"] == "stopped" and events[-1]["iteration"] == stopped_at
    assert events[-1]["signal"] == sig.name
    assert [e["iteration"] for e in events if e["event"] == "train"] == list(range(1, stopped_at + 1))
    assert not (out / "final.safetensors").exists()

    res = subprocess.run([sys.executable, "-m", "sr_bench.train", *_args(data, out, total, workers, "--resume")],
                         env=_env(data), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming at update {stopped_at}" in res.stderr
    a, b = load_file(reference), load_file(out / "final.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), (stopped_at, [k for k in a if not torch.equal(a[k], b[k])])
