"""A time budget for a whole command, checked by long work at the points where it can stop safely.

:func:`time_budget` sets a deadline for a ``with`` block (a context variable: a nested block keeps
the earlier of the two deadlines). Nothing is killed when it passes: work stops at its next safe
point, so a caller leaves a margin for the longest stretch between two points.

* the training loop (:mod:`sr_bench.train.loop`) checks :func:`expired` after every update and
  stops as a stop signal would: a checkpoint of the last update, a ``stopped`` event in the log,
  then :class:`~sr_bench.train.TrainingStopped`; the same command resumes it;
* ``reproduce`` checks before every evaluation pass (:func:`check`: :class:`DeadlineReached`),
  after the records of the passes before it were written;
* :mod:`sr_bench.gpu_run` checks before every step of its run.

A budget is anything with ``expired()`` and ``remaining()`` (:class:`Budget`); :class:`Deadline`
is the one on the monotonic clock.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Budget", "Deadline", "DeadlineReached", "check", "current", "expired", "remaining", "time_budget"]


class Budget(Protocol):
    """What work asks of a time budget."""

    def expired(self) -> bool: ...

    def remaining(self) -> float: ...


@dataclass(frozen=True)
class Deadline:
    """A deadline at ``at`` on ``clock`` (seconds; default the monotonic clock)."""

    at: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        return self.at - self.clock()

    def expired(self) -> bool:
        return self.remaining() <= 0


class DeadlineReached(BaseException):
    """Work stopped because the time budget ran out. A BaseException, as KeyboardInterrupt: it ends
    the command's work, and no ``except Exception`` that guards one step may take it for that
    step's failure."""


_CURRENT: ContextVar[Budget | None] = ContextVar("sr_bench_time_budget", default=None)


class _Earliest:
    """Two budgets in force at once: expired when either is, with the smaller remainder."""

    def __init__(self, outer: Budget, inner: Budget) -> None:
        self.outer, self.inner = outer, inner

    def expired(self) -> bool:
        return self.outer.expired() or self.inner.expired()

    def remaining(self) -> float:
        return min(self.outer.remaining(), self.inner.remaining())


@contextlib.contextmanager
def time_budget(budget: Budget | float | None) -> Iterator[Budget | None]:
    """A deadline for the block: a :class:`Budget`, or seconds from now; None adds none."""
    if budget is None:
        yield _CURRENT.get()
        return
    if isinstance(budget, int | float):
        budget = Deadline.after(float(budget))
    outer = _CURRENT.get()
    effective: Budget = budget if outer is None else _Earliest(outer, budget)
    token = _CURRENT.set(effective)
    try:
        yield effective
    finally:
        _CURRENT.reset(token)


def current() -> Budget | None:
    """The budget in force here, if any."""
    return _CURRENT.get()


def expired() -> bool:
    """Whether a budget is in force and has run out (cheap: one clock read)."""
    budget = _CURRENT.get()
    return budget is not None and budget.expired()


def remaining() -> float:
    """Seconds left (infinity without a budget)."""
    budget = _CURRENT.get()
    return math.inf if budget is None else budget.remaining()


def check(before: str) -> None:
    """Raise :class:`DeadlineReached` when the budget has run out, naming what was about to start."""
    if expired():
        raise DeadlineReached(f"the time budget ran out before {before}")
