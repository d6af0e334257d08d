"""Downloads against a loopback HTTP server (no network): success, resume, wrong hash, stalls;
safe unpacking of hostile archives; ``python -m sr_bench.data download`` end to end."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import stat
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr_bench.cli import DataError
from sr_bench.data import DATASETS
from sr_bench.data.registry import register
from sr_bench.data.sources import Source
from sr_bench.download import DownloadError, Timeout, UnsafeArchiveError, extract, fetch, part_path
from sr_bench.images import write_image
from sr_bench.resize import downscale

FAST = Timeout(connect=1.0, read=1.0)  # the stall tests wait this long, not 60 s
BODY = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
BODY_SHA256 = hashlib.sha256(BODY).hexdigest()


# --------------------------------------------------------------------------------------------
# A loopback server whose files can cut, stall or ignore Range, recording every request


@dataclass
class Served:
    body: bytes
    mode: str = "ok"  # ok | cut (first request only) | stall | stall_after | no_range | pieces
    cut_at: int = 0
    etag: str = '"v1"'


@dataclass
class Loopback:
    port: int = 0
    files: dict[str, Served] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def headers_of(self, name: str) -> list[dict[str, str]]:
        return [h for n, h in self.requests if n == name]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
        state: Loopback = self.server.state  # type: ignore[attr-defined]
        name = self.path.lstrip("/")
        state.requests.append((name, dict(self.headers)))
        served = state.files.get(name)
        if served is None:
            self.send_error(404, "Not Found")
            return
        if served.mode == "stall":  # accept, read the request, never answer
            state.release.wait(30)
            return
        first = len(state.headers_of(name)) == 1
        start, end = 0, len(served.body)
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if served.mode == "pieces":  # a server may send less of a range than asked for (RFC 9110 14.2)
            start = int(wanted.group(1)) if wanted else 0
            end = min(end, start + served.cut_at)
        if (wanted and served.mode != "no_range" and self.headers.get("If-Range", served.etag) == served.etag
                or served.mode == "pieces"):
            start = int(wanted.group(1)) if wanted else 0
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(served.body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(end - start))
        self.send_header("ETag", served.etag)
        self.end_headers()
        rest = served.body[start:end]
        if served.mode in ("cut", "stall_after") and (first or served.mode == "stall_after"):
            self.wfile.write(rest[: served.cut_at])
            self.wfile.flush()
            if served.mode == "stall_after":
                state.release.wait(30)
            self.close_connection = True  # the client sees the connection end before Content-Length
            return
        self.wfile.write(rest)


@pytest.fixture
def server():
    state = Loopback()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = state  # type: ignore[attr-defined]
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _fetch_in_thread(*args, **kwargs):
    """Run fetch in a thread and give up on it after 30 s: a hang is a failure, not a stuck suite."""
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["result"] = fetch(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "fetch hung for 30 s despite a 1 s read timeout"
    return out


# --------------------------------------------------------------------------------------------
# fetch


def test_fetch_verifies_and_shows_progress(server, tmp_path, capsys):
    server.files["a.bin"] = Served(BODY)
    got = fetch(server.url("a.bin"), tmp_path / "a.bin", known_hash=f"sha256:{BODY_SHA256}", timeout=FAST)
    assert (tmp_path / "a.bin").read_bytes() == BODY and got.sha256 == BODY_SHA256 and got.url == server.url("a.bin")
    assert _leftovers(tmp_path) == ["a.bin"]  # no .part, no state file, no pooch temp file
    assert "a.bin" in capsys.readouterr().err  # tqdm's bar, named after the file
    # already there with the right hash: no second request
    assert fetch(server.url("a.bin"), tmp_path / "a.bin", known_hash=BODY_SHA256).url == ""
    assert len(server.requests) == 1


def test_cut_connection_is_resumed_with_a_range_request(server, tmp_path):
    server.files["a.bin"] = Served(BODY, mode="cut", cut_at=100_000)
    got = fetch(server.url("a.bin"), tmp_path / "a.bin", known_hash=BODY_SHA256, timeout=FAST, retries=1,
                backoff=0, progress=False)
    first, second = server.headers_of("a.bin")
    assert "Range" not in first
    assert second["Range"] == "bytes=100000-" and second["If-Range"] == '"v1"'
    assert (tmp_path / "a.bin").read_bytes() == BODY and got.sha256 == BODY_SHA256
    assert _leftovers(tmp_path) == ["a.bin"]


def test_a_cut_kept_as_part_is_resumed_by_the_next_run(server, tmp_path):
    server.files["a.bin"] = Served(BODY, mode="cut", cut_at=100_000)
    with pytest.raises(DownloadError) as e:
        fetch(server.url("a.bin"), tmp_path / "a.bin", known_hash=BODY_SHA256, timeout=FAST, retries=0,
              progress=False, mirror_env="SR_BENCH_DATA_URL")
    msg = str(e.value)
    assert "\n" not in msg and server.url("a.bin") in msg and "got 100000 of 300000 bytes" in msg
    assert "SR_BENCH_DATA_URL=<base URL>" in msg and f"by hand into {tmp_path / 'a.bin'}" in msg
    assert part_path(tmp_path / "a.bin").stat().st_size == 100_000 and not (tmp_path / "a.bin").exists()
    fetch(server.url("a.bin"), tmp_path / "a.bin", known_hash=BODY_SHA256, timeout=FAST, progress=False)
    assert server.headers_of("a.bin")[-1]["Range"] == "bytes=100000-"
    assert (tmp_path / "a.bin").read_bytes() == BODY


def test_a_short_range_answer_is_truncation_and_the_rest_is_asked_for(server, tmp_path):
    server.files["a.bin"] = Served(BODY, mode="pieces", cut_at=120_000)
    with pytest.raises(DownloadError, match=r"a\.bin: truncated: got 120000 of 300000 bytes"):
        fetch(server.url("a.bin"), tmp_path / "a.bin", known_hash=BODY_SHA256, timeout=FAST, retries=0, progress=False)
    fetch(server.url("a.bin"), tmp_path / "a.bin", known_hash=BODY_SHA256, timeout=FAST, retries=1, backoff=0,
          progress=False)
    assert [h.get("Range") for h in server.headers_of("a.bin")] == [None, "bytes=120000-", "bytes=240000-"]
    assert (tmp_path / "a.bin").read_bytes() == BODY


def test_a_file_changed_on_the_server_is_fetched_whole(server, tmp_path):
    """If-Range: the server's ETag no longer matches the part's, so it sends all of the new file."""
    server.files["a.bin"] = Served(BODY, mode="cut", cut_at=100_000)
    with pytest.raises(DownloadError):
        fetch(server.url("a.bin"), tmp_path / "a.bin", timeout=FAST, retries=0, progress=False)
    new = BODY[::-1]
    server.files["a.bin"] = Served(new, etag='"v2"')
    got = fetch(server.url("a.bin"), tmp_path / "a.bin", timeout=FAST, progress=False)
    assert server.headers_of("a.bin")[-1]["If-Range"] == '"v1"'
    assert (tmp_path / "a.bin").read_bytes() == new and got.sha256 == hashlib.sha256(new).hexdigest()


def test_a_server_without_range_support_restarts_from_zero(server, tmp_path):
    server.files["a.bin"] = Served(BODY, mode="cut", cut_at=100_000)
    with pytest.raises(DownloadError):
        fetch(server.url("a.bin"), tmp_path / "a.bin", known_hash=BODY_SHA256, timeout=FAST, retries=0, progress=False)
    server.files["a.bin"] = Served(BODY, mode="no_range")
    fetch(server.url("a.bin"), tmp_path / "a.bin", known_hash=BODY_SHA256, timeout=FAST, progress=False)
    assert (tmp_path / "a.bin").read_bytes() == BODY  # not the old 100 kB followed by the whole file


@pytest.mark.parametrize("known", ["sha256:" + "0" * 64, "md5:" + "0" * 32, "sha256:00000000"])
def test_wrong_hash_leaves_no_file_and_names_both_hashes(server, tmp_path, known):
    server.files["a.bin"] = Served(BODY)
    with pytest.raises(DownloadError) as e:
        fetch(server.url("a.bin"), tmp_path / "a.bin", known_hash=known, timeout=FAST, progress=False)
    algorithm, expected = known.split(":")
    got = hashlib.new(algorithm, BODY).hexdigest()
    msg = str(e.value)
    assert f"{server.url('a.bin')}: {algorithm} mismatch: got {got}, expected {expected}" in msg and "\n" not in msg
    assert _leftovers(tmp_path) == []  # no final file, no part to resume (it is complete and wrong)
    assert len(server.requests) == 1  # a wrong file is not fetched again from the same URL


def test_server_that_never_answers_times_out(server, tmp_path):
    server.files["a.bin"] = Served(BODY, mode="stall")
    out = _fetch_in_thread(server.url("a.bin"), tmp_path / "a.bin", timeout=FAST, retries=0, progress=False)
    msg = str(out["error"])
    assert isinstance(out["error"], DownloadError) and "\n" not in msg
    assert f"{server.url('a.bin')}: connected, but no answer within 1 s (read timeout)" in msg


def test_server_that_stalls_after_100_bytes_times_out_and_keeps_them(server, tmp_path):
    server.files["a.bin"] = Served(BODY, mode="stall_after", cut_at=100)
    out = _fetch_in_thread(server.url("a.bin"), tmp_path / "a.bin", known_hash=BODY_SHA256, timeout=FAST,
                           retries=1, backoff=0, progress=False)
    msg = str(out["error"])
    # the retry resumed after the first 100 bytes, got 100 more, and stalled again
    assert "stalled: no data for 1 s (read timeout), got 200 of 300000 bytes (2 tries)" in msg
    assert server.headers_of("a.bin")[1]["Range"] == "bytes=100-"
    assert part_path(tmp_path / "a.bin").read_bytes() == BODY[:200] and not (tmp_path / "a.bin").exists()


def test_urls_are_tried_in_order_and_every_failure_is_named(server, tmp_path):
    server.files["a.bin"] = Served(BODY)
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/a.bin"
    got = fetch([server.url("missing/a.bin"), closed, server.url("a.bin")], tmp_path / "a.bin",
                known_hash=BODY_SHA256, timeout=FAST, retries=0, progress=False)
    assert got.url == server.url("a.bin")
    with pytest.raises(DownloadError) as e:
        fetch([server.url("missing/a.bin"), closed], tmp_path / "b.bin", timeout=FAST, retries=0, progress=False)
    msg = str(e.value)
    assert f"{server.url('missing/a.bin')}: HTTP 404 Not Found; {closed}: cannot connect (" in msg


def test_file_url_mirror_and_a_wrong_file_already_there(tmp_path, caplog):
    src = tmp_path / "mirror" / "a.bin"
    src.parent.mkdir()
    src.write_bytes(BODY)
    dest = tmp_path / "out" / "a.bin"
    dest.parent.mkdir()
    dest.write_bytes(BODY[:10])  # a truncated copy from an earlier run
    got = fetch(src.as_uri(), dest, known_hash=f"sha256:{BODY_SHA256[:8]}", progress=False)  # a checkpoint-style prefix
    assert dest.read_bytes() == BODY and got.url == src.as_uri() and got.sha256 == BODY_SHA256
    assert "is not the expected" in caplog.text


# --------------------------------------------------------------------------------------------
# extract


def _zip(path: Path, entries: dict[str, bytes], modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            zf.writestr(info, data)
    return path


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w") as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def test_extract_merges_into_the_target_and_leaves_no_temp(tmp_path):
    into = tmp_path / "root"
    (into / "benchmark" / "Set14").mkdir(parents=True)  # an earlier set stays
    (into / "benchmark" / "Set14" / "keep.png").write_bytes(b"old")
    archive = _zip(tmp_path / "a.zip", {"benchmark/": b"", "benchmark/Set5/HR/a.png": b"aa", "./benchmark/b.txt": b"b"})
    files = extract(archive, into)
    assert sorted(f.relative_to(into).as_posix() for f in files) == ["benchmark/Set5/HR/a.png", "benchmark/b.txt"]
    assert (into / "benchmark" / "Set5" / "HR" / "a.png").read_bytes() == b"aa"
    assert (into / "benchmark" / "Set14" / "keep.png").read_bytes() == b"old"
    assert _leftovers(into) == ["benchmark"]
    tar = _tar(tmp_path / "a.tar.gz", [(_info("benchmark/b.txt"), b"new")])
    extract(tar, into)
    assert (into / "benchmark" / "b.txt").read_bytes() == b"new"


@pytest.mark.parametrize("name, why", [
    ("../evil.txt", "a '..' component"),
    ("ok/../../evil.txt", "a '..' component"),
    ("..\\evil.txt", "a '..' component"),
    ("/tmp/evil.txt", "an absolute path"),
    ("C:/evil.txt", "an absolute path"),
])
def test_zip_entries_outside_the_target_are_refused(tmp_path, name, why):
    archive = _zip(tmp_path / "evil.zip", {"fine.txt": b"x", name: b"evil"})
    into = tmp_path / "root"
    with pytest.raises(UnsafeArchiveError) as e:
        extract(archive, into)
    msg = str(e.value)
    assert msg.startswith(f"{archive}: refused entry {name!r}: {why}") and "\n" not in msg
    assert not into.exists() and not (tmp_path / "evil.txt").exists()


def test_zip_symlink_entry_is_refused(tmp_path):
    archive = _zip(tmp_path / "link.zip", {"a.txt": b"x", "link": b"/etc/passwd"}, {"link": stat.S_IFLNK | 0o777})
    into = tmp_path / "root"
    into.mkdir()
    with pytest.raises(UnsafeArchiveError, match=r"refused entry 'link': a symbolic link"):
        extract(archive, into)
    assert _leftovers(into) == []


@pytest.mark.parametrize("info, why", [
    (_info("link", tarfile.SYMTYPE, "/etc/passwd"), "a symbolic link (to '/etc/passwd')"),
    (_info("inside", tarfile.SYMTYPE, "ok.txt"), "a symbolic link (to 'ok.txt')"),
    (_info("hard", tarfile.LNKTYPE, "ok.txt"), "a hard link (to 'ok.txt')"),
    (_info("dev", tarfile.CHRTYPE), "a device node"),
    (_info("blk", tarfile.BLKTYPE), "a device node"),
    (_info("pipe", tarfile.FIFOTYPE), "a fifo"),
    (_info("../up.txt"), "a '..' component"),
    (_info("/abs.txt"), "an absolute path"),
])
def test_tar_links_devices_and_escapes_are_refused(tmp_path, info, why):
    archive = _tar(tmp_path / "evil.tar", [(_info("ok.txt"), b"fine"), (info, b"evil")])
    into = tmp_path / "root"
    into.mkdir()
    with pytest.raises(UnsafeArchiveError) as e:
        extract(archive, into)
    assert f"refused entry {info.name!r}: {why}" in str(e.value)
    assert _leftovers(into) == [] and not (tmp_path / "up.txt").exists()


def test_an_entry_under_a_file_and_a_twice_named_entry_are_refused(tmp_path):
    with pytest.raises(UnsafeArchiveError, match=r"refused entry 'a/b': it goes inside 'a', which is a file"):
        extract(_zip(tmp_path / "x.zip", {"a": b"1", "a/b": b"2"}), tmp_path / "r")
    with pytest.raises(UnsafeArchiveError, match=r"refused entry './a': its path appears twice"):
        extract(_tar(tmp_path / "y.tar", [(_info("a"), b"1"), (_info("./a"), b"2")]), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_size_limit_and_corrupt_entry_leave_nothing(tmp_path):
    archive = _zip(tmp_path / "big.zip", {"a.bin": b"\0" * 5000})
    with pytest.raises(UnsafeArchiveError, match=r"would unpack to 5.0 KB, more than the 1.0 KB allowed"):
        extract(archive, tmp_path / "r", max_bytes=1000)
    good = _zip(tmp_path / "ok.zip", {"a.txt": b"hello " * 100, "b.txt": b"world"})
    data = bytearray(good.read_bytes())
    data[data.index(b"world")] ^= 0xFF  # the stored bytes no longer match their CRC-32
    bad = tmp_path / "crc.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"crc\.zip: cannot unpack \(Bad CRC-32"):
        extract(bad, tmp_path / "r")
    assert not (tmp_path / "r").exists()  # a.txt was written to the temporary folder, which is gone


def test_a_file_where_the_archive_has_a_folder_moves_nothing(tmp_path):
    into = tmp_path / "root"
    into.mkdir()
    (into / "benchmark").write_text("not a folder")
    with pytest.raises(DataError, match=r"benchmark is a file, but the archive has a folder there"):
        extract(_zip(tmp_path / "a.zip", {"x.txt": b"1", "benchmark/a.png": b"2"}), into)
    assert _leftovers(into) == ["benchmark"]


# --------------------------------------------------------------------------------------------
# python -m sr_bench.data download


def _tiny(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _benchmark_tar(tmp_path: Path) -> Path:
    """A benchmark.tar like EDSR's, with 5 tiny Set5 images and their LR files at x2, x3, x4."""
    src = tmp_path / "src"
    for i, stem in enumerate(["baby", "bird", "butterfly", "head", "woman"]):
        hr = _tiny(i, 30 + i, 26 + 2 * i)
        write_image(src / "benchmark" / "Set5" / "HR" / f"{stem}.png", hr, compress_level=0)
        for s in (2, 3, 4):
            lr = downscale(hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s], s)
            write_image(src / "benchmark" / "Set5" / "LR_bicubic" / f"X{s}" / f"{stem}x{s}.png", lr, compress_level=0)
    archive = tmp_path / "benchmark.tar"
    with tarfile.open(archive, "w") as t:
        t.add(src / "benchmark", arcname="benchmark")
    return archive


