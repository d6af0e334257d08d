"""A user's run inside a clone never touches the committed results (``sr_bench.paths``).

The end-to-end test copies this working tree into a fresh git repository (every file git would
commit), runs ``python -m sr_bench.reproduce`` there as a newcomer's first command does (no data
folder: the scikit-image photos), and checks that ``git status`` stays clean.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sr_bench import paths

REPO = Path(__file__).resolve().parents[1]


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """This working tree, committed into a repository of its own."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout of sr_bench")
    dst = tmp_path_factory.mktemp("clone") / "sr_bench"
    files = _git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dst / name)
    _git(dst, "init", "-q")
    _git(dst, "add", "-A")
    _git(dst, "commit", "-q", "-m", "clone")
    return dst


def _reproduce(clone: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SR_BENCH_DATA", "PYTHONPATH")}
    env.update(SR_BENCH_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    # `-m` puts the working directory first on sys.path: the clone's own sr_bench runs
    return subprocess.run([sys.executable, "-m", "sr_bench.reproduce", *args], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)


# a smoke run of a tiny network: the whole pipeline (train, evaluate, tables) in seconds
TINY = ["--profile", "smoke", "--no-progress", "--no-table1", "--set", 'model.options={"blocks": 1, "filters": 8}']


def test_reproduce_in_a_clone_leaves_git_status_clean(clone, tmp_path):
    res = _reproduce(clone, tmp_path, *TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _git(clone, "status", "--porcelain", "--untracked-files=all") == ""
    local = clone / "results" / "local"
    table = (local / "table3.md").read_text()
    assert "scikit-image photos (no benchmark data found)" in table and "EDSR-baseline (smoke)" in table
    assert "| Set5 |" not in table  # this run's data only: no committed real-data rows beside the photos'
    assert (clone / "runs" / "smoke-edsr-baseline-x2" / "final.safetensors").is_file()
    last = res.stderr.strip().splitlines()[-1]
    assert f"results of this run: {local}" in last and "committed tables in results/ are unchanged" in last


def test_the_committed_results_need_real_data_to_be_regenerated(clone, tmp_path):
    res = _reproduce(clone, tmp_path, *TINY, "--results", "results")
    assert res.returncode == 2, res.stderr[-3000:]
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --results results: that is the clone's committed results")
    assert _git(clone, "status", "--porcelain", "--untracked-files=all") == ""


def test_default_folders_inside_and_outside_a_clone(tmp_path, monkeypatch):
    root = paths.checkout_root()
    if root is None:
        pytest.skip("sr_bench runs from an installed wheel here, not a clone")
    assert paths.default_results_dir(root) == root / "results" / "local"
    assert paths.default_results_dir(root / "docs") == root / "results" / "local"  # from any subfolder
    assert paths.default_runs_dir(root / "docs") == root / "runs"
    assert paths.default_results_dir(tmp_path) == tmp_path.resolve() / "sr_bench_results"
    assert paths.default_runs_dir(tmp_path) == tmp_path.resolve() / "runs"
    assert paths.is_committed_results(root / "results") and paths.is_committed_results(root / "docs" / ".." / "results")
    assert not paths.is_committed_results(root / "results" / "local")
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/local/records.jsonl"], cwd=root)
    assert ignored.returncode == 0, "results/local/ must be git-ignored"


def test_reading_commands_fall_back_to_the_committed_records(tmp_path, monkeypatch):
    root = paths.checkout_root()
    if root is None:
        pytest.skip("sr_bench runs from an installed wheel here, not a clone")
    committed = tmp_path / "results"
    local = committed / "local"  # a clone's layout, in tmp_path
    monkeypatch.setattr(paths, "default_results_dir", lambda cwd=None: local)
    monkeypatch.setattr(paths, "committed_results_dir", lambda: committed)
    committed.mkdir()
    (committed / "records.jsonl").write_text("")
    assert paths.results_and_records(None, None) == (local, committed / "records.jsonl")  # none of the user's own
    local.mkdir()
    (local / "records.jsonl").write_text("")
    assert paths.results_and_records(None, None) == (local, local / "records.jsonl")  # the user's own first
    assert paths.results_and_records(str(tmp_path / "x"), None) == (tmp_path / "x", tmp_path / "x" / "records.jsonl")
    assert paths.results_and_records(None, "r.jsonl") == (local, Path("r.jsonl"))
