"""Where sr_bench writes by default.

Inside a clone of sr_bench (the working directory is at or under the checkout that holds this
package's ``pyproject.toml``) results go to the clone's ``results/``, beside the committed ones.
Anywhere else, including an installed wheel, they go to ``./sr_bench_results/`` in the working
directory: sr_bench never writes into a package folder.
"""

from __future__ import annotations

from pathlib import Path

from sr_bench.errors import UsageError

__all__ = ["checkout_root", "check_folder_option", "default_results_dir", "results_and_records", "RESULTS_HELP"]

RESULTS_HELP = ("results folder (default: results/ of the sr_bench clone when run inside one, "
                "else ./sr_bench_results)")


def checkout_root() -> Path | None:
    """The sr_bench clone this package runs from, or None (an installed wheel)."""
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and (root / ".git").exists() and 'name = "sr_bench"' in pyproject.read_text():
        return root
    return None


def default_results_dir(cwd: Path | None = None) -> Path:
    cwd = (cwd or Path.cwd()).resolve()
    root = checkout_root()
    if root is not None and (cwd == root or root in cwd.parents):
        return root / "results"
    return cwd / "sr_bench_results"


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
    (default ``records.jsonl`` in that folder), as every command reads them."""
    folder = Path(results) if results else default_results_dir()
    return folder, Path(records) if records else folder / "records.jsonl"
