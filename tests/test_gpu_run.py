"""``python -m sr_bench.gpu_run`` on the CPU at smoke size (``--tiny``): every step writes its
results, a call stops at its deadline with finished records kept and the training run
checkpointed, and the next call continues; plus the time budget itself, the staging of what travels
to the GPU machine and what comes back, and the package check that runs before anything else."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sr_bench import deadline
from sr_bench.deadline import Deadline, DeadlineReached, time_budget
from sr_bench.gpu_run import preflight, runner, staging
from sr_bench.gpu_run.runner import EXIT_CALL_AGAIN, REAL, TINY, RunOptions, main, run
from sr_bench.images import write_image
from sr_bench.records import read_records
from sr_bench.train import TrainingStopped, make_config, train

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- the time budget ------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_budget_expires_on_its_clock_and_nested_budgets_keep_the_earlier_deadline():
    clock = _Clock()
    assert deadline.current() is None and deadline.remaining() == math.inf and not deadline.expired()
    with time_budget(Deadline.after(10, clock)):
        assert deadline.remaining() == 10
        with time_budget(Deadline.after(30, clock)):
            assert deadline.remaining() == 10  # the outer deadline still holds
        clock.now += 10
        assert deadline.expired()
        with pytest.raises(DeadlineReached, match="before evaluating"):
            deadline.check("evaluating")
    assert deadline.current() is None
    assert issubclass(DeadlineReached, BaseException) and not issubclass(DeadlineReached, Exception)


def test_training_stops_at_the_deadline_with_a_checkpoint_and_resumes(small_train_folders, tmp_path, monkeypatch):
    monkeypatch.setenv("SR_BENCH_CACHE", str(small_train_folders["cache"]))
    cfg = make_config("smoke", "edsr-baseline", 2, **{
        "data.dataset": str(small_train_folders["train"]), "val.dataset": str(small_train_folders["val"]),
        "model.options": {"blocks": 1, "filters": 8}, "out": str(tmp_path / "run"), "runtime.progress": False,
        "runtime.device": "cpu", "data.num_workers": 0, "optim.iterations": 6, "runtime.log_every": 50})
    updates = []
    clock = _Clock()

    def tick(event):  # the budget runs out during update 2
        updates.append(event["iteration"])
        clock.now += 1

    with pytest.raises(TrainingStopped) as stop, time_budget(Deadline.after(1.5, clock)):
        train(cfg, callbacks=[tick])
    assert updates == [1, 2] and stop.value.code == 140 and "time budget" in str(stop.value)
    events = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "stopped" and events[-1]["signal"] == "deadline" and events[-1]["iteration"] == 2
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["iteration"] == 2
    with pytest.raises(TrainingStopped), time_budget(Deadline.after(-1, clock)):  # run out before any update
        train(cfg, resume=True, callbacks=[tick])
    assert updates == [1, 2]
    result = train(cfg, resume=True, callbacks=[tick])
    assert result.iterations == 6 and updates == [1, 2, 3, 4, 5, 6] and result.resumed_from == 2


def test_reproduce_stops_before_an_evaluation_pass_once_the_budget_ran_out(tmp_path, monkeypatch):
    from sr_bench.reproduce import ReproduceConfig
    from sr_bench.reproduce import run as reproduce_run

    monkeypatch.delenv("SR_BENCH_DATA", raising=False)
    config = ReproduceConfig(profile="smoke", results=str(tmp_path / "r"), runs=str(tmp_path / "runs"),
                             models=("bicubic",), table1=False, progress=False)
    with pytest.raises(DeadlineReached, match="before evaluating bicubic x2 on embedded"), \
            time_budget(Deadline.after(-1)):
        reproduce_run(config)
    assert read_records(tmp_path / "r" / "records.jsonl") == []


# ---- the runner at smoke size ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    """A data root of tiny images: Set5 (5 images) and T91 (91), the other sets absent."""
    root = tmp_path_factory.mktemp("tiny_data")
    rng = np.random.default_rng(0)
    for name, n, side in (("Set5", 5, 48), ("T91", 91, 36)):
        for i in range(n):
            image = rng.integers(0, 256, (side, side + 4, 3), dtype=np.uint8)
            write_image(root / name / "HR" / f"im{i:02d}.png", image)
    return root


class _UntilTraining:
    """A budget that runs out once the EDSR-baseline training run has logged its first update."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def expired(self) -> bool:
        return self.log.is_file() and '"event": "train"' in self.log.read_text()

    def remaining(self) -> float:
        return 0.0 if self.expired() else 1e6


