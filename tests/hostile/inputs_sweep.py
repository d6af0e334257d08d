"""Hostile inputs sweep: files and folders that change, collide, lie, are huge, or live on full or
read-only disks, fed to sr_bench's commands. Each scenario runs in a subprocess with a timeout and
is classified:

    ok          right result (a refusal counts as ok only where refusing is the right result)
    clear       one ``error: ...`` line naming the problem, exit 1 or 2, no traceback
    traceback   a Python traceback reached the user
    unclear     failed without a traceback, but not with one clear line
    silent      exit 0 with a wrong result (scored the wrong thing, dropped something, ...)
    hang        still running at the timeout
    loss        something already stored was lost or half-written

Not collected by pytest (no ``test_`` prefix); run it by hand:

    python tests/hostile/inputs_sweep.py                        # this checkout
    python tests/hostile/inputs_sweep.py --code /tmp/old_tree   # another tree of sr_bench (before/after)
    python tests/hostile/inputs_sweep.py --only bomb exif       # scenarios whose name holds a word

Full and read-only disks are real where the kernel allows an unprivileged mount namespace
(``unshare -rm`` and a small tmpfs); elsewhere those scenarios report ``n/a``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from harness import run_command, unshare_works  # tests/hostile/, the script's own folder
from PIL import Image

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]


# --- images -----------------------------------------------------------------------------------------


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 128 + 60 * np.sin(xx / 3.0 + seed) * np.cos(yy / 5.0) + rng.normal(0, 12, (h, w))
    rgb = np.stack([base, np.roll(base, 3, 1), np.roll(base, 5, 0)], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def png(path: Path, h: int = 48, w: int = 64, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(textured(h, w, seed)).save(path)
    return path


def jpeg_with_orientation(path: Path, orientation: int, h: int = 48, w: int = 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(textured(h, w, 1))
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, quality=95, exif=exif)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(path: Path, side: int = 30000) -> Path:
    """A real gray PNG of side x side zero pixels: about 875 KB for 30000 (900 MP)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    z = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    parts = [z.compress(row) for _ in range(side)] + [z.flush()]
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
                     + _chunk(b"IEND", b""))
    return path


