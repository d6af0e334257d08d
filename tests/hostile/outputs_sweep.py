"""Hostile-input sweep: network outputs, imported factories, weights files and weights downloads.

Not a pytest module (pytest collects ``test_*.py`` only): a script that runs each scenario as a
command in a subprocess, with a timeout, and sorts what happened into

* ``ok``: a scenario that should work did, and its check passed;
* ``clear error``: one ``error: ...`` line holding the expected words, the expected exit status,
  no traceback, and nothing written (no record, no output image, no cached download);
* ``unclear``: an error, but not one line, or without the words (the file, the value, the fix),
  or with another exit status;
* ``traceback``: a Python traceback without ``--debug``;
* ``silently wrong``: exit 0 where an error was due (a record of a broken network), or a failed
  check, or an error that left a file behind;
* ``hang``: still running at the timeout.

    python tests/hostile/outputs_sweep.py              # every scenario, a table at the end
    python tests/hostile/outputs_sweep.py -k download  # those whose name holds "download"
    python tests/hostile/outputs_sweep.py --markdown   # the table as markdown

Everything happens in a temporary folder: two small images, the hostile networks of ``nets.py``,
tiny EDSR checkpoints broken in one way each, and a loopback HTTP server (``tests/loopback.py``)
whose files stall, stop short, redirect for ever or answer with a web page. Nothing touches the
network; the official weights URL is tried too, as in real use, and fails at once without one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))

from loopback import Served, serving  # noqa: E402 - tests/ is not a package

OFFICIAL_X2 = "edsr_baseline_x2-1bc95232.pt"
TINY = ("--option", "blocks=2", "--option", "filters=8")


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    argv: tuple[str, ...]  # after the python executable; "{work}", "{port}" are filled in
    expect: str = "error"  # error | ok
    exit: int = 1
    words: tuple[str, ...] = ()  # the error line holds each (case-insensitive)
    at_most_once: tuple[str, ...] = ()  # ... none of these twice (a description said twice)
    never: tuple[str, ...] = ()  # ... and none of these (a guess)
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 90.0
    absent: tuple[str, ...] = ("{work}/out/records.jsonl",)  # must not exist after the run (error) / must (ok)
    check: Callable[[Path], str | None] | None = None  # ok scenarios: a problem, or None
    stdout_lacks: str | None = None  # ok scenarios: text that must not reach stdout


def evaluate(*args: str) -> tuple[str, ...]:
    return ("-m", "sr_bench.evaluate", "--datasets", "{work}/imgs", "--scales", "2", "--no-progress",
            "--records", "{work}/out/records.jsonl", *args)


def net(mode: str, *extra: str) -> tuple[str, ...]:
    return evaluate("--model", "nets:build", "--weights", "random", "--option", f"mode={mode}", *extra)


def upscale(factory: str, *extra: str) -> tuple[str, ...]:
    return ("-m", "sr_bench.upscale", "--model", f"nets:{factory}", "--weights", "{work}/w/up.pt", "--scale", "2",
            "{work}/imgs/a.png", "--out", "{work}/out/sr", *extra)


def tiny(weights: str, *extra: str) -> tuple[str, ...]:
    return evaluate("--model", "edsr-baseline", *TINY, "--weights", weights, *extra)


def official(mode: str) -> dict[str, str]:
    return {"SR_BENCH_WEIGHTS_URL": f"http://127.0.0.1:{{port}}/{mode}", "SR_BENCH_DOWNLOAD_TIMEOUT": "2",
            "SR_BENCH_DOWNLOAD_RETRIES": "0"}


CACHED = "{work}/torch/hub/checkpoints/" + OFFICIAL_X2


def psnr_equal_to_ok(work: Path) -> str | None:
    """The record's PSNR equals the well-behaved network's (written by the 'net-ok' scenario)."""
    import json

    lines = (work / "out" / "records.jsonl").read_text().splitlines()
    ok = (work / "ok_psnr.txt").read_text().strip() if (work / "ok_psnr.txt").exists() else None
    got = f"{json.loads(lines[-1])['psnr']:.6f}"
    return None if ok is None or got == ok else f"PSNR {got} differs from the plain network's {ok}"


def remember_ok_psnr(work: Path) -> str | None:
    import json

    lines = (work / "out" / "records.jsonl").read_text().splitlines()
    (work / "ok_psnr.txt").write_text(f"{json.loads(lines[-1])['psnr']:.6f}")
    return None


def png_written(work: Path) -> str | None:
    return None if (work / "out" / "sr" / "a_x2.png").is_file() else "no PNG written"


RF = ("--option", "receptive_field=2", "--tile", "16")
SCENARIOS: list[Scenario] = [
    # ---- what a network returns ----
    Scenario("net-ok", "a well-behaved imported network", net("ok"), "ok", 0, check=remember_ok_psnr),
    Scenario("net-nan", "output all NaN", net("nan"), words=("a.png", "nan", "nets:build")),
    Scenario("net-one-nan", "one NaN pixel", net("onenan"), words=("a.png", "3 nan", "y=3, x=5")),
    Scenario("net-inf", "output +Inf", net("inf"), words=("a.png", "inf")),
    Scenario("net-short", "one row short", net("short"), words=("a.png", "(1, 3, 47, 40)", "(1, 3, 48, 40)")),
    Scenario("net-uint8", "uint8 output", net("uint8"), words=("uint8", "float in 0..1", "input_range")),
    Scenario("net-int64", "int64 output", net("int"), words=("int64", "float in 0..1")),
    Scenario("net-bool", "bool output", net("bool"), words=("bool", "float in 0..1")),
    Scenario("net-complex", "complex output", net("complex"), words=("complex64", "float")),
    Scenario("net-tuple", "returns (sr, sr)", net("tuple"), words=("tuple", "tensor")),
    Scenario("net-dict", "returns {'out': sr}", net("dict"), words=("dict", "tensor")),
    Scenario("net-list", "returns [sr]", net("list"), words=("list", "tensor")),
    Scenario("net-none", "returns None", net("none"), words=("none", "tensor")),
    Scenario("net-3d", "drops the batch dimension", net("3d"), words=("(3, 48, 40)", "(1, 3, 48, 40)")),
    Scenario("net-1ch", "1 channel out of 3 in", net("channels1"), words=("(1, 1, 48, 40)", "(1, 3, 48, 40)")),
    Scenario("net-batch2", "twice the batch", net("batch2"), words=("(2, 3, 48, 40)", "(1, 3, 48, 40)")),
    Scenario("net-device", "output on another device (meta)", net("meta"), words=("meta", "cpu")),
    Scenario("net-f64", "float64 output: scored as float32", net("f64"), "ok", 0, check=psnr_equal_to_ok),
    Scenario("net-raises", "its forward raises", net("raises"), words=("nets:build", "runtimeerror", "--debug")),
    Scenario("net-forward-three-args", "its forward needs an argument sr_bench does not pass",
             evaluate("--model", "nets:three_inputs", "--weights", "random"), words=("nets:three_inputs", "mask")),
    Scenario("net-nan-tiled", "NaN, tiled", net("nan", *RF), words=("a.png", "nan")),
    Scenario("net-short-tiled", "one row short, tiled", net("short", *RF), words=("a.png", "x2")),
    Scenario("net-nan-ensemble", "NaN, self-ensemble", net("nan", "--self-ensemble"), words=("a.png", "nan")),
    Scenario("net-one-nan-both", "one NaN, plain + ensemble", net("onenan", "--self-ensemble", "both"),
             words=("a.png", "nan")),
    Scenario("net-short-ensemble", "one row short, self-ensemble", net("short", "--self-ensemble"),
             words=("a.png", "(4, 3, 47, 40)")),
    Scenario("net-mutates-input", "changes its input in place (plain, tiled, ensemble)",
             net("ok", "--self-ensemble", "both"), "ok", 0),
    Scenario("net-int-buffer", "an integer buffer beside float parameters",
             evaluate("--model", "nets:int_buffer", "--weights", "random"), "ok", 0),
    Scenario("upscale-nan", "upscale: NaN output", upscale("build_nan"), words=("a.png", "nan"),
             absent=("{work}/out/sr/a_x2.png",)),
    Scenario("upscale-short", "upscale: one row short", upscale("build_short"), words=("a.png", "(1, 3, 95, 80)"),
             absent=("{work}/out/sr/a_x2.png",)),
    Scenario("upscale-uint8", "upscale: uint8 output", upscale("build_uint8"), words=("a.png", "uint8"),
             absent=("{work}/out/sr/a_x2.png",)),
    Scenario("upscale-ok", "upscale: a well-behaved network", upscale("build_ok"), "ok", 0,
             absent=("{work}/out/sr/a_x2.png",), check=png_written),
    # ---- import-path factories ----
    Scenario("factory-raises", "the factory raises ValueError",
             evaluate("--model", "nets:raises", "--weights", "random"),
             words=("nets:raises", "valueerror", "width must be even", "--debug")),
    Scenario("factory-needs-arg", "the factory needs an argument it is not given",
             evaluate("--model", "nets:needs_width", "--weights", "random"), exit=2,
             words=("nets:needs_width", "--option width=")),
    Scenario("factory-str", "the factory returns a str", evaluate("--model", "nets:returns_str", "--weights", "random"),
             words=("nets:returns_str", "str", "nn.module")),
    Scenario("factory-none", "the factory returns None",
             evaluate("--model", "nets:returns_none", "--weights", "random"), words=("nonetype", "nn.module")),
    Scenario("factory-class", "the factory returns a class",
             evaluate("--model", "nets:returns_class", "--weights", "random"), words=("the class up", "nn.module")),
    Scenario("factory-prints", "the factory prints to stdout (stdout keeps the table only)",
             evaluate("--model", "nets:chatty", "--weights", "random"), "ok", 0, stdout_lacks="prints"),
    Scenario("factory-module-typo", "a typo in the module", evaluate("--model", "netz:build", "--weights", "random"),
             exit=2, words=("netz", "pythonpath")),
    Scenario("factory-attr-typo", "a typo in the attribute", evaluate("--model", "nets:biuld", "--weights", "random"),
             exit=2, words=("biuld", "build")),
    Scenario("factory-not-callable", "the attribute is a number",
             evaluate("--model", "nets:NOT_A_FACTORY", "--weights", "random"), exit=2, words=("42", "callable")),
    Scenario("factory-import-raises", "the module raises while importing",
             evaluate("--model", "broken_import:build", "--weights", "random"),
             words=("broken_import", "runtimeerror", "cuda_home")),
    # ---- weights files ----
    Scenario("weights-ok", "a tiny EDSR checkpoint", tiny("{work}/w/good.pt"), "ok", 0),
    Scenario("weights-int", "float parameters stored as int64", tiny("{work}/w/int.pt"),
             words=("int.pt", "int64", "head.0.weight")),
    Scenario("weights-bool", "one tensor stored as bool", tiny("{work}/w/bool.pt"), words=("bool", "tail.1.bias")),
    Scenario("weights-half", "float16 weights load into float32", tiny("{work}/w/half.pt"), "ok", 0),
    Scenario("weights-extra-key", "one key too many", tiny("{work}/w/extra.pt"), words=("extra.weight", "unexpected"),
             at_most_once=("residual blocks",)),
    Scenario("weights-missing-key", "one key missing (no guess at blocks)", tiny("{work}/w/missing.pt"),
             words=("body.1.body.0.bias", "missing"), at_most_once=("residual blocks",), never=("blocks=",)),
    Scenario("weights-head5", "a 5x5 head (not SRResNet)", tiny("{work}/w/head5.pt"),
             words=("head.0.weight", "(8, 3, 5, 5)", "(8, 3, 3, 3)"), never=("srresnet",)),
    Scenario("weights-one-dim", "one tensor differs in one dimension", tiny("{work}/w/onedim.pt"),
             words=("head.0.weight", "(8, 1, 3, 3)")),
    Scenario("weights-nan", "a tensor holds NaN", tiny("{work}/w/nan.pt"), words=("nan", "tail.1.weight")),
    Scenario("weights-empty-file", "a 0-byte file", tiny("{work}/w/empty.pt"), words=("empty.pt",)),
    Scenario("weights-text-file", "a text file", tiny("{work}/w/text.pt"), words=("text.pt",)),
    Scenario("weights-folder", "--weights names a folder", tiny("{work}/w"), exit=2, words=("folder", "{work}/w")),
    Scenario("upscale-weights-folder", "upscale --weights names a folder",
             ("-m", "sr_bench.upscale", "--model", "edsr-baseline", "--weights", "{work}/w", "--scale", "2",
              "{work}/imgs/a.png", "--out", "{work}/out/sr"), exit=2, words=("{work}/w", "is a folder"),
             absent=("{work}/out/sr/a_x2.png",)),
    Scenario("upscale-weights-missing", "upscale --weights names no file",
             ("-m", "sr_bench.upscale", "--weights", "{work}/w/none.pt", "--scale", "2", "{work}/imgs/a.png", "--out",
              "{work}/out/sr"), words=("none.pt", "does not exist"), absent=("{work}/out/sr/a_x2.png",)),
    Scenario("weights-dir-is-file", "--weights-dir names a file",
             evaluate("--model", "edsr-baseline", "--weights", "official", "--weights-dir", "{work}/w/good.pt"),
             exit=2, words=("--weights-dir", "good.pt", "file")),
    Scenario("weights-dir-missing", "--weights-dir names nothing",
             evaluate("--model", "edsr-baseline", "--weights", "official", "--weights-dir", "{work}/nowhere"),
             exit=2, words=("--weights-dir", "nowhere", "does not exist")),
    Scenario("data-root-is-file", "SR_BENCH_DATA names a file",
             ("-m", "sr_bench.evaluate", "--model", "bicubic", "--datasets", "Set5", "--scales", "2", "--records",
              "{work}/out/records.jsonl"), env={"SR_BENCH_DATA": "{work}/w/good.pt"},
             words=("SR_BENCH_DATA", "good.pt", "file")),
    # ---- weights downloads (mirror on the loopback server) ----
    Scenario("download-stall", "the mirror accepts and never answers",
             evaluate("--model", "edsr-baseline", "--weights", "official"), env=official("stall"), timeout=40,
             words=(f"/stall/{OFFICIAL_X2}", "timeout", "SR_BENCH_DOWNLOAD_TIMEOUT"), absent=(CACHED,)),
    Scenario("download-stall-after-100", "the mirror stalls after 100 bytes",
             evaluate("--model", "edsr-baseline", "--weights", "official"), env=official("stall_after"), timeout=40,
             words=(f"/stall_after/{OFFICIAL_X2}", "stalled"), absent=(CACHED,)),
    Scenario("download-short", "Content-Length larger than the body",
             evaluate("--model", "edsr-baseline", "--weights", "official"), env=official("short"), timeout=40,
             words=(f"/short/{OFFICIAL_X2}", "got 100 of 4096 bytes"), absent=(CACHED,)),
    Scenario("download-empty", "a 0-byte body", evaluate("--model", "edsr-baseline", "--weights", "official"),
             env=official("empty"), timeout=40, words=(f"/empty/{OFFICIAL_X2}", "sha256"), absent=(CACHED,)),
    Scenario("download-html", "a web page with 200", evaluate("--model", "edsr-baseline", "--weights", "official"),
             env=official("html"), timeout=40, words=(f"/html/{OFFICIAL_X2}", "web page"), absent=(CACHED,)),
    Scenario("download-redirect-loop", "301 to itself for ever",
             evaluate("--model", "edsr-baseline", "--weights", "official"), env=official("loop"), timeout=40,
             words=(f"/loop/{OFFICIAL_X2}", "redirect"), absent=(CACHED,)),
    Scenario("download-404", "the mirror does not hold the file",
             evaluate("--model", "edsr-baseline", "--weights", "official"), env=official("nothing"), timeout=40,
             words=(f"/nothing/{OFFICIAL_X2}", "404"), absent=(CACHED,)),
    Scenario("download-refused", "nothing listens on the mirror's port",
             evaluate("--model", "edsr-baseline", "--weights", "official"),
             env={**official("x"), "SR_BENCH_WEIGHTS_URL": "http://127.0.0.1:9/x"}, timeout=40,
             words=("127.0.0.1:9", "connect"), absent=(CACHED,)),
    Scenario("download-ftp-mirror", "the mirror variable names an ftp:// URL",
             evaluate("--model", "edsr-baseline", "--weights", "official"),
             env={**official("x"), "SR_BENCH_WEIGHTS_URL": "ftp://example.org/w"}, timeout=40,
             words=("ftp://example.org/w/" + OFFICIAL_X2, "scheme"), absent=(CACHED,)),
    Scenario("download-timeout-unreadable", "SR_BENCH_DOWNLOAD_TIMEOUT=soon",
             evaluate("--model", "edsr-baseline", "--weights", "official"),
             env={**official("stall"), "SR_BENCH_DOWNLOAD_TIMEOUT": "soon"}, exit=2,
             words=("SR_BENCH_DOWNLOAD_TIMEOUT", "soon"), absent=(CACHED,)),
    Scenario("download-cache-unwritable", "the torch hub folder is a file",
             evaluate("--model", "edsr-baseline", "--weights", "official"),
             env={**official("stall"), "TORCH_HOME": "{work}/w/good.pt"},
             words=("cannot write", "good.pt", "TORCH_HOME")),
    Scenario("download-ok-http", "a registered checkpoint from an HTTP mirror",
             ("{work}/fake_official.py", *evaluate("--model", "edsr-baseline", "--weights", "fake-x2")), "ok", 0,
             env={"SR_BENCH_WEIGHTS_URL": "http://127.0.0.1:{port}/good"}),
    Scenario("download-ok-file", "a registered checkpoint from a file:// mirror",
             ("{work}/fake_official.py", *evaluate("--model", "edsr-baseline", "--weights", "fake-x2")), "ok", 0,
             env={"SR_BENCH_WEIGHTS_URL": "file://{work}/www", "TORCH_HOME": "{work}/torch2"}),
]


# --------------------------------------------------------------------------------------------
# The temporary world the scenarios run in


FAKE_OFFICIAL = '''
"""Registers 'fake-x2' (an edsr-baseline x2 checkpoint whose sha256 this sweep knows), then runs
the sr_bench command named by the arguments: python fake_official.py -m MODULE ARGS..."""
import runpy, sys
from sr_bench.weights import WeightsSpec, register_weights
register_weights(WeightsSpec("fake-x2", "edsr-baseline", (2,), ("http://127.0.0.1:9/fake",), "{name}", "{prefix}",
                             None))
assert sys.argv[1] == "-m"
module = sys.argv[2]
sys.argv = [module] + sys.argv[3:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
'''


def build_world(work: Path) -> dict[str, bytes]:
    """Images, networks, checkpoints; returns the loopback server's files."""
    import hashlib

    import numpy as np
    import torch
    from PIL import Image

    from sr_bench import models

    rng = np.random.default_rng(0)
    (work / "imgs").mkdir()
    for i in range(2):
        Image.fromarray((rng.random((48, 40, 3)) * 255).astype("uint8")).save(work / "imgs" / f"im{i}.png")
    shutil.copy(work / "imgs" / "im0.png", work / "imgs" / "a.png")
    (work / "mods").mkdir()
    for f in ("nets.py", "broken_import.py"):
        shutil.copy(HERE / f, work / "mods" / f)
    w = work / "w"
    w.mkdir()
    torch.save({"w": torch.ones(1)}, w / "up.pt")
    torch.manual_seed(0)
    good = models.create("edsr-baseline", scale=2, blocks=2, filters=8).state_dict()
    torch.save(good, w / "good.pt")
    torch.save({k: (v * 100).long() if v.is_floating_point() else v for k, v in good.items()}, w / "int.pt")
    torch.save({**good, "tail.1.bias": good["tail.1.bias"] > 0}, w / "bool.pt")
    torch.save({k: v.half() for k, v in good.items()}, w / "half.pt")
    torch.save({**good, "extra.weight": torch.zeros(2)}, w / "extra.pt")
    torch.save({k: v for k, v in good.items() if k != "body.1.body.0.bias"}, w / "missing.pt")
    torch.save({**good, "head.0.weight": torch.zeros(8, 3, 5, 5)}, w / "head5.pt")
    torch.save({**good, "head.0.weight": torch.zeros(8, 1, 3, 3)}, w / "onedim.pt")
    torch.save({**good, "tail.1.weight": good["tail.1.weight"] * float("nan")}, w / "nan.pt")
    (w / "empty.pt").write_bytes(b"")
    (w / "text.pt").write_text("these are not weights\n")
    # a full-size edsr-baseline x2 checkpoint under a registered name whose hash this sweep knows
    torch.manual_seed(0)
    payload_path = work / "payload.pt"
    torch.save(models.create("edsr-baseline", scale=2).state_dict(), payload_path)
    payload = payload_path.read_bytes()
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    name = f"fake_x2-{prefix}.pt"
    (work / "www").mkdir()
    (work / "www" / name).write_bytes(payload)
    (work / "fake_official.py").write_text(FAKE_OFFICIAL.replace("{name}", name).replace("{prefix}", prefix))
    return {"good/" + name: payload}


