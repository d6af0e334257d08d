"""Finding weights files: ``--weights NAME|PATH`` to a local, hash-checked file.

A path is used as it is; a registered name is looked up in the weights folder
(:func:`set_weights_dir`, ``--weights-dir``, ``$SR_BENCH_WEIGHTS_DIR``: files under their
official names), else downloaded once into ``torch.hub.get_dir()/checkpoints`` from the mirror
``$SR_BENCH_WEIGHTS_URL`` (base URL + official file name) or the official server, with its hash
checked (a cached file is re-hashed every time: a truncated cache is never trusted).
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
from pathlib import Path

import torch

from sr_bench.weights.errors import MissingWeightsFileError, WeightsDownloadError
from sr_bench.weights.published import OFFICIAL_BASE_URL, WeightsSpec, get_weights, weights_names

__all__ = [
    "WEIGHTS_DIR_ENV", "WEIGHTS_URL_ENV", "sha256_file", "check_weights_path", "default_cache_dir",
    "set_weights_dir", "current_weights_dir", "download_urls", "resolve_weights",
]

log = logging.getLogger(__name__)

WEIGHTS_URL_ENV = "SR_BENCH_WEIGHTS_URL"
WEIGHTS_DIR_ENV = "SR_BENCH_WEIGHTS_DIR"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_weights_path(source: str | os.PathLike[str]) -> Path | None:
    """The file ``source`` names when it is a path (None for a registered name); checked up front.

    Raises :class:`MissingWeightsFileError` (a FileNotFoundError) for a path that does not exist.
    """
    if not (isinstance(source, os.PathLike) or _looks_like_path(str(source)) or Path(source).is_file()):
        return None
    path = Path(source).expanduser()
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


def download_urls(spec: WeightsSpec) -> tuple[str, ...]:
    """Where ``spec`` is downloaded from, in order: the mirror ``$SR_BENCH_WEIGHTS_URL`` (base URL
    + official file name; ``file://`` works too), then the official URLs."""
    base = os.environ.get(WEIGHTS_URL_ENV, "").strip()
    mirror = (base.rstrip("/") + "/" + spec.file_name,) if base else ()
    return mirror + spec.urls


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
    return (
        f"cannot download weights {spec.name!r}: {'; '.join(errors)}. "
        f"The official server ({OFFICIAL_BASE_URL}) has been unreachable since 2024 (EDSR-PyTorch issues "
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
) -> tuple[Path, WeightsSpec | None]:
    """Turn ``--weights NAME|PATH`` into a local file.

    A registered name is found, in order, in ``weights_dir`` (default: :func:`current_weights_dir`), in
    the download cache, or downloaded from :func:`download_urls`; every file is hash-checked.

    Returns:
        (path, spec): ``spec`` is the registered :class:`WeightsSpec` when ``source`` is a name.

    Raises:
        MissingWeightsFileError (a FileNotFoundError): a path that does not exist.
        UnknownWeightsError: an unknown name.
        WeightsDownloadError: a name whose file could not be found or downloaded or fails its hash.
    """
    path = check_weights_path(source)
    if path is not None:
        return path, None
    spec = get_weights(str(source))
    folder = Path(weights_dir).expanduser() if weights_dir is not None else current_weights_dir()
    if folder is not None and (found := _from_folder(spec, folder)) is not None:
        return found, spec
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dst = cache / spec.file_name
    if dst.is_file():
        if sha256_file(dst).startswith(spec.sha256_prefix):
            return dst, spec
        log.warning("%s: cached file fails its sha256 check (truncated?); downloading it again", dst)
        dst.unlink()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only home: say where the file can go instead
        raise WeightsDownloadError(
            f"{cache}: cannot create the download cache for {spec.file_name} ({e.strerror or e}); set TORCH_HOME to a "
            f"writable folder, or put the file in a folder passed as --weights-dir DIR"
        ) from None
    errors = [f"{folder / spec.file_name}: no such file"] if folder is not None else []
    for url in download_urls(spec):
        try:
            torch.hub.download_url_to_file(url, str(dst), hash_prefix=spec.sha256_prefix, progress=progress)
            return dst, spec
        except RuntimeError as e:  # torch.hub: "invalid hash value"
            errors.append(f"{url}: {e}")
        except (urllib.error.URLError, OSError, TimeoutError, ValueError) as e:
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
    raise WeightsDownloadError(_offline_help(spec, dst, errors))
