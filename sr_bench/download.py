"""Getting files from the network and unpacking archives, safely and with a bound on every wait.

This module owns the transfer and the archive formats; it knows nothing of datasets or weights.
Its callers say what to fetch (a list of URLs, tried in order: a mirror first), where to put it,
the hash it must have and the name of their mirror variable (``SR_BENCH_DATA_URL``,
``SR_BENCH_WEIGHTS_URL``), and get back a verified file or one ``DownloadError`` line naming each
URL, what went wrong there and what to do.

* :func:`fetch`: one file. pooch (``pooch.retrieve``) runs the download into a temporary file
  beside the destination, checks the ``md5:``/``sha256:`` hash and moves the file into place, so no
  half file ever carries the final name. pooch's own HTTP downloader has no resume, checks no
  length and only retries through ``Pooch.fetch``; :class:`ResumingDownloader`, a downloader
  callable that pooch accepts, adds what is missing: a connect and a read timeout on every network
  wait, an HTTP ``Range`` request that resumes ``<dest>.part`` (with ``If-Range``, so a file that
  changed on the server is fetched whole again), a length check (a cut connection is "truncated:
  got X of Y bytes", never a file), a tqdm progress bar, and the hash check before pooch sees the
  file (so a sha256 *prefix*, as checkpoint names carry, works too). :func:`fetch` retries
  timeouts, cuts and 5xx answers a bounded number of times (each retry resumes), then moves to
  the next URL.
* :func:`extract`: zip and tar archives. Every entry is checked before anything is written: an
  absolute path, a ``..`` component, a symbolic or hard link, a device node or fifo is refused
  with one line naming the archive and the entry; the declared sizes are bounded and compared
  with the free disk space. Entries are written into a temporary folder inside the target, then
  renamed into place, so a refused or broken archive leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal
from urllib.parse import urlparse
from urllib.request import url2pathname

from sr_bench.errors import DataError

__all__ = [
    "DownloadError", "Fetched", "KnownHash", "ResumingDownloader", "Timeout", "UnsafeArchiveError",
    "extract", "fetch", "file_digest", "mirror_urls", "part_path",
]

log = logging.getLogger("sr_bench.download")

CHUNK = 1 << 20
MAX_UNPACKED_BYTES = 64 << 30  # DIV2K's largest archive unpacks to 3.5 GB; a zip bomb claims far more
_HASH_LENGTH = {"sha256": 64, "md5": 32}


class DownloadError(DataError):
    """A file that could not be fetched from any of its URLs (one line: each URL and why, and what to do).

    ``failures`` holds the "URL: why" parts alone, for callers that give advice of their own."""

    failures: tuple[str, ...] = ()


class UnsafeArchiveError(DataError):
    """An archive entry that would write outside the target folder or make a link or device."""


@dataclass(frozen=True)
class Timeout:
    """Seconds to wait for a connection, and for the next bytes of an answer (not a limit on the
    whole transfer: a large file on a slow link takes as long as it takes while bytes arrive)."""

    connect: float = 10.0
    read: float = 60.0


@dataclass(frozen=True)
class KnownHash:
    """The hash a file must have. ``sha256`` may be a prefix of at least 8 hex digits (checkpoint
    file names carry one, as torch.hub does); md5 is accepted where a project publishes only md5."""

    algorithm: Literal["sha256", "md5"]
    hexdigest: str

    @classmethod
    def parse(cls, text: str) -> KnownHash:
        """``sha256:HEX``, ``md5:HEX`` (pooch's spelling) or bare hex (64 digits: sha256)."""
        algorithm, _, digest = text.strip().lower().rpartition(":")
        algorithm = algorithm or ("md5" if len(digest) == 32 else "sha256")
        if algorithm not in _HASH_LENGTH or not re.fullmatch(r"[0-9a-f]{8,64}", digest):
            raise ValueError(f"hash {text!r}: expected sha256:<64 hex digits>, md5:<32 hex digits> or a sha256 prefix")
        if algorithm == "md5" and len(digest) != 32 or len(digest) > _HASH_LENGTH[algorithm]:
            raise ValueError(f"hash {text!r}: a {algorithm} has {_HASH_LENGTH[algorithm]} hex digits")
        return cls(algorithm, digest)  # type: ignore[arg-type]

    @property
    def is_full(self) -> bool:
        return len(self.hexdigest) == _HASH_LENGTH[self.algorithm]

    def matches(self, digest: str) -> bool:
        return digest.lower().startswith(self.hexdigest) if not self.is_full else digest.lower() == self.hexdigest

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


@dataclass(frozen=True)
class Fetched:
    """A verified local file: its sha256, the URL it came from ("" when it was already there) and
    the hash it was checked against (None when none was known)."""

    path: Path
    sha256: str
    url: str
    checked: KnownHash | None


def mirror_urls(file_name: str, mirror_env: str, official: Sequence[str]) -> tuple[str, ...]:
    """The mirror ``$<mirror_env>/<file_name>`` (when the variable is set) before the official URLs."""
    base = os.environ.get(mirror_env, "").strip()
    return ((base.rstrip("/") + "/" + file_name,) if base else ()) + tuple(official)


def part_path(dest: Path) -> Path:
    """Where the bytes received so far are kept between tries and runs: ``<dest>.part``."""
    return dest.with_name(dest.name + ".part")


def _state_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json")  # the URL and validators the .part came from


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# One transfer


class _Retry(Exception):
    """A failure another try at the same URL may fix: a timeout, a cut connection, a 5xx answer."""


class _NextURL(Exception):
    """A failure another try at this URL will not fix: 404, a wrong hash, an unusable URL."""


def _size(n: float) -> str:
    """Bytes for people: 512 bytes, 4.2 MB, 3.5 GB (powers of 1000, as disks and browsers count)."""
    scaled = [(n / 1000**k, unit) for k, unit in ((3, "GB"), (2, "MB"), (1, "KB")) if n >= 1000**k]
    return f"{scaled[0][0]:.1f} {scaled[0][1]}" if scaled else f"{n:.0f} bytes"


class ResumingDownloader:
    """A pooch downloader (``downloader(url, output_file, pooch)``) for http(s):// and file://.

    It writes ``<dest>.part`` (resumed with a ``Range`` request when the server allows it), checks
    the length and the hash, and only then moves the part onto pooch's ``output_file``. A failure
    raises a private exception whose text is the reason, for :func:`fetch` to decide: try again
    (the part is kept) or move on to the next URL (a part with the wrong content is deleted)."""

    def __init__(self, dest: Path, known: KnownHash | None, timeout: Timeout, progress: bool) -> None:
        self.dest, self.known, self.timeout, self.progress = dest, known, timeout, progress
        self.part, self.state = part_path(dest), _state_path(dest)
        self.sha256 = ""
        self.web_page = False  # the server answered with text/html: a login or error page, not the file
        self._hashes: dict[str, Any] = {}

    def __call__(self, url: str, output_file: str, pooch: object) -> None:
        scheme = urlparse(url).scheme
        if scheme == "file":
            self._copy_local(url)
        elif scheme in ("http", "https"):
            self._http(url)
        else:
            raise _NextURL(f"unsupported URL scheme {scheme!r}; use http://, https:// or file://")
        self._verify()
        os.replace(self.part, output_file)
        self.state.unlink(missing_ok=True)

    # ---- hashes, computed while the bytes arrive (plus one read of a resumed part) ----

    def _start_hashes(self, resumed: int) -> None:
        names = {"sha256"} | ({self.known.algorithm} if self.known else set())
        self._hashes = {name: hashlib.new(name) for name in names}
        if resumed:
            with open(self.part, "rb") as f:
                while block := f.read(CHUNK):
                    self._update(block)

    def _update(self, block: bytes) -> None:
        for h in self._hashes.values():
            h.update(block)

    def _verify(self) -> None:
        self.sha256 = self._hashes["sha256"].hexdigest()
        if self.known is None:
            return
        got = self._hashes[self.known.algorithm].hexdigest()
        if not self.known.matches(got):
            self.part.unlink(missing_ok=True)  # complete but wrong: never resume it
            self.state.unlink(missing_ok=True)
            page = "; the server sent a web page (text/html), not the file" if self.web_page else ""
            raise _NextURL(f"{self.known.algorithm} mismatch: got {got}, expected {self.known.hexdigest}{page}")

    # ---- file:// (a mirror on disk or a network share) ----

    def _copy_local(self, url: str) -> None:
        source = Path(url2pathname(urlparse(url).path))
        if not source.is_file():
            raise _NextURL(f"{source}: no such file")
        self._start_hashes(0)
        with open(source, "rb") as src, open(self.part, "wb") as dst, self._bar(source.stat().st_size, 0) as bar:
            while block := src.read(CHUNK):
                dst.write(block)
                self._update(block)
                bar.update(len(block))

    # ---- http(s):// ----

    def _resume_from(self, url: str) -> tuple[int, dict[str, str]]:
        """Bytes of the part to keep, and the headers that ask for the rest."""
        if not self.part.is_file():
            return 0, {}
        try:
            state = json.loads(self.state.read_text())
        except (OSError, ValueError):
            state = {}
        validator = state.get("etag") or state.get("last_modified") or ""
        # without a validator, only a known hash can tell a spliced file
        if state.get("url") != url or not (validator or (self.known and self.known.is_full)):
            return 0, {}
        offset = self.part.stat().st_size
        return offset, {"Range": f"bytes={offset}-", **({"If-Range": validator} if validator else {})}

    def _http(self, url: str) -> None:
        import requests

        offset, headers = self._resume_from(url)
        try:  # identity: byte offsets and Content-Length must count the bytes written to disk
            response = requests.get(url, headers={"Accept-Encoding": "identity", **headers}, stream=True,
                                    timeout=(self.timeout.connect, self.timeout.read))
        except requests.exceptions.ConnectTimeout:
            raise _Retry(f"no connection within {self.timeout.connect:g} s (connect timeout)") from None
        except requests.exceptions.ReadTimeout:
            raise _Retry(f"connected, but no answer within {self.timeout.read:g} s (read timeout)") from None
        except requests.exceptions.ConnectionError as e:
            raise _Retry(f"cannot connect ({_reason(e)})") from None
        except requests.exceptions.RequestException as e:
            raise _NextURL(f"bad URL ({e})") from None
        with response:
            offset, total = self._accept(url, response, offset)
            self._stream(response, offset, total)

    def _accept(self, url: str, response: Any, offset: int) -> tuple[int, int | None]:
        """Check the status; returns where the body starts in the file, and the file's length."""
        status, reason = response.status_code, response.reason or ""
        if status == 206:
            match = re.fullmatch(r"bytes (\d+)-\d+/(\d+)", response.headers.get("Content-Range", "").strip())
            if match is None or int(match.group(1)) != offset:
                self.part.unlink(missing_ok=True)
                raise _Retry(f"the server resumed at an unexpected byte ({response.headers.get('Content-Range')!r})")
            total: int | None = int(match.group(2))
        elif status == 200:
            if offset:
                log.info("%s: the server sent the whole file, not the bytes after %d; starting over", url, offset)
            offset = 0
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
        elif status == 416:  # our part is no prefix of the file on the server (or already all of it)
            self.part.unlink(missing_ok=True)
            raise _Retry("the server refused to resume (HTTP 416); starting over")
        elif status in (408, 429) or status >= 500:
            raise _Retry(f"HTTP {status} {reason}".strip())
        else:
            raise _NextURL(f"HTTP {status} {reason}".strip())
        self.web_page = response.headers.get("Content-Type", "").lower().startswith("text/html")
        self._start_hashes(offset)
        validators = {"etag": response.headers.get("ETag", ""), "last_modified": response.headers.get("Last-Modified")}
        if validators["etag"].startswith("W/"):  # a weak ETag cannot guard a byte range
            validators["etag"] = ""
        self.state.write_text(json.dumps({"url": url, "total": total, **validators}))
        return offset, total

    def _stream(self, response: Any, offset: int, total: int | None) -> None:
        import requests
        import urllib3

        received = offset
        with open(self.part, "ab" if offset else "wb") as f, self._bar(total, offset) as bar:
            try:
                for block in _blocks(response):
                    f.write(block)
                    self._update(block)
                    received += len(block)
                    bar.update(len(block))
            except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as e:
                got = f"got {received} of {total} bytes" if total is not None else f"got {received} bytes"
                if _is_read_timeout(e):
                    raise _Retry(f"stalled: no data for {self.timeout.read:g} s (read timeout), {got}") from None
                raise _Retry(f"connection cut ({_reason(e)}), {got}") from None
        if total is not None and received < total:
            raise _Retry(f"truncated: got {received} of {total} bytes")

    def _bar(self, total: int | None, initial: int) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=self.dest.name, disable=not self.progress, leave=False)