@pytest.fixture
def set5_offline(server, monkeypatch):
    """Set5's official URL points at the loopback server (which has no such file), never the network."""
    spec = DATASETS["Set5"]
    source = replace(spec.sources[0], urls=(server.url("official/benchmark.tar"),))
    DATASETS.remove("Set5")
    register(replace(spec, sources=(source,)))
    yield server
    DATASETS.remove("Set5")
    register(spec)


def test_download_from_a_loopback_mirror_then_check(set5_offline, tmp_path, monkeypatch, capsys):
    from sr_bench.data.__main__ import main

    server = set5_offline
    archive = _benchmark_tar(tmp_path)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    server.files["mirror/benchmark.tar"] = Served(archive.read_bytes(), mode="cut", cut_at=5000)
    monkeypatch.setenv("SR_BENCH_DATA_URL", server.url("mirror") + "/")
    root = tmp_path / "data"
    args = ["download", "Set5", "--data-root", str(root), "--sha256", digest, "--timeout", "2", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"Set5: 5 images at {root / 'benchmark' / 'Set5' / 'HR'} (20 files recorded in MANIFEST.tsv)" in out
    assert server.headers_of("mirror/benchmark.tar")[1]["Range"] == "bytes=5000-"  # resumed after the cut
    assert server.headers_of("official/benchmark.tar") == []  # the mirror comes first
    header, line = (root / "DOWNLOADS.tsv").read_text().splitlines()
    assert header.startswith("file\tsha256\turl\tchecked") and line.startswith(
        f"benchmark.tar\t{digest}\t{server.url('mirror/benchmark.tar')}\tsha256:{digest}\t")
    assert _leftovers(root / "downloads") == []  # the archive is deleted once unpacked
    manifest = (root / "MANIFEST.tsv").read_text().splitlines()
    assert len(manifest) == 21 and "Set5\tbenchmark/Set5/LR_bicubic/X3/headx3.png\t" in "\n".join(manifest)
    assert "benchmark.tar:benchmark/Set5/HR/baby.png" in manifest[1]

    assert main(["check", "--data-root", str(root), "--datasets", "Set5", "--no-progress"]) == 0
    assert "sha256 20 verified" in capsys.readouterr().out
    lr = root / "benchmark" / "Set5" / "LR_bicubic" / "X2" / "birdx2.png"
    write_image(lr, _tiny(99, 15, 14), compress_level=0)  # same size, other pixels
    assert main(["check", "--data-root", str(root), "--datasets", "Set5", "--no-progress"]) == 1
    assert f"{lr}: sha256" in capsys.readouterr().out

    assert main(args) == 0  # a second download finds it there
    assert "Set5: already here, 5 images" in capsys.readouterr().out


def test_download_checks_the_published_md5_before_unpacking(set5_offline, tmp_path, monkeypatch, capsys):
    from sr_bench.data.__main__ import main

    server = set5_offline
    archive = _benchmark_tar(tmp_path)
    server.files["mirror/benchmark.tar"] = Served(archive.read_bytes())
    monkeypatch.setenv("SR_BENCH_DATA_URL", server.url("mirror"))
    root = tmp_path / "data"
    assert main(["download", "Set5", "--data-root", str(root), "--no-progress", "--retries", "0"]) == 1
    err = capsys.readouterr().err
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: cannot download benchmark.tar: ")
    assert f"{server.url('mirror/benchmark.tar')}: md5 mismatch: got {md5}, expected 4ace41d33c2384b97e6b320cd0afd6ba" \
        in err
    assert f"{server.url('official/benchmark.tar')}: HTTP 404" in err and "SR_BENCH_DATA_URL=<base URL>" in err
    # no DOWNLOADS.tsv, no MANIFEST.tsv, nothing unpacked, no archive or part kept
    assert _leftovers(root) == ["downloads"] and _leftovers(root / "downloads") == []


def test_a_file_without_published_hash_has_its_sha256_recorded(server, tmp_path, capsys):
    """T91's registration with 3 files and no hash: placed under T91/HR, sha256 recorded and said."""
    from sr_bench.data.__main__ import main

    spec = DATASETS["T91"]
    names = ["t1.png", "t2.png", "t3.png"]
    sources = []
    for i, name in enumerate(names):
        buf = io.BytesIO()
        Image.fromarray(_tiny(i, 20, 24)).save(buf, format="PNG")
        server.files[name] = Served(buf.getvalue())
        sources.append(Source(name, (server.url(name),), None, "test: none", place_at=f"T91/HR/{name}"))
    DATASETS.remove("T91")
    register(replace(spec, count=3, sources=tuple(sources)))
    try:
        root = tmp_path / "data"
        assert main(["download", "T91", "--data-root", str(root), "--no-progress"]) == 0
    finally:
        DATASETS.remove("T91")
        register(spec)
    digest = hashlib.sha256(server.files["t2.png"].body).hexdigest()
    assert f"t2.png: no published hash; recorded sha256 {digest}" in capsys.readouterr().err
    assert f"t2.png\t{digest}\t{server.url('t2.png')}\tno published hash\t" in (root / "DOWNLOADS.tsv").read_text()
    assert sorted(p.name for p in (root / "T91" / "HR").iterdir()) == names
    assert "T91\tT91/HR/t1.png\t" in (root / "MANIFEST.tsv").read_text()


def test_manifest_merge_keeps_other_rows_and_columns(tmp_path):
    from sr_bench.data.check import read_manifest, write_manifest

    (tmp_path / "MANIFEST.tsv").write_text(
        "dataset\tfile\tsha256\twidth\theight\tmode\tsource\tnote\n"
        "T91\tT91/HR/t1.png\taa\t1\t1\tRGB\tgit\tkept\n"
        "Set5\tSet5/HR/a.png\tbb\t1\t1\tRGB\told\tx\n")
    write_manifest(tmp_path, [{"dataset": "Set5", "file": "Set5/HR/a.png", "sha256": "cc", "width": "2",
                               "height": "2", "mode": "L", "source": "new"},
                              {"dataset": "Set5", "file": "Set5/HR/b.png", "sha256": "dd", "width": "3",
                               "height": "3", "mode": "RGB", "source": "new"}])
    lines = (tmp_path / "MANIFEST.tsv").read_text().splitlines()
    assert lines == ["dataset\tfile\tsha256\twidth\theight\tmode\tsource\tnote",
                     "T91\tT91/HR/t1.png\taa\t1\t1\tRGB\tgit\tkept",
                     "Set5\tSet5/HR/a.png\tcc\t2\t2\tL\tnew\tx",
                     "Set5\tSet5/HR/b.png\tdd\t3\t3\tRGB\tnew\t"]
    assert read_manifest(tmp_path).rows["Set5/HR/b.png"].sha256 == "dd"  # type: ignore[union-attr]



def test_a_destination_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "file").write_text("a file where the download folder should be")
    src = tmp_path / "a.bin"
    src.write_bytes(BODY)
    with pytest.raises(DownloadError, match=r"cannot download a\.bin: cannot write .*file.*; free some space or "
                                            r"choose a writable folder"):
        fetch(src.as_uri(), tmp_path / "file" / "a.bin", progress=False)


