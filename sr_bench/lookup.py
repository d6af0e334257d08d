"""A name -> value table with one way to fail: an unknown name lists close matches.

Every registry in sr_bench (models, weights, datasets, protocols, profiles, ablations) is one of
these, so lookups, listings and "did you mean" read the same everywhere.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownNameError"]

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists close matches and every registered name.
    A usage error for ``sr_bench.cli``: one line, exit status 2."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Registered values by name, read with :meth:`get` or ``registry[name]``. ``kind`` names them
    in messages ("model", "dataset", ...); ``hint`` is added to the unknown-name message (e.g. "to
    load a local file pass its path"); ``error`` is the exception raised for an unknown name (a
    subclass of :class:`UnknownNameError`, e.g. one that is also a weights or usage error)."""

    def __init__(self, kind: str, *, hint: str = "", error: type[UnknownNameError] = UnknownNameError) -> None:
        self.kind = kind
        self.hint = hint
        self.error = error
        self._items: dict[str, T] = {}

    def add(self, name: str, value: T, *, owner: str = "") -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered{f' by {owner}' if owner else ''}")
        self._items[name] = value
        return value

    def remove(self, name: str) -> T:
        """Unregister ``name`` (tests register throwaway entries); unknown names raise as in :meth:`get`."""
        value = self.get(name)
        del self._items[name]
        return value

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise self.error(self.unknown_message(name)) from None

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
        said = f"unknown {self.kind} {name!r}"
        if close:
            said += f"; did you mean {' or '.join(map(repr, close))}?"
        said += f" (registered: {', '.join(sorted(self._items)) or 'none'})"
        return said + (f"; {self.hint}" if self.hint else "")

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names, sorted; ``pattern`` is a shell-style filter such as ``"edsr*"``."""
        out = sorted(self._items)
        return out if pattern is None else [n for n in out if fnmatch.fnmatchcase(n, pattern)]

    def values(self) -> list[T]:
        return list(self._items.values())

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
