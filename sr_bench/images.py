"""Reading and writing 8-bit images, with clear errors for what the benchmark cannot use.

Images are numpy uint8 arrays: (H, W) for single-channel files, (H, W, 3) for colour. What
docs/protocol.md#data says about the benchmark data decides the conversions: palette images are expanded
(lossless), an alpha channel that is fully opaque is dropped (lossless), and everything that
would need a lossy choice (real transparency, 16-bit samples, CMYK, bilevel) is refused with a
message naming the file and the fix.

Every decode here also

- applies the file's EXIF orientation tag, as image viewers (and OpenCV's ``imread``) do, so a
  phone photo stored sideways is the picture its owner sees, and an HR image, its LR image and
  an SR output are all read the same way (docs/inputs.md);
- refuses an image above :func:`max_pixels` pixels from its header, before decoding it (a
  PNG of 30000x30000 pixels fits in under 1 MB and would take 2.7 GB decoded);
- refuses a file of several frames (an animated PNG, GIF or WebP, a multi-page TIFF), whose
  first frame alone would be scored without a word;
- reads only regular files: a FIFO named ``a.png`` would block the read forever.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import os
import socket
import stat
import struct
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from sr_bench.errors import StorageError, UsageError, storage_error

__all__ = [
    "IMAGE_EXTENSIONS",
    "UNREAD_IMAGE_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "ImageError",
    "ImageHeader",
    "ImageTooLarge",
    "ORIENTATIONS",
    "read_image",
    "read_image_bytes",
    "read_oriented",
    "read_header",
    "decode_image",
    "decode_oriented",
    "max_pixels",
    "set_max_pixels",
    "file_kind_problem",
    "open_temp_beside",
    "file_problem",
    "write_image",
    "atomic_write",
    "check_writable",
    "remove_stale_temps",
    "as_batch",
    "to_tensor",
    "to_image",
    "quantize",
]

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".ppm", ".pgm", ".webp")
#: extensions of image formats sr_bench does not read: a folder of images holding one is refused
#: by name (skipping it would score a set that silently lacks an image)
UNREAD_IMAGE_EXTENSIONS = (
    ".gif", ".apng", ".avif", ".heic", ".heif", ".jxl", ".jp2", ".j2k", ".jpx", ".jpe", ".jfif", ".ico", ".tga",
    ".psd", ".pbm", ".pnm", ".pcx", ".qoi", ".exr", ".hdr", ".dng", ".cr2", ".nef", ".arw", ".raw", ".svg",
)

#: The most pixels an image may have unless raised: PIL's own refusal threshold (twice its
#: ``Image.MAX_IMAGE_PIXELS`` as shipped), about 13,400 x 13,400. The largest benchmark image
#: (DIV2K, 2040x1356) is 65 times smaller; an image this large is already 537 MB decoded as RGB,
#: and a 30000x30000 PNG bomb (875 KB on disk, 2.7 GB decoded) is refused.
DEFAULT_MAX_PIXELS = 178_956_970
#: the environment variable that raises (or lowers) the limit for every command
MAX_PIXELS_ENV = "SR_BENCH_MAX_PIXELS"

#: EXIF orientation tag values and what applying them does (as viewers show the image)
ORIENTATIONS = {
    1: "none", 2: "mirror left-right", 3: "rotate 180", 4: "mirror top-bottom", 5: "transpose",
    6: "rotate 90 clockwise", 7: "transverse", 8: "rotate 90 counter-clockwise",
}

#: formats whose extra frames are an animation or more pages; an MPO (a phone's JPEG with a
#: preview or depth frame) is read as its first, primary picture, as viewers show it
_MULTI_FRAME_FORMATS = ("PNG", "GIF", "WEBP", "TIFF")

_EXIF_ORIENTATION = 0x0112


class ImageError(ValueError):
    """An image file that cannot be used as it is; the message names the file and the fix."""


class ImageTooLarge(ImageError):
    """An image whose header declares more pixels than :func:`max_pixels` allows."""


_max_pixels_option: int | None = None


def set_max_pixels(limit: int | None) -> None:
    """The pixel limit a command's ``--max-pixels`` option sets for this process (None: the
    environment's ``SR_BENCH_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`)."""
    global _max_pixels_option
    if limit is not None and limit < 1:
        raise UsageError(f"--max-pixels {limit}: must be at least 1")
    _max_pixels_option = limit


def max_pixels() -> int:
    """The most pixels (width x height) an image may have to be decoded."""
    if _max_pixels_option is not None:
        return _max_pixels_option
    text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r}: expected a whole number of pixels, "
                         f"e.g. {MAX_PIXELS_ENV}=400000000")
    return value


