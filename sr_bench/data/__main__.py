"""``python -m sr_bench.data check | where NAME | download NAME --data-root DIR``.

* ``check``: decode every image of every dataset found under the data root, check each LR
  image's size against its HR and each file's sha256 against the root's ``MANIFEST.tsv`` (when
  it has one); one summary line per dataset; exit 1 on any problem (or when no dataset is
  found), 2 for bad usage.
* ``where NAME``: the folders a dataset is looked for in, what it is downloaded from, and how to get it.
* ``download NAME``: an explicit download (never implicit) of the dataset's files as its
  registration lists them (:mod:`sr_bench.data.sources`): each from ``$SR_BENCH_DATA_URL/<file>``
  first, then its official URL, with a timeout on every wait, bounded retries that resume a cut
  transfer, and the published hash checked before anything is unpacked (``--sha256`` overrides
  it). Archives are unpacked safely (:func:`sr_bench.download.extract`); the dataset must then
  open with its expected counts; each archive's sha256 goes to ``<root>/DOWNLOADS.tsv`` and each
  image's to ``<root>/MANIFEST.tsv``, which ``check`` verifies.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sr_bench import cli
from sr_bench.cli import DataError, UsageError
from sr_bench.data.check import MANIFEST, check_root, dataset_files, manifest_row, read_manifest, write_manifest
from sr_bench.data.dataset import Dataset, DatasetNotFound, data_root, open_dataset, open_layout
from sr_bench.data.registry import DATASETS, get_spec
from sr_bench.data.sources import DATA_URL_ENV, Source
from sr_bench.download import Timeout, extract, fetch, mirror_urls

log = logging.getLogger("sr_bench.data")

DOWNLOADS_DIR = "downloads"  # <root>/downloads: archives (and .part files of cut transfers) before unpacking
DOWNLOADS_LOG = "DOWNLOADS.tsv"


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
        print(f"  <root>/{layout.hr}" + (f"   LR: <root>/{layout.lr}/{layout.lr_name}" if layout.lr else "")
              + (f"   ({layout.note})" if layout.note else ""))
    shown = spec.sources if len(spec.sources) <= 4 else spec.sources[:1]  # T91: 91 files, one shown
    for source in shown:
        print(f"  download: {source.file_name} from {', '.join(source.urls)} "
              f"({source.known_hash or 'no published hash'}; {source.hash_source})")
    if len(spec.sources) > len(shown):
        print(f"  download: and {len(spec.sources) - len(shown)} more files like these")
    if spec.how_to_get:
        print(f"  to get it: {spec.how_to_get}")
    return 0


@dataclass(frozen=True)
class DownloadOptions:
    sha256: tuple[str, ...] = ()  # one per file, replacing the published hashes
    timeout: Timeout = Timeout()
    retries: int = 2
    keep_archives: bool = False
    force: bool = False
    progress: bool = True


def _already_present(name: str, root: Path) -> Dataset | None:
    try:
        return open_dataset(name, root)
    except DatasetNotFound:
        return None


def _record(root: Path, source: Source, sha256: str, url: str, checked: str) -> None:
    """One line per file in ``<root>/DOWNLOADS.tsv`` (file, sha256, URL, what it was checked against, when)."""
    path = root / DOWNLOADS_LOG
    new = not path.exists()
    with open(path, "a") as f:
        if new:
            f.write("file\tsha256\turl\tchecked\tdate\n")
        when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        f.write(f"{source.file_name}\t{sha256}\t{url or '(already downloaded)'}\t{checked}\t{when}\n")


def _get(source: Source, expected: str | None, root: Path, options: DownloadOptions) -> dict[Path, str]:
    """Fetch one file, verify it, unpack or place it; returns {file written: where it came from}."""
    fetched = fetch(
        mirror_urls(source.file_name, DATA_URL_ENV, source.urls), root / DOWNLOADS_DIR / source.file_name,
        known_hash=f"sha256:{expected}" if expected else source.known_hash, mirror_env=DATA_URL_ENV,
        timeout=options.timeout, retries=options.retries, progress=options.progress,
    )
    if source.is_archive:
        into = root / source.unpack_into
        origins = {f: f"{source.file_name}:{f.relative_to(into).as_posix()}" for f in extract(fetched.path, into)}
    else:
        placed = root / str(source.place_at)
        placed.parent.mkdir(parents=True, exist_ok=True)
        os.replace(fetched.path, placed)
        origins = {placed: fetched.url or source.urls[0]}
    checked = str(fetched.checked) if fetched.checked else "no published hash"
    _record(root, source, fetched.sha256, fetched.url, checked)
    if fetched.checked is None:
        log.warning("%s: no published hash; recorded sha256 %s in %s (pass --sha256 to check it next time)",
                    source.file_name, fetched.sha256, root / DOWNLOADS_LOG)
    elif fetched.checked.algorithm == "sha256":
        log.info("%s: sha256 %s verified (recorded in %s)", source.file_name, fetched.sha256, DOWNLOADS_LOG)
    else:  # only an md5 is published: the sha256 is recorded so that later copies can be checked with it
        log.info("%s: %s verified (the published hash); its sha256 %s is recorded in %s", source.file_name,
                 fetched.checked, fetched.sha256, DOWNLOADS_LOG)
    if source.is_archive and not options.keep_archives:
        fetched.path.unlink()
    return origins


def _unpacked(name: str, root: Path, origins: dict[Path, str]) -> Dataset | None:
    """The dataset in the layout the files just written landed in (None: none of them is its)."""
    folders = {f.parent for f in origins}
    for layout in get_spec(name).layouts:
        if root / layout.hr in folders:
            return open_layout(name, root, layout)
    return None


def _report(names: Sequence[str], root: Path, origins: dict[Path, str]) -> int:
    """Open every dataset the new files belong to, print where, and list its files in MANIFEST.tsv."""
    rows, listed = [], set[Path]()
    for name in names:
        try:
            ds = _unpacked(name, root, origins)
        except DatasetNotFound as e:
            if name == names[0]:
                raise
            log.warning("%s", e)  # an archive shared with the set asked for, incomplete for this one
            continue
        if ds is None:
            if name == names[0]:
                raise DataError(f"{name}: none of the downloaded files is in one of its folders under {root} "
                                f"(`python -m sr_bench.data where {name}` lists them); the archive is not the "
                                f"expected one")
            continue
        # DIV2K-val10 shares DIV2K's files: each file is listed once, under the first set named
        new = [f for f in dataset_files(ds) if f in origins and f not in listed]
        listed.update(new)
        rows += [manifest_row(name, root, f, origins[f]) for f in new]
        print(f"{name}: {len(ds)} images at {ds.location} ({len(new)} files recorded in {MANIFEST})")
    write_manifest(root, rows)
    print(f"{root / MANIFEST}: sha256 of {len(rows)} files; `python -m sr_bench.data check --data-root {root}` "
          f"verifies them")
    return 0


def download(name: str, root: Path, options: DownloadOptions = DownloadOptions()) -> int:
    spec = get_spec(name)
    if not spec.sources:
        raise UsageError(f"download {name}: no official archive to download; to get it: "
                         f"{spec.how_to_get or 'bring your own folder'}")
    if options.sha256 and len(options.sha256) != len(spec.sources):
        names = ", ".join(s.file_name for s in spec.sources)
        raise UsageError(f"--sha256: give one value per file ({len(spec.sources)}: {names})")
    if not options.force and (present := _already_present(name, root)) is not None:
        print(f"{name}: already here, {len(present)} images at {present.location}; nothing downloaded "
              f"(--force downloads it again)")
        return 0
    root.mkdir(parents=True, exist_ok=True)
    origins: dict[Path, str] = {}
    for i, source in enumerate(spec.sources):
        origins.update(_get(source, options.sha256[i] if options.sha256 else None, root, options))
    sharing = [n for n in DATASETS if n != name and set(DATASETS[n].sources) & set(spec.sources)]
    return _report([name, *sharing], root, origins)


def _sha256_arg(text: str) -> str:
    value = text.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise argparse.ArgumentTypeError(f"expected 64 hex digits (a sha256), got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


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
    d = cli.add_common_options(subcommand("download", help="download and unpack a dataset's files, explicitly"),
                               data_root=True, progress=True)
    d.add_argument("--root", dest="data_root", help=argparse.SUPPRESS)  # the old spelling of --data-root
    d.add_argument("name", choices=[n for n in DATASETS if DATASETS[n].layouts])
    d.add_argument("--sha256", nargs="*", default=[], type=_sha256_arg, metavar="HEX",
                   help="expected sha256 of each file, in place of the published hash")
    d.add_argument("--timeout", type=_seconds, default=Timeout().read, metavar="SECONDS",
                   help=f"give up on a server that sends nothing for this long (default {Timeout().read:g}); "
                        f"the connect timeout is the smaller of this and {Timeout().connect:g}")
    d.add_argument("--retries", type=cli.non_negative_int, default=DownloadOptions.retries, metavar="N",
                   help="tries again after a timeout or a cut connection, resuming (default %(default)s)")
    d.add_argument("--keep-archives", action="store_true",
                   help=f"keep archives in <root>/{DOWNLOADS_DIR} after unpacking")
    d.add_argument("--force", action="store_true", help="download even when the dataset is already there")
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
    timeout = Timeout(connect=min(Timeout().connect, a.timeout), read=a.timeout)
    options = DownloadOptions(tuple(a.sha256), timeout, a.retries, a.keep_archives, a.force, a.progress)
    return download(a.name, root, options)


if __name__ == "__main__":
    sys.exit(main())