def _blocks(response: Any) -> Iterator[bytes]:
    """The body as it arrives. urllib3's ``read1`` (2.1 and later) returns what has come so far, so a
    cut loses nothing already received; ``iter_content`` would drop a partly filled chunk."""
    raw = response.raw
    if hasattr(raw, "read1"):
        while block := raw.read1(CHUNK):
            yield block
    else:
        yield from response.iter_content(CHUNK)


def _is_read_timeout(e: Exception) -> bool:
    import requests
    from urllib3.exceptions import ReadTimeoutError

    return isinstance(e, (requests.exceptions.ReadTimeout, ReadTimeoutError)) or any(
        isinstance(a, ReadTimeoutError) for a in e.args)


def _reason(e: Exception) -> str:
    """The innermost reason of a requests / urllib3 error, without the pool and object reprs."""
    text = str(e.args[0] if e.args else e)
    for pattern in (r"\[Errno -?\d+\] ([^'\")]+)", r"\('Connection broken: ([^']+)'", r"(Connection refused)"):
        if m := re.search(pattern, text):
            return m.group(1).strip().rstrip(",")
    return text if len(text) < 120 else text[:117] + "..."


# --------------------------------------------------------------------------------------------
# Tries, URLs, the file already there


@contextmanager
def _quiet_pooch() -> Iterator[None]:
    """pooch logs each download (and the sha256 it computes) to stderr at INFO; sr_bench logs its own."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _already_there(dest: Path, known: KnownHash | None) -> Fetched | None:
    """A file already at ``dest`` (left by an earlier run or put there by hand), if it is right."""
    if not dest.is_file():
        return None
    if known is None:
        log.info("%s: already here (no hash known to check it against)", dest)
        return Fetched(dest, file_digest(dest), "", None)
    got = file_digest(dest, known.algorithm)
    if known.matches(got):
        return Fetched(dest, got if known.algorithm == "sha256" else file_digest(dest), "", known)
    log.warning("%s: %s %s is not the expected %s; downloading it again", dest, known.algorithm, got, known.hexdigest)
    dest.unlink()
    return None


def _kept_for(dest: Path, url: str) -> int:
    """Bytes of ``<dest>.part`` that the next try at ``url`` resumes from (0: it starts over)."""
    try:
        same = json.loads(_state_path(dest).read_text()).get("url") == url
        return part_path(dest).stat().st_size if same else 0
    except (OSError, ValueError):
        return 0


def _try_url(url: str, dest: Path, known: KnownHash | None, timeout: Timeout, retries: int, progress: bool,
             backoff: float) -> Fetched | str:
    """The file from one URL, or why not (after ``1 + retries`` tries for failures worth retrying)."""
    import pooch

    downloader = ResumingDownloader(dest, known, timeout, progress)
    pooch_hash = str(known) if known is not None and known.is_full else None
    why = ""
    for attempt in range(1 + retries):
        try:
            log.info("downloading %s", url)
            with _quiet_pooch():
                pooch.retrieve(url, known_hash=pooch_hash, fname=dest.name, path=dest.parent, downloader=downloader)
            return Fetched(dest, downloader.sha256, url, known)
        except _NextURL as e:
            return str(e)
        except _Retry as e:
            why = str(e)
            if attempt < retries:
                kept = _kept_for(dest, url)
                log.warning("%s: %s; trying again (%d of %d)%s", url, why, attempt + 2, retries + 1,
                            f", resuming after {_size(kept)}" if kept else "")
                time.sleep(min(backoff * 2**attempt, 30.0))
        except ValueError as e:  # pooch's own hash check: only reached if it disagrees with ours
            return f"pooch refused the file ({e})"
    return why + (f" ({retries + 1} tries)" if retries else "")


def fetch(
    urls: str | Sequence[str],
    dest: str | os.PathLike[str],
    *,
    known_hash: str | None = None,
    mirror_env: str | None = None,
    timeout: Timeout = Timeout(),
    retries: int = 2,
    progress: bool = True,
    backoff: float = 1.0,
) -> Fetched:
    """Put the file at ``dest``, verified, from the first of ``urls`` that serves it.

    A file already at ``dest`` is kept when it has ``known_hash`` (else fetched again).
    ``known_hash``: ``sha256:HEX`` / ``md5:HEX`` / a sha256 prefix (:class:`KnownHash`); None when
    no hash is published (then :attr:`Fetched.sha256` is the one to record). ``retries``: extra
    tries per URL after a timeout, a cut or a 5xx answer, each resuming ``<dest>.part`` after
    ``backoff * 2**i`` seconds. ``mirror_env``: the variable that names a mirror, for the advice.

    Raises:
        DownloadError: no URL served the right file; one line with every URL's reason and the fix.
    """
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise ValueError("fetch: no URL given")
    known = KnownHash.parse(known_hash) if known_hash else None
    path = Path(dest)
    failures = []
    try:
        if (found := _already_there(path, known)) is not None:
            return found
        path.parent.mkdir(parents=True, exist_ok=True)
        for url in url_list:
            result = _try_url(url, path, known, timeout, retries, progress, backoff)
            if isinstance(result, Fetched):
                return result
            failures.append(f"{url}: {result}")
    except OSError as e:  # our side: a full disk, a read-only folder (no other URL would help)
        where = e.filename or path.parent
        raise DownloadError(f"cannot download {path.name}: cannot write {where} ({e.strerror or e}); free some "
                            f"space or choose a writable folder, and run the command again") from None
    error = DownloadError(_advice(path, known, failures, mirror_env))
    error.failures = tuple(failures)
    raise error


def _advice(dest: Path, known: KnownHash | None, failures: list[str], mirror_env: str | None) -> str:
    mirror = (f"set {mirror_env}=<base URL> to a mirror that holds {dest.name} (fetched as <base URL>/{dest.name}, "
              f"file:// works too), or " if mirror_env else "")
    check = f" (its {known.algorithm} must be {known.hexdigest})" if known else ""
    part = part_path(dest)
    kept = f"; the {_size(part.stat().st_size)} received so far are kept in {part} for the next run" \
        if part.is_file() else ""
    return (f"cannot download {dest.name}: {'; '.join(failures)}{kept}. To fix: {mirror}download it by hand "
            f"into {dest}{check} and run the command again")


# --------------------------------------------------------------------------------------------
# Archives


@dataclass(frozen=True)
class _Entry:
    name: str  # as the archive spells it
    path: PurePosixPath  # checked: relative, no "..", inside the target
    is_dir: bool
    size: int


def _safe_path(archive: Path, name: str) -> PurePosixPath | None:
    """The entry's path relative to the target folder, or None for the archive's root ("./")."""
    text = name.replace("\\", "/")  # a Windows separator counts as one: "..\\x" escapes on Windows
    why = ("a NUL byte in the name" if "\x00" in text
           else "an absolute path" if text.startswith("/") or re.match(r"[A-Za-z]:", text)
           else "a '..' component (it would land outside the target folder)" if ".." in text.split("/")
           else "")
    if why:
        raise _refuse(archive, name, why)
    parts = [p for p in text.split("/") if p not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def _refuse(archive: Path, name: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{archive}: refused entry {name!r}: {why}; nothing was unpacked. This is not the "
                              f"published archive: delete it and download it again from a trusted source")


_FILE_KINDS = {stat.S_IFLNK: "a symbolic link", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFIFO: "a fifo", stat.S_IFSOCK: "a socket"}


def _zip_entries(archive: Path, zf: zipfile.ZipFile) -> list[_Entry]:
    entries = []
    for info in zf.infolist():
        path = _safe_path(archive, info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)  # Unix mode bits, when a Unix tool made the zip
        if kind in _FILE_KINDS:
            raise _refuse(archive, info.filename, _FILE_KINDS[kind])
        if info.flag_bits & 0x1:
            raise _refuse(archive, info.filename, "an encrypted entry")
        if path is not None:
            entries.append(_Entry(info.filename, path, info.is_dir(), 0 if info.is_dir() else info.file_size))
    return entries


def _tar_entries(archive: Path, tf: tarfile.TarFile) -> list[_Entry]:
    entries = []
    for member in tf.getmembers():
        path = _safe_path(archive, member.name)
        if member.issym() or member.islnk():
            what = "a symbolic link" if member.issym() else "a hard link"
            raise _refuse(archive, member.name, f"{what} (to {member.linkname!r})")
        if not (member.isreg() or member.isdir()):
            what = "a device node" if member.isdev() and not member.isfifo() else "a fifo" if member.isfifo() else \
                f"an entry of tar type {member.type!r}"
            raise _refuse(archive, member.name, what)
        if path is not None:
            entries.append(_Entry(member.name, path, member.isdir(), member.size if member.isreg() else 0))
    return entries


def _check_tree(archive: Path, entries: list[_Entry]) -> None:
    """Refuse an entry named twice, or a path that is a file in one entry and a folder in another."""
    files: dict[PurePosixPath, str] = {}
    dirs: set[PurePosixPath] = set()
    for e in entries:
        parents = list(e.path.parents)[:-1]  # without "."
        clash = next((p for p in parents if p in files), None)
        if clash is not None:
            raise _refuse(archive, e.name, f"it goes inside {files[clash]!r}, which is a file")
        dirs.update(parents)
        if e.is_dir:
            if e.path in files:
                raise _refuse(archive, e.name, f"a folder where {files[e.path]!r} is a file")
            dirs.add(e.path)
        elif e.path in files or e.path in dirs:
            raise _refuse(archive, e.name, "its path appears twice (as a file" + (" and a folder)" if e.path in dirs
                                                                                  else ")"))
        else:
            files[e.path] = e.name


def _check_room(archive: Path, into: Path, total: int, max_bytes: int) -> None:
    if total > max_bytes:
        raise UnsafeArchiveError(f"{archive}: would unpack to {_size(total)}, more than the {_size(max_bytes)} "
                                 f"allowed; nothing was unpacked. This is not the published archive: delete it")
    existing = next(p for p in (into, *into.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if total > free:
        raise DataError(f"{archive}: unpacking needs {_size(total)} under {into}, but only {_size(free)} are free; "
                        f"free some space (or pass another data root) and run again")


@contextmanager
def _open_archive(archive: Path) -> Iterator[tuple[list[_Entry], Callable[[_Entry], IO[bytes]]]]:
    """The checked entries of a zip or tar (any compression), and how to read one."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            yield _zip_entries(archive, zf), lambda e: zf.open(e.name)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = {m.name: m for m in tf.getmembers()}
            entries = _tar_entries(archive, tf)

            def open_member(e: _Entry) -> IO[bytes]:
                f = tf.extractfile(members[e.name])
                assert f is not None  # only regular files are opened
                return f

            yield entries, open_member
    else:
        raise DataError(f"{archive}: not a zip or tar archive; delete it and download it again")


