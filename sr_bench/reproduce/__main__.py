"""``python -m sr_bench.reproduce`` (and ``sr-bench-reproduce``): the reproduce command with every
launcher loaded. The launchers sit above :mod:`sr_bench.reproduce` (they run its plan as jobs),
so they register themselves here rather than being imported by it."""

from sr_bench import launch  # noqa: F401  (registers --launcher submitit)
from sr_bench.reproduce import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