def file_kind_problem(path: str | os.PathLike, what: str, missing: str = "does not exist",
                      other_kind: str | None = None) -> str | None:
    """Why ``path`` cannot be read as ``what`` ("a records file"): missing (``missing``, or a
    dangling symlink), a symlink loop, a folder, a FIFO (reading would block for ever), a socket or
    a device (``/dev/zero`` never ends), said as "is a FIFO, not ``other_kind``" (default
    ``what``); None for a regular file (symlinks followed)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"is a symlink to {os.readlink(os.fspath(path))}, which does not exist"
        return missing
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            return "cannot be there: a part of its path is a file, not a folder"
        return "is a symlink loop (it leads back to itself)" if e.errno == errno.ELOOP else \
            f"cannot be read ({e.strerror or e})"
    if stat.S_ISDIR(st.st_mode):
        return f"is a folder, not {what}"
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        return f"is {kind}, not {other_kind or what}"
    return None


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as an image file, or None for a regular file."""
    return file_kind_problem(path, "an image file", missing="no such file", other_kind="a regular file")


def _png_bit_depth(head: bytes) -> int | None:
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">B", head[24:25])[0]


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, as sr_bench decodes it: the size after its EXIF orientation."""

    width: int
    height: int
    mode: str
    #: PNG bit depth (None for other formats)
    bit_depth: int | None
    orientation: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


#: PIL's own pixel check is switched off while sr_bench opens a file (sr_bench checks its own
#: limit, which the user can raise past PIL's); one lock so threads never see it half-restored
_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _open(source: str | os.PathLike | io.BytesIO, path: str | os.PathLike) -> Iterator[Image.Image]:
    """The image opened lazily (header only), checked against the pixel limit and for frames."""
    with _PIL_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(source)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    with im:
        w, h = im.size
        limit = max_pixels()
        if w * h > limit:
            raise ImageTooLarge(
                f"{path}: {w}x{h} is {w * h:,} pixels, above the limit of {limit:,} (a decompression bomb, or a "
                f"very large image); to read it, raise the limit: {MAX_PIXELS_ENV}={w * h} or --max-pixels {w * h}"
            )
        frames = getattr(im, "n_frames", 1) if im.format in _MULTI_FRAME_FORMATS else 1
        if frames > 1:
            raise ImageError(
                f"{path}: has {frames} frames (an animation or a multi-page file); sr_bench reads single images: "
                f"save the frame you mean as its own PNG"
            )
        yield im


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1..8) of an opened, not yet loaded image; 1 when it has none or its
    EXIF block cannot be parsed (viewers then show the stored pixels too)."""
    try:
        with warnings.catch_warnings():  # PIL warns "Corrupt EXIF data" on stderr
            warnings.simplefilter("ignore")
            if "exif" in im.info:
                exif = Image.Exif()
                exif.load(im.info["exif"])
            elif im.format == "TIFF":
                exif = im.getexif()
            else:
                return 1
            value = int(exif.get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block only loses the tag, as in viewers
        return 1
    return value if value in ORIENTATIONS else 1


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to (H, W[, C]) pixels, as ``PIL.ImageOps.exif_transpose`` does."""
    t = arr.swapaxes(0, 1)
    out = {
        2: arr[:, ::-1], 3: arr[::-1, ::-1], 4: arr[::-1], 5: t, 6: t[:, ::-1], 7: t[::-1, ::-1], 8: t[::-1],
    }.get(orientation, arr)
    return np.ascontiguousarray(out)


def _header_of(im: Image.Image, head: bytes) -> ImageHeader:
    w, h = im.size
    orientation = _orientation(im)
    if orientation >= 5:
        w, h = h, w
    return ImageHeader(w, h, im.mode, _png_bit_depth(head), orientation)


def _cannot_decode(path: str | os.PathLike, e: BaseException, size: int) -> ImageError:
    why = "the file is empty" if size == 0 else (
        "not an image format sr_bench can read" if isinstance(e, UnidentifiedImageError) else str(e))
    return ImageError(
        f"{path}: cannot decode ({why}); the file is corrupt or truncated: download it again "
        f"(the dataset's MANIFEST.tsv has the expected sha256)"
    )


#: what PIL raises for a file it cannot parse (struct.error and EOFError from cut headers)
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)


def read_header(path: str | os.PathLike) -> ImageHeader:
    """Size (after EXIF orientation), mode and PNG bit depth of an image file, from its header
    alone; checks the pixel limit and the frame count as decoding would."""
    if (why := file_problem(path)) is not None:
        raise ImageError(f"{path}: {why}")
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror or e}); check its permissions or restore it") from e
    try:
        with _open(path, path) as im:
            return _header_of(im, head)
    except (ImageError, UsageError):  # UsageError: a bad SR_BENCH_MAX_PIXELS (both are ValueErrors)
        raise
    except _DECODE_ERRORS as e:
        raise _cannot_decode(path, e, len(head)) from e


#: bytes a file may hold beyond 8 per pixel of the pixel limit (metadata, ICC profiles, thumbnails)
_FILE_SLACK = 64 << 20


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of an image file, read once (hash and decode these same bytes): refused by name
    when it is not a regular file (a FIFO would block forever, ``/dev/zero`` never end) or is
    larger than any image within the pixel limit could be (8 bytes a pixel, plus 64 MiB)."""
    if (why := file_problem(path)) is not None:
        raise ImageError(f"{path}: {why}")
    try:
        with open(path, "rb") as f:
            size, limit = os.fstat(f.fileno()).st_size, 8 * max_pixels() + _FILE_SLACK
            if size > limit:
                raise ImageTooLarge(
                    f"{path}: is {size:,} bytes, more than an image of at most {max_pixels():,} pixels can take "
                    f"({limit:,}); not an image sr_bench should read? (raise {MAX_PIXELS_ENV} if it is one)"
                )
            return f.read()
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror or e}); check its permissions or restore it") from e


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an 8-bit image file to uint8 (H, W) or (H, W, 3), its EXIF orientation applied."""
    return read_oriented(path)[0]


def read_oriented(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """:func:`read_image`, and the EXIF orientation it applied (1: none; see :data:`ORIENTATIONS`)."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise ImageError(
            f"{path}: unknown image extension {path.suffix!r}; sr_bench reads {', '.join(IMAGE_EXTENSIONS)}"
        )
    return decode_oriented(read_image_bytes(path), path)


