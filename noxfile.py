"""Sessions: `nox -s tests` (CI), `nox -s lint` (CI), `nox -s reproduce` (the main job), `nox -s bench`,
`nox -s slow`, `nox -s wheel` (build the wheel and try it as a user would), `nox -s gpu` (everything
still to measure on a GPU, with the Python at hand: no environment is made; docs/gpu.md).

torch comes from SR_BENCH_TORCH (default torch==2.13.0: on this workplace's machines that is a
local CPU wheel; on a CUDA machine pip picks the matching CUDA build of the same release).

Environments are reused: the first `nox -s X` creates `.nox/X` and installs torch and sr_bench
(editable) into it; later runs reuse it and skip the install while pyproject.toml, the torch spec
and the extras are unchanged (a stamp file in the environment holds their hash). `nox -s X
--reuse-venv=no` (or deleting `.nox/X`) starts afresh.
"""

import hashlib
import os
import pathlib
import sys

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"

TORCH = os.environ.get("SR_BENCH_TORCH", "torch==2.13.0")
ROOT = pathlib.Path(__file__).resolve().parent
STAMP = ".sr_bench-install-stamp"

#: Ctrl-C reaches nox and the session's command together. A training run finishes its current
#: update (seconds to tens of seconds on a CPU) and saves a checkpoint before it exits, so nox
#: waits this long before it sends SIGTERM (which the trainer treats the same way), and as long
#: again before SIGKILL. A second Ctrl-C still stops at once.
INTERRUPT_TIMEOUT_S = 300.0

#: the tests whose values depend on the CPU's kernels, run a second time on the generic ones: ATen's
#: (ATEN_CPU_CAPABILITY=default) and oneDNN's convolutions limited to SSE4.1 (ONEDNN_MAX_CPU_ISA),
#: so that a comparison that holds only with this machine's kernels fails here, not on another CPU
KERNEL_TESTS = ["tests/test_inference.py", "tests/test_models.py", "tests/test_metrics.py"]
GENERIC_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}


def _install(session: nox.Session, extras: str) -> None:
    """torch and sr_bench[extras] (editable), unless this environment already has exactly these."""
    wanted = "\n".join([TORCH, extras, sys.version, (ROOT / "pyproject.toml").read_text()])
    key = hashlib.sha256(wanted.encode()).hexdigest()
    stamp = pathlib.Path(session.virtualenv.location) / STAMP
    if stamp.is_file() and stamp.read_text() == key:
        session.log(f"{TORCH} and sr_bench[{extras}] already installed in {session.virtualenv.location} "
                    "(pyproject.toml unchanged); skipping the install")
        return
    session.log(f"installing {TORCH} and sr_bench[{extras}] (editable) into {session.virtualenv.location}: "
                "minutes the first time (torch is large); later runs reuse this environment")
    session.install(TORCH)
    session.install("-e", f".[{extras}]")
    stamp.write_text(key)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (CPU; benchmarks run once as plain tests; slow and GPU tests excluded), then,
    without arguments, :data:`KERNEL_TESTS` again on the generic kernels (:data:`GENERIC_KERNELS`)."""
    _install(session, "test,cluster")
    session.run("pytest", "-m", "not slow", "--benchmark-disable", *session.posargs)
    if not session.posargs:
        session.log("again on the generic CPU kernels (" + " ".join(f"{k}={v}" for k, v in GENERIC_KERNELS.items())
                    + "): no comparison may hold only with this CPU's kernels")
        session.run("pytest", "-q", "-m", "not slow", "--benchmark-disable", *KERNEL_TESTS, env=GENERIC_KERNELS)


@nox.session
def slow(session: nox.Session) -> None:
    """Long runs: training to a target PSNR, full sweeps."""
    _install(session, "test,cluster")
    session.run("pytest", "-m", "slow", "--benchmark-disable", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """pytest-benchmark figures (resize, metrics, model forward, training step)."""
    _install(session, "test,cluster")
    session.run(
        "pytest", "tests/benchmarks", "--benchmark-only", "--benchmark-columns=min,median,mean,rounds", *session.posargs
    )


@nox.session
def reproduce(session: nox.Session) -> None:
    """The main job: `nox -s reproduce -- [ARGS]` runs `python -m sr_bench.reproduce ARGS`. Ctrl-C
    saves the training run's checkpoint (see INTERRUPT_TIMEOUT_S); the same command continues it."""
    _install(session, "test,cluster")
    session.run("python", "-m", "sr_bench.reproduce", *session.posargs,
                interrupt_timeout=INTERRUPT_TIMEOUT_S, terminate_timeout=INTERRUPT_TIMEOUT_S)


