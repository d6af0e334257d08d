"""Reading and writing 8-bit images, with clear errors for what the benchmark cannot use.

Images are numpy uint8 arrays: (H, W) for single-channel files, (H, W, 3) for colour. What
docs/protocol.md#data says about the benchmark data decides the conversions: palette images are expanded
(lossless), an alpha channel that is fully opaque is dropped (lossless), and everything that
would need a lossy choice (real transparency, 16-bit samples, CMYK, bilevel) is refused with a
message naming the file and the fix.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageError",
    "read_image",
    "decode_image",
    "write_image",
    "atomic_write",
    "remove_stale_temps",
    "as_batch",
    "to_tensor",
    "to_image",
    "quantize",
]

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".ppm", ".pgm", ".webp")


class ImageError(ValueError):
    """An image file that cannot be used as it is; the message names the file and the fix."""


def _png_bit_depth(head: bytes) -> int | None:
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">B", head[24:25])[0]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an 8-bit image file to uint8 (H, W) or (H, W, 3)."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise ImageError(
            f"{path}: unknown image extension {path.suffix!r}; sr_bench reads {', '.join(IMAGE_EXTENSIONS)}"
        )
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    return decode_image(path.read_bytes(), path)


def decode_image(data: bytes, path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode the bytes of an 8-bit image file (``path`` only names it in errors)."""
    if (depth := _png_bit_depth(data[:26])) not in (None, 1, 2, 4, 8):
        raise ImageError(
            f"{path}: {depth}-bit PNG; the benchmark protocol is defined on 8-bit images. "
            f"Convert it first, e.g. PIL: Image.fromarray((a / 257).round().astype('uint8'))"
        )
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            im: Image.Image = opened
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                mode = im.mode
            if mode in ("RGBA", "LA", "PA"):
                arr = np.asarray(im)
                if not (arr[..., -1] == 255).all():
                    raise ImageError(
                        f"{path}: has a transparent alpha channel; flatten it onto a background "
                        f"first (e.g. PIL Image.alpha_composite) so the pixels to score are defined"
                    )
                arr = arr[..., :-1]
                return np.ascontiguousarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
            if mode in ("L", "RGB"):
                return np.array(im)
            raise ImageError(
                f"{path}: unsupported image mode {mode!r} (16-bit, CMYK, bilevel or float samples); "
                f"save it as 8-bit RGB or grayscale"
            )
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(
            f"{path}: cannot decode ({e}); the file is corrupt or truncated: download it again "
            f"(the dataset's MANIFEST.tsv has the expected sha256)"
        ) from e


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask can only swap it,
    which would race with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: A temp file of an atomic write is stale (left by a killed writer) when its writer's pid is
#: gone, or when nothing wrote to it for this long: an active writer keeps its mtime fresh, and
#: the age rule also covers pids reused by another process and writers on another host.
STALE_TEMP_SECONDS = 600.0


@functools.lru_cache(maxsize=1)
def _host_tag() -> str:
    """A short tag of this host: a pid only says something about writers on the same host."""
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _temp_writer(tmp_name: str, target: str) -> tuple[str, int] | None | bool:
    """Who wrote temp file ``tmp_name`` of ``target``: (host tag, pid); None for an older
    ``.NAME.RANDOM.tmp`` name; False when it is not a temp file of ``target`` at all (e.g. one of
    ``target.bak``, whose name starts the same)."""
    prefix = f".{target}."
    if not (tmp_name.startswith(prefix) and tmp_name.endswith(".tmp")):
        return False
    middle = tmp_name[len(prefix):-len(".tmp")].split(".")
    if len(middle) == 3 and len(middle[0]) == 8 and middle[1].isdigit():
        return middle[0], int(middle[1])
    if len(middle) == 1 and len(middle[0]) == 8:  # tempfile's random part
        return None
    return False


def _is_stale_temp(tmp: Path, writer: tuple[str, int] | None, now: float) -> bool:
    """Whether ``tmp`` was left by a writer that is no longer writing it."""
    try:
        age = now - tmp.stat().st_mtime
    except OSError:
        return False  # already gone
    if age > STALE_TEMP_SECONDS:
        return True
    if writer is not None and writer[0] == _host_tag():
        return writer[1] != os.getpid() and not _pid_alive(writer[1])
    return False


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files that killed :func:`atomic_write` calls left for ``path`` (same
    target only, and only ones no live writer is using); returns what was removed."""
    path = Path(path)
    now, removed = time.time(), list[Path]()
    try:
        names = [c.name for c in path.parent.iterdir()]
    except OSError:
        return removed
    for name in names:
        writer = _temp_writer(name, path.name)
        if writer is not False and _is_stale_temp(path.parent / name, writer, now):  # type: ignore[arg-type]
            (path.parent / name).unlink(missing_ok=True)
            removed.append(path.parent / name)
    return removed


class OutputIsFolderError(IsADirectoryError):
    """An output path that cannot be a file (it is a folder, or its parent is a file): a usage
    error for ``sr_bench.cli`` (one line, exit 2; this module does not import cli)."""

    exit_code = 2

    def __str__(self) -> str:
        return str(self.args[0])


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` and rename the result onto ``path``: readers never see a partial file.

    The temp file's name holds this host and pid (``.NAME.HOST.PID.RANDOM.tmp``), so that the
    next write of the same target can delete what a killed writer left (see
    :func:`remove_stale_temps`): a training checkpoint with Adam state is hundreds of MB."""
    path = Path(path)
    if path.is_dir():
        raise OutputIsFolderError(f"{path}: is a folder; pass the path of a file to write (inside it, or a new name)")
    if path.parent.exists() and not path.parent.is_dir():
        raise OutputIsFolderError(f"{path.parent}: is a file, not a folder; {path} cannot be written there")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host_tag()}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_image(path: str | os.PathLike, image: np.ndarray, compress_level: int = 6) -> Path:
    """Write a uint8 (H, W) or (H, W, 3) array atomically; the format follows the extension."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise ImageError(f"{path}: can only write uint8 (H, W) or (H, W, 3) arrays, got {image.dtype} {image.shape}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown image extension {Path(path).suffix!r}")
    opts = {"compress_level": compress_level} if fmt == "PNG" else {}
    return atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format=fmt, **opts))


def as_batch(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """An image as a (1, C, H, W) tensor of the same dtype (no copy for numpy input):
    numpy (H, W) / (H, W, C), or torch (H, W) / (C, H, W) / (1, C, H, W)."""
    if isinstance(image, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(image))
        return t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    if image.ndim == 2:
        return image[None, None]
    return image[None] if image.ndim == 3 else image


def to_tensor(
    image: np.ndarray, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 (H, W) or (H, W, C) -> float (1, C, H, W) in 0..1."""
    return as_batch(image).to(device=device, dtype=dtype).div_(255.0)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Float 0..1 model output -> uint8 values (clip to 0..255, round half up), as every protocol
    does before any metric."""
    return (x.detach().float() * 255.0).clamp_(0.0, 255.0).add_(0.5).floor_().to(torch.uint8)


def to_image(x: torch.Tensor) -> np.ndarray:
    """Float (1, C, H, W) or (C, H, W) in 0..1 -> uint8 (H, W, C) / (H, W) numpy, quantised."""
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"to_image: expected one image, got a batch of {x.shape[0]}")
        x = x[0]
    q = quantize(x).cpu()
    return q[0].numpy() if q.shape[0] == 1 else q.permute(1, 2, 0).contiguous().numpy()
