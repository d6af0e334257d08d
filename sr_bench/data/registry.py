"""Where each dataset lives, how many images it must have, and how to get it.

A dataset is found under a data root (``--data-root`` or ``$SR_BENCH_DATA``) in one of the
layouts its spec lists, tried in order:

* ``<root>/<Set>/HR`` + ``<root>/<Set>/LR_bicubic/X<s>/<stem>x<s>.png`` (the staged layout),
* ``<root>/benchmark/<Set>/HR`` + ``.../LR_bicubic/X<s>`` (EDSR's benchmark archive),
* ``<root>/DIV2K/DIV2K_{train,valid}_HR`` + ``DIV2K_{train,valid}_LR_bicubic/X<s>/<stem>x<s>.png``.

The scikit-image photos need no root: they ship inside the installed package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DatasetSpec", "Layout", "DATASETS", "get_spec", "EMBEDDED_EVAL", "EMBEDDED_TRAIN"]

BENCHMARK_URL = "https://cv.snu.ac.kr/research/EDSR/benchmark.tar"
DIV2K_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"


@dataclass(frozen=True)
class Layout:
    hr: str  # folder of HR images, relative to the data root
    lr: str | None  # folder pattern of LR images, with {s} for the scale
    lr_name: str = "{stem}x{s}.png"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str  # "benchmark" (Y channel, shave = scale) | "div2k" (RGB, shave = scale + 6) | "train" | "embedded"
    count: int | None  # expected number of HR images; None: any
    layouts: tuple[Layout, ...]
    stems: tuple[str, ...] | None = None  # exact expected stems, where the dataset defines them
    how_to_get: str = ""
    description: str = ""

    @property
    def is_benchmark(self) -> bool:
        """Benchmarks are scored on the Y channel with shave = scale (PROTOCOL.md section 3)."""
        return self.kind in ("benchmark", "embedded")


def _benchmark(name: str, count: int, what: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        kind="benchmark",
        count=count,
        layouts=(
            Layout(f"{name}/HR", f"{name}/LR_bicubic/X{{s}}"),
            Layout(f"benchmark/{name}/HR", f"benchmark/{name}/LR_bicubic/X{{s}}"),
        ),
        how_to_get=(
            f"download EDSR's benchmark archive {BENCHMARK_URL} and unpack it in the data root "
            f"(giving <root>/benchmark/{name}/HR), then pass --data-root or set SR_BENCH_DATA"
        ),
        description=what,
    )


def _div2k(name: str, split: str, first: int, last: int, what: str) -> DatasetSpec:
    stems = tuple(f"{i:04d}" for i in range(first, last + 1))
    return DatasetSpec(
        name=name,
        kind="div2k" if split == "valid" else "train",
        count=len(stems),
        layouts=(
            Layout(f"DIV2K/DIV2K_{split}_HR", f"DIV2K/DIV2K_{split}_LR_bicubic/X{{s}}"),
            Layout(f"DIV2K_{split}_HR", f"DIV2K_{split}_LR_bicubic/X{{s}}"),
        ),
        stems=stems,
        how_to_get=(
            f"download DIV2K_{split}_HR.zip (and DIV2K_{split}_LR_bicubic_X2/X3/X4.zip) from {DIV2K_URL} "
            f"and unpack them into <root>/DIV2K/ (giving <root>/DIV2K/DIV2K_{split}_HR/{stems[0]}.png)"
        ),
        description=what,
    )


# scikit-image ships these real photographs; the split keeps evaluation and training disjoint.
EMBEDDED_EVAL = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "motorcycle_left.png")
EMBEDDED_TRAIN = (
    "brick.png", "cell.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg",
    "ihc.png", "moon.png", "retina.jpg", "rocket.jpg",
)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _benchmark("Set5", 5, "Bevilacqua et al. 2012; 5 images"),
        _benchmark("Set14", 14, "Zeyde et al. 2010; 14 images (bridge is single-channel)"),
        _benchmark("B100", 100, "BSD100 test images, 480x321 / 321x480"),
        _benchmark("Urban100", 100, "Huang et al. 2015; 100 urban scenes"),
        _div2k("DIV2K", "valid", 801, 900, "DIV2K validation 0801-0900 (Table 3's DIV2K rows)"),
        _div2k("DIV2K-val10", "valid", 801, 810, "DIV2K validation 0801-0810 (Table 2 and training validation)"),
        _div2k("DIV2K-train", "train", 1, 800, "DIV2K training 0001-0800 (the paper's training set)"),
        DatasetSpec(
            name="T91",
            kind="train",
            count=91,
            layouts=(Layout("T91/HR", None), Layout("T91", None)),
            how_to_get="the 91 images of Yang et al. (TIP 2010), e.g. from SRCNN's training set; put them in <root>/T91/HR",
            description="Yang et al. 91 training images (SRCNN / VDSR)",
        ),
        DatasetSpec(
            name="embedded",
            kind="embedded",
            count=len(EMBEDDED_EVAL),
            layouts=(),
            description="5 real photographs shipped with scikit-image (astronaut, camera, chelsea, coffee, motorcycle_left); not a paper benchmark",
        ),
        DatasetSpec(
            name="embedded-train",
            kind="train",
            count=len(EMBEDDED_TRAIN),
            layouts=(),
            description="10 other scikit-image photographs, for training without a data folder",
        ),
    )
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(
            f"unknown dataset {name!r}; known: {', '.join(DATASETS)}, or a path to a folder of images"
        ) from None


def skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"