def test_tiny_run_stops_at_the_deadline_keeps_finished_records_and_resumes(tiny_root, tmp_path, monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)
    out, runs = tmp_path / "gpu", tmp_path / "runs"
    options = RunOptions(out=out, runs=runs, data_root=str(tiny_root), device="cpu", budget_s=600.0,
                         export=tmp_path / "OUT", sizes=TINY)
    log = runs / "smoke-edsr-baseline-x2" / "log.jsonl"
    assert run(options, budget=_UntilTraining(log)) == EXIT_CALL_AGAIN
    state = json.loads((out / "state.json").read_text())
    status = {name: s["status"] for name, s in state["steps"].items()}
    assert status == {"estimate": "done", "tests": "skipped", "bench-edsr-baseline-x2": "done",
                      "bench-edsr-x2": "done", "reproduce-bicubic": "done", "reproduce-edsr-baseline": "stopped"}
    assert state["calls"][-1]["left"] == ["reproduce-edsr-baseline", "tables"]
    bicubic = [r for r in read_records(out / "records.jsonl") if r.model == "bicubic"]
    assert len(bicubic) == 6 and {r.dataset for r in bicubic} == {"Set5"}  # part 1's records are kept
    assert torch.load(log.parent / "checkpoint.pt", weights_only=True)["iteration"] < 8  # stopped mid-run
    bench = json.loads((out / "bench-edsr-baseline-x2.json").read_text())
    assert bench["math_mode"] == "fp32-ieee" and bench["end_to_end_updates"] == TINY.bench_updates
    assert "reproduce-edsr-baseline: stopped" in (out / "summary.md").read_text()

    # the next call, as the command line makes it: only what is left
    assert main(["--tiny", "--device", "cpu", "--out", str(out), "--runs", str(runs), "--data-root", str(tiny_root),
                 "--budget-min", "10", "--export", str(tmp_path / "OUT"), "-q"]) == 0
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events.count("resume") == 1 and events[-1] == "end"
    state = json.loads((out / "state.json").read_text())
    assert all(s["status"] in ("done", "skipped") for s in state["steps"].values()) and len(state["calls"]) == 2
    models = {r.model for r in read_records(out / "records.jsonl")}
    assert models == {"bicubic", "edsr-baseline"}
    table = (out / "table3.md").read_text()
    assert "Urban100" in table and "absent" in table  # the table says which sets did not travel
    with tarfile.open(tmp_path / "OUT" / staging.ARCHIVE) as tar:
        names = set(tar.getnames())
    assert {"records.jsonl", "table3.md", "state.json", "summary.md", "bench-edsr-x2.json", "estimate.json",
            "times-smoke.json", "gpu_run.log"} <= names
    assert not any(n.endswith(".lock") or n.startswith(".") for n in names)
    assert sorted(p.name for p in (tmp_path / "OUT").iterdir()) == [staging.ARCHIVE, "gpu_run.log", "summary.md"]
    # here, the returned archive unpacks into a results folder
    staging.import_results(tmp_path / "OUT" / staging.ARCHIVE, tmp_path / "here")
    assert (tmp_path / "here" / "records.jsonl").read_bytes() == (out / "records.jsonl").read_bytes()


def _ctx(tmp_path, sizes=TINY, doc=None) -> runner.Context:
    options = RunOptions(out=tmp_path, runs=tmp_path, data_root=None, device="cpu", budget_s=60.0, sizes=sizes)
    return runner.Context(options, runner.State(tmp_path / "state.json"), ["Set5"], {}, doc)


def test_a_step_that_does_not_fit_waits_for_the_next_call_unless_it_is_the_first(tmp_path):
    ran = []

    def step(name, seconds):
        return runner.Step(name, name, lambda ctx: ran.append(name) or {}, lambda ctx: seconds)

    steps = [step("a", 500.0), step("b", 50.0), step("c", 500.0), step("d", None)]
    ctx = _ctx(tmp_path)
    why = runner._loop(ctx, steps, Deadline.after(100))
    assert ran == ["a", "b"] and why.startswith("c needs about 500 s and")
    assert runner._loop(ctx, steps, Deadline.after(100)) is None  # the next call: c comes first
    assert ran == ["a", "b", "c", "d"]
    assert {n: s["status"] for n, s in ctx.state.data["steps"].items()} == dict.fromkeys("abcd", "done")


