"""``python -m sr_bench.data check | where NAME | download NAME --root DIR``.

* ``check``: which registered datasets are found under the data root, with counts and LR sources.
* ``where NAME``: the folders a dataset is looked for in, and how to get it.
* ``download NAME``: an explicit download of the official archive (never implicit): the archive's
  sha256 is checked against ``--sha256`` when given (the official sites publish none) and written
  to ``<root>/DOWNLOADS.tsv``; after unpacking, the dataset must open with its expected counts.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Sequence

from sr_bench.data.dataset import DatasetNotFound, data_root, open_dataset
from sr_bench.data.registry import BENCHMARK_URL, DATASETS, DIV2K_URL, get_spec
from sr_bench.weights import sha256_file

ARCHIVES: dict[str, tuple[str, ...]] = {
    **{name: (BENCHMARK_URL,) for name in ("Set5", "Set14", "B100", "Urban100")},
    "DIV2K": tuple(f"{DIV2K_URL}DIV2K_valid_{p}.zip" for p in ("HR", "LR_bicubic_X2", "LR_bicubic_X3", "LR_bicubic_X4")),
    "DIV2K-val10": tuple(f"{DIV2K_URL}DIV2K_valid_{p}.zip" for p in ("HR", "LR_bicubic_X2", "LR_bicubic_X3", "LR_bicubic_X4")),
    "DIV2K-train": tuple(f"{DIV2K_URL}DIV2K_train_{p}.zip" for p in ("HR", "LR_bicubic_X2", "LR_bicubic_X3", "LR_bicubic_X4")),
}


def check(root: str | None) -> int:
    base = data_root(root)
    print(f"data root: {base if base else '(none: set SR_BENCH_DATA or pass --data-root)'}")
    missing = 0
    for name in DATASETS:
        try:
            ds = open_dataset(name, root)
            lr = ", ".join(f"x{s} {ds.lr_source(s)}" for s in (2, 3, 4)) if ds.kind != "train" else "LR generated"
            print(f"  ok       {name:14s} {len(ds):4d} images  {ds.location}  (LR: {lr})")
        except DatasetNotFound as e:
            missing += 1
            print(f"  missing  {name:14s} {e}")
    return 0 if missing < len(DATASETS) else 1


def where(name: str) -> int:
    spec = get_spec(name)
    print(f"{name}: {spec.description}; expected images: {spec.count}")
    for layout in spec.layouts:
        print(f"  <root>/{layout.hr}" + (f"   LR: <root>/{layout.lr}/{layout.lr_name}" if layout.lr else ""))
    if spec.how_to_get:
        print(f"  to get it: {spec.how_to_get}")
    return 0


def download(name: str, root: Path, expected: Sequence[str]) -> int:
    urls = ARCHIVES.get(name)
    if urls is None:
        raise SystemExit(f"{name}: no official archive to download; {get_spec(name).how_to_get or 'bring your own folder'}")
    if expected and len(expected) != len(urls):
        raise SystemExit(f"--sha256: give one value per archive ({len(urls)}: {', '.join(u.rsplit('/', 1)[1] for u in urls)})")
    root.mkdir(parents=True, exist_ok=True)
    target = root / ("benchmark" if urls[0] == BENCHMARK_URL else "DIV2K")
    target.parent.mkdir(parents=True, exist_ok=True)
    for i, url in enumerate(urls):
        file_name = url.rsplit("/", 1)[1]
        print(f"downloading {url}", file=sys.stderr)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            archive = Path(tmp) / file_name
            try:
                with urllib.request.urlopen(url, timeout=60) as r, open(archive, "wb") as f:
                    shutil.copyfileobj(r, f)
            except OSError as e:
                raise SystemExit(f"cannot download {url}: {e}. Download it yourself and unpack it under {root}.") from None
            digest = sha256_file(archive)
            if expected and digest != expected[i].lower():
                raise SystemExit(f"{file_name}: sha256 {digest} does not match --sha256 {expected[i]}; nothing was unpacked")
            with open(root / "DOWNLOADS.tsv", "a") as log:
                log.write(f"{file_name}\t{digest}\t{url}\n")
            print(f"{file_name}: sha256 {digest}{' (verified)' if expected else ' (recorded in DOWNLOADS.tsv)'}", file=sys.stderr)
            unpack_to = root if file_name.endswith(".tar") else target
            if file_name.endswith(".zip"):
                zipfile.ZipFile(archive).extractall(unpack_to)
            else:
                with tarfile.open(archive) as t:
                    t.extractall(unpack_to, filter="data")
    ds = open_dataset(name, root)  # raises with the details when the counts are off
    print(f"{name}: {len(ds)} images at {ds.location}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sr_bench.data", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="which datasets are found under the data root")
    c.add_argument("--data-root", default=None)
    w = sub.add_parser("where", help="where a dataset is looked for and how to get it")
    w.add_argument("name", choices=list(DATASETS))
    d = sub.add_parser("download", help="download and unpack an official archive, explicitly")
    d.add_argument("name", choices=list(ARCHIVES))
    d.add_argument("--root", required=True, type=Path, help="the data root to unpack into")
    d.add_argument("--sha256", nargs="*", default=[], help="expected sha256 of each archive (recommended)")
    a = p.parse_args(argv)
    if a.command == "check":
        return check(a.data_root)
    if a.command == "where":
        return where(a.name)
    return download(a.name, a.root, a.sha256)


if __name__ == "__main__":
    sys.exit(main())
