"""reproduce --launcher submitit: the job graph of the paper profile (nothing submitted), the
dry run's sbatch scripts, the options' errors, and local submitit jobs end to end: a training
preempted (SIGUSR2: checkpoint, requeue), then killed (SIGKILL), finished by running the command
again, with the weights, records and Table 3 of the in-process run; a two-task job trains like
torchrun; the device each DDP process takes."""

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

import sr_bench.reproduce as reproduce
from sr_bench.launch import LaunchOptions, NodeKind, driver, job_graph
from sr_bench.launch.graph import Graph, Node
from sr_bench.records import read_records
from sr_bench.reproduce import END_TO_END, Estimate, PassEstimate, ReproduceConfig, RunEstimate, plan

E2E = END_TO_END["cuda"]  # the jobs of the dry run below run on GPUs

TINY = '{"blocks": 1, "filters": 8}'
PAPER_SETS = ["Set5", "Set14", "B100", "Urban100", "DIV2K"]


@pytest.fixture
def with_submitit():
    """Launching needs submitit (the ``cluster`` extra; nox's tests session installs it)."""
    return pytest.importorskip("submitit")


@pytest.fixture
def no_data(monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "OMP_NUM_THREADS"):
        monkeypatch.delenv(k, raising=False)


# ---- the graph (pure: nothing read, nothing submitted) ---------------------------------------------------


def test_paper_profile_job_graph_dependencies_and_arrays():
    graph = job_graph(plan(ReproduceConfig(profile="paper"), PAPER_SETS))
    trains = graph.names(NodeKind.TRAIN)
    # one run per (model, scale); MDSR, MDSR-baseline and VDSR: one multi-scale run each
    assert sorted(trains) == sorted(
        [f"train-{m}-x{s}" for m in ("edsr-baseline", "edsr", "srresnet") for s in (2, 3, 4)]
        + ["train-mdsr-baseline", "train-mdsr", "train-vdsr"])
    # the paper's warm start: x3/x4 EDSR runs need the x2 run; nothing else needs a run
    needs = {n: graph[n].needs for n in trains}
    assert needs["train-edsr-x3"] == needs["train-edsr-x4"] == ("train-edsr-x2",)
    assert needs["train-edsr-baseline-x4"] == ("train-edsr-baseline-x2",)
    assert sum(bool(v) for v in needs.values()) == 4
    # every evaluation needs the run that serves its scale; bicubic needs nothing
    evaluations = graph.names(NodeKind.EVALUATE)
    assert len(evaluations) == 7 * 3
    assert graph["evaluate-edsr-x3"].needs == ("train-edsr-x3",)
    assert graph["evaluate-mdsr-x4"].needs == ("train-mdsr",)
    assert graph["evaluate-bicubic-x2"].needs == ()
    # the tables wait for every evaluation, finished or not (afterany), and need nothing
    tables = graph["tables"]
    assert sorted(tables.waits) == sorted(evaluations) and tables.needs == ()
    # a failed x2 run stops its x3/x4 runs and the three evaluations, not the tables
    assert sorted(graph.dependents("train-edsr-x2")) == sorted(
        ["train-edsr-x3", "train-edsr-x4", "evaluate-edsr-x2", "evaluate-edsr-x3", "evaluate-edsr-x4"])

    groups = graph.groups()
    arrays = {tuple(n.name for n in g) for g in groups}
    assert ("train-edsr-baseline-x2", "train-edsr-x2", "train-mdsr-baseline", "train-mdsr", "train-srresnet-x2",
            "train-srresnet-x3", "train-srresnet-x4", "train-vdsr") in arrays  # the 8 independent runs
    assert ("train-edsr-x3", "train-edsr-x4") in arrays
    assert ("evaluate-mdsr-x2", "evaluate-mdsr-x3", "evaluate-mdsr-x4") in arrays  # same run: one array
    assert ("evaluate-edsr-x3",) in arrays  # its own dependency: its own job
    assert sum(len(g) for g in groups) == len(graph) == 12 + 21 + 1 and len(groups) == 17
    assert all(len({(n.kind, n.needs, n.waits) for n in g}) == 1 for g in groups)
    # submitted in this order, no group names a job not yet submitted
    seen: set[str] = set()
    for g in groups:
        assert set(g[0].after) <= seen, g
        seen |= {n.name for n in g}


