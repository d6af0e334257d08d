"""Finding weights files: ``--weights NAME|PATH`` to a local, hash-checked file.

A path is used as it is; a registered name is looked up in the weights folder
(:func:`set_weights_dir`, ``--weights-dir``, ``$SR_BENCH_WEIGHTS_DIR``: files under their
official names), else downloaded once into ``torch.hub.get_dir()/checkpoints`` from the mirror
``$SR_BENCH_WEIGHTS_URL`` (base URL + official file name) or the official server, with its hash
checked (a cached file is re-hashed every time: a truncated cache is never trusted).

Downloads go through :func:`sr_bench.download.fetch`: a connect and a read timeout on every
network wait (``$SR_BENCH_DOWNLOAD_TIMEOUT`` seconds, default 60; the connect timeout is the
smaller of it and 10), a bounded number of retries (``$SR_BENCH_DOWNLOAD_RETRIES``, default 2)
that resume ``<file>.part``, a length check and the sha256 prefix of the official file name
checked before the file takes its name. ``file://`` mirrors work too.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

from sr_bench.download import DownloadError, Timeout, fetch, mirror_urls, part_path
from sr_bench.weights.errors import MissingWeightsFileError, WeightsDownloadError, WeightsOptionError
from sr_bench.weights.published import OFFICIAL_BASE_URL, WeightsSpec, get_weights, weights_names

__all__ = [
    "WEIGHTS_DIR_ENV", "WEIGHTS_URL_ENV", "DOWNLOAD_TIMEOUT_ENV", "DOWNLOAD_RETRIES_ENV", "sha256_file",
    "check_weights_path", "default_cache_dir", "set_weights_dir", "current_weights_dir", "download_urls",
    "download_settings", "resolve_weights",
]

log = logging.getLogger(__name__)

WEIGHTS_URL_ENV = "SR_BENCH_WEIGHTS_URL"
WEIGHTS_DIR_ENV = "SR_BENCH_WEIGHTS_DIR"
DOWNLOAD_TIMEOUT_ENV = "SR_BENCH_DOWNLOAD_TIMEOUT"
DOWNLOAD_RETRIES_ENV = "SR_BENCH_DOWNLOAD_RETRIES"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_weights_path(source: str | os.PathLike[str]) -> Path | None:
    """The file ``source`` names when it is a path (None for a registered name); checked up front.

    Raises :class:`MissingWeightsFileError` (a FileNotFoundError) for a path that does not exist,
    :class:`WeightsOptionError` for a folder.
    """
    if not (isinstance(source, os.PathLike) or _looks_like_path(str(source)) or Path(source).exists()):
        return None
    path = Path(source).expanduser()
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.is_file() and _looks_like_path(p.name))
        shown = f" ({', '.join(inside[:3])}{', ...' if len(inside) > 3 else ''})" if inside else " (none is there)"
        raise WeightsOptionError(
            f"--weights {str(path)!r} is a folder, not a weights file; pass one checkpoint file in it{shown}, or "
            f"pass the folder as --weights-dir with a registered name ({', '.join(weights_names())})"
        )
    if not path.is_file():
        raise MissingWeightsFileError(
            f"weights file {str(path)!r} does not exist; check the path, or pass a registered name "
            f"({', '.join(weights_names())})"
        )
    return path


def _looks_like_path(source: str) -> bool:
    return (
        os.sep in source
        or (os.altsep is not None and os.altsep in source)
        or source.endswith((".pt", ".pth", ".safetensors", ".ckpt", ".bin"))
        or source.startswith((".", "~"))
    )


def default_cache_dir() -> Path:
    """Where registered weights are downloaded: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


_weights_dir: Path | None = None


def set_weights_dir(path: str | os.PathLike | None) -> None:
    """Look for registered weights in ``path`` first (files under their official names, e.g.
    ``edsr_x4-4f62e9ef.pt``); None goes back to ``$SR_BENCH_WEIGHTS_DIR``. Commands call it for
    ``--weights-dir``."""
    global _weights_dir
    _weights_dir = None if path is None else Path(path).expanduser()


def current_weights_dir() -> Path | None:
    """The folder :func:`set_weights_dir` set, else ``$SR_BENCH_WEIGHTS_DIR``, else None."""
    env = os.environ.get(WEIGHTS_DIR_ENV)
    return _weights_dir if _weights_dir is not None else (Path(env).expanduser() if env else None)


def _weights_dir_origin(given: str | os.PathLike | None) -> str:
    """Where the weights folder came from, as the user spelt it: the option or the variable."""
    return "weights_dir" if given is not None else "--weights-dir" if _weights_dir is not None else \
        f"${WEIGHTS_DIR_ENV}"


def download_urls(spec: WeightsSpec) -> tuple[str, ...]:
    """Where ``spec`` is downloaded from, in order: the mirror ``$SR_BENCH_WEIGHTS_URL`` (base URL
    + official file name; ``file://`` works too), then the official URLs."""
    return mirror_urls(spec.file_name, WEIGHTS_URL_ENV, spec.urls)


