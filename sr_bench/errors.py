"""The errors a user can cause, as every command reports them (see :func:`sr_bench.cli.command`):
one ``error: ...`` line, no traceback, exit status 2 for bad usage and 1 for bad data.

Library modules raise these; :mod:`sr_bench.cli` re-exports them. This module imports nothing of
sr_bench, so any module may import it.
"""

from __future__ import annotations

import errno
import os

__all__ = ["UserError", "UsageError", "DataError", "StorageError", "storage_error"]


class UserError(Exception):
    """A problem with what the user gave (not a bug): printed as one line, no traceback."""

    exit_code = 1


class UsageError(UserError, ValueError):
    """Bad usage: an option, a name or a combination that cannot work. Exit status 2."""

    exit_code = 2


class DataError(UserError):
    """Bad data: a file that is missing, unreadable or inconsistent. Exit status 1."""

    exit_code = 1


class StorageError(DataError, OSError):
    """A file could not be written, read or locked (disk full, read-only, no permission, a name
    too long): one line naming the path and the errno; exit status 1."""

    exit_code = 1

    def __str__(self) -> str:
        return str(self.args[0])


#: the fix a failed write suggests, by errno (default: free space or write elsewhere)
_FIXES = {errno.ENAMETOOLONG: "use a shorter file name or a folder with a shorter path"}


def storage_error(path: str | os.PathLike, e: OSError, doing: str, fix: str | None = None) -> StorageError:
    """One line naming ``path``, what failed and the errno, saying that nothing changed and how
    to fix it (``fix``, else what fits the errno)."""
    name = errno.errorcode.get(e.errno or 0, "")
    why = f"{e.strerror or e} [{name}]" if name else str(e.strerror or e)
    fix = fix or _FIXES.get(e.errno or 0, "free space, or pass a path in a writable folder")
    err = StorageError(f"{path}: cannot {doing} ({why}); nothing was changed: {fix}")
    err.errno, err.strerror = e.errno, e.strerror
    return err
