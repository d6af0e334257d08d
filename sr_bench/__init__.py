"""sr_bench: the reference benchmark and reproducibility suite for EDSR / MDSR.

Pipeline, one sub-package or module per stage:
data -> models -> train -> evaluate -> tables.
"""

__version__ = "0.1.0"

from sr_bench.resize import imresize

__all__ = ["__version__", "imresize"]