def download_settings() -> tuple[Timeout, int]:
    """(timeout, retries) for weights downloads: ``$SR_BENCH_DOWNLOAD_TIMEOUT`` seconds of silence
    (the connect timeout is the smaller of it and :class:`~sr_bench.download.Timeout`'s 10 s) and
    ``$SR_BENCH_DOWNLOAD_RETRIES`` more tries per URL; the defaults when unset."""
    timeout, retries = Timeout(), 2
    text = os.environ.get(DOWNLOAD_TIMEOUT_ENV, "").strip()
    if text:
        try:
            seconds = float(text)
            if not seconds > 0:
                raise ValueError
        except ValueError:
            raise WeightsOptionError(f"{DOWNLOAD_TIMEOUT_ENV}={text!r}: expected a number of seconds above 0") \
                from None
        timeout = Timeout(connect=min(timeout.connect, seconds), read=seconds)
    text = os.environ.get(DOWNLOAD_RETRIES_ENV, "").strip()
    if text:
        if not text.isdigit():
            raise WeightsOptionError(f"{DOWNLOAD_RETRIES_ENV}={text!r}: expected a whole number of retries (0 or more)")
        retries = int(text)
    return timeout, retries


def _check_folder(folder: Path, origin: str) -> None:
    """Refuse a weights folder that is a file or does not exist, naming where it came from."""
    if folder.is_dir():
        return
    if folder.exists():
        raise WeightsOptionError(
            f"{origin} {str(folder)!r} is a file, not a folder; pass the folder that holds the official files "
            f"(or pass the file itself: --weights {folder})"
        )
    raise WeightsOptionError(
        f"{origin} {str(folder)!r} does not exist; pass the folder that holds the official weights files "
        f"(e.g. edsr_x4-4f62e9ef.pt)"
    )


def _from_folder(spec: WeightsSpec, folder: Path) -> Path | None:
    path = folder / spec.file_name
    if not path.is_file():
        return None
    digest = sha256_file(path)
    if not digest.startswith(spec.sha256_prefix):
        raise WeightsDownloadError(
            f"{path}: sha256 {digest[:16]}… does not start with {spec.sha256_prefix}, so it is not the published "
            f"{spec.name!r}; replace it with the official {spec.file_name}"
        )
    return path


def _offline_help(spec: WeightsSpec, dst: Path, errors: list[str]) -> str:
    timed_out = any("timeout" in e for e in errors)
    part = part_path(dst)
    kept = f"; the bytes received so far are kept in {part} for the next try" if part.is_file() else ""
    return (
        f"cannot download weights {spec.name!r}: {'; '.join(errors)}{kept}. "
        + (f"Set {DOWNLOAD_TIMEOUT_ENV}=SECONDS to wait longer for a slow server. " if timed_out else "")
        + f"The official server ({OFFICIAL_BASE_URL}) has been unreachable since 2024 (EDSR-PyTorch issues "
        f"#362/#363). Get {spec.file_name} (sha256 starts with {spec.sha256_prefix}) from a mirror and either "
        f"set {WEIGHTS_URL_ENV}=<base URL> (sr_bench fetches <base URL>/{spec.file_name}, file:// works), "
        f"or put it in a folder and pass --weights-dir FOLDER (or set {WEIGHTS_DIR_ENV}=FOLDER), "
        f"or pass the file itself: --weights /path/to/{spec.file_name}, or put it at {dst}."
    )


def resolve_weights(
    source: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    weights_dir: str | os.PathLike | None = None,
    timeout: Timeout | None = None,
    retries: int | None = None,
) -> tuple[Path, WeightsSpec | None]:
    """Turn ``--weights NAME|PATH`` into a local file.

    A registered name is found, in order, in ``weights_dir`` (default: :func:`current_weights_dir`), in
    the download cache, or downloaded from :func:`download_urls`; every file is hash-checked.
    ``timeout`` / ``retries``: for the download (default: :func:`download_settings`).

    Returns:
        (path, spec): ``spec`` is the registered :class:`WeightsSpec` when ``source`` is a name.

    Raises:
        MissingWeightsFileError (a FileNotFoundError): a path that does not exist.
        WeightsOptionError: a folder given as the file, or a weights folder that is a file or absent.
        UnknownWeightsError: an unknown name.
        WeightsDownloadError: a name whose file could not be found or downloaded or fails its hash.
    """
    path = check_weights_path(source)
    if path is not None:
        return path, None
    spec = get_weights(str(source))
    folder = Path(weights_dir).expanduser() if weights_dir is not None else current_weights_dir()
    if folder is not None:
        _check_folder(folder, _weights_dir_origin(weights_dir))
        if (found := _from_folder(spec, folder)) is not None:
            return found, spec
    dst = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / spec.file_name
    if timeout is None or retries is None:
        default_timeout, default_retries = download_settings()
        timeout = default_timeout if timeout is None else timeout
        retries = default_retries if retries is None else retries
    try:
        fetched = fetch(download_urls(spec), dst, known_hash=f"sha256:{spec.sha256_prefix}",
                        mirror_env=WEIGHTS_URL_ENV, timeout=timeout, retries=retries, progress=progress)
    except DownloadError as e:
        if not e.failures:  # our side failed (a full disk, a read-only cache): its own advice, and where
            raise WeightsDownloadError(f"{e} (weights are cached in torch.hub.get_dir()/checkpoints: set TORCH_HOME "
                                       f"to move it, or pass --weights-dir FOLDER)") from None
        looked = [f"{folder / spec.file_name}: no such file"] if folder is not None else []
        raise WeightsDownloadError(_offline_help(spec, dst, looked + list(e.failures))) from None
    return fetched.path, spec