def _write(archive: Path, entries: list[_Entry], open_entry: Callable[[_Entry], IO[bytes]], tmp: Path) -> None:
    for e in entries:
        target = tmp.joinpath(*e.path.parts)
        if e.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with open_entry(e) as src, open(target, "xb") as dst:
            while block := src.read(min(CHUNK, e.size - written + 1)):
                written += len(block)
                if written > e.size:  # never write more than the header declared
                    break
                dst.write(block)
        if written != e.size:
            raise DataError(f"{archive}: entry {e.name!r} holds {'more' if written > e.size else 'fewer'} bytes than "
                            f"the {e.size} its header declares; nothing was unpacked. Delete the archive and download "
                            f"it again")


def _clashes(src: Path, dst: Path) -> str | None:
    """Where moving ``src`` onto ``dst`` would put a file on a folder or a folder on a file."""
    if not dst.exists():
        return None
    if src.is_dir() != dst.is_dir():
        return f"{dst} is a {'folder' if dst.is_dir() else 'file'}, but the archive has a " \
               f"{'folder' if src.is_dir() else 'file'} there"
    if src.is_dir():
        return next((c for child in src.iterdir() if (c := _clashes(child, dst / child.name))), None)
    return None


def _merge(src: Path, dst: Path) -> None:
    if not dst.exists():
        os.rename(src, dst)  # a whole new subtree moves in one step
    elif src.is_dir():
        for child in list(src.iterdir()):
            _merge(child, dst / child.name)
    else:
        os.replace(src, dst)


