"""The errors a user can cause, as every command reports them (see :func:`sr_bench.cli.command`):
one ``error: ...`` line, no traceback, exit status 2 for bad usage and 1 for bad data.

Library modules raise these; :mod:`sr_bench.cli` re-exports them. This module imports nothing of
sr_bench, so any module may import it.
"""

from __future__ import annotations

__all__ = ["UserError", "UsageError", "DataError"]


class UserError(Exception):
    """A problem with what the user gave (not a bug): printed as one line, no traceback."""

    exit_code = 1


class UsageError(UserError, ValueError):
    """Bad usage: an option, a name or a combination that cannot work. Exit status 2."""

    exit_code = 2


class DataError(UserError):
    """Bad data: a file that is missing, unreadable or inconsistent. Exit status 1."""

    exit_code = 1