#: ``python -m sr_bench.gpu_run``'s exit status for a call that stopped at its deadline with steps
#: left: not a failure, the same command continues
GPU_CALL_AGAIN = 75


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """Everything still to measure on a GPU, in one resumable command (docs/gpu.md): `nox -s gpu --
    --budget-min 9 --data-root .gpu_carry/data` runs `python -m sr_bench.gpu_run ARGS` with the
    Python that already has torch (`$SR_BENCH_PYTHON`, default python3), installing nothing: for a
    GPU machine without network. Steps: the gpu-marked tests, sr_bench.bench for EDSR-baseline x2
    and EDSR x2, the reproduce --profile gpu parts; results in results/gpu/. A call that stops at
    its deadline exits 75 (steps left: run it again), which nox counts as success."""
    python = os.environ.get("SR_BENCH_PYTHON", "python3")
    session.run(python, "-m", "sr_bench.gpu_run", *session.posargs, external=True,
                success_codes=[0, GPU_CALL_AGAIN], interrupt_timeout=INTERRUPT_TIMEOUT_S,
                terminate_timeout=INTERRUPT_TIMEOUT_S)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy over sr_bench/, as configured in pyproject.toml ([tool.ruff], [tool.mypy]).
    torch is installed so that mypy checks against its real types."""
    _install(session, "lint,cluster")
    session.run("ruff", "check", "sr_bench", *session.posargs)
    session.run("mypy", *session.posargs)


@nox.session
def wheel(session: nox.Session) -> None:
    """Build the wheel into dist/ and install it (not editable) into the session's venv, then
    score Bicubic from an empty folder: what `pip install .` gives a user. Data: $SR_BENCH_DATA
    when it is set (Set5), else the embedded photos."""
    import tempfile

    session.install(TORCH)
    dist = pathlib.Path("dist").resolve()
    session.run("pip", "wheel", "--no-deps", "-w", str(dist), ".")
    wheels = sorted(dist.glob("sr_bench-*.whl"), key=lambda p: p.stat().st_mtime)
    session.install("--force-reinstall", "--no-deps", str(wheels[-1]))
    session.install(str(wheels[-1]))  # its dependencies
    data = os.environ.get("SR_BENCH_DATA")
    dataset = "Set5" if data and pathlib.Path(data, "Set5", "HR").is_dir() else "embedded"
    with tempfile.TemporaryDirectory() as work:
        session.chdir(work)
        session.run("sr-bench-evaluate", "--version")
        session.run("sr-bench-evaluate", "--model", "bicubic", "--datasets", dataset, "--scales", "2", "--no-progress")
        session.log(f"results written to {work}/sr_bench_results: {sorted(os.listdir(work + '/sr_bench_results'))}")


# Each mutated module and the fast tests (no real data, no GPU) that must kill its mutants.
MUTATION_TARGETS = {
    "sr_bench/resize.py": ["tests/test_resize.py"],
    "sr_bench/metrics.py": ["tests/test_metrics.py"],
    "sr_bench/protocols.py": ["tests/test_protocols.py"],
    "sr_bench/records.py": ["tests/test_records.py"],
    "sr_bench/tables/": ["tests/test_table1.py", "tests/test_table3.py"],
}


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing (mutmut) of the scoring core against its fast tests; not part of CI.

    `nox -s mutants` runs every target of MUTATION_TARGETS (hours on two cores); `nox -s mutants
    -- sr_bench/metrics.py` one. mutmut edits the files it mutates, so each target runs in its
    own copy of the tree under .nox/mutants/tmp, never in the checkout; surviving mutants are
    listed by `mutmut results` at the end of each target."""
    import shutil

    _install(session, "test,cluster")
    session.install("mutmut==2.5.1")
    targets = session.posargs or list(MUTATION_TARGETS)
    root = os.path.dirname(os.path.abspath(__file__))
    for target in targets:
        if target not in MUTATION_TARGETS:
            session.error(f"unknown mutation target {target!r}; choose from {', '.join(MUTATION_TARGETS)}")
        tree = os.path.join(session.create_tmp(), "tree-" + target.strip("/").replace("/", "-"))
        shutil.rmtree(tree, ignore_errors=True)
        for part in ("sr_bench", "tests", "pyproject.toml"):
            copy = shutil.copytree if os.path.isdir(os.path.join(root, part)) else shutil.copy
            copy(os.path.join(root, part), os.path.join(tree, part))
        runner = (
            "python -m pytest -x -q -p no:cacheprovider --benchmark-disable -m 'not slow and not gpu' "
            + " ".join(MUTATION_TARGETS[target])
        )
        with session.chdir(tree):
            env = {"SR_BENCH_DATA": "", "CI": ""}  # the fast tests only: real-data tests skip
            # mutmut's exit status is a bit mask: 1 a fatal error; 2, 4, 8 survivors, timeouts and
            # slow mutants, which the results below list rather than fail on
            outcomes = [code for code in range(16) if not code & 1]
            session.run("mutmut", "run", "--paths-to-mutate", target, "--runner", runner, "--no-progress",
                        env=env, success_codes=outcomes)
            session.run("mutmut", "results", env=env)