def test_truncated_and_non_archives_are_refused_whole(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("d/f")
        info.size = len(BODY)
        tf.addfile(info, io.BytesIO(BODY))
    (tmp_path / "cut.tar.gz").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataError, match=r"cut\.tar\.gz: cannot unpack \(Compressed file ended"):
        extract(tmp_path / "cut.tar.gz", tmp_path / "out")
    (tmp_path / "page.zip").write_bytes(b"<html>Not Found</html>")  # what a misconfigured mirror serves
    with pytest.raises(DataError, match=r"page\.zip: not a zip or tar archive"):
        extract(tmp_path / "page.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_download_div2k_zips_into_div2k_and_list_each_file_once(server, tmp_path, monkeypatch, capsys):
    """DIV2K-val10 is 10 of DIV2K's 100 validation images: the four official-style zips are unpacked
    into <root>/DIV2K, both sets open, and each file is in MANIFEST.tsv once, under the set asked for."""
    from sr_bench.data.__main__ import main

    digests = []
    for name, folder, suffix in [("DIV2K_valid_HR.zip", "DIV2K_valid_HR", "")] + [
            (f"DIV2K_valid_LR_bicubic_X{s}.zip", f"DIV2K_valid_LR_bicubic/X{s}", f"x{s}") for s in (2, 3, 4)]:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for i in range(801, 901):
                hr = _tiny(i, 24, 36)
                s = int(suffix[1:]) if suffix else 1
                png = io.BytesIO()
                Image.fromarray(downscale(hr, s) if s > 1 else hr).save(png, format="PNG")
                zf.writestr(f"{folder}/{i:04d}{suffix}.png", png.getvalue())
        server.files[f"mirror/{name}"] = Served(buf.getvalue())
        digests.append(hashlib.sha256(buf.getvalue()).hexdigest())
    specs = {n: DATASETS[n] for n in ("DIV2K", "DIV2K-val10")}
    offline = tuple(replace(s, urls=(server.url(f"official/{s.file_name}"),)) for s in specs["DIV2K"].sources)
    for n, spec in specs.items():
        DATASETS.remove(n)
        register(replace(spec, sources=offline))
    monkeypatch.setenv("SR_BENCH_DATA_URL", server.url("mirror"))
    root = tmp_path / "data"
    try:
        assert main(["download", "DIV2K-val10", "--data-root", str(root), "--no-progress", "--sha256", *digests]) == 0
    finally:
        for n, spec in specs.items():
            DATASETS.remove(n)
            register(spec)
    out = capsys.readouterr().out
    hr = root / "DIV2K" / "DIV2K_valid_HR"
    assert f"DIV2K-val10: 10 images at {hr} (40 files recorded" in out
    assert f"DIV2K: 100 images at {hr} (360 files" in out
    rows = (root / "MANIFEST.tsv").read_text().splitlines()[1:]
    assert len(rows) == 400 and len({r.split("\t")[1] for r in rows}) == 400
    assert "DIV2K-val10\tDIV2K/DIV2K_valid_LR_bicubic/X3/0805x3.png\t" in "\n".join(rows)
    assert main(["check", "--data-root", str(root), "--datasets", "DIV2K", "--no-progress"]) == 0
    assert "LR files: x2 100, x3 100, x4 100; sha256 400 verified" in capsys.readouterr().out
