"""One command-line surface: shared options, one logging setup, one error policy.

Every ``python -m sr_bench.*`` command builds its parser with :func:`parser`, adds the shared
options it uses with :func:`add_common_options` and wraps its ``main`` in :func:`command`:

- a user error (bad usage, bad data) prints one ``error: ...`` line naming the file or value and
  the fix, and exits 2 (usage) or 1 (data); a traceback only with ``--debug`` (or
  ``SR_BENCH_DEBUG=1``) or for real bugs;
- Ctrl-C exits 130 without a traceback;
- ``-q`` / ``-v`` set the log level; log lines go through ``tqdm.write`` so they never print
  over a progress bar.

The error classes live in :mod:`sr_bench.errors` (so library modules raise them without
importing the command line) and are re-exported here.

Shared options mean the same thing in every command: ``--device`` (default ``auto``: CUDA when
available, else CPU), ``--data-root`` (default ``$SR_BENCH_DATA``), ``--results`` (a folder),
``--no-progress``, ``-q/-v``, ``--debug``, ``--version``, ``--weights-dir`` (published checkpoints
kept locally).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from sr_bench.errors import DataError, UsageError, UserError
from sr_bench.paths import RESULTS_HELP
from sr_bench.version import __version__

__all__ = [
    "UserError", "UsageError", "DataError", "parser", "add_common_options", "command",
    "setup_logging", "positive_int", "non_negative_int",
]

log = logging.getLogger("sr_bench")


def parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with ``--version`` and ``--debug``, the options every command has."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--version", action="version", version=f"sr_bench {__version__}")
    p.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    return p


def add_common_options(
    p: argparse.ArgumentParser,
    *,
    device: bool = False,
    data_root: bool = False,
    results: bool = False,
    progress: bool = False,
    verbosity: bool = True,
    weights_dir: bool = False,
) -> argparse.ArgumentParser:
    """The shared options a command uses, with one spelling, default and help text each."""
    if device:
        p.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda, cuda:N")
    if data_root:
        p.add_argument("--data-root", default=None, help="folder holding the datasets (default: $SR_BENCH_DATA)")
    if results:
        p.add_argument("--results", default=None, help=RESULTS_HELP)
    if weights_dir:
        p.add_argument("--weights-dir", default=None, metavar="DIR",
                       help="folder holding published checkpoints under their official file names "
                            "(default: $SR_BENCH_WEIGHTS_DIR; the authors' server is offline)")
    if progress:
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    if verbosity:
        g = p.add_mutually_exclusive_group()
        g.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=0,
                       help="only warnings and errors")
        g.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, help="debug messages too")
    return p


class _TqdmHandler(logging.Handler):
    """Writes log lines with ``tqdm.write``, so they land above any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise
            self.handleError(record)


def setup_logging(verbosity: int = 0) -> None:
    """Configure the ``sr_bench`` logger once per process: INFO by default, -q WARNING, -v DEBUG."""
    level = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[max(-1, min(1, verbosity))]
    log.setLevel(level)
    if not any(isinstance(h, _TqdmHandler) for h in log.handlers):
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.propagate = False


def _debug_requested(argv: Sequence[str] | None) -> bool:
    args = sys.argv[1:] if argv is None else list(argv)
    return "--debug" in args or os.environ.get("SR_BENCH_DEBUG", "") not in ("", "0")


def _is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, UserError) or isinstance(getattr(type(exc), "exit_code", None), int)


F = TypeVar("F", bound=Callable[..., int])


def command(main: F) -> F:
    """Wrap a command's ``main(argv=None) -> int`` in the error policy."""

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        debug = _debug_requested(argv)
        try:
            return main(argv)
        except KeyboardInterrupt:
            if debug:
                raise
            print("error: interrupted", file=sys.stderr)
            return 130
        except Exception as e:  # noqa: BLE001 - the policy: user errors as one line, bugs as tracebacks
            if debug or not _is_user_error(e):
                raise
            print(f"error: {e}", file=sys.stderr)
            return int(getattr(e, "exit_code", 1))

    return wrapper  # type: ignore[return-value]


def positive_int(text: str) -> int:
    """argparse ``type=`` for an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse ``type=`` for an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value