def test_a_multi_scale_model_has_one_run_for_all_its_scales(tmp_path):
    config = ReproduceConfig(profile="gpu", runs=str(tmp_path))
    assert {reproduce.run_dir(config, "mdsr", s) for s in (2, 3, 4)} == {tmp_path / "gpu-mdsr-x2"}
    assert reproduce.run_dir(config, "edsr", 4) == tmp_path / "gpu-edsr-x4"


def test_graph_refuses_a_job_before_what_it_waits_for():
    with pytest.raises(ValueError, match="train-edsr-x3 comes before train-edsr-x2"):
        Graph((Node(NodeKind.TRAIN, "edsr", 3, needs=("train-edsr-x2",)), Node(NodeKind.TRAIN, "edsr", 2)))


def test_slurm_parameters_of_a_submission():
    from sr_bench.launch.executors import job_parameters, slurm_parameters

    options = LaunchOptions(nodes=2, gpus_per_node=4, partition="gpu", parameters={"slurm_account": "lab"})
    train = slurm_parameters(options, NodeKind.TRAIN, "sr_bench-train", ["11_0"], [])
    assert train["nodes"] == 2 and train["tasks_per_node"] == 4 and train["gpus_per_node"] == 4
    assert train["slurm_dependency"] == "afterok:11_0" and train["slurm_partition"] == "gpu"
    assert train["slurm_additional_parameters"] == {"kill-on-invalid-dep": "yes"}
    tables = slurm_parameters(options, NodeKind.TABLES, "sr_bench-tables", [], ["12", "13_2"])
    assert tables["slurm_dependency"] == "afterany:12:13_2" and "slurm_additional_parameters" not in tables
    evaluate = job_parameters(options, NodeKind.EVALUATE)
    assert (evaluate["nodes"], evaluate["tasks_per_node"], evaluate["gpus_per_node"]) == (1, 1, 1)
    assert "gpus_per_node" not in job_parameters(LaunchOptions(), NodeKind.TRAIN)


# ---- the dry run --------------------------------------------------------------------------------------


def _fake_estimates(config, jobs, **_):
    """0.5 s per update for every run; 60 s of evaluation per model (20 s per scale)."""
    out = []
    for job in jobs:
        runs = [None] if job.model in ("mdsr", "mdsr-baseline", "vdsr") else list(job.scales)
        trained = job.weights == "train"
        out.append(Estimate(job.model, job.scales,
                            [RunEstimate(k, 100, 0.5, "fake", E2E, 0, 0.0) for k in runs] if trained else [],
                            [PassEstimate("embedded", s, "paper", 1, 1, 60.0 / len(job.scales)) for s in job.scales]))
    return out


def test_dry_run_prints_the_graph_estimates_and_sbatch_scripts(tmp_path, no_data, with_submitit, monkeypatch,
                                                                  capsys):
    monkeypatch.setattr(driver, "estimate", _fake_estimates)
    results = tmp_path / "results"
    argv = ["--profile", "paper", "--launcher", "submitit", "--launcher-dry-run", "--launcher-cluster", "slurm",
            "--partition", "gpu", "--nodes", "2", "--gpus-per-node", "4", "--time-limit", "2d",
            "--launcher-option", "slurm_account=lab", "--results", str(results), "--runs", str(tmp_path / "runs")]
    assert reproduce.main(argv) == 0
    out = capsys.readouterr().out
    assert "34 jobs (12 training run(s), 21 evaluation(s), the tables); 34 to submit in 17 submissions" in out
    # each training job: 100 updates x 0.5 s / E2E; the paper profile's 3e5 updates
    row = next(line for line in out.splitlines() if line.startswith("| 2 | train array of 8 |"))
    assert f"| 2 x 4, 4 GPU/node | {100 * 0.5 / E2E:.0f} s | {3e5 * 0.5 / E2E / 86400:.1f} d |" in row
    assert "| evaluate array of 3 | evaluate-bicubic-x2, evaluate-bicubic-x3, evaluate-bicubic-x4 |" in out
    scripts = out.split("## sbatch scripts")[1].split("### ")[1:]
    assert len(scripts) == 17
    train8 = next(s for s in scripts if s.startswith("2. train-edsr-baseline-x2, train-edsr-x2,"))
    for flag in ("--array=0-7%8", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu",
                 "--account=lab", "--time=2880", "--signal=USR2@90"):
        assert f"#SBATCH {flag}\n" in train8, flag
    assert "--dependency" not in train8
    warm = next(s for s in scripts if s.split("\n")[0].endswith("train-edsr-x3, train-edsr-x4"))
    assert "#SBATCH --dependency='afterok:<JOB:train-edsr-x2>'\n" in warm and "--kill-on-invalid-dep=yes" in warm
    evaluation = next(s for s in scripts if s.split("\n")[0].endswith(" evaluate-edsr-x3"))
    assert "#SBATCH --nodes=1\n" in evaluation and "#SBATCH --gpus-per-node=1\n" in evaluation
    tables = scripts[-1]
    assert tables.startswith("17. tables") and tables.count("<JOB:evaluate-") == 21 and "afterany:" in tables
    assert "submitit.core._submit" in tables
    assert "At these estimates every job finishes within its time limits." in out
    assert not results.exists()  # a dry run writes nothing

    # 69 s of training against one 1-minute time limit and no requeue: the trainings would not finish
    short = [a for a in argv if a not in ("2d",)]
    short[short.index("--time-limit") + 1:short.index("--time-limit") + 1] = ["1"]
    assert reproduce.main([*short, "--launcher-option", "max_num_timeout=0"]) == 0
    over = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("At these estimates"))
    assert "train-edsr-x4" in over and "train-mdsr," in over
    assert "evaluate-" not in over and "within 1 time limits" in over  # evaluations: 20 s each