def extract(archive: str | os.PathLike[str], into: str | os.PathLike[str], *,
            max_bytes: int = MAX_UNPACKED_BYTES) -> list[Path]:
    """Unpack a zip or tar archive into the folder ``into`` (merged with what is there; a file of
    the same name is replaced); returns the files written. Every entry is checked first (see the
    module docstring); refused, broken or truncated archives leave nothing behind.

    Raises:
        UnsafeArchiveError: an entry that escapes ``into``, a link, a device, or a size over ``max_bytes``.
        DataError: not an archive, a corrupt entry, no room on the disk, or a file where the archive has a folder.
    """
    archive, target = Path(archive), Path(into)
    try:
        with _open_archive(archive) as (entries, open_entry):
            _check_tree(archive, entries)
            _check_room(archive, target, sum(e.size for e in entries), max_bytes)
            created = not target.exists()
            target.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".unpacking-{archive.name}-", dir=target))
            try:
                _write(archive, entries, open_entry, tmp)
                if (clash := next((c for top in tmp.iterdir() if (c := _clashes(top, target / top.name))), None)):
                    raise DataError(f"{archive}: cannot unpack into {target}: {clash}; move it away and run again")
                for top in list(tmp.iterdir()):
                    _merge(top, target / top.name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
                if created and not any(target.iterdir()):
                    target.rmdir()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive}: cannot unpack ({e}); nothing was unpacked. Delete the archive and download "
                        f"it again") from None
    return [target.joinpath(*e.path.parts) for e in entries if not e.is_dir]
