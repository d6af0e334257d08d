"""A module whose import fails with an error of its own (for ``outputs_sweep.py``)."""

raise RuntimeError("CUDA_HOME is not set; cannot build the extension")
