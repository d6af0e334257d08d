"""sr_bench: the reference benchmark and reproducibility suite for EDSR / MDSR.

Pipeline, one sub-package or module per stage:
data -> models -> train -> evaluate -> tables.

Two functions at the top level: :func:`score` (PSNR / SSIM of one SR image against its HR image,
under a named protocol) and :func:`imresize` (MATLAB's bicubic, bit for bit).
"""

from sr_bench.image_score import ImageScore, score
from sr_bench.resize import imresize
from sr_bench.version import __version__

__all__ = ["__version__", "ImageScore", "imresize", "score"]
