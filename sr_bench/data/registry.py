"""Where each dataset lives, how many images it must have, how it is scored, and how to get it.

A dataset is ONE registration here: its spec says where it is found, how many images it must
have, how it is scored (``kind``), whether Table 3 shows it and in which row order, and which of
its Table 3 rows the paper published. The pipeline (evaluate, reproduce, Table 3, ``data check``)
reads these specs through :func:`benchmark_names`, :func:`table3_datasets` and
:func:`training_sets` instead of spelling dataset names.

A dataset is found under a data root (``--data-root`` or ``$SR_BENCH_DATA``) in one of the
layouts its spec lists, tried in order:

* ``<root>/<Set>/HR`` + ``<root>/<Set>/LR_bicubic/X<s>/<stem>x<s>.png`` (the staged layout),
* ``<root>/benchmark/<Set>/HR`` + ``.../LR_bicubic/X<s>`` (EDSR's benchmark archive),
* BasicSR's ``<Set>/GTmod12`` + ``<Set>/LRbicx<s>/<stem>.png`` (HR cropped to a multiple of 12),
* the same three under ``<root>/datasets/`` (a BasicSR checkout's ``datasets`` folder as the root's parent),
* ``<root>/DIV2K/DIV2K_{train,valid}_HR`` + ``DIV2K_{train,valid}_LR_bicubic/X<s>/<stem>x<s>.png``.

Where a dataset has no LR file for an image, sr_bench makes it with its MATLAB-exact bicubic.
The scikit-image photos need no root: they ship inside the installed package. Where each
dataset's files are downloaded from (``python -m sr_bench.data download NAME``) is its spec's
``sources`` (:mod:`sr_bench.data.sources`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from sr_bench.data.sources import DIV2K_BASE_URL, Source, benchmark_archive, div2k_archives, t91_files
from sr_bench.errors import UsageError
from sr_bench.lookup import Registry, UnknownNameError

__all__ = [
    "DATASETS",
    "EMBEDDED_EVAL",
    "EMBEDDED_TRAIN",
    "DatasetSpec",
    "Kind",
    "Layout",
    "UnknownDatasetError",
    "benchmark_names",
    "dataset_order",
    "evaluation_sets",
    "get_spec",
    "register",
    "table3_datasets",
    "training_sets",
]

BENCHMARK_URL = benchmark_archive()[0].urls[0]
DIV2K_URL = DIV2K_BASE_URL

# "benchmark": Y channel, shave = scale; "div2k": RGB, shave = scale + 6 (docs/protocol.md section 3);
# "train": training images only; "embedded": scikit-image photos, scored as a benchmark.
Kind = Literal["benchmark", "div2k", "train", "embedded"]


@dataclass(frozen=True)
class Layout:
    hr: str  # folder of HR images, relative to the data root
    lr: str | None  # folder pattern of LR images, with {s} for the scale
    lr_name: str = "{stem}x{s}.png"
    note: str = ""  # what a user should know about images found here (logged when the dataset opens)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: Kind
    count: int | None  # expected number of HR images; None: any
    layouts: tuple[Layout, ...]
    stems: tuple[str, ...] | None = None  # exact expected stems, where the dataset defines them
    how_to_get: str = ""
    description: str = ""
    in_table3: bool = False  # Table 3 has a row for it (measured when present)
    order: int = 1000  # row order in tables (paper order first)
    paper_rows: tuple[int, ...] = ()  # scales of its rows in the paper's Table 3 (published numbers)
    registered: bool = True  # False for a user's folder of images (never called by a registered name)
    sources: tuple[Source, ...] = ()  # what `python -m sr_bench.data download` fetches; () for none

    def __post_init__(self) -> None:
        # a typo in kind would silently change the shave and the channels scored
        if self.kind not in get_args(Kind):
            raise ValueError(f"dataset {self.name!r}: kind {self.kind!r} is not one of {', '.join(get_args(Kind))}")

    @property
    def is_benchmark(self) -> bool:
        """Benchmarks are scored on the Y channel with shave = scale (docs/protocol.md section 3)."""
        return self.kind in ("benchmark", "embedded")

    def max_shave(self, scale: int) -> int:
        """The widest border any protocol shaves from this dataset's images at ``scale``."""
        return scale + 6 if self.kind == "div2k" else scale


