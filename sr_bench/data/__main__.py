"""``python -m sr_bench.data check | where NAME | download NAME --data-root DIR``.

* ``check``: decode every image of every dataset found under the data root, check each LR
  image's size against its HR and each file's sha256 against the root's ``MANIFEST.tsv`` (when
  it has one); one summary line per dataset; exit 1 on any problem (or when no dataset is
  found), 2 for bad usage.
* ``where NAME``: the folders a dataset is looked for in, and how to get it.
* ``download NAME``: an explicit download of the official archive (never implicit): the archive's
  sha256 is checked against ``--sha256`` when given (the official sites publish none) and written
  to ``<root>/DOWNLOADS.tsv``; after unpacking, the dataset must open with its expected counts.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from sr_bench import cli
from sr_bench.cli import DataError, UsageError
from sr_bench.data.check import MANIFEST, check_root, read_manifest
from sr_bench.data.dataset import data_root, open_dataset
from sr_bench.data.registry import BENCHMARK_URL, DATASETS, DIV2K_URL, benchmark_names, get_spec
from sr_bench.weights import sha256_file

log = logging.getLogger("sr_bench.data")


def _div2k_archives(split: str) -> tuple[str, ...]:
    return tuple(f"{DIV2K_URL}DIV2K_{split}_{p}.zip" for p in ("HR", "LR_bicubic_X2", "LR_bicubic_X3", "LR_bicubic_X4"))


# Manga109 is not in EDSR's benchmark archive: only the sets with published rows are
ARCHIVES: dict[str, tuple[str, ...]] = {
    **{name: (BENCHMARK_URL,) for name in benchmark_names(published=True)},
    "DIV2K": _div2k_archives("valid"),
    "DIV2K-val10": _div2k_archives("valid"),
    "DIV2K-train": _div2k_archives("train"),
}


def check(root: str | None, names: Sequence[str] = (), progress: bool = True) -> int:
    base = data_root(root)
    reports = check_root(base, names, progress)  # raises first for a missing or bad root
    manifest = read_manifest(base) if base is not None else None
    listed = f" ({MANIFEST}: {len(manifest.rows)} files)" if manifest else f" (no {MANIFEST}: no sha256 check)"
    print(f"data root: {base if base else '(none)'}{listed}")
    for report in reports:
        print(report.summary())
    bad = [r for r in reports if r.status == "bad"]
    found = [r for r in reports if r.status != "missing"]
    problems = sum(len(r.problems) for r in bad)
    print(f"{len(found) - len(bad)} dataset(s) ok, {len(bad)} with problems ({problems} problem(s)), "
          f"{len(reports) - len(found)} not present")
    if not found:
        print(f"no dataset found under {base}; `python -m sr_bench.data where NAME` says where each is looked for")
    return 1 if bad or not found else 0


def where(name: str) -> int:
    spec = get_spec(name)
    print(f"{name}: {spec.description}; expected images: {spec.count}")
    for layout in spec.layouts:
        print(f"  <root>/{layout.hr}" + (f"   LR: <root>/{layout.lr}/{layout.lr_name}" if layout.lr else ""))
    if spec.how_to_get:
        print(f"  to get it: {spec.how_to_get}")
    return 0


def _fetch(url: str, archive: Path, root: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(archive, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as e:
        raise DataError(f"cannot download {url}: {e}. Download it yourself and unpack it under {root}.") from None


def download(name: str, root: Path, expected: Sequence[str]) -> int:
    urls = ARCHIVES.get(name)
    if urls is None:
        raise UsageError(f"download {name}: no official archive to download; to get it: "
                         f"{get_spec(name).how_to_get or 'bring your own folder'}")
    if expected and len(expected) != len(urls):
        names = ", ".join(u.rsplit("/", 1)[1] for u in urls)
        raise UsageError(f"--sha256: give one value per archive ({len(urls)}: {names})")
    root.mkdir(parents=True, exist_ok=True)
    target = root / ("benchmark" if urls[0] == BENCHMARK_URL else "DIV2K")
    target.parent.mkdir(parents=True, exist_ok=True)
    for i, url in enumerate(urls):
        file_name = url.rsplit("/", 1)[1]
        log.info("downloading %s", url)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            archive = Path(tmp) / file_name
            _fetch(url, archive, root)
            digest = sha256_file(archive)
            if expected and digest != expected[i].lower():
                raise DataError(f"{file_name}: sha256 {digest} does not match --sha256 {expected[i]}; "
                                f"nothing was unpacked")
            with open(root / "DOWNLOADS.tsv", "a") as f:
                f.write(f"{file_name}\t{digest}\t{url}\n")
            log.info("%s: sha256 %s (%s)", file_name, digest, "verified" if expected else "recorded in DOWNLOADS.tsv")
            unpack_to = root if file_name.endswith(".tar") else target
            if file_name.endswith(".zip"):
                zipfile.ZipFile(archive).extractall(unpack_to)
            else:
                with tarfile.open(archive) as t:
                    t.extractall(unpack_to, filter="data")
    ds = open_dataset(name, root)  # raises with the details when the counts are off
    print(f"{name}: {len(ds)} images at {ds.location}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m sr_bench.data", __doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def subcommand(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help)
        # --debug after the subcommand too; SUPPRESS keeps the top-level value when absent
        s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback")
        return s

    c = cli.add_common_options(subcommand("check", help="decode and verify every dataset under the data root"),
                               data_root=True, progress=True)
    c.add_argument("--datasets", nargs="+", default=[], metavar="NAME",
                   help="check only these (registered names or folders); default: every registered dataset")
    w = cli.add_common_options(subcommand("where", help="where a dataset is looked for and how to get it"))
    w.add_argument("name", choices=list(DATASETS))
    d = cli.add_common_options(subcommand("download", help="download and unpack an official archive, explicitly"),
                               data_root=True)
    d.add_argument("--root", dest="data_root", help=argparse.SUPPRESS)  # the old spelling of --data-root
    d.add_argument("name", choices=[n for n in DATASETS if DATASETS[n].layouts])
    d.add_argument("--sha256", nargs="*", default=[], help="expected sha256 of each archive (recommended)")
    return p


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    cli.setup_logging(a.verbosity)
    if a.command == "check":
        return check(a.data_root, a.datasets, a.progress)
    if a.command == "where":
        return where(a.name)
    root = data_root(a.data_root)
    if root is None:
        raise UsageError(f"download {a.name}: no data root; pass --data-root DIR (the folder to unpack into) "
                         f"or set SR_BENCH_DATA=DIR")
    return download(a.name, root, a.sha256)


if __name__ == "__main__":
    sys.exit(main())
