"""Published weights found in a folder, the download cache or a mirror, through
``sr_bench.download.fetch``: timeouts, truncation and hash checks against a loopback server (no
network: the official URLs are replaced by a closed loopback port), and the one-line advice."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import time

import numpy as np
import pytest
import torch
from loopback import Served, serving

from sr_bench import evaluate, models, upscale, weights
from sr_bench.download import DownloadError
from sr_bench.images import write_image
from sr_bench.weights import (
    WeightsDownloadError,
    WeightsError,
    WeightsOptionError,
    WeightsSpec,
    files,
    load_weights,
    published,
    resolve_weights,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


def _payload() -> bytes:
    """A real (tiny) EDSR checkpoint, so that a successful download also loads."""
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(models.create("edsr-baseline", scale=2, blocks=2, filters=8).state_dict(), buf)
    return buf.getvalue()


@pytest.fixture
def settings(monkeypatch, tmp_path):
    """No mirror or weights folder from the environment, 1-second timeouts, no retries, a private
    download cache."""
    for var in ("SR_BENCH_WEIGHTS_URL", "SR_BENCH_WEIGHTS_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SR_BENCH_DOWNLOAD_TIMEOUT", "1")
    monkeypatch.setenv("SR_BENCH_DOWNLOAD_RETRIES", "0")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    yield tmp_path / "hub" / "checkpoints"
    weights.set_weights_dir(None)


@pytest.fixture
def fake_published(monkeypatch, settings):
    """A registered checkpoint whose bytes the test knows; its official URL is a closed port."""
    payload = _payload()
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    spec = WeightsSpec("fake-x2", "edsr-baseline", (2,), (f"{CLOSED}/fake_x2-{prefix}.pt",), f"fake_x2-{prefix}.pt",
                       prefix, None)
    monkeypatch.setitem(published._WEIGHTS._items, "fake-x2", spec)
    return spec, payload, settings


def _offline_official(monkeypatch, name: str) -> WeightsSpec:
    """The registered ``name`` with its official URL on a closed loopback port."""
    spec = published.get_weights(name)
    offline = dataclasses.replace(spec, urls=(f"{CLOSED}/{spec.file_name}",))
    monkeypatch.setitem(published._WEIGHTS._items, name, offline)
    return offline


# ---------------------------------------------------------------------------------------------
# Success: a mirror over HTTP or file://, then the cache


def test_http_mirror_downloads_once_into_the_cache_and_loads(fake_published, monkeypatch):
    spec, payload, cache = fake_published
    with serving({f"m/{spec.file_name}": Served(payload)}) as server:
        monkeypatch.setenv("SR_BENCH_WEIGHTS_URL", server.url("m"))
        path, got = resolve_weights("fake-x2", progress=False)
        assert (path, got) == (cache / spec.file_name, spec) and path.read_bytes() == payload
        assert sorted(p.name for p in cache.iterdir()) == [spec.file_name]  # no .part left behind
        net = models.create("edsr-baseline", scale=2, blocks=2, filters=8)
        info = load_weights(net, "fake-x2", progress=False)
        assert info.sha256 == hashlib.sha256(payload).hexdigest() and info.spec is spec
        assert server.requests == [f"m/{spec.file_name}"]  # the second time came from the cache


def test_file_mirror_and_a_truncated_cache_is_fetched_again(fake_published, monkeypatch, tmp_path):
    spec, payload, cache = fake_published
    mirror = tmp_path / "www"
    mirror.mkdir()
    (mirror / spec.file_name).write_bytes(payload)
    monkeypatch.setenv("SR_BENCH_WEIGHTS_URL", mirror.as_uri())
    path, _ = resolve_weights("fake-x2", progress=False)
    assert path.read_bytes() == payload
    path.write_bytes(payload[:1000])  # a cut copy in the cache is never trusted
    assert resolve_weights("fake-x2", progress=False)[0].read_bytes() == payload


def test_a_mirror_with_other_bytes_is_refused_and_nothing_is_cached(fake_published, monkeypatch, tmp_path):
    spec, payload, cache = fake_published
    mirror = tmp_path / "www"
    mirror.mkdir()
    (mirror / spec.file_name).write_bytes(payload[:-1] + b"!")
    monkeypatch.setenv("SR_BENCH_WEIGHTS_URL", mirror.as_uri())
    with pytest.raises(WeightsDownloadError, match=rf"{mirror.as_uri()}/{spec.file_name}: sha256 mismatch.*"
                                                   rf"{CLOSED}/{spec.file_name}: cannot connect"):
        resolve_weights("fake-x2", progress=False)
    assert not (cache / spec.file_name).exists()


# ---------------------------------------------------------------------------------------------
# Mirrors that misbehave: one line naming the URL, within the timeout, nothing at the final name


@pytest.mark.parametrize("served, reason", [
    (Served(b"x" * 4096, "stall"), r"connected, but no answer within 1 s \(read timeout\)"),
    (Served(b"x" * 4096, "stall_after", cut_at=100), r"stalled: no data for 1 s \(read timeout\), got 100 of 4096"),
    (Served(b"x" * 4096, "short", cut_at=100), r"got 100 of 4096 bytes"),
    (Served(b""), r"sha256 mismatch: got e3b0c442"),  # 0 bytes: the hash of nothing
    (Served(b"", "html"), r"sha256 mismatch: .*; the server sent a web page \(text/html\), not the file"),
    (Served(b"", "redirect_loop"), r"redirects"),
], ids=["stall", "stall-after-100-bytes", "content-length-too-large", "empty", "html-page", "redirect-loop"])
def test_a_misbehaving_mirror_is_one_line_within_the_timeout(fake_published, monkeypatch, served, reason):
    spec, _, cache = fake_published
    with serving({f"m/{spec.file_name}": served}) as server:
        monkeypatch.setenv("SR_BENCH_WEIGHTS_URL", server.url("m"))
        t0 = time.monotonic()
        with pytest.raises(WeightsDownloadError) as e:
            resolve_weights("fake-x2", progress=False)
        elapsed = time.monotonic() - t0
    msg = str(e.value)
    assert f"{server.url('m')}/{spec.file_name}: " in msg and "\n" not in msg
    assert re.search(reason, msg), msg
    assert "--weights-dir FOLDER" in msg and f"sha256 starts with {spec.sha256_prefix}" in msg
    assert not (cache / spec.file_name).exists()
    # 1 s read timeout, no retries: well under the 120 s the server would stall for (a bound on a
    # hang, not a speed figure)
    assert elapsed < 30


def test_a_timeout_names_the_setting_that_lengthens_it(fake_published, monkeypatch):
    spec, _, _ = fake_published
    with serving({f"m/{spec.file_name}": Served(b"x", "stall")}) as server:
        monkeypatch.setenv("SR_BENCH_WEIGHTS_URL", server.url("m"))
        with pytest.raises(WeightsDownloadError, match="Set SR_BENCH_DOWNLOAD_TIMEOUT=SECONDS to wait longer"):
            resolve_weights("fake-x2", progress=False)


def test_evaluate_official_weights_from_a_stalled_mirror_fails_in_time(settings, monkeypatch, tmp_path, capsys):
    """The command a user runs: one line naming the mirror URL, exit 1, no record, no weights file."""
    spec = _offline_official(monkeypatch, "edsr-baseline-x2")
    with serving({f"m/{spec.file_name}": Served(b"x" * 4096, "stall")}) as server:
        monkeypatch.setenv("SR_BENCH_WEIGHTS_URL", server.url("m"))
        t0 = time.monotonic()
        code = evaluate.main(["--model", "edsr-baseline", "--weights", "official", "--datasets", "embedded",
                              "--scales", "2", "--no-progress", "--records", str(tmp_path / "r.jsonl")])
        elapsed = time.monotonic() - t0
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 1 and len(line) == 1 and "Traceback" not in err
    assert f"{server.url('m')}/{spec.file_name}: connected, but no answer within 1 s" in line[0]
    assert not (tmp_path / "r.jsonl").exists() and not (settings / spec.file_name).exists()
    assert elapsed < 60  # a bound on a hang (the server stalls for 120 s), not a speed figure


def test_an_unwritable_cache_names_the_folder_and_how_to_move_it(fake_published, monkeypatch, tmp_path):
    afile = tmp_path / "hub-is-a-file"
    afile.write_bytes(b"")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(afile))
    with pytest.raises(WeightsDownloadError, match=rf"cannot write {afile}/checkpoints .*set TORCH_HOME to move it"):
        resolve_weights("fake-x2", progress=False)


def test_the_offline_advice(monkeypatch, settings):
    """What to do when no URL serves the file: the mirror variable, the folder, the file itself."""
    def offline(urls, dest, **kwargs):
        error = DownloadError("cannot download")
        error.failures = tuple(f"{u}: cannot connect (Name or service not known) (3 tries)" for u in urls)
        raise error

    monkeypatch.setattr(files, "fetch", offline)
    with pytest.raises(WeightsDownloadError) as e:
        resolve_weights("edsr-x4")
    msg = str(e.value)
    assert "https://cv.snu.ac.kr/research/EDSR/models/edsr_x4-4f62e9ef.pt: cannot connect (Name or service" in msg
    assert "unreachable since 2024 (EDSR-PyTorch issues #362/#363)" in msg
    assert "SR_BENCH_WEIGHTS_URL=<base URL> (sr_bench fetches <base URL>/edsr_x4-4f62e9ef.pt" in msg
    assert "--weights-dir FOLDER (or set SR_BENCH_WEIGHTS_DIR=FOLDER)" in msg
    assert "sha256 starts with 4f62e9ef" in msg
    assert "--weights /path/to/edsr_x4-4f62e9ef.pt" in msg and str(settings / "edsr_x4-4f62e9ef.pt") in msg
    assert "SR_BENCH_DOWNLOAD_TIMEOUT" not in msg  # nothing timed out
    assert "\n" not in msg and WeightsDownloadError.exit_code == 1


@pytest.mark.parametrize("var, value", [("SR_BENCH_DOWNLOAD_TIMEOUT", "soon"), ("SR_BENCH_DOWNLOAD_TIMEOUT", "0"),
                                        ("SR_BENCH_DOWNLOAD_RETRIES", "-1")])
def test_unreadable_download_settings_are_usage_errors(settings, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(WeightsOptionError, match=rf"{var}={value!r}") as e:
        resolve_weights("edsr-x4")
    assert e.value.exit_code == 2


# ---------------------------------------------------------------------------------------------
# The weights folder


def test_weights_dir_parameter_option_and_environment(fake_published, monkeypatch, tmp_path):
    spec, payload, cache = fake_published
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / spec.file_name).write_bytes(payload)
    assert resolve_weights("fake-x2", weights_dir=folder) == (folder / spec.file_name, spec)
    weights.set_weights_dir(folder)  # what --weights-dir does
    assert resolve_weights("fake-x2")[0] == folder / spec.file_name
    weights.set_weights_dir(None)
    monkeypatch.setenv("SR_BENCH_WEIGHTS_DIR", str(folder))
    assert resolve_weights("fake-x2")[0] == folder / spec.file_name
    assert not cache.exists()  # used in place: nothing downloaded or copied


def test_weights_dir_file_with_the_wrong_hash_is_refused(fake_published, tmp_path):
    spec, payload, _ = fake_published
    (tmp_path / spec.file_name).write_bytes(payload + b"!")
    with pytest.raises(WeightsDownloadError, match=rf"{spec.file_name}: sha256 .* does not start with "
                                                   rf"{spec.sha256_prefix}"):
        resolve_weights("fake-x2", weights_dir=tmp_path)


def test_weights_dir_without_the_file_says_where_it_looked(fake_published, tmp_path):
    spec, _, _ = fake_published
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsDownloadError, match=rf"empty/{spec.file_name}: no such file.*{CLOSED}"):
        resolve_weights("fake-x2", weights_dir=tmp_path / "empty")


def test_weights_dir_that_is_a_file_or_nothing_says_so(fake_published, tmp_path, capsys):
    spec, payload, _ = fake_published
    afile = tmp_path / "weights.pt"
    afile.write_bytes(payload)
    weights.set_weights_dir(afile)
    with pytest.raises(WeightsOptionError, match=rf"--weights-dir '{afile}' is a file, not a folder.*"
                                                 rf"--weights {afile}"):
        resolve_weights("fake-x2")
    weights.set_weights_dir(tmp_path / "nowhere")
    with pytest.raises(WeightsOptionError, match=r"--weights-dir '.*nowhere' does not exist"):
        resolve_weights("fake-x2")
    weights.set_weights_dir(None)
    with pytest.raises(WeightsOptionError, match=r"\$SR_BENCH_WEIGHTS_DIR '.*weights.pt' is a file"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SR_BENCH_WEIGHTS_DIR", str(afile))
            resolve_weights("fake-x2")
    assert WeightsOptionError.exit_code == 2 and issubclass(WeightsOptionError, WeightsError)


def test_weights_given_a_folder_says_it_is_a_folder(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    torch.save({}, tmp_path / "run" / "last.pt")
    with pytest.raises(WeightsOptionError, match=r"--weights '.*run' is a folder, not a weights file; pass one "
                                                 r"checkpoint file in it \(last.pt\)"):
        resolve_weights(tmp_path / "run")
    code = evaluate.main(["--model", "edsr-baseline", "--weights", str(tmp_path / "run"), "--datasets", "embedded",
                          "--scales", "2", "--no-progress", "--records", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and "is a folder" in err and "Traceback" not in err
    image = tmp_path / "a.png"
    write_image(image, np.zeros((8, 8, 3), np.uint8))
    for weights_arg, code, said in ((tmp_path / "run", 2, "is a folder, not a weights file"),
                                    (tmp_path / "none.pt", 1, "weights file '{}' does not exist")):
        assert upscale.main(["--model", "edsr-baseline", "--weights", str(weights_arg), "--scale", "2", str(image),
                             "--out", str(tmp_path / "sr")]) == code
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and said.format(weights_arg) in err  # not "unknown weights"