class UnknownDatasetError(UnknownNameError, UsageError):
    """An unknown dataset name: a usage error (exit 2) that is still a ``KeyError`` for callers."""


DATASETS: Registry[DatasetSpec] = Registry(
    "dataset", hint="or pass a path to a folder of images", error=UnknownDatasetError
)


def register(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.add(spec.name, spec)


def get_spec(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def _ordered(specs: list[DatasetSpec]) -> list[str]:
    return [s.name for s in sorted(specs, key=lambda s: s.order)]


def benchmark_names(*, published: bool = False) -> list[str]:
    """The public benchmark sets in paper order (Set5, Set14, B100, Urban100, then later ones);
    ``published``: only those with rows in the paper's Table 3."""
    return _ordered([s for s in DATASETS.values()
                     if s.kind == "benchmark" and s.in_table3 and (s.paper_rows or not published)])


def table3_datasets(*, published: bool = False) -> list[str]:
    """Every dataset Table 3 has rows for, in row order (benchmarks, then DIV2K, then the others)."""
    return _ordered([s for s in DATASETS.values() if s.in_table3 and (s.paper_rows or not published)])


def evaluation_sets(*, published: bool = False) -> list[str]:
    """The full datasets a reproduction scores when present, in Table 3 order: every public
    benchmark and DIV2K validation (not its 10-image subset, not the embedded photos)."""
    return [n for n in table3_datasets(published=published)
            if DATASETS[n].kind == "benchmark" or (DATASETS[n].kind == "div2k" and DATASETS[n].paper_rows)]


def dataset_order() -> tuple[str, ...]:
    """Table 3's row order ."""
    return tuple(table3_datasets())


def training_sets() -> list[str]:
    return _ordered([s for s in DATASETS.values() if s.kind == "train"])


# BasicSR's test sets: HR cropped to a multiple of 12 so one HR serves x2, x3 and x4, and LR files
# named like their HR (XPixelGroup/BasicSR scripts/matlab_scripts/generate_bicubic_img.m, options/test/*.yml)
_GTMOD12_NOTE = ("BasicSR's GTmod12: HR cropped to a multiple of 12, so scores differ slightly from the paper's "
                 "(which crop HR to a multiple of the scale only)")


def _benchmark_layouts(name: str, basicsr_names: tuple[str, ...]) -> tuple[Layout, ...]:
    """EDSR's and BasicSR's layouts, under the root and under ``<root>/datasets`` (a BasicSR checkout)."""
    layouts = []
    for base in ("", "datasets/"):
        layouts += [
            Layout(f"{base}{name}/HR", f"{base}{name}/LR_bicubic/X{{s}}"),
            Layout(f"{base}benchmark/{name}/HR", f"{base}benchmark/{name}/LR_bicubic/X{{s}}"),
        ]
        layouts += [Layout(f"{base}{folder}/GTmod12", f"{base}{folder}/LRbicx{{s}}", "{stem}.png", _GTMOD12_NOTE)
                    for folder in (name, *basicsr_names)]
    return tuple(layouts)


def _benchmark(name: str, count: int, what: str, order: int, paper_rows: tuple[int, ...] = (2, 3, 4),
               how_to_get: str = "", basicsr_names: tuple[str, ...] = (), by_request: bool = False) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        kind="benchmark",
        count=count,
        layouts=_benchmark_layouts(name, basicsr_names),
        how_to_get=how_to_get or (
            f"`python -m sr_bench.data download {name} --data-root DIR` fetches EDSR's benchmark archive "
            f"({BENCHMARK_URL}, or $SR_BENCH_DATA_URL/benchmark.tar) and unpacks it, giving "
            f"DIR/benchmark/{name}/HR; then pass --data-root DIR or set SR_BENCH_DATA=DIR"
        ),
        description=what,
        in_table3=True,
        order=order,
        paper_rows=paper_rows,
        sources=() if by_request else benchmark_archive(),
    )


def _div2k(
    name: str, split: str, first: int, last: int, what: str, order: int, paper_rows: tuple[int, ...] = ()
) -> DatasetSpec:
    stems = tuple(f"{i:04d}" for i in range(first, last + 1))
    return DatasetSpec(
        name=name,
        kind="div2k" if split == "valid" else "train",
        count=len(stems),
        layouts=(
            Layout(f"DIV2K/DIV2K_{split}_HR", f"DIV2K/DIV2K_{split}_LR_bicubic/X{{s}}"),
            Layout(f"DIV2K_{split}_HR", f"DIV2K_{split}_LR_bicubic/X{{s}}"),
            Layout(f"datasets/DIV2K/DIV2K_{split}_HR", f"datasets/DIV2K/DIV2K_{split}_LR_bicubic/X{{s}}"),
        ),
        stems=stems,
        how_to_get=(
            f"`python -m sr_bench.data download {name} --data-root DIR` fetches DIV2K_{split}_HR.zip and "
            f"DIV2K_{split}_LR_bicubic_X2/X3/X4.zip from {DIV2K_URL} (or $SR_BENCH_DATA_URL) and unpacks them into "
            f"DIR/DIV2K/ (giving DIR/DIV2K/DIV2K_{split}_HR/{stems[0]}.png)"
        ),
        description=what,
        in_table3=split == "valid",
        order=order,
        paper_rows=paper_rows,
        sources=div2k_archives(split),
    )


# scikit-image ships these real photographs; the split keeps evaluation and training disjoint.
EMBEDDED_EVAL = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "motorcycle_left.png")
EMBEDDED_TRAIN = (
    "brick.png", "cell.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg",
    "ihc.png", "moon.png", "retina.jpg", "rocket.jpg",
)

