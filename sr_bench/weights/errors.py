"""The exceptions of :mod:`sr_bench.weights`: one base class, :class:`WeightsError`, that the
command line prints as one line (exit status 1), and one subclass per way a file can be unusable."""

from __future__ import annotations

from sr_bench.errors import UsageError
from sr_bench.lookup import UnknownNameError

__all__ = [
    "WeightsError", "UnknownWeightsError", "NonFiniteWeightsError", "WeightsMismatchError", "WeightsDownloadError",
    "MissingWeightsFileError", "WeightsOptionError",
]


class WeightsError(RuntimeError):
    """A weights file that cannot be used; the message says why and what to do."""

    exit_code = 1  # a data error for sr_bench.cli.command: one line, no traceback


class UnknownWeightsError(WeightsError, UnknownNameError):
    """A weights name that is not registered (and not a file); the message lists close matches."""

    def __str__(self) -> str:
        return str(self.args[0])


class NonFiniteWeightsError(WeightsError):
    """A checkpoint holding NaN or Inf values."""


class WeightsMismatchError(WeightsError):
    """A checkpoint whose architecture differs from the model's."""


class WeightsDownloadError(WeightsError):
    """A registered checkpoint that could not be downloaded (no network, site down, bad hash)."""


class MissingWeightsFileError(WeightsError, FileNotFoundError):
    """A weights path that does not exist (still a FileNotFoundError for callers)."""

    def __str__(self) -> str:
        return str(self.args[0])



class WeightsOptionError(WeightsError, UsageError):
    """A weights option that names the wrong kind of thing: a folder given as ``--weights``, a file
    or nothing given as ``--weights-dir``, an unreadable download setting (a usage error, exit 2)."""

    exit_code = 2
