"""``pip install .`` gives a working sr_bench: the wheel is built from a copy of the
sources, installed with torch into a fresh virtual environment (no system site-packages, no
editable link to this checkout), and its console scripts are run from an empty folder.

About two minutes on 2 cores, most of it pip unpacking torch; the packages come from the
machine's pip configuration (local wheels and indexes, else the package index).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]
TORCH = os.environ.get("SR_BENCH_TORCH", "torch==2.13.0")
# what a wheel is built from; everything else in the checkout stays out of it
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "sr_bench", "baselines")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def test_every_subpackage_is_listed_for_the_wheel():
    """pyproject lists the packages (it maps baselines/ in as sr_bench._baselines, which a find
    cannot); a new sub-package left off the list would be missing from every installation."""
    setuptools = _pyproject()["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "sr_bench").rglob("__init__.py")}
    missing = sorted(found - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    assert setuptools["package-dir"]["sr_bench._baselines"] == "baselines"


def _has_setuptools(major: int) -> bool:
    """Whether this interpreter can build the wheel itself (pyproject's build requirement),
    which saves installing setuptools into an isolated build environment."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("setuptools").split(".")[0]) >= major
    except (PackageNotFoundError, ValueError):
        return False


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """A wheel of this checkout installed in a fresh venv: {"wheel", "venv", "bin", "work"}."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    # a copy, so that the build's build/ and egg-info never land in (or race on) the checkout
    isolation = ["--no-build-isolation"] if _has_setuptools(77) else []
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *isolation, "-w", str(tmp / "dist"), str(src)],
         cwd=tmp)
    wheel = next((tmp / "dist").glob("sr_bench-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    python = venv / "bin" / "python"
    # --no-compile: byte-compiling torch's thousands of modules is most of an install's time
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-compile", TORCH, str(wheel)],
         cwd=tmp, timeout=900)
    work = tmp / "work"
    work.mkdir()
    return {"wheel": wheel, "venv": venv, "bin": venv / "bin", "work": work}


def _env(installed: dict[str, Path]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{installed['bin']}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SR_BENCH_BASELINES", None)
    return env


def test_wheel_carries_the_published_numbers(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for csv in ("table1.csv", "table2.csv", "table3.csv", "claims.csv"):
        assert f"sr_bench/_baselines/{csv}" in names
    assert "sr_bench/py.typed" in names
    assert not any(n.startswith(("tests/", "results/", "baselines/")) for n in names)
    out = _run([str(installed["bin"] / "python"), "-c",
                "import sr_bench, sr_bench.baselines as b; print(sr_bench.__file__); print(b.baselines_dir()); "
                "print(b.table3_value('edsr', False, 'Set5', 2).psnr)"],
               cwd=installed["work"], env=_env(installed)).split()
    package, folder, edsr = Path(out[0]), Path(out[1]), float(out[2])
    assert installed["venv"] in package.parents and installed["venv"] in folder.parents  # not this checkout
    assert edsr == 38.11  # baselines/table3.csv, EDSR Set5 x2


def _committed_bicubic_set5_x2() -> float:
    for line in (REPO / "results" / "records.jsonl").read_text().splitlines():
        r = json.loads(line)
        if (r["model"], r["dataset"], r["scale"], r["protocol"], r["self_ensemble"]) == (
            "bicubic", "Set5", 2, "paper", False
        ):
            return float(r["psnr"])
    raise AssertionError("results/records.jsonl has no bicubic Set5 x2 record (protocol paper)")


def test_evaluate_from_any_folder_writes_there(installed):
    env = _env(installed)
    data = os.environ.get("SR_BENCH_DATA")
    dataset = "Set5" if data and Path(data, "Set5", "HR").is_dir() else "embedded"
    out = _run(["sr-bench-evaluate", "--model", "bicubic", "--datasets", dataset, "--scales", "2",
                "--device", "cpu", "--no-progress"], cwd=installed["work"], env=env)
    results = installed["work"] / "sr_bench_results"
    assert (results / "records.jsonl").is_file() and (results / "table3.md").is_file()
    written = [p for p in installed["venv"].rglob("*") if p.name in ("records.jsonl", "table3.md")]
    assert written == [], f"evaluate wrote into the installation: {written}"
    record = json.loads((results / "records.jsonl").read_text().splitlines()[-1])
    assert (record["model"], record["dataset"], record["scale"]) == ("bicubic", dataset, 2)
    row = next(ln for ln in out.splitlines() if re.match(rf"\|\s*bicubic\s*\|\s*{dataset}\s*\|", ln))
    printed = float(row.split("|")[5])
    if dataset == "Set5":
        committed = _committed_bicubic_set5_x2()
        assert record["psnr"] == pytest.approx(committed, abs=1e-9)
        assert printed == round(committed, 2) == 33.65
    else:
        assert printed == round(record["psnr"], 2)


def test_every_console_script_answers_version(installed):
    from sr_bench import __version__

    env = _env(installed)
    failed = {}
    for script in _pyproject()["project"]["scripts"]:
        done = subprocess.run([str(installed["bin"] / script), "--version"], cwd=installed["work"], env=env,
                              capture_output=True, text=True, timeout=120)
        text = (done.stdout + done.stderr).strip()
        if done.returncode != 0 or __version__ not in text:
            failed[script] = text.splitlines()[-1] if text else f"exit {done.returncode}"
    assert not failed, f"console scripts without a working --version: {failed}"