register(_benchmark("Set5", 5, "Bevilacqua et al. 2012; 5 images", order=10))
register(_benchmark("Set14", 14, "Zeyde et al. 2010; 14 images (bridge is single-channel)", order=20))
register(_benchmark("B100", 100, "BSD100 test images, 480x321 / 321x480", order=30, basicsr_names=("BSDS100",)))
register(_benchmark("Urban100", 100, "Huang et al. 2015; 100 urban scenes", order=40, basicsr_names=("urban100",)))
register(_div2k("DIV2K", "valid", 801, 900, "DIV2K validation 0801-0900 (Table 3's DIV2K rows)", order=60,
                paper_rows=(2, 3, 4)))
register(_div2k("DIV2K-val10", "valid", 801, 810, "DIV2K validation 0801-0810 (Table 2 and training validation)",
                order=70))
register(_div2k("DIV2K-train", "train", 1, 800, "DIV2K training 0001-0800 (the paper's training set)", order=110))
register(DatasetSpec(
    name="T91",
    kind="train",
    count=91,
    layouts=tuple(Layout(folder, None) for folder in ("T91/HR", "T91", "datasets/T91/HR", "datasets/T91")),
    how_to_get=("`python -m sr_bench.data download T91 --data-root DIR` fetches the 91 images of Yang et al. "
                "(TIP 2010) into DIR/T91/HR (BMPs from jiny2001/dcscn-super-resolution at a fixed commit, each "
                "checked by sha256); or put your own copy in <root>/T91/HR"),
    description="Yang et al. 91 training images (SRCNN / VDSR)",
    order=120,
    sources=t91_files(),
))
register(DatasetSpec(
    name="embedded",
    kind="embedded",
    count=len(EMBEDDED_EVAL),
    layouts=(),
    description=("5 real photographs shipped with scikit-image (astronaut, camera, chelsea, coffee, "
                 "motorcycle_left); not a paper benchmark"),
    in_table3=True,
    order=90,
))
register(DatasetSpec(
    name="embedded-train",
    kind="train",
    count=len(EMBEDDED_TRAIN),
    layouts=(),
    description="10 other scikit-image photographs, for training without a data folder",
    order=130,
))

# ---- Manga109: one registration (HR only in most copies; sr_bench's MATLAB bicubic makes the LR) ----
register(_benchmark(
    "Manga109", 109, "Matsui et al. 2017; 109 manga images, one per volume (not in the EDSR paper)",
    order=50, paper_rows=(), basicsr_names=("manga109",), by_request=True,
    how_to_get=(
        "request Manga109 from http://www.manga109.org (academic use) or take it from a super-resolution "
        "benchmark collection; put its 109 HR PNGs in <root>/Manga109/HR or <root>/benchmark/Manga109/HR "
        "(LR images are made with sr_bench's MATLAB-exact bicubic when absent)"
    ),
))
# ---- end Manga109 ----


def skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"