def serve_files(extra: dict[str, bytes]) -> dict[str, Served]:
    body = b"x" * 4096
    files = {f"{mode}/{OFFICIAL_X2}": Served(body, mode) for mode in ("stall", "stall_after", "short", "html")}
    files[f"empty/{OFFICIAL_X2}"] = Served(b"")
    files[f"loop/{OFFICIAL_X2}"] = Served(b"", "redirect_loop")
    files.update({k: Served(v) for k, v in extra.items()})
    return files


# --------------------------------------------------------------------------------------------
# Running and sorting


def _fill(text: str, ctx: dict[str, str]) -> str:
    for k, v in ctx.items():
        text = text.replace("{" + k + "}", v)
    return text


def run_one(s: Scenario, ctx: dict[str, str]) -> tuple[str, str, float]:
    """(class, the first error line or the reason, seconds)."""
    work = Path(ctx["work"])
    shutil.rmtree(work / "out", ignore_errors=True)
    (work / "out").mkdir()
    env = {**os.environ, "PYTHONPATH": f"{work / 'mods'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "TORCH_HOME": str(work / "torch"), "SR_BENCH_DEBUG": "", "SR_BENCH_CACHE": str(work / "cache"),
           "OMP_NUM_THREADS": "1"}
    env.pop("SR_BENCH_WEIGHTS_URL", None)
    env.pop("SR_BENCH_WEIGHTS_DIR", None)
    env.update({k: _fill(v, ctx) for k, v in s.env.items()})
    argv = [sys.executable, *(_fill(a, ctx) for a in s.argv)]
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=s.timeout, cwd=work)
    except subprocess.TimeoutExpired:
        return "hang", f"still running after {s.timeout:g} s", time.monotonic() - t0
    seconds = time.monotonic() - t0
    err_lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    first = err_lines[0] if err_lines else (p.stderr.strip().splitlines() or [""])[-1]
    left = [a for a in (_fill(a, ctx) for a in s.absent) if Path(a).exists()]
    if "Traceback (most recent call last)" in p.stderr:
        return "traceback", first, seconds
    if s.expect == "ok":
        if p.returncode != 0:
            return "unclear", f"exit {p.returncode}: {first}", seconds
        problem = s.check(work) if s.check else None
        if s.stdout_lacks and s.stdout_lacks in p.stdout:
            problem = f"{s.stdout_lacks!r} landed on stdout"
        return ("silently wrong", problem, seconds) if problem else ("ok", "", seconds)
    if p.returncode == 0:
        return "silently wrong", "exit 0" + (f", wrote {left[0]}" if left else ""), seconds
    if left:
        return "silently wrong", f"exit {p.returncode} but wrote {left[0]}: {first}", seconds
    missing = [w for w in (_fill(w, ctx) for w in s.words) if w.lower() not in first.lower()]
    missing += [f"{w!r} at most once" for w in s.at_most_once if first.lower().count(w.lower()) > 1]
    missing += [f"no {w!r}" for w in s.never if w.lower() in first.lower()]
    if len(err_lines) != 1 or p.returncode != s.exit or missing:
        why = f"exit {p.returncode}" + (f", lacks {missing}" if missing else "") + \
              (f", {len(err_lines)} error lines" if len(err_lines) != 1 else "")
        return "unclear", f"{why}: {first}", seconds
    return "clear error", first, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default="", help="only scenarios whose name holds this")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    chosen = [s for s in SCENARIOS if args.k in s.name]
    work = Path(tempfile.mkdtemp(prefix="sr_bench_outputs_sweep_"))
    try:
        extra = build_world(work)
        with serving(serve_files(extra)) as server:
            ctx = {"work": str(work), "port": str(server.port)}
            rows = []
            for s in chosen:
                result, line, seconds = run_one(s, ctx)
                rows.append((s, result, line.replace(str(work), "<tmp>"), seconds))
                print(f"{s.name:28} {result:15} {seconds:5.1f}s  {rows[-1][2][:150]}", flush=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    counts: dict[str, int] = {}
    for _, result, _, _ in rows:
        counts[result] = counts.get(result, 0) + 1
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    if args.markdown:
        print("\n| scenario | what | result | message |\n|---|---|---|---|")
        for s, result, line, _ in rows:
            print(f"| {s.name} | {s.what} | {result} | {line[:200].replace('|', '/')} |")
    bad = sum(v for k, v in counts.items() if k not in ("ok", "clear error"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