def test_the_real_steps_and_their_estimates_from_the_dry_run(tmp_path):
    names = [s.name for s in runner.steps(REAL)]
    assert names == ["estimate", "tests", "bench-edsr-baseline-x2", "bench-edsr-x2", "reproduce-bicubic",
                     "reproduce-srresnet", "reproduce-vdsr", "reproduce-edsr-baseline", "reproduce-mdsr-baseline",
                     "reproduce-mdsr", "reproduce-edsr", "tables"]
    doc = {"models": [{"model": "edsr", "runs": [{"seconds_per_update": 0.03}], "train_s": 100.0, "eval_s": 20.0}]}
    ctx = _ctx(tmp_path, REAL, doc)
    by_name = {s.name: s for s in runner.steps(REAL)}
    assert by_name["reproduce-edsr"].estimate_s(ctx) == 120.0
    assert by_name["reproduce-mdsr"].estimate_s(ctx) is None  # not in the estimate: unknown, never zero
    # amp auto twice (2 x 13 updates of 2 trainers), 3 warm-up, the timed end-to-end run and its warm-up
    expected = runner.BENCH_OVERHEAD_S + (20 + 200 + 3 + 52) * 0.03 + 0.5
    assert by_name["bench-edsr-x2"].estimate_s(ctx) == pytest.approx(expected)
    assert "| reproduce-edsr | reproduce --profile gpu --models edsr | to do | 120 s |" in runner._plan_text(
        ctx, runner.steps(REAL))


def test_the_command_refuses_a_cpu_without_tiny_and_bad_values(capsys):
    assert main(["--device", "cpu"]) == 2
    assert "needs CUDA" in capsys.readouterr().err
    assert main(["--device", "cpu", "--tiny", "--redo", "nothing"]) == 2
    assert "no such step" in capsys.readouterr().err
    assert main(["--device", "cpu", "--tiny", "--budget-min", "0"]) == 2


# ---- what travels -----------------------------------------------------------------------------------


def _png(path: Path, side: int, seed: int) -> None:
    write_image(path, np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))


def test_prepare_stages_what_fits_in_order_and_writes_their_manifest(tmp_path, monkeypatch):
    src = tmp_path / "data"
    for i in range(5):
        _png(src / "Set5" / "HR" / f"a{i}.png", 64, i)
        _png(src / "Set5" / "LR_bicubic" / "X2" / f"a{i}x2.png", 32, 10 + i)
    for i in range(100):
        _png(src / "B100" / "HR" / f"b{i:03d}.png", 96, 100 + i)
        _png(src / "B100" / "LR_bicubic" / "X2" / f"b{i:03d}x2.png", 48, 300 + i)
    (src / "MANIFEST.tsv").write_text("dataset\tfile\tsha256\n" + "".join(
        f"{p.parts[-4] if 'LR' in str(p) else p.parts[-3]}\t{p.relative_to(src).as_posix()}\tx\n"
        for p in sorted(src.rglob("*.png"))))
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    monkeypatch.setattr(staging, "tree_bytes", lambda root: 1000)
    set5 = sum(p.stat().st_size for p in (src / "Set5").rglob("*.png"))
    b100_hr = sum(p.stat().st_size for p in (src / "B100" / "HR").glob("*.png"))
    # room for Set5 whole and B100's HR images, not for B100's LR files too
    limit = 1000 + set5 + b100_hr + 100
    staged = {s.name: s for s in staging.prepare(src, checkout, limit=limit, margin=0)}
    assert (staged["Set5"].mode, staged["Set5"].files) == ("whole", 10)
    assert (staged["B100"].mode, staged["B100"].files) == ("HR only", 100)
    assert staged["T91"].mode == "absent" and staged["Urban100"].mode == "absent"
    data = checkout / staging.CARRY / "data"
    assert (data / "Set5" / "LR_bicubic" / "X2" / "a0x2.png").read_bytes() == \
        (src / "Set5" / "LR_bicubic" / "X2" / "a0x2.png").read_bytes()
    assert not (data / "B100" / "LR_bicubic").exists()
    listed = [line.split("\t")[1] for line in (data / "MANIFEST.tsv").read_text().splitlines()[1:]]
    assert len(listed) == 110 and all((data / f).is_file() for f in listed)
    # a second prepare with less room replaces the staged folder
    staged = {s.name: s for s in staging.prepare(src, checkout, limit=1000 + set5 + 100, margin=0)}
    assert staged["B100"].mode == "absent" and not (data / "B100").exists()
    assert "take" in staged["B100"].why


