"""sr_bench: the reference benchmark and reproducibility suite for EDSR / MDSR.

Pipeline, one sub-package or module per stage:
data -> models -> train -> evaluate -> tables.

Two functions at the top level: :func:`score` (PSNR / SSIM of one SR image against its HR image,
under a named protocol) and :func:`imresize` (MATLAB's bicubic, bit for bit).
"""

__version__ = "0.1.0"

from sr_bench.resize import imresize
from sr_bench.scoring import ImageScore, score

__all__ = ["__version__", "ImageScore", "imresize", "score"]
