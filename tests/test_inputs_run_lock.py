"""One process owns a run folder: a second ``train --out`` of it is refused naming the holder, a
lock left by a killed process is taken over (and said so), a holder on another machine is judged
by its heartbeat, and under torchrun only rank 0 takes the lock."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from sr_bench.images import write_image
from sr_bench.storage import LockOwner, lock_holder, lock_path
from sr_bench.train import plan as plan_module
from sr_bench.train import run_dir
from sr_bench.train.__main__ import main as train_main
from sr_bench.train.plan import Placement, _owned
from sr_bench.train.run_dir import RunFolderBusy, run_lock

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def data(tmp_path, textured) -> Path:
    for i in range(2):
        write_image(tmp_path / "data" / f"t{i}.png", textured(48, 64, i))
    return tmp_path / "data"


def _args(data: Path, out: Path, iterations: int = 2, *extra: str) -> list[str]:
    return ["-q", "--model", "edsr-baseline", "--scale", "2", "--profile", "smoke", "--device", "cpu",
            "--no-progress", "--option", "blocks=1", "--option", "filters=8", "--patch-size", "8", "--batch-size",
            "2", "--data", str(data), "--val-data", str(data), "--val-images", "1", "--out", str(out),
            "--iterations", str(iterations), *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _holder(out: Path) -> subprocess.Popen:
    """Another process holding ``out`` (as a training would), until killed."""
    code = ("import sys, time\nfrom sr_bench.train.run_dir import run_lock\n"
            "with run_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True, env=_env())
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def test_a_second_train_is_refused_naming_the_holder_and_a_killed_holders_lock_is_taken_over(
        tmp_path, data, capsys, one_thread):
    out = tmp_path / "run"
    holder = _holder(out)
    try:
        for extra in ((), ("--resume",), ("--overwrite",)):
            assert train_main(_args(data, out, 2, *extra)) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Traceback" not in err
            assert err.startswith(f"error: --out {out} is in use by pid {holder.pid} on {socket.gethostname()} since ")
            assert f"(lock {tmp_path / '.locks' / 'run.lock'})" in err and "choose another --out" in err
        assert not out.exists()  # the refused runs wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_holder(out).pid == holder.pid  # a kill -9 leaves its lock behind
    assert train_main(_args(data, out, 2)) == 0
    assert f"taking over a stale lock (pid {holder.pid} on " in capsys.readouterr().err
    assert (out / "checkpoint.pt").is_file()
    assert not (tmp_path / ".locks").exists()  # released, and its folder removed, when the run ended


@pytest.mark.slow
def test_two_real_trainings_on_one_folder(tmp_path, data):
    """Two ``python -m sr_bench.train`` processes: the second is refused while the first trains; a
    --resume after the first is killed -9 continues from its last checkpoint."""
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "sr_bench.train", *_args(data, out, 100000, "--save-every", "3")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint.pt").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not checkpoint"
            time.sleep(0.2)
        second = subprocess.run([sys.executable, "-m", "sr_bench.train", *_args(data, out, 100000, "--resume")],
                                capture_output=True, text=True, env=_env(), timeout=240)
        assert second.returncode == 1 and second.stderr.count("\n") == 1
        assert f"is in use by pid {first.pid} on " in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    done = int(torch.load(out / "checkpoint.pt", weights_only=True)["iteration"])
    again = subprocess.run([sys.executable, "-m", "sr_bench.train", *_args(data, out, done + 3, "--resume")[1:]],
                           capture_output=True, text=True, env=_env(), timeout=240)
    assert again.returncode == 0, again.stderr
    assert f"taking over a stale lock (pid {first.pid} on " in again.stderr
    assert f"resuming at update {done} of {done + 3}" in again.stderr
    entries = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    trained = [e["iteration"] for e in entries if e["event"] == "train"]
    assert [e["event"] for e in entries].count("start") == 1 and trained == sorted(set(trained))  # one writer
    assert [e["iteration"] for e in entries if e["event"] == "resume"] == [done] and trained[-1] == done + 3


def _foreign_lock(out: Path, beat: str = "000000000") -> Path:
    lock = lock_path(out)
    lock.parent.mkdir(parents=True, exist_ok=True)
    owner = LockOwner("otherhost|boot|ns", 4242, "t0", "2026-12-01T10:00:00+0000", beat)
    lock.write_bytes(owner.text())
    return lock


def test_a_holder_on_another_machine_is_judged_by_its_heartbeat(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(run_dir, "STALE_AFTER_S", 0.6)
    monkeypatch.setattr(run_dir, "HEARTBEAT_S", 0.1)
    out = tmp_path / "run"
    lock = _foreign_lock(out)
    stop = threading.Event()

    def beating() -> None:  # the other machine's holder is alive: its beat changes
        n = 0
        while not stop.wait(0.05):
            n += 1
            lock.write_bytes(LockOwner("otherhost|boot|ns", 4242, "t0", "2026-12-01T10:00:00+0000",
                                       f"{n:09d}").text())

    beat = threading.Thread(target=beating)
    beat.start()
    try:
        with pytest.raises(RunFolderBusy, match=r"is in use by pid 4242 on otherhost since 2026-12-01T10:00:00"):
            with run_lock(out):
                pytest.fail("took a lock whose holder is alive")
    finally:
        stop.set()
        beat.join()
    with caplog.at_level(logging.WARNING, logger="sr_bench"), run_lock(out) as held:  # the beat stopped
        assert held == lock and lock_holder(out).pid == os.getpid()
    assert any("taking over a stale lock (pid 4242 on otherhost" in r.getMessage() for r in caplog.records)


def test_under_torchrun_only_rank_0_takes_the_lock_and_a_refusal_stops_every_rank(tmp_path, monkeypatch):
    out = tmp_path / "run"
    told: list[list[float]] = []

    def agree(flags, world, device):
        told.append(list(flags))
        return [bool(f) for f in flags]

    monkeypatch.setattr(plan_module, "agree", agree)
    with _owned(str(out), Placement(rank=1, local_rank=1, world=2)):
        assert lock_holder(out) is None  # rank 1 is the same run: it takes no lock
    with _owned(str(out), Placement(rank=0, world=2)):
        assert lock_holder(out).pid == os.getpid()
    assert told == [[0.0], [0.0]]
    holder = _holder(out)
    try:
        with pytest.raises(RunFolderBusy, match=f"in use by pid {holder.pid}"), _owned(str(out), Placement(world=2)):
            pytest.fail("rank 0 went on")
        monkeypatch.setattr(plan_module, "agree", lambda flags, world, device: [True])  # rank 0 said no
        with pytest.raises(RunFolderBusy, match="rank 0 could not take the run folder"), \
                _owned(str(out), Placement(rank=1, local_rank=1, world=2)):
            pytest.fail("rank 1 went on")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
