"""``python -m sr_bench.gpu_run``: every package the run needs is checked by name (preflight)
before the runner, which imports them, is loaded."""

import sys

from sr_bench.gpu_run.preflight import RUNTIME, missing, missing_message

_absent = missing(RUNTIME)
if _absent:
    print(f"error: {missing_message(_absent)}", file=sys.stderr)
    raise SystemExit(1)

from sr_bench.gpu_run.runner import main  # noqa: E402  (after the check above, on purpose)

if __name__ == "__main__":
    raise SystemExit(main())