# ---- the options ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "expected"), [
    (["--partition", "gpu"], "--partition is an option of --launcher submitit"),
    (["--launcher", "submitit", "--launcher-option", "slurm_partiton=gpu"], "slurm_partiton"),
    (["--launcher", "submitit", "--launcher-option", "nodes=2"], "use --nodes instead"),
    (["--launcher", "submitit", "--device", "cuda:1"], "--device cuda:1 with --launcher submitit"),
    (["--launcher", "submitit", "--launcher-option", "max_num_timeout=-1"], "max_num_timeout=-1"),
])
def test_launcher_usage_errors_are_one_line(argv, expected, tmp_path, no_data, with_submitit, capsys):
    rc = reproduce.main([*argv, "--launcher-dry-run" if "--launcher" in argv else "--dry-run",
                         "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and expected in err, err


def test_submitit_missing_is_a_usage_error(tmp_path, no_data, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    rc = reproduce.main(["--launcher", "submitit", "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install 'sr_bench[cluster]'" in err


@pytest.mark.parametrize(("text", "minutes"), [("90", 90), ("90m", 90), ("24h", 1440), ("2d", 2880),
                                               ("1-12:00:00", 2160), ("0:30:30", 31), ("4:00", 240)])
def test_time_limit_spellings(text, minutes):
    assert reproduce._duration_minutes(text) == minutes


def test_a_run_folder_of_another_recipe_stops_the_launch_before_any_job(tmp_path, no_data):
    from sr_bench.launch.driver import prepare
    from sr_bench.train import make_config

    config = ReproduceConfig(profile="smoke", results=str(tmp_path / "r"), runs=str(tmp_path / "runs"),
                             models=("edsr-baseline",), overrides={"model.options": {"blocks": 1, "filters": 8}})
    other = make_config("smoke", "edsr-baseline", 2, **{"model.options": {"blocks": 2, "filters": 8}})
    other.save(tmp_path / "runs" / "smoke-edsr-baseline-x2" / "config.json")
    with pytest.raises(reproduce.cli.UsageError, match="holds a run of another recipe .*model.options"):
        prepare(config, LaunchOptions(), "local")
    assert not (tmp_path / "r" / "jobs").exists()


def test_a_local_job_of_an_earlier_launch_still_running_is_not_started_twice(tmp_path, no_data):
    from sr_bench.launch.driver import prepare

    config = ReproduceConfig(profile="smoke", results=str(tmp_path / "r"), runs=str(tmp_path / "runs"),
                             models=("bicubic",), table1=False)
    # a process that looks like submitit's local controller (its command line names it)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)",
                                "submitit.local._local"], stdout=subprocess.PIPE, text=True)
    try:
        assert sleeper.stdout.readline() == "up\n"  # its command line is in place
        folder = tmp_path / "r" / "jobs" / "smoke"
        folder.mkdir(parents=True)
        (folder / "submitted.json").write_text(json.dumps(
            {"evaluate-bicubic-x3": {"job_id": str(sleeper.pid), "cluster": "local", "launch": "x"}}))
        with pytest.raises(reproduce.cli.UsageError, match=f"evaluate-bicubic-x3 .* still runs here \\(pid "
                                                           f"{sleeper.pid}\\)"):
            prepare(config, LaunchOptions(), "local")
    finally:
        sleeper.kill()
        sleeper.wait()
    launch, queued = prepare(config, LaunchOptions(), "local")  # once it has ended, it runs again
    assert "evaluate-bicubic-x3" in launch.todo and queued == {}


# ---- local submitit jobs, end to end ------------------------------------------------------------------------

# Loaded by every Python process started with this folder on PYTHONPATH: in submitit jobs, each
# training update sleeps, so that the signals below land mid-run.
_SLOW_SITE = textwrap.dedent(
    """
    import os
    if os.environ.get("SR_BENCH_TEST_SLOW_STEP") and os.environ.get("SUBMITIT_EXECUTOR"):
        import time
        from sr_bench.train import trainer

        _step = trainer.Trainer.step

        def _slow_step(self, *a, **k):
            time.sleep(float(os.environ["SR_BENCH_TEST_SLOW_STEP"]))
            return _step(self, *a, **k)

        trainer.Trainer.step = _slow_step
    """
)


def _env(tmp_path, slow: float | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SR_BENCH_DATA", "WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"  # the same intra-op threads in every process compared bitwise
    if slow:
        site = tmp_path / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(_SLOW_SITE)
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
        env["SR_BENCH_TEST_SLOW_STEP"] = str(slow)
    return env


def _argv(root: Path, *extra: str) -> list[str]:
    return ["--profile", "smoke", "--models", "edsr-baseline", "--results", str(root / "results"), "--runs",
            str(root / "runs"), "--no-table1", "--no-progress", "--set", f"model.options={TINY}",
            "--set", "optim.iterations=16", *extra]


def _events(log: Path) -> list[dict]:
    out = []
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return out


def _task_pid(root: Path, node: str) -> int:
    """The pid of the job's task: the child of submitit's local controller (the job id)."""
    ledger = json.loads((root / "results" / "jobs" / "smoke" / "submitted.json").read_text())
    controller = int(ledger[node]["job_id"])
    children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _wait_for(proc: subprocess.Popen, until, what: str, err: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert proc.poll() is None, f"the launch ended before {what}: {err.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} in {timeout} s: {err.read_text()[-3000:]}"
        time.sleep(0.1)


def _records(path: Path) -> dict:
    return {(r.model, r.dataset, r.scale, r.self_ensemble, r.protocol): (r.psnr, r.ssim, r.per_image, r.weights,
                                                                         r.data_sha256, r.label)
            for r in read_records(path)}


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the job's process through /proc")
def test_local_jobs_preempted_killed_and_rerun_equal_the_in_process_run(tmp_path, no_data, with_submitit,
                                                                         one_thread):
    assert reproduce.main(_argv(tmp_path / "ref")) == 0  # in this process, on one thread as the jobs
    cmd = [sys.executable, "-m", "sr_bench.reproduce"]

    root = tmp_path / "cluster"
    run_log = root / "runs" / "smoke-edsr-baseline-x2" / "log.jsonl"
    node_log = root / "results" / "jobs" / "smoke" / "train-edsr-baseline-x2.log"
    err = tmp_path / "launch.err"
    with open(err, "w") as stderr:
        proc = subprocess.Popen([*cmd, *_argv(root, "--launcher", "submitit")], env=_env(tmp_path, slow=0.2),
                                stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    try:
        # preemption: SIGUSR2 mid-run; the trainer saves, submitit requeues, the job resumes
        _wait_for(proc, lambda: any(e.get("iteration", 0) >= 5 for e in _events(run_log)), "update 5", err)
        os.kill(_task_pid(root, "train-edsr-baseline-x2"), signal.SIGUSR2)
        _wait_for(proc, lambda: any(e["event"] == "resume" for e in _events(run_log)), "resume", err)
        preempted_at = next(e["iteration"] for e in _events(run_log) if e["event"] == "resume")
        # a crash: SIGKILL of the requeued job, past its checkpoint at update 8
        _wait_for(proc, lambda: any(e["event"] == "train" and e["iteration"] >= 10 for e in _events(run_log)),
                  "update 10", err)
        os.kill(_task_pid(root, "train-edsr-baseline-x2"), signal.SIGKILL)
        proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.read_text()
    assert proc.returncode == 1, text[-3000:]
    assert "failed: train-edsr-baseline-x2; not started: evaluate-edsr-baseline-x2" in text
    assert 5 <= preempted_at < 10
    log = node_log.read_text()
    assert f"SIGUSR2 at update {preempted_at} of 16: checkpoint saved" in log and "requeueing" in log
    assert f"resuming at update {preempted_at} of 16" in log
    killed_at = torch.load(run_log.parent / "checkpoint.pt", map_location="cpu", weights_only=True)["iteration"]
    assert 8 <= killed_at < 16 and not (run_log.parent / "final.safetensors").exists()

    # the same command again: resumes the run from its checkpoint, then evaluates, then the tables
    again = subprocess.run([*cmd, *_argv(root, "--launcher", "submitit")], env=_env(tmp_path), capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming at update {killed_at} of 16" in node_log.read_text()
    a = load_file(tmp_path / "ref" / "runs" / "smoke-edsr-baseline-x2" / "final.safetensors")
    b = load_file(run_log.parent / "final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ref_records, got = _records(tmp_path / "ref" / "results" / "records.jsonl"), _records(
        root / "results" / "records.jsonl")
    assert len(got) == 2 and got == ref_records  # plain and self-ensemble, value for value
    table = (root / "results" / "table3.md").read_text()
    assert table.split("## ")[1:] == (tmp_path / "ref" / "results" / "table3.md").read_text().split("## ")[1:]
    times = json.loads((root / "results" / "times-smoke.json").read_text())
    assert times["edsr-baseline"]["updates"] == {"x2": 16}

    # a launch now finds the run and the records: it would submit the tables alone
    from sr_bench.launch.driver import prepare

    config = reproduce._config(reproduce.build_parser().parse_args(_argv(root)))
    assert prepare(config, LaunchOptions(), "local")[0].todo == ("tables",)


def test_a_two_task_local_job_trains_like_torchrun(tmp_path, no_data, monkeypatch):
    """One training run as a submitit job of two tasks (DDP on gloo): the weights of
    ``torchrun --nproc_per_node 2`` on the same config, bit for bit."""
    submitit = pytest.importorskip("submitit")
    from sr_bench.launch.driver import prepare
    from sr_bench.launch.tasks import NodeTask

    train = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
             "sr_bench.train", "--model", "edsr-baseline", "--scale", "2", "--profile", "smoke", "--data",
             "embedded-train", "--val-data", "embedded", "--option", "blocks=1", "--option", "filters=8", "--out",
             str(tmp_path / "torchrun"), "--device", "cpu", "--no-progress"]
    with open(tmp_path / "torchrun.err", "w") as err:  # beside the job, to halve the wait
        torchrun = subprocess.Popen(train, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=err)
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job's processes inherit this environment
        config = ReproduceConfig(profile="smoke", results=str(tmp_path / "r"), runs=str(tmp_path / "runs"),
                                 models=("edsr-baseline",), overrides={"model.options": json.loads(TINY)})
        launch, _ = prepare(config, LaunchOptions(), "local")
        executor = submitit.LocalExecutor(tmp_path / "submitit")
        executor.update_parameters(tasks_per_node=2, timeout_min=10)
        results = executor.submit(NodeTask(launch, "train-edsr-baseline-x2")).results()
        assert torchrun.wait(timeout=300) == 0, (tmp_path / "torchrun.err").read_text()[-3000:]
    finally:
        if torchrun.poll() is None:
            torchrun.kill()
    assert [r["iterations"] for r in results] == [8, 8]  # one result per task
    assert "x2 processes" in (tmp_path / "r" / "jobs" / "smoke" / "train-edsr-baseline-x2.log").read_text()
    a = load_file(tmp_path / "torchrun" / "final.safetensors")
    b = load_file(tmp_path / "runs" / "smoke-edsr-baseline-x2" / "final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- the device of each DDP process --------------------------------------------------------------------------


def test_ddp_processes_take_cuda_local_rank_and_an_explicit_index_is_refused(monkeypatch):
    from sr_bench.train import make_config, plan
    from sr_bench.train.distributed import dist_env

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("RANK", "5")  # node 1 of 2, 4 processes each: global rank 5, local rank 1
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "8")
    rank, local_rank, world = dist_env()
    assert (rank, local_rank, world) == (5, 1, 8)
    cfg = make_config("smoke", "edsr-baseline", 2, **{"data.dataset": "embedded-train", "val.dataset": "embedded",
                                                      "runtime.device": "cuda", "runtime.amp": "none"})
    resolved, device = plan._resolve(cfg, world, local_rank)
    assert device == torch.device("cuda", 1) and resolved.runtime.device == "cuda"
    with pytest.raises(reproduce.cli.UsageError, match="--device cuda:0 with 8 processes.*CUDA_VISIBLE_DEVICES"):
        plan._resolve(cfg.replace(**{"runtime.device": "cuda:0"}), world, local_rank)
    assert plan._resolve(cfg.replace(**{"runtime.device": "cuda:3"}), 1, 0)[1] == torch.device("cuda", 3)
