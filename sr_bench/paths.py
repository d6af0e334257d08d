"""Where sr_bench writes by default, and where it reads records from.

Inside a clone of sr_bench (the working directory is at or under the checkout that holds this
package's ``pyproject.toml``) a user's results go to the clone's ``results/local/``, which git
ignores: the committed ``results/`` (the tables and records the README quotes) are never touched
by a user's run. Regenerating them is an explicit act, ``--results results``. Anywhere else,
including an installed wheel, results go to ``./sr_bench_results/`` in the working directory:
sr_bench never writes into a package folder. Training runs go to the clone's ``runs/`` (also
ignored), else ``./runs``.

Commands that only *read* records (``compare``, ``figure``) read the committed
``results/records.jsonl`` while the clone has no records of the user's own, and say so; what they
write still goes to ``results/local/``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sr_bench.errors import UsageError

__all__ = [
    "LOCAL_RESULTS",
    "RESULTS_HELP",
    "check_folder_option",
    "checkout_root",
    "committed_results_dir",
    "default_results_dir",
    "default_runs_dir",
    "is_committed_results",
    "results_and_records",
]

log = logging.getLogger("sr_bench.paths")

#: a clone's folder for the user's own results, relative to the checkout (git-ignored)
LOCAL_RESULTS = Path("results") / "local"

RESULTS_HELP = ("results folder (default: results/local/ of the sr_bench clone when run inside one, git-ignored; "
                "else ./sr_bench_results). `--results results` regenerates the clone's committed tables")


def checkout_root() -> Path | None:
    """The sr_bench clone this package runs from, or None (an installed wheel)."""
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and (root / ".git").exists() and 'name = "sr_bench"' in pyproject.read_text():
        return root
    return None


def _clone_around(cwd: Path | None) -> Path | None:
    """The clone when ``cwd`` (default: the working directory) is at or under it, else None."""
    cwd = (cwd or Path.cwd()).resolve()
    root = checkout_root()
    if root is not None and (cwd == root or root in cwd.parents):
        return root
    return None


def default_results_dir(cwd: Path | None = None) -> Path:
    """``results/local/`` of the clone around ``cwd``, else ``cwd/sr_bench_results``."""
    root = _clone_around(cwd)
    if root is not None:
        return root / LOCAL_RESULTS
    return (cwd or Path.cwd()).resolve() / "sr_bench_results"


def default_runs_dir(cwd: Path | None = None) -> Path:
    """Training runs: ``runs/`` of the clone around ``cwd`` (whatever the subfolder), else ``cwd/runs``."""
    root = _clone_around(cwd)
    return (root if root is not None else (cwd or Path.cwd()).resolve()) / "runs"


def committed_results_dir() -> Path | None:
    """The clone's committed ``results/`` folder (None outside a clone)."""
    root = checkout_root()
    return root / "results" if root is not None else None


def is_committed_results(folder: str | Path) -> bool:
    """Whether ``folder`` is the clone's committed ``results/`` (however it is spelled)."""
    committed = committed_results_dir()
    return committed is not None and Path(folder).expanduser().resolve() == committed


def check_folder_option(option: str, path: str | Path | None, *, must_exist: bool = False) -> None:
    """Raise :class:`~sr_bench.errors.UsageError` when ``path``, given as ``option``, is a file (a folder is needed),
    or, with ``must_exist``, when it does not exist. None (the option not given) passes."""
    if path is None:
        return
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder; pass a folder (or a new name)")
    if must_exist and not p.exists():
        raise UsageError(f"{option} {path}: no such folder; pass an existing folder (or leave {option} out)")


def results_and_records(results: str | None, records: str | None) -> tuple[Path, Path]:
    """The ``--results`` folder (default :func:`default_results_dir`) and the ``--records`` file
    (default ``records.jsonl`` in that folder), as the reading commands take them. With neither
    option, inside a clone whose ``results/local/`` holds no records yet, the records are the
    committed ones (logged); the folder stays ``results/local/``."""
    folder = Path(results) if results else default_results_dir()
    if records:
        return folder, Path(records)
    own = folder / "records.jsonl"
    committed = committed_results_dir()
    if results is not None or committed is None or folder != committed.parent / LOCAL_RESULTS or own.is_file():
        return folder, own
    fallback = committed / "records.jsonl"
    if not fallback.is_file():
        return folder, own
    log.info("no records of your own in %s yet: reading the committed %s", folder, fallback)
    return folder, fallback
