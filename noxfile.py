"""Sessions: `nox -s tests` (CI), `nox -s reproduce` (the main job), `nox -s bench`, `nox -s slow`.

torch comes from SR_BENCH_TORCH (default torch==2.13.0: on this workplace's machines that is a
local CPU wheel; on a CUDA machine pip picks the matching CUDA build of the same release).
"""

import os

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"

TORCH = os.environ.get("SR_BENCH_TORCH", "torch==2.13.0")


def _install(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".[test]")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (CPU; benchmarks run once as plain tests; slow and GPU tests excluded)."""
    _install(session)
    session.run("pytest", "-m", "not slow", "--benchmark-disable", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    """Long runs: training to a target PSNR, full sweeps."""
    _install(session)
    session.run("pytest", "-m", "slow", "--benchmark-disable", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """pytest-benchmark figures (resize, metrics, model forward, training step)."""
    _install(session)
    session.run("pytest", "tests/benchmarks", "--benchmark-only", "--benchmark-columns=min,median,mean,rounds", *session.posargs)


@nox.session
def reproduce(session: nox.Session) -> None:
    """The main job: `nox -s reproduce -- [ARGS]` runs `python -m sr_bench.reproduce ARGS`."""
    _install(session)
    session.run("python", "-m", "sr_bench.reproduce", *session.posargs)