def test_run_command_names_the_carried_data_the_commit_and_the_wheels(tmp_path):
    command = staging.run_command(tmp_path, budget_min=9)
    assert "python3 -m sr_bench.gpu_run --budget-min 9 --data-root .gpu_carry/data --export \"$OUT\"" in command
    assert command.startswith("SR_BENCH_COMMIT=") and "pip install" not in command
    (tmp_path / staging.CARRY / "wheels").mkdir(parents=True)
    (tmp_path / staging.CARRY / "wheels" / "x-1.0-py3-none-any.whl").write_bytes(b"")
    command = staging.run_command(tmp_path)
    assert command.startswith("python3 -m pip install -q --no-index") and "export PYTHONPATH=/tmp/site" in command


def test_the_carry_folder_is_git_ignored():
    root = Path(__file__).resolve().parents[1]
    ignored = subprocess.run(["git", "check-ignore", "-q", str(staging.CARRY / "data" / "x.png")], cwd=root)
    assert ignored.returncode == 0


def test_an_archive_with_an_escaping_entry_is_refused(tmp_path):
    archive = tmp_path / staging.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        (tmp_path / "x").write_text("x")
        tar.add(tmp_path / "x", arcname="../escape.txt")
    with pytest.raises(Exception, match="escape|outside|leave"):
        staging.import_results(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


# ---- the packages, before anything is imported -------------------------------------------------------


def test_missing_packages_are_named_with_the_way_to_carry_them():
    assert preflight.missing({"json": "json", "surely_no_such_module_q": "no-such-dist"}) == ["no-such-dist"]
    message = preflight.missing_message(["no-such-dist", "tabulate"])
    assert "no-such-dist, tabulate" in message and "pip download" in message and ".gpu_carry/wheels" in message
    assert preflight.missing(preflight.RUNTIME) == []  # this environment has them all


def test_the_module_checks_packages_before_importing_the_runner(tmp_path):
    code = ("import sys, sr_bench.gpu_run.preflight as p; p.RUNTIME = {**p.RUNTIME, 'surely_no_such_module_q': "
            "'no-such-dist'}; import runpy; runpy.run_module('sr_bench.gpu_run', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1 and "error: this Python lacks no-such-dist" in done.stderr
    assert "sr_bench.gpu_run.runner" not in done.stderr


def test_nox_gpu_session_runs_the_command_with_the_python_at_hand(tiny_root, tmp_path):
    """`nox -s gpu` makes no environment (venv_backend none) and installs nothing: it runs
    ``python -m sr_bench.gpu_run`` with ``$SR_BENCH_PYTHON``, and a finished call exits 0."""
    pytest.importorskip("nox")
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "SR_BENCH_DATA"}
    env.update(SR_BENCH_PYTHON=sys.executable, SR_BENCH_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    args = ["--tiny", "--device", "cpu", "--out", str(tmp_path / "gpu"), "--runs", str(tmp_path / "runs"),
            "--data-root", str(tiny_root), "--budget-min", "3", "-q"]
    done = subprocess.run([sys.executable, "-m", "nox", "-f", str(root / "noxfile.py"), "-s", "gpu", "--", *args],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{sys.executable} -m sr_bench.gpu_run --tiny" in done.stderr  # nox logs the command it ran
    state = json.loads((tmp_path / "gpu" / "state.json").read_text())
    assert state["steps"]["tables"]["status"] == "done" and (tmp_path / "gpu" / "table3.md").is_file()


def test_bench_figures_are_judged_against_the_h200_targets_and_pytest_counts_are_read():
    ok = runner._verdicts("edsr-baseline", {"end_to_end_updates_per_s": 151.0, "ratio": 0.89})
    assert ok == {"min_end_to_end_updates_per_s": "met: 151 (>= 150)", "min_ratio": "NOT met: 0.89 (>= 0.9)"}
    assert runner._verdicts("edsr", {"step_ms": 23.5}) == {"max_step_ms": "NOT met: 23.5 (<= 23)"}
    text = ("....\nFAILED tests/x.py::t - boom\n"
            "==== 1 failed, 11 passed, 2 skipped, 650 deselected, 1 error in 61.2s ====")
    assert runner._pytest_counts(text) == {"failed": 1, "passed": 11, "skipped": 2, "deselected": 650, "error": 1}
