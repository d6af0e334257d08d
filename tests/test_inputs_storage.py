"""Full disks, read-only places and names too long: one ``error:`` line naming the path and the
errno, nothing already stored lost, no temp file left; the LR cache goes on without caching.

Tests may run as root, where a chmod does not stop writes: a read-only folder and a full disk are
simulated by making ``tempfile.mkstemp`` / ``os.open`` fail with EROFS and ``os.fsync`` (or the
write) with ENOSPC, as the kernel would. One test also uses a real full tmpfs where an unprivileged
mount namespace is available (``unshare -rm``)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sr_bench import cpu_speed, figure
from sr_bench.data import dataset as dataset_module
from sr_bench.data import open_dataset
from sr_bench.errors import StorageError
from sr_bench.evaluate import main as evaluate_main
from sr_bench.images import atomic_write, check_writable, write_image
from sr_bench.train import make_config, train
from sr_bench.train.__main__ import main as train_main
from sr_bench.train.patches import load_images
from sr_bench.train.run_dir import JsonLog
from sr_bench.upscale import main as upscale_main

REPO = Path(__file__).resolve().parents[1]




@pytest.fixture(autouse=True)
def _fresh_cache_state(monkeypatch):
    monkeypatch.setattr(dataset_module, "_UNWRITABLE_CACHES", set())


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


# --- the write primitive -----------------------------------------------------------------------------------------


def _write_enospc(tmp: Path) -> None:
    with open(tmp, "w") as f:
        f.write("half")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_one_line_and_the_old_file_stays(tmp_path):
    (tmp_path / "out.json").write_text("old")
    with pytest.raises(StorageError) as caught:
        atomic_write(tmp_path / "out.json", _write_enospc)
    assert str(caught.value) == (f"{tmp_path / 'out.json'}: cannot write (No space left on device [ENOSPC]); nothing "
                                 f"was changed: free space, or pass a path in a writable folder")
    assert caught.value.errno == errno.ENOSPC and caught.value.exit_code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"] and (tmp_path / "out.json").read_text() == "old"


def test_a_read_only_folder_and_a_name_too_long_are_one_line(tmp_path, read_only):
    read_only(tmp_path / "ro")
    (tmp_path / "ro").mkdir()
    with pytest.raises(StorageError, match=r"ro/a.png: cannot write \(Read-only file system \[EROFS\]\)"):
        write_image(tmp_path / "ro" / "a.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(StorageError, match=r"ro/a.png: cannot write \(Read-only file system \[EROFS\]\)"):
        check_writable(tmp_path / "ro" / "a.png")
    with pytest.raises(StorageError, match=r"cannot write \(File name too long \[ENAMETOOLONG\]\); nothing was "
                                           r"changed: use a shorter file name"):
        check_writable(tmp_path / ("n" * 256))


def test_an_oserror_that_is_not_about_the_disk_passes_through(tmp_path):
    def cannot_encode(tmp: Path) -> None:
        raise OSError("cannot write mode F as PNG")

    with pytest.raises(OSError, match="cannot write mode F as PNG") as caught:
        atomic_write(tmp_path / "a.png", cannot_encode)
    assert not isinstance(caught.value, StorageError) and list(tmp_path.iterdir()) == []


def test_check_writable_leaves_nothing_behind(tmp_path):
    check_writable(tmp_path / "new" / "deeper" / "out.json")
    assert list(tmp_path.iterdir()) == []


def test_a_long_target_name_gets_a_short_temp_name_and_its_leftovers_are_cleaned(tmp_path):
    name = "n" * 240 + ".json"  # the target fits in 255 bytes; ".NAME.HOST.PID.RANDOM.tmp" would not
    atomic_write(tmp_path / name, lambda tmp: tmp.write_text("one"))
    assert (tmp_path / name).read_text() == "one" and len(list(tmp_path.iterdir())) == 1
    stale = None

    def killed(tmp: Path) -> None:  # a writer that dies: its temp stays, as after a kill -9
        nonlocal stale
        tmp.write_text("partial")
        stale = tmp
        os.link(tmp, tmp.with_name(tmp.name.replace(f".{os.getpid()}.", ".999999999.")))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / name, killed)
    assert stale is not None and len(stale.name) < 255
    leftover = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftover) == 1 and ".999999999." in leftover[0].name  # the "dead" writer's temp
    atomic_write(tmp_path / name, lambda tmp: tmp.write_text("two"))  # the next write removes it
    assert [p.name for p in tmp_path.iterdir()] == [name] and (tmp_path / name).read_text() == "two"


# --- the LR cache --------------------------------------------------------------------------------------------------


@pytest.fixture
def folder_ds(tmp_path, textured) -> Path:
    for i in range(3):
        write_image(tmp_path / "ds" / f"im{i}.png", textured(40, 48, i))
    return tmp_path / "ds"


def _warnings(caplog, word: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and word in r.getMessage()]


def test_an_unwritable_lr_cache_warns_once_and_scores_anyway(tmp_path, folder_ds, read_only, monkeypatch, caplog):
    monkeypatch.setenv("SR_BENCH_CACHE", str(tmp_path / "cache"))
    read_only(tmp_path / "cache")
    ds = open_dataset(str(folder_ds))
    with caplog.at_level(logging.WARNING, logger="sr_bench"):
        cached_less = [ds.read_lr(i, 2)[0] for i in range(3)]
    said = _warnings(caplog, "cannot be written")
    assert len(said) == 1 and f"LR cache {tmp_path / 'cache'} cannot be written (Read-only file system [EROFS])" in \
        said[0] and "SR_BENCH_CACHE" in said[0]
    assert [p for p in (tmp_path / "cache").rglob("*") if not p.is_dir()] == []  # mkdir is not blocked here
    monkeypatch.setattr(dataset_module, "_UNWRITABLE_CACHES", set())
    monkeypatch.setenv("SR_BENCH_CACHE", str(tmp_path / "cache2"))
    for i in range(3):  # the LR images are the ones a writable cache gives
        np.testing.assert_array_equal(ds.read_lr(i, 2)[0], cached_less[i])
    assert len(list((tmp_path / "cache2").rglob("*.npy"))) == 3


def test_a_full_disk_under_the_lr_cache_is_a_warning(tmp_path, folder_ds, disk_full_for, monkeypatch, capsys):
    monkeypatch.setenv("SR_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(dataset_module, "_save_array", lambda path, a: _write_enospc(path))
    rc = evaluate_main(["--model", "bicubic", "--datasets", str(folder_ds), "--scales", "2", "--no-progress",
                        "--records", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert rc == 0 and err.count("cannot be written (No space left on device [ENOSPC])") == 1
    assert (tmp_path / "r.jsonl").is_file() and not list((tmp_path / "cache").rglob("*.tmp"))


def test_a_read_only_home_without_sr_bench_cache_scores(tmp_path, folder_ds, read_only, monkeypatch, capsys):
    monkeypatch.delenv("SR_BENCH_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    read_only(tmp_path / "home")
    rc = evaluate_main(["--model", "bicubic", "--datasets", str(folder_ds), "--scales", "2", "--no-progress",
                        "--records", str(tmp_path / "r.jsonl")])
    assert rc == 0 and "LR cache" in capsys.readouterr().err and (tmp_path / "r.jsonl").is_file()
    assert [p for p in (tmp_path / "home").rglob("*") if not p.is_dir()] == []  # no file written under HOME


def test_no_home_at_all_means_no_cache(folder_ds, monkeypatch):
    monkeypatch.delenv("SR_BENCH_CACHE")

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", no_home)
    assert open_dataset(str(folder_ds)).read_lr(0, 2)[0].shape == (20, 24, 3)


# --- commands that write -------------------------------------------------------------------------------------------


def test_upscale_into_a_read_only_folder_is_one_line_before_any_work(tmp_path, read_only, textured, capsys,
                                                                       monkeypatch):
    write_image(tmp_path / "a.png", textured(16, 16, 0))
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "a_x2.png").write_bytes(b"an earlier output")
    read_only(tmp_path / "ro")
    monkeypatch.setattr("sr_bench.upscale._build", lambda *a: pytest.fail("the model was built"))
    rc = upscale_main(["--model", "bicubic", "--scale", "2", str(tmp_path / "a.png"), "--out", str(tmp_path / "ro"),
                       "--device", "cpu"])
    err = _one_line(capsys.readouterr().err)
    assert rc == 1 and f"{tmp_path / 'ro' / 'a_x2.png'}: cannot write (Read-only file system [EROFS])" in err
    assert (tmp_path / "ro" / "a_x2.png").read_bytes() == b"an earlier output"


def test_figure_into_a_read_only_folder_is_one_line(tmp_path, read_only, folder_ds, capsys):
    (tmp_path / "ro").mkdir()
    read_only(tmp_path / "ro")
    rc = figure.main(["--image", f"{folder_ds}/im0", "--box", "0", "0", "16", "16", "--labels", "bicubic",
                      "--scale", "2", "--out", str(tmp_path / "ro" / "fig.png"), "--records",
                      str(tmp_path / "r.jsonl"), "--device", "cpu"])
    err = _one_line(capsys.readouterr().err)
    assert rc == 1 and "ro/fig.png: cannot write (Read-only file system [EROFS])" in err
    assert list((tmp_path / "ro").iterdir()) == []


def test_cpu_speed_checks_its_output_before_measuring(tmp_path, read_only, capsys, monkeypatch):
    (tmp_path / "ro").mkdir()
    read_only(tmp_path / "ro")
    monkeypatch.setattr(cpu_speed, "resize_speed", lambda *a, **k: pytest.fail("measured before checking --out"))
    rc = cpu_speed.main(["--skip", "forward", "--out", str(tmp_path / "ro" / "speed.json")])
    assert rc == 1 and "speed.json: cannot write (Read-only file system [EROFS])" in _one_line(capsys.readouterr().err)


def test_json_log_append_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
    log = JsonLog(tmp_path / "log.jsonl", True)
    log.write("start")
    real_open = open

    def full(path, mode="r", *args, **kwargs):
        if str(path).endswith("log.jsonl") and "a" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full)
    with pytest.raises(StorageError, match=r"log\.jsonl: cannot append to \(No space left on device \[ENOSPC\]\)"):
        log.write("update", iteration=1)


@pytest.fixture
def train_data(tmp_path, textured) -> Path:
    for i in range(2):
        write_image(tmp_path / "data" / f"t{i}.png", textured(48, 64, i))
    return tmp_path / "data"


def _train_args(data: Path, out: Path, iterations: int) -> list[str]:
    return ["-q", "--model", "edsr-baseline", "--scale", "2", "--profile", "smoke", "--device", "cpu", "--no-progress",
            "--option", "blocks=1", "--option", "filters=8", "--patch-size", "8", "--batch-size", "2",
            "--data", str(data), "--val-data", str(data), "--val-images", "1", "--out", str(out),
            "--iterations", str(iterations)]


def test_a_full_disk_at_a_checkpoint_keeps_the_previous_one(tmp_path, train_data, disk_full_for, capsys, one_thread):
    out = tmp_path / "run"
    assert train_main(_train_args(train_data, out, 2)) == 0
    kept = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    disk_full_for("checkpoint.pt")
    assert train_main([*_train_args(train_data, out, 4), "--resume"]) == 1
    err = _one_line(capsys.readouterr().err)
    assert f"{out / 'checkpoint.pt'}: cannot write (No space left on device [ENOSPC]); nothing was changed" in err
    assert (out / "checkpoint.pt").read_bytes() == kept  # the run resumes from here once there is room
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_train_into_a_read_only_folder_is_one_line(tmp_path, train_data, read_only, capsys):
    (tmp_path / "ro").mkdir()
    read_only(tmp_path / "ro")
    assert train_main(_train_args(train_data, tmp_path / "ro" / "run", 2)) == 1
    err = _one_line(capsys.readouterr().err)
    assert "Read-only file system [EROFS]" in err and str(tmp_path / "ro") in err


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                          capture_output=True, timeout=30)
    return done.returncode == 0


def test_a_real_full_tmpfs_under_upscale(tmp_path, textured):
    """No simulation: ``--out`` on a tmpfs filled to the last byte (needs a mount namespace)."""
    if not _unshare_works():
        pytest.skip("no unprivileged mount namespace (unshare -rm) here")
    write_image(tmp_path / "a.png", textured(32, 32, 0))
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=256k tmpfs {disk} && mkdir {disk}/out && printf old > {disk}/out/a_x2.png && "
              f"(dd if=/dev/zero of={disk}/fill bs=4k; dd if=/dev/zero of={disk}/fill2 bs=1) 2>/dev/null; "
              f"\"$@\"; rc=$?; ls -a {disk}/out; cat {disk}/out/a_x2.png; exit $rc")
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", sys.executable, "-m", "sr_bench.upscale", "--model", "bicubic",
         "--scale", "2", str(tmp_path / "a.png"), "--out", str(disk / "out"), "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1, done.stderr
    _one_line(done.stderr)
    assert "cannot write (No space left on device [ENOSPC])" in done.stderr
    assert done.stdout.split() == [".", "..", "a_x2.png", "old"]  # the earlier output kept, no temp left


def test_a_new_run_that_cannot_write_its_first_checkpoint_leaves_no_folder(tmp_path, train_data, disk_full_for,
                                                                          one_thread):
    disk_full_for("checkpoint.pt")
    cfg = make_config("smoke", "edsr-baseline", 2, **{
        "data.dataset": str(train_data), "val.dataset": str(train_data), "model.options": {"blocks": 1, "filters": 8},
        "out": str(tmp_path / "runs" / "new"), "runtime.progress": False, "runtime.device": "cpu",
        "optim.iterations": 2, "data.patch_size": 8, "data.batch_size": 2})
    with pytest.raises(StorageError, match="checkpoint.pt: cannot write"):
        train(cfg)
    assert not (tmp_path / "runs").exists()  # not the run folder, nor the parent made for its lock


def test_a_disk_image_pack_that_cannot_be_written_is_one_line(tmp_path, folder_ds, read_only):
    (tmp_path / "packs").mkdir()
    read_only(tmp_path / "packs")
    with pytest.raises(StorageError, match=r"cannot write the --cache disk image pack in \(Read-only file system "
                                           r"\[EROFS\]\); nothing was changed: free space, pass --cache-dir DIR"):
        load_images(open_dataset(str(folder_ds)), (2,), cache="disk", cache_dir=tmp_path / "packs")
    assert [p for p in (tmp_path / "packs").rglob("*") if not p.is_dir()] == []