def decode_image(data: bytes, path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode the bytes of an 8-bit image file (``path`` only names it in errors), its EXIF
    orientation applied."""
    return decode_oriented(data, path)[0]


def decode_oriented(data: bytes, path: str | os.PathLike = "<bytes>") -> tuple[np.ndarray, int]:
    """:func:`decode_image`, and the EXIF orientation it applied (1: none)."""
    if (depth := _png_bit_depth(data[:26])) not in (None, 1, 2, 4, 8):
        raise ImageError(
            f"{path}: {depth}-bit PNG; the benchmark protocol is defined on 8-bit images. "
            f"Convert it first, e.g. PIL: Image.fromarray((a / 257).round().astype('uint8'))"
        )
    try:
        with _open(io.BytesIO(data), path) as opened:
            orientation = _orientation(opened)
            opened.load()
            if opened.format == "PNG" and _may_lack_rows(opened):
                _check_png_data(data, path)
            # PIL applies a TIFF's orientation itself while loading (and drops the tag): only a
            # tag still there after loading is sr_bench's to apply
            pending = orientation if _orientation(opened) == orientation else 1
            arr = _pixels(opened, path)
    except (ImageError, UsageError):  # UsageError: a bad SR_BENCH_MAX_PIXELS (both are ValueErrors)
        raise
    except _DECODE_ERRORS as e:
        raise _cannot_decode(path, e, len(data)) from e
    return _orient(arr, pending), orientation


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_data_size(ihdr: bytes) -> int:
    """Bytes of filtered scanlines a PNG with this IHDR holds (every Adam7 pass when interlaced)."""
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr[:13])
    bits = depth * _PNG_CHANNELS.get(colour, 1)
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        cols, rows = max(0, -(-(w - x0) // dx)), max(0, -(-(h - y0) // dy))
        total += rows * (1 + -(-cols * bits // 8)) if cols and rows else 0
    return total


def _may_lack_rows(im: Image.Image) -> bool:
    """Whether a loaded PNG could be one whose data ended early. PIL's decoder writes whole rows
    only, into zeroed memory, so a sequential PNG that lost rows ends with an all-zero row: any
    other last row proves it complete without inflating the data a second time. Interlaced
    files spread their rows over seven passes and are always checked."""
    if im.info.get("interlace"):
        return True
    w, h = im.size
    return not np.asarray(im.crop((0, h - 1, w, h))).any()


def _check_png_data(data: bytes, path: str | os.PathLike) -> None:
    """Refuse a PNG whose image data ends before its last row: PIL fills the missing rows with
    zeros without a word when the zlib stream itself is complete (only a cut file is caught)."""
    view, pos, want, inflate, got = memoryview(data), 8, None, zlib.decompressobj(), 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I", view[pos:pos + 4])[0], bytes(view[pos + 4:pos + 8])
        if kind == b"IHDR":
            want = _png_data_size(bytes(view[pos + 8:pos + 21]))
        elif kind == b"IDAT":
            piece: memoryview | bytes = view[pos + 8:pos + 8 + length]
            while piece and not inflate.eof:  # bounded pieces: a bomb never inflates at once
                got += len(inflate.decompress(piece, 1 << 22))
                piece = inflate.unconsumed_tail
        elif kind in (b"IEND", b"fdAT"):
            break
        pos += 12 + length
    if want is not None and got < want:
        raise ImageError(
            f"{path}: cannot decode (its image data ends after {got:,} of the {want:,} bytes its header declares: "
            f"truncated); the file is corrupt or truncated: download it again "
            f"(the dataset's MANIFEST.tsv has the expected sha256)"
        )


def _pixels(im: Image.Image, path: str | os.PathLike) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) pixels of a loaded image, or the reason it is refused."""
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
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


#: a target name longer than this gets a shortened temp name (a file name may have 255 bytes,
#: and the temp file's adds about 30 to the target's)
_LONG_NAME = 200


def _temp_prefix(name: str) -> str:
    """How the temp files of target ``name`` start: ``.NAME.``, or for a long name its start and
    a hash of the whole (``.START~HASH.``), so the temp's name stays within the 255-byte limit."""
    if len(os.fsencode(name)) <= _LONG_NAME:
        return f".{name}."
    start = name[:120] if name.isascii() else name[:40]  # at most 4 bytes a character
    return f".{start}~{hashlib.sha1(os.fsencode(name)).hexdigest()[:8]}."


def _temp_writer(tmp_name: str, target: str) -> tuple[str, int] | None | bool:
    """Who wrote temp file ``tmp_name`` of ``target``: (host tag, pid); None for an older
    ``.NAME.RANDOM.tmp`` name; False when it is not a temp file of ``target`` at all (e.g. one of
    ``target.bak``, whose name starts the same)."""
    prefix = _temp_prefix(target)
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


def _refuse_non_file(path: Path) -> None:
    if path.is_dir():
        raise OutputIsFolderError(f"{path}: is a folder; pass the path of a file to write (inside it, or a new name)")
    if path.parent.exists() and not path.parent.is_dir():
        raise OutputIsFolderError(f"{path.parent}: is a file, not a folder; {path} cannot be written there")


def _mkstemp_beside(path: Path) -> tuple[int, Path]:
    fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(path.name)}{_host_tag()}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    return fd, Path(tmp)


