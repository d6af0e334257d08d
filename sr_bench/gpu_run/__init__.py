"""The GPU table in one command, for a GPU machine lent for minutes and cut off from the network.

    python3 -m sr_bench.gpu_run --budget-min 9 --data-root .gpu_carry/data --export "$OUT"

runs, in order and resumably, everything sr_bench still has to measure on a GPU: the tests marked
``gpu``, ``sr_bench.bench`` for EDSR-baseline x2 and EDSR x2 (compute-only step against end to
end, MFU), and the ``reproduce --profile gpu`` parts (Table 3); it writes all of it under
``results/gpu/`` and stops cleanly at the deadline it is given. See docs/gpu.md.

* :mod:`~sr_bench.gpu_run.preflight`: the packages the run needs, checked before it imports them;
* :mod:`~sr_bench.gpu_run.staging`: what travels with the checkout (``--prepare``: the benchmark
  images that fit) and what comes back (``--export`` / ``--import-results``);
* :mod:`~sr_bench.gpu_run.runner`: the steps, their state between calls, the summary.

This package's ``__init__`` imports nothing, so that ``python -m sr_bench.gpu_run`` can name every
missing package before the runner imports them.
"""