def apng(path: Path) -> Path:
    frames = [Image.fromarray(textured(48, 64, s)) for s in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- running ----------------------------------------------------------------------------------------


@dataclass
class Result:
    rc: int | None  # None: timed out
    out: str
    err: str
    seconds: float
    mounted: dict[str, str] = field(default_factory=dict)  # file -> sha256 after, for tmpfs scenarios


@dataclass
class Scenario:
    name: str
    finding: str
    what: str
    #: builds the files in the work folder and returns the sr_bench command (argv after python)
    setup: Callable[[Path], list[str]]
    #: (outcome, note) from the result; ``basic`` is the default
    judge: Callable[[Result, Path], tuple[str, str]] | None = None
    timeout: float = 120.0
    #: "full", "nearly-full" (40 KB free) or "ro": run with ``work/disk`` a full or read-only tmpfs
    #: holding ``work/stage``'s files
    disk: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def basic(r: Result) -> tuple[str, str]:
    """The outcome from the exit status and stderr alone."""
    if r.rc is None:
        return "hang", f"killed after {r.seconds:.0f} s"
    if "Traceback (most recent call last)" in r.err:
        last = [line for line in r.err.strip().splitlines() if line.strip()][-1]
        return "traceback", last[:160]
    if r.rc == 0:
        return "ok", ""
    lines = [line for line in r.err.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    if r.rc in (1, 2) and len(errors) == 1 and lines[-1] == errors[0]:
        return "clear", errors[0]
    return "unclear", (lines[-1] if lines else f"exit {r.rc}, no message")[:220]


def expect_refusal(*words: str) -> Callable[[Result, Path], tuple[str, str]]:
    """Refusing is right: clear when the line holds every word; exit 0 is silently wrong."""
    def judge(r: Result, work: Path) -> tuple[str, str]:
        outcome, note = basic(r)
        if outcome == "ok":
            return "silent", "exit 0: " + (r.err.strip().splitlines() or [""])[-1][:160]
        if outcome == "clear" and not all(w.lower() in note.lower() for w in words):
            return "unclear", note + f" (does not say {' / '.join(words)})"
        return outcome, note
    return judge



def _disk_script(disk: Path, stage: Path, mode: str) -> str:
    fill = (f"dd if=/dev/zero of={disk}/.filler bs=4k >/dev/null 2>&1; "
            f"dd if=/dev/zero of={disk}/.filler2 bs=64 >/dev/null 2>&1; ") if mode in ("full", "nearly-full") else ""
    if mode == "nearly-full":  # room for a lock, a config and a log, not for a checkpoint
        fill += f"rm {disk}/.filler2; truncate -s -40K {disk}/.filler; "
    ro = f"mount -o remount,ro {disk} && " if mode == "ro" else ""
    return (f"mount -t tmpfs -o size=4m tmpfs {disk} && cp -a {stage}/. {disk}/ && {fill}{ro}"
            f"\"$@\"; rc=$?; echo __SHA__ >&2; "
            f"find {disk} -type f ! -name '.filler*' -exec sha256sum {{}} + >&2; exit $rc")


def run(s: Scenario, work: Path, code: Path, python: str, unshare: bool) -> tuple[str, str, float]:
    work.mkdir(parents=True)
    (work / "home").mkdir()
    (work / "stage").mkdir()
    (work / "disk").mkdir()
    argv = [python, *s.setup(work)]
    env = {**os.environ, "PYTHONPATH": str(code), "HOME": str(work / "home"), "SR_BENCH_CACHE": str(work / "cache"),
           "OMP_NUM_THREADS": "1", "SR_BENCH_DATA": os.environ.get("SR_BENCH_DATA", "/work/shared/datasets"),
           "PYTHONDONTWRITEBYTECODE": "1", **s.env}
    env.pop("SR_BENCH_DEBUG", None)
    env = {k: v for k, v in env.items() if v != "<unset>"}
    if s.disk is not None:
        if not unshare:
            return "n/a", "needs unshare -rm (a mount namespace) for a real tmpfs", 0.0
        argv = ["unshare", "-rm", "sh", "-c", _disk_script(work / "disk", work / "stage", s.disk), "sh", *argv]
    t0 = time.monotonic()
    rc, out, err = run_command(argv, work, env, s.timeout)
    mounted = {}
    if "__SHA__" in err:
        err, _, tail = err.partition("__SHA__\n")
        for line in tail.splitlines():
            digest, _, name = line.partition("  ")
            mounted[str(Path(name).relative_to(work / "disk"))] = digest
    r = Result(rc, out, err, time.monotonic() - t0, mounted)
    outcome, note = (s.judge or (lambda r, w: basic(r)))(r, work)
    return outcome, note, r.seconds


# --- scenarios --------------------------------------------------------------------------------------

EVAL = ["-m", "sr_bench.evaluate", "--model", "bicubic", "--scales", "2", "--no-progress", "--records", "rec.jsonl"]
UPSCALE = ["-m", "sr_bench.upscale", "--model", "bicubic", "--scale", "2", "--device", "cpu"]
TRAIN = ["-m", "sr_bench.train", "--model", "edsr-baseline", "--scale", "2", "--profile", "smoke", "--device", "cpu",
         "--no-progress", "--option", "blocks=1", "--option", "filters=8", "--patch-size", "8", "--batch-size", "2",
         "--val-every", "1000", "--val-images", "1"]


def folder(work: Path, name: str = "ds", n: int = 3) -> Path:
    for i in range(n):
        png(work / name / f"im{i}.png", 48, 64, i)
    return work / name


def _records(work: Path) -> list[dict]:
    path = work / "rec.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def scenarios() -> list[Scenario]:
    S: list[Scenario] = []

    def add(*args, **kwargs) -> None:
        S.append(Scenario(*args, **kwargs))

    # -- inputs that change or collide --------------------------------------------------------------
    def sr_replaced(work: Path) -> list[str]:
        folder(work, "ds", 3)
        for i in range(3):
            png(work / "sr" / "ds" / "x2" / f"im{i}.png", 48, 64, 10 + i)
        script = work / "replace.py"
        script.write_text(
            "import hashlib, json, sys\n"
            "from pathlib import Path\n"
            "from PIL import Image\n"
            "import numpy as np\n"
            "import sr_bench.sr_folder as f\n"
            "root = Path('sr').resolve()\n"
            "read = {}\n"
            "real_read = f.read_image_bytes\n"
            "def read_bytes(p):\n"  # every SR image read by the scorer, as it reads it
            "    data = real_read(p)\n"
            "    if 'sr/ds/x2' in str(p): read.setdefault(Path(p).name, data)\n"
            "    return data\n"
            "f.read_image_bytes = read_bytes\n"
            "real_score = f.score_image\n"
            "calls = []\n"
            "def score_image(*a, **k):\n"
            "    row = real_score(*a, **k)\n"
            "    calls.append(1)\n"
            "    if len(calls) == 1:\n"
            "        for i in range(3):\n"
            "            flat = Image.fromarray(np.full((48, 64, 3), 7 * i, np.uint8))\n"
            "            flat.save(root / 'ds' / 'x2' / f'im{i}.png')\n"
            "    return row\n"
            "f.score_image = score_image\n"
            "rec = f.score_sr_folder('sr', label='X', datasets=['ds'], scales=[2], progress=False)[0]\n"
            "h = hashlib.sha256()\n"
            "for name in sorted(read):\n"
            "    h.update(f'ds/x2/{name}\\t{hashlib.sha256(read[name]).hexdigest()}\\n'.encode())\n"
            "print(json.dumps({'stored': rec.sr_sha256, 'scored': h.hexdigest()}))\n")
        return [str(script)]

    def judge_replaced(r: Result, work: Path) -> tuple[str, str]:
        outcome, note = basic(r)
        if outcome != "ok":
            return outcome, note
        got = json.loads(r.out.strip().splitlines()[-1])
        return ("ok", "hash is of the bytes scored") if got["stored"] == got["scored"] else \
            ("silent", "stored sr_sha256 is not the hash of the bytes that were scored")

    add("sr-file-replaced-mid-run", "3", "SR files replaced after the first image is scored", sr_replaced,
        judge_replaced)

    def gif_in_folder(work: Path) -> list[str]:
        folder(work, "ds", 2)
        Image.fromarray(textured(48, 64, 5)).save(work / "ds" / "im9.gif")
        return [*EVAL, "--datasets", "ds"]

    add("folder-dataset-with-gif", "3", "a .gif among the PNGs of a folder dataset", gif_in_folder,
        expect_refusal("gif"))

    def two_for_one_stem(work: Path) -> list[str]:
        folder(work, "ds", 2)
        Image.fromarray(textured(48, 64, 5)).save(work / "ds" / "im0.jpg", quality=95)
        return [*EVAL, "--datasets", "ds"]

    add("folder-dataset-png-and-jpg-one-stem", "3", "im0.png and im0.jpg in a folder dataset", two_for_one_stem,
        expect_refusal("im0.png", "im0.jpg"))

    def sr_gif(work: Path) -> list[str]:
        folder(work, "ds", 2)
        png(work / "sr" / "ds" / "x2" / "im0.png", 48, 64, 3)
        Image.fromarray(textured(48, 64, 5)).save(work / "sr" / "ds" / "x2" / "im1.gif")
        return ["-m", "sr_bench.evaluate", "--sr-dir", "sr", "--label", "X", "--datasets", "ds", "--scales", "2",
                "--no-progress", "--records", "rec.jsonl"]

    add("sr-folder-gif-output", "3", "an SR folder whose im1 is a .gif", sr_gif, expect_refusal("gif"))

    def upscale_twice(work: Path) -> list[str]:
        folder(work, "photos", 2)
        done = subprocess.run([sys.executable, *UPSCALE, "photos", "--out", "photos"], cwd=work, capture_output=True,
                              env={**os.environ, "PYTHONPATH": os.environ["SWEEP_CODE"]})
        (work / "first_rc").write_text(str(done.returncode))
        return [*UPSCALE, "photos", "--out", "photos"]

    def judge_twice(r: Result, work: Path) -> tuple[str, str]:
        outcome, note = basic(r)
        own = sorted(p.name for p in (work / "photos").glob("*_x2_x2*"))
        if own:
            return "silent", f"upscaled its own outputs: {', '.join(own)}"
        if (work / "first_rc").read_text() == "0" and outcome == "clear":
            return "unclear", "refused the second run only: " + note
        return outcome, note

    add("upscale-out-is-input-folder-twice", "3", "upscale photos --out photos, run twice", upscale_twice,
        judge_twice)

    def out_overwrites_input(work: Path) -> list[str]:
        png(work / "a.png", 32, 32, 1)
        png(work / "a_x2.png", 32, 32, 2)
        (work / "before").write_text(sha(work / "a_x2.png"))
        return [*UPSCALE, "a.png", "a_x2.png", "--out", "."]

    def judge_overwrite(r: Result, work: Path) -> tuple[str, str]:
        outcome, note = basic(r)
        if sha(work / "a_x2.png") != (work / "before").read_text():
            return "loss", "input a_x2.png was overwritten by a.png's output"
        return outcome, note

    add("upscale-output-overwrites-an-input", "3", "upscale a.png a_x2.png --out .", out_overwrites_input,
        judge_overwrite)

    # -- two trainings on one folder -----------------------------------------------------------------
    def two_trainers(together: bool) -> Callable[[Path], list[str]]:
        def setup(work: Path) -> list[str]:
            folder(work, "data", 2)
            script = work / "two.sh"
            cmd = " ".join([sys.executable, *TRAIN, "--data", "data", "--val-data", "data", "--out", "run",
                            "--iterations", "100000", "--save-every", "5"])
            wait = "" if together else "for i in $(seq 1200); do [ -s run/checkpoint.pt ] && break; sleep 0.1; done\n"
            script.write_text(
                f"{cmd} >first.log 2>&1 &\n"
                "first=$!\n"
                f"{wait}"
                f"{cmd} {'' if together else '--resume'} >second.log 2>&1 &\n"
                "second=$!\n"
                "sleep 25\n"
                "a=0; b=0; kill -0 $first 2>/dev/null && a=1; kill -0 $second 2>/dev/null && b=1\n"
                "[ $a = 1 ] && [ $b = 1 ] && echo BOTH_RUNNING\n"
                "kill -9 $first $second 2>/dev/null; wait $first; r1=$?; wait $second; r2=$?\n"
                "echo first_rc=$r1 second_rc=$r2\n"
                "cat first.log second.log >&2\n")
            return ["-c", f"import subprocess,sys; sys.exit(subprocess.call(['sh', '{script}']))"]
        return setup

    def judge_two(r: Result, work: Path) -> tuple[str, str]:
        if "BOTH_RUNNING" in r.out:
            return "silent", "two processes trained into one --out at once"
        rcs = dict(kv.split("=") for kv in r.out.split() if "_rc=" in kv)
        refused = [k for k, v in rcs.items() if v in ("1", "2")]
        if len(refused) != 1:
            return "unclear", f"exit statuses {rcs}"
        lines = [line for line in r.err.splitlines() if line.startswith("error: ")]
        if len(lines) == 1 and "run" in lines[0] and ("pid" in lines[0] or "in use" in lines[0]):
            return "clear", lines[0][:220]
        return "unclear", (lines[0] if lines else "no error line")[:220]

    add("two-trains-one-out-resume", "4", "a second `train --resume` into --out while the first runs",
        two_trainers(False), judge_two, timeout=300)
    add("two-trains-one-out-together", "4", "two `train --out run` started at the same moment", two_trainers(True),
        judge_two, timeout=300)

    def stale_lock(work: Path) -> list[str]:
        folder(work, "data", 2)
        base = [sys.executable, *TRAIN, "--data", "data", "--val-data", "data", "--out", "run"]
        p = subprocess.Popen([*base, "--iterations", "100000", "--save-every", "5"], cwd=work,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": os.environ["SWEEP_CODE"],
                                  "SR_BENCH_CACHE": str(work / "cache"), "HOME": str(work / "home")})
        for _ in range(1200):
            if (work / "run" / "checkpoint.pt").exists():
                break
            time.sleep(0.1)
        p.send_signal(signal.SIGKILL)
        p.wait()
        return [*TRAIN, "--data", "data", "--val-data", "data", "--out", "run", "--iterations", "12", "--resume"]

    add("resume-after-kill-9", "4", "--resume after the first process was killed -9 (stale lock)", stale_lock,
        timeout=240)

    # -- EXIF ---------------------------------------------------------------------------------------
    def exif_upscale(work: Path) -> list[str]:
        jpeg_with_orientation(work / "phone.jpg", 6, 48, 64)
        return [*UPSCALE, "phone.jpg", "--out", "out"]

    def judge_exif(r: Result, work: Path) -> tuple[str, str]:
        outcome, note = basic(r)
        if outcome != "ok":
            return outcome, note
        out = next((work / "out").rglob("*.png"))
        with Image.open(out) as im:
            size = im.size
        if size != (96, 128):
            return "silent", f"output is {size[0]}x{size[1]}: the photo as shown is 48 wide, 64 high (EXIF 6)"
        said = "orientation" in r.err.lower()
        return ("ok", "rotated as viewers show it, and said so") if said else ("silent", "rotated without a word")

    add("upscale-exif-rotated-jpeg", "6", "a phone JPEG with EXIF orientation 6", exif_upscale, judge_exif)

    def exif_pair(work: Path) -> list[str]:
        (work / "ds" / "HR").mkdir(parents=True)
        jpeg_with_orientation(work / "ds" / "HR" / "a.jpg", 6, 48, 64)
        (work / "ds" / "LR_bicubic" / "X2").mkdir(parents=True)
        Image.fromarray(textured(24, 32, 1)).save(work / "ds" / "LR_bicubic" / "X2" / "ax2.png")
        return [*EVAL, "--datasets", "ds"]

    add("dataset-hr-exif-lr-without", "6", "HR JPEG with EXIF 6, its LR PNG without", exif_pair,
        expect_refusal("orientation"))

    # -- full and read-only disks -------------------------------------------------------------------
    def lr_cache_ro(work: Path) -> list[str]:
        folder(work, "ds", 2)
        return [*EVAL, "--datasets", "ds"]

    def judge_cached(r: Result, work: Path) -> tuple[str, str]:
        outcome, note = basic(r)
        if outcome == "ok" and not _records(work):
            return "silent", "exit 0 but no record"
        return outcome, note

    add("lr-cache-read-only", "10", "SR_BENCH_CACHE on a read-only disk", lr_cache_ro, judge_cached, disk="ro",
        env={"SR_BENCH_CACHE": "disk/cache"})
    add("lr-cache-full", "10", "SR_BENCH_CACHE on a full disk", lr_cache_ro, judge_cached, disk="full",
        env={"SR_BENCH_CACHE": "disk/cache"})
    add("read-only-home", "10", "HOME read-only, no SR_BENCH_CACHE: evaluate", lr_cache_ro, judge_cached, disk="ro",
        env={"HOME": "disk", "SR_BENCH_CACHE": "<unset>", "MPLCONFIGDIR": "<unset>", "XDG_CACHE_HOME": "<unset>"})

    def figure_ro(work: Path) -> list[str]:
        folder(work, "ds", 2)
        return ["-m", "sr_bench.figure", "--image", "ds/im0", "--box", "0", "0", "16", "16", "--labels", "bicubic",
                "--scale", "2", "--out", "disk/fig.png", "--records", "rec.jsonl", "--device", "cpu"]

    add("figure-out-read-only", "10", "figure --out on a read-only disk", figure_ro, disk="ro")
    add("figure-out-full", "10", "figure --out on a full disk", figure_ro, disk="full")

    def upscale_disk(work: Path) -> list[str]:
        png(work / "a.png", 48, 64)
        (work / "stage" / "out").mkdir()
        (work / "stage" / "out" / "a_x2.png").write_bytes(b"an earlier output")
        return [*UPSCALE, "a.png", "--out", "disk/out"]

    def judge_kept(r: Result, work: Path) -> tuple[str, str]:
        outcome, note = basic(r)
        lost = [k for k, v in r.mounted.items() if k.endswith("a_x2.png") and v != hashlib.sha256(
            b"an earlier output").hexdigest()]
        stray = [k for k in r.mounted if k.endswith(".tmp")]
        if outcome != "ok" and (lost or stray):
            return "loss", f"changed or left: {', '.join(lost + stray)}"
        return outcome, note

    add("upscale-out-read-only", "10", "upscale --out on a read-only disk", upscale_disk, judge_kept, disk="ro")
    add("upscale-out-full", "10", "upscale --out on a full disk", upscale_disk, judge_kept, disk="full")

    def train_disk(work: Path) -> list[str]:
        folder(work, "data", 2)
        return [*TRAIN, "--data", "data", "--val-data", "data", "--out", "disk/run", "--iterations", "4"]

    add("train-out-read-only", "10", "train --out on a read-only disk", train_disk, disk="ro", timeout=180)
    add("train-out-full", "10", "train --out on a full disk", train_disk, disk="full", timeout=180)

    def train_resume_full(work: Path) -> list[str]:
        folder(work, "data", 2)
        done = subprocess.run([sys.executable, *TRAIN, "--data", "data", "--val-data", "data", "--out", "stage/run",
                               "--iterations", "2"], cwd=work, capture_output=True,
                              env={**os.environ, "PYTHONPATH": os.environ["SWEEP_CODE"],
                                   "SR_BENCH_CACHE": str(work / "cache"), "HOME": str(work / "home")})
        (work / "first_rc").write_text(str(done.returncode))
        (work / "ckpt_sha").write_text(sha(work / "stage" / "run" / "checkpoint.pt"))
        return [*TRAIN, "--data", "data", "--val-data", "data", "--out", "disk/run", "--iterations", "4", "--resume"]

    def judge_resume_full(r: Result, work: Path) -> tuple[str, str]:
        outcome, note = basic(r)
        if r.mounted.get("run/checkpoint.pt") != (work / "ckpt_sha").read_text():
            return "loss", "the run's checkpoint.pt changed or vanished"
        stray = [k for k in r.mounted if k.endswith(".tmp")]
        if stray:
            return "loss", "temp files left: " + ", ".join(stray)
        return outcome, note

    add("train-resume-on-full-disk", "10", "train --resume when the disk is full (checkpoint kept?)",
        train_resume_full, judge_resume_full, disk="full", timeout=180)

    def train_disk_cache(work: Path) -> list[str]:
        folder(work, "data", 2)
        return [*TRAIN, "--data", "data", "--val-data", "data", "--out", "run", "--iterations", "2", "--cache", "disk"]

    add("train-cache-disk-read-only-home", "10", "train --cache disk with HOME read-only", train_disk_cache,
        disk="ro", env={"HOME": "disk", "SR_BENCH_CACHE": "<unset>", "XDG_CACHE_HOME": "<unset>"}, timeout=180)

    add("train-out-nearly-full", "10", "train --out with room for config and log, not a checkpoint", train_disk,
        disk="nearly-full", timeout=180)
    add("train-resume-on-nearly-full-disk", "10", "train --resume, room for config and log, not a checkpoint",
        train_resume_full, judge_resume_full, disk="nearly-full", timeout=180)

    def figure_ro_home(work: Path) -> list[str]:
        folder(work, "ds", 2)
        return ["-m", "sr_bench.figure", "--image", "ds/im0", "--box", "0", "0", "16", "16", "--labels", "bicubic",
                "--scale", "2", "--out", "fig.png", "--records", "rec.jsonl", "--device", "cpu"]

    def judge_figure(r: Result, work: Path) -> tuple[str, str]:
        outcome, note = basic(r)
        if outcome == "ok" and not (work / "fig.png").exists():
            return "silent", "exit 0, no figure"
        if outcome == "ok" and r.err.strip():
            return "ok", "said: " + r.err.strip().splitlines()[0][:150]
        return outcome, note

    add("figure-read-only-home", "10", "figure with HOME read-only (matplotlib's config folder)", figure_ro_home,
        judge_figure, disk="ro", env={"HOME": "disk", "MPLCONFIGDIR": "<unset>", "XDG_CONFIG_HOME": "<unset>",
                                      "XDG_CACHE_HOME": "<unset>"})

    def published_weights_ro_home(work: Path) -> list[str]:
        png(work / "a.png", 32, 32)
        return ["-m", "sr_bench.upscale", "--model", "edsr-baseline", "--scale", "2", "a.png", "--out", "out",
                "--device", "cpu"]

    add("weights-read-only-home", "10", "upscale with published weights, HOME read-only (torch hub cache), offline",
        published_weights_ro_home, disk="ro", env={"HOME": "disk", "TORCH_HOME": "<unset>",
                                                   "XDG_CACHE_HOME": "<unset>", "SR_BENCH_WEIGHTS_DIR": "<unset>"})

    def cpu_speed_ro(work: Path) -> list[str]:
        return ["-m", "sr_bench.cpu_speed", "--skip", "forward", "--rounds", "1", "--threads", "1",
                "--out", "disk/speed.json"]

    add("cpu-speed-out-read-only", "10", "cpu_speed --out on a read-only disk", cpu_speed_ro, disk="ro",
        timeout=300)

    def evaluate_results_ro(work: Path) -> list[str]:
        folder(work, "ds", 2)
        return ["-m", "sr_bench.evaluate", "--model", "bicubic", "--scales", "2", "--no-progress", "--datasets", "ds",
                "--results", "disk/results"]

    add("evaluate-results-read-only", "10", "evaluate --results on a read-only disk", evaluate_results_ro, disk="ro")

    # -- decompression bombs ------------------------------------------------------------------------
    def bomb_eval(work: Path) -> list[str]:
        folder(work, "ds", 1)
        png_bomb(work / "ds" / "bomb.png")
        return [*EVAL, "--datasets", "ds"]

    add("bomb-in-folder-dataset", "11", "a 30000x30000 PNG of 875 KB in a folder dataset", bomb_eval,
        expect_refusal("bomb.png", "pixels"), timeout=120)

    def bomb_upscale(work: Path) -> list[str]:
        png_bomb(work / "bomb.png")
        return [*UPSCALE, "bomb.png", "--out", "out"]

    add("bomb-upscale", "11", "upscale a 30000x30000 PNG of 875 KB", bomb_upscale,
        expect_refusal("bomb.png", "pixels"), timeout=120)

    def bomb_sr(work: Path) -> list[str]:
        folder(work, "ds", 1)
        png_bomb(work / "sr" / "ds" / "x2" / "im0.png")
        return ["-m", "sr_bench.evaluate", "--sr-dir", "sr", "--label", "X", "--datasets", "ds", "--scales", "2",
                "--no-progress", "--records", "rec.jsonl"]

    add("bomb-in-sr-folder", "11", "an SR file that is a 30000x30000 PNG", bomb_sr, expect_refusal("im0.png"),
        timeout=120)

    def big_allowed(work: Path) -> list[str]:
        png(work / "big.png", 40, 50)
        return [*UPSCALE, "big.png", "--out", "out"]

    add("pixel-limit-from-env", "11", "SR_BENCH_MAX_PIXELS=1000 with a 50x40 image", big_allowed,
        expect_refusal("big.png", "SR_BENCH_MAX_PIXELS"), env={"SR_BENCH_MAX_PIXELS": "1000"})

    # -- inputs of my own design --------------------------------------------------------------------
    def fifo_dataset(work: Path) -> list[str]:
        folder(work, "ds", 2)
        os.mkfifo(work / "ds" / "baby.png")
        return [*EVAL, "--datasets", "ds"]

    add("fifo-named-png-in-dataset", "own", "a FIFO named baby.png in a folder dataset", fifo_dataset,
        expect_refusal("baby.png"), timeout=60)

    def fifo_upscale(work: Path) -> list[str]:
        folder(work, "photos", 1)
        os.mkfifo(work / "photos" / "baby.png")
        return [*UPSCALE, "photos", "--out", "out"]

    add("fifo-named-png-upscale", "own", "a FIFO named baby.png in an upscale folder", fifo_upscale,
        expect_refusal("baby.png"), timeout=60)

    def folder_named_png(work: Path) -> list[str]:
        folder(work, "ds", 2)
        (work / "ds" / "odd.png").mkdir()
        return [*EVAL, "--datasets", "ds"]

    add("folder-named-png-in-dataset", "own", "a folder named odd.png in a folder dataset", folder_named_png,
        expect_refusal("odd.png"))

    def loop_dataset(work: Path) -> list[str]:
        folder(work, "ds", 2)
        os.symlink("loop.png", work / "ds" / "loop.png")
        return [*EVAL, "--datasets", "ds"]

    add("symlink-loop-in-dataset", "own", "a symlink loop loop.png in a folder dataset", loop_dataset,
        expect_refusal("loop.png"))

    def zero_byte(work: Path) -> list[str]:
        folder(work, "ds", 2)
        (work / "ds" / "empty.png").write_bytes(b"")
        return [*EVAL, "--datasets", "ds"]

    add("zero-byte-png", "own", "a 0-byte PNG in a folder dataset", zero_byte, expect_refusal("empty.png"))

    def truncated_idat(work: Path) -> list[str]:
        folder(work, "ds", 2)
        data = png(work / "x.png", 48, 64, 7).read_bytes()
        (work / "ds" / "cut.png").write_bytes(data[: len(data) * 2 // 3])
        return [*EVAL, "--datasets", "ds"]

    add("truncated-idat", "own", "a PNG cut inside its IDAT", truncated_idat, expect_refusal("cut.png"))

    def ext_lies(work: Path) -> list[str]:
        Image.fromarray(textured(48, 64, 2)).save(work / "liar.png", format="JPEG", quality=95)
        return [*UPSCALE, "liar.png", "--out", "out"]

    add("extension-lies", "own", "a JPEG named liar.png to upscale (read by content)", ext_lies)

    def upper_ext(work: Path) -> list[str]:
        (work / "ds").mkdir()
        for i in range(2):
            Image.fromarray(textured(48, 64, i)).save(work / "ds" / f"IM{i}.PNG")
        return [*EVAL, "--datasets", "ds"]

    def judge_upper(r: Result, work: Path) -> tuple[str, str]:
        outcome, note = basic(r)
        recs = _records(work)
        if outcome == "ok" and (not recs or recs[-1].get("n_images") != 2):
            return "silent", f"scored {recs[-1].get('n_images') if recs else 0} of 2 images"
        return outcome, note

    add("uppercase-extensions", "own", "a folder of .PNG files", upper_ext, judge_upper)

    def non_utf8(work: Path) -> list[str]:
        name = os.fsencode(str(work / "photos")) + b"/caf\xe9.png"
        (work / "photos").mkdir()
        Image.fromarray(textured(32, 32, 3)).save(name.decode(errors="surrogateescape"), format="PNG")
        return [*UPSCALE, "photos", "--out", "out"]

    add("non-utf8-file-name", "own", "upscale a file named caf\\xe9.png (Latin-1 bytes)", non_utf8,
        env={"LC_ALL": "C.UTF-8", "PYTHONUTF8": "<unset>"})

    def long_name(work: Path) -> list[str]:
        png(work / ("n" * 250 + ".png"), 32, 32)
        return [*UPSCALE, "n" * 250 + ".png", "--out", "out"]

    add("very-long-file-name", "own", "upscale a 254-character file name (output name over 255)", long_name)

    def dataset_is_file(work: Path) -> list[str]:
        png(work / "one.png")
        return [*EVAL, "--datasets", "one.png"]

    add("dataset-is-a-file", "own", "--datasets one.png (a file, not a folder)", dataset_is_file,
        expect_refusal("one.png"))

    def one_pixel(work: Path) -> list[str]:
        Image.fromarray(np.full((1, 1, 3), 90, np.uint8)).save(work / "dot.png")
        return [*UPSCALE, "dot.png", "--out", "out"]

    add("upscale-1x1", "own", "upscale a 1x1 image", one_pixel)

    def wide(work: Path) -> list[str]:
        Image.fromarray(np.full((1, 65535), 90, np.uint8)).save(work / "line.png")
        return [*UPSCALE, "line.png", "--out", "out"]

    add("upscale-65535x1", "own", "upscale a 65535x1 gray image", wide, timeout=180)

    def wide_eval(work: Path) -> list[str]:
        (work / "ds").mkdir()
        Image.fromarray(np.full((1, 65535), 90, np.uint8)).save(work / "ds" / "line.png")
        return [*EVAL, "--datasets", "ds"]

    add("evaluate-65535x1", "own", "a 65535x1 image in a folder dataset", wide_eval, expect_refusal("line.png"))

    def sixteen(work: Path) -> list[str]:
        Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(work / "deep.png")
        return [*UPSCALE, "deep.png", "--out", "out"]

    add("upscale-16-bit-png", "own", "upscale a 16-bit PNG", sixteen, expect_refusal("deep.png", "16-bit"))

    def animated(work: Path) -> list[str]:
        apng(work / "anim.png")
        return [*UPSCALE, "anim.png", "--out", "out"]

    add("upscale-apng", "own", "upscale a 3-frame APNG", animated, expect_refusal("anim.png", "frame"))

    def animated_ds(work: Path) -> list[str]:
        folder(work, "ds", 1)
        apng(work / "ds" / "anim.png")
        return [*EVAL, "--datasets", "ds"]

    add("apng-in-dataset", "own", "a 3-frame APNG in a folder dataset", animated_ds, expect_refusal("anim.png"))

    def gif_upscale(work: Path) -> list[str]:
        frames = [Image.fromarray(textured(32, 32, s)) for s in range(2)]
        frames[0].save(work / "a.gif", save_all=True, append_images=frames[1:])
        return [*UPSCALE, "a.gif", "--out", "out"]

    add("upscale-animated-gif", "own", "upscale an animated GIF", gif_upscale, expect_refusal("a.gif"))

    def cmyk(work: Path) -> list[str]:
        Image.fromarray(textured(32, 32, 3)).convert("CMYK").save(work / "print.jpg")
        return [*UPSCALE, "print.jpg", "--out", "out"]

    add("upscale-cmyk-jpeg", "own", "upscale a CMYK JPEG", cmyk, expect_refusal("print.jpg", "CMYK"))

    def la(work: Path) -> list[str]:
        a = np.dstack([textured(32, 32, 3)[..., 0], np.full((32, 32), 255, np.uint8)])
        Image.fromarray(a, "LA").save(work / "la.png")
        return [*UPSCALE, "la.png", "--out", "out"]

    add("upscale-la-png", "own", "upscale a gray+alpha (opaque) PNG", la)

    def sr_replaced_size(work: Path) -> list[str]:
        folder(work, "ds", 2)
        for i in range(2):
            png(work / "sr" / "ds" / "x2" / f"im{i}.png", 48, 64, 10 + i)
        script = work / "replace.py"
        script.write_text(
            "from pathlib import Path\n"
            "from PIL import Image\n"
            "import numpy as np\n"
            "import sr_bench.sr_folder as f\n"
            "from sr_bench.evaluate import main\n"
            "real = f._check_files\n"
            "def check(*a, **k):\n"
            "    real(*a, **k)\n"
            "    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save('sr/ds/x2/im1.png')\n"
            "f._check_files = check\n"
            "raise SystemExit(main(['--sr-dir', 'sr', '--label', 'X', '--datasets', 'ds', '--scales', '2', "
            "'--no-progress', '--records', 'rec.jsonl']))\n")
        return [str(script)]

    add("sr-file-resized-after-check", "3", "an SR file replaced by a 10x10 image after the header checks",
        sr_replaced_size, expect_refusal("im1.png"))

    def dev_zero(work: Path) -> list[str]:
        folder(work, "ds", 2)
        os.symlink("/dev/zero", work / "ds" / "zero.png")
        return [*EVAL, "--datasets", "ds"]

    add("symlink-to-dev-zero-in-dataset", "own", "zero.png -> /dev/zero in a folder dataset", dev_zero,
        expect_refusal("zero.png"), timeout=60)

    def fifo_sr(work: Path) -> list[str]:
        folder(work, "ds", 2)
        png(work / "sr" / "ds" / "x2" / "im0.png", 48, 64, 3)
        os.mkfifo(work / "sr" / "ds" / "x2" / "im1.png")
        return ["-m", "sr_bench.evaluate", "--sr-dir", "sr", "--label", "X", "--datasets", "ds", "--scales", "2",
                "--no-progress", "--records", "rec.jsonl"]

    add("fifo-in-sr-folder", "own", "a FIFO named im1.png in an SR folder", fifo_sr, expect_refusal("im1.png", "FIFO"),
        timeout=60)

    def non_utf8_dataset(work: Path) -> list[str]:
        folder(work, "ds", 1)
        name = os.fsencode(str(work / "ds")) + b"/caf\xe9.png"
        Image.fromarray(textured(48, 64, 3)).save(name.decode(errors="surrogateescape"), format="PNG")
        return [*EVAL, "--datasets", "ds", "--per-image", "per_image.csv"]

    def judge_csv(r: Result, work: Path) -> tuple[str, str]:
        outcome, note = basic(r)
        if outcome == "ok" and not (work / "per_image.csv").exists():
            return "silent", "no per-image CSV"
        return outcome, note

    add("non-utf8-name-per-image-csv", "own", "a dataset image named caf\\xe9.png, evaluate --per-image",
        non_utf8_dataset, judge_csv, env={"LC_ALL": "C.UTF-8", "PYTHONUTF8": "<unset>"})

    def train_into_data(work: Path) -> list[str]:
        folder(work, "data", 2)
        return [*TRAIN, "--data", "data", "--val-data", "data", "--out", "data", "--overwrite", "--iterations", "2"]

    def judge_train_into_data(r: Result, work: Path) -> tuple[str, str]:
        outcome, note = basic(r)
        if (work / "data" / "val_curve.png").exists():
            return "silent", "wrote val_curve.png into its own training images"
        return outcome, note

    add("train-out-is-data-folder", "3", "train --data data --out data --overwrite", train_into_data,
        judge_train_into_data)

    def huge_sparse(work: Path) -> list[str]:
        folder(work, "ds", 1)
        with open(work / "ds" / "huge.png", "wb") as f:
            f.truncate(4 << 30)  # 4 GiB of nothing, named like an image
        return [*EVAL, "--datasets", "ds"]

    add("4gib-non-image-named-png", "own", "a sparse 4 GiB file named huge.png in a folder dataset", huge_sparse,
        expect_refusal("huge.png"), timeout=120)

    def unreadable(work: Path) -> list[str]:
        folder(work, "ds", 2)
        script = work / "unreadable.py"
        script.write_text(
            "import builtins, errno, os\nfrom pathlib import Path\nimport sr_bench.images\n"
            "from sr_bench.evaluate import main\n"
            "def fake_open(p, *a, **k):\n"  # the open() sr_bench.images reads image files with
            "    if Path(p).name == 'im1.png': raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(p))\n"
            "    return builtins.open(p, *a, **k)\n"
            "sr_bench.images.open = fake_open\n"
            "raise SystemExit(main(['--model', 'bicubic', '--datasets', 'ds', '--scales', '2', '--no-progress', "
            "'--records', 'rec.jsonl']))\n")
        return [str(script)]

    add("unreadable-file", "own", "im1.png unreadable (EACCES, simulated: root reads anything)", unreadable,
        expect_refusal("im1.png"))
    return S


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--code", type=Path, default=REPO, help="tree holding the sr_bench package to test")
    p.add_argument("--only", nargs="*", default=None, help="run scenarios whose name holds one of these words")
    p.add_argument("--json", type=Path, default=None, help="also write the outcomes here")
    p.add_argument("--keep", action="store_true", help="keep the work folders")
    args = p.parse_args()
    code = args.code.resolve()
    os.environ["SWEEP_CODE"] = str(code)
    unshare = unshare_works()
    base = Path(tempfile.mkdtemp(prefix="sr_bench_inputs_sweep_"))
    rows = []
    for s in scenarios():
        if args.only and not any(w in s.name for w in args.only):
            continue
        outcome, note, seconds = run(s, base / s.name, code, sys.executable, unshare)
        rows.append({"scenario": s.name, "finding": s.finding, "what": s.what, "outcome": outcome, "note": note,
                     "seconds": round(seconds, 1)})
        print(f"{s.name:40s} {outcome:9s} {note}", flush=True)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"work folders: {base}")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if args.json:
        args.json.write_text(json.dumps({"code": str(code), "rows": rows, "counts": counts}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