def open_temp_beside(path: Path) -> tuple[int, Path]:
    """An open temp file (fd, path) in ``path``'s folder, made if needed, named
    ``.NAME.HOST.PID.RANDOM.tmp`` after removing what killed writers of ``path`` left there;
    :class:`OutputIsFolderError` when ``path`` cannot be a file. Disk errors are raised as they come."""
    _refuse_non_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    return _mkstemp_beside(path)


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` and rename the result onto ``path``: readers never see a partial file.

    The temp file's name holds this host and pid (``.NAME.HOST.PID.RANDOM.tmp``), so that the
    next write of the same target can delete what a killed writer left (see
    :func:`remove_stale_temps`): a training checkpoint with Adam state is hundreds of MB.
    A full disk, a read-only folder, a quota or a name too long is one :class:`StorageError`
    line naming ``path`` and the errno, and the file at ``path`` stays as it was."""
    path = Path(path)
    try:
        fd, tmp = open_temp_beside(path)
    except OSError as e:
        raise _write_error(path, e) from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


#: the longest file name most file systems take (bytes)
NAME_MAX = 255


def check_writable(path: str | os.PathLike) -> Path:
    """Fail now, with the one line :func:`atomic_write` would give, when ``path`` could not be
    written later (a read-only or full disk, no permission, a name too long): a command that
    computes for minutes checks its output first. Leaves nothing behind (folders it had to make
    for the probe are removed again)."""
    path = Path(path)
    if len(os.fsencode(path.name)) > NAME_MAX:
        raise storage_error(path, OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG)), "write")
    _refuse_non_file(path)
    made = []
    folder = path.parent
    while not folder.exists() and folder.parent != folder:
        made.append(folder)
        folder = folder.parent
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _mkstemp_beside(path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise _write_error(path, e) from None
    finally:
        for new in made:
            with contextlib.suppress(OSError):
                new.rmdir()
    return path


def _write_error(path: Path, e: OSError) -> OSError:
    """A failed write as one line (a :class:`StorageError`), unless it says nothing about the
    file system (PIL's "cannot write mode" is an OSError without an errno) or already is one."""
    if isinstance(e, StorageError | IsADirectoryError) or e.errno is None:
        return e
    return storage_error(path, e, "write")


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
