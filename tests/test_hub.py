"""hubconf.py: torch.hub.load(clone, "<model>", source="local", ...) for every registered model."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from sr_bench import models
from sr_bench.weights import WeightsDownloadError, WeightsMismatchError, load_weights

REPO = Path(__file__).resolve().parents[1]
QUICK = "results/weights/quick-edsr-baseline-x2.safetensors"


def _hubconf():
    """hubconf.py imported the way torch.hub imports it (a module from a file path)."""
    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hub_load(name: str, **kwargs):
    return torch.hub.load(str(REPO), name, source="local", **kwargs)


def test_the_calls_in_hubconfs_docstring_take_the_keywords_they_are_given():
    """Every ``torch.hub.<function>(...)`` the docstring shows accepts its keywords in the torch
    installed here (``torch.hub.list`` has no ``source=``: a reader copying that line got a TypeError)."""
    calls = re.findall(r"torch\.hub\.(\w+)\((.*?)\)\s*(?:#|$)", _hubconf().__doc__, flags=re.S | re.M)
    assert calls, "the docstring shows no torch.hub call"
    refused = []
    for function, arguments in calls:
        call = ast.parse(f"f({arguments})").body[0].value
        accepted = inspect.signature(getattr(torch.hub, function)).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):  # load(..., **kwargs)
            accepted = {**accepted, **{k.arg: None for k in call.keywords}}
        refused += [f"torch.hub.{function}: {k.arg}=" for k in call.keywords if k.arg not in accepted]
    assert refused == []


def test_every_registered_model_is_an_entry_point_and_nothing_else():
    """torch.hub.list's rule (public callables of hubconf) applied to the file: torch.hub.list
    itself only reads GitHub repositories, not a local clone."""
    hub = _hubconf()
    entry_points = {f for f in dir(hub) if callable(getattr(hub, f)) and not f.startswith("_")}
    assert entry_points == {n.replace("-", "_") for n in models.names()}
    assert {"edsr_baseline", "mdsr_baseline", "edsr", "mdsr"} <= entry_points
    assert set(hub.dependencies) == {"torch", "numpy", "PIL", "safetensors"}
    assert all(importlib.util.find_spec(d) is not None for d in hub.dependencies)
    assert "edsr-baseline (x2/x3/x4, one network per scale)" in hub.edsr_baseline.__doc__


def test_hub_load_equals_create_and_load_weights_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the relative path is found in the clone, not the current folder
    hub = _hub_load("edsr_baseline", scale=2, weights=QUICK)
    ref = models.create("edsr-baseline", scale=2)
    load_weights(ref, REPO / QUICK)
    ref.eval()
    assert not hub.training
    assert hub.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in hub.state_dict().items())
    x = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(hub(x), ref(x))
    random = _hub_load("edsr_baseline", scale=2)  # no weights: a fresh initialisation
    assert not torch.equal(random.head[0].weight, hub.head[0].weight)


@pytest.mark.parametrize("name", models.names())
def test_each_entry_point_builds_its_model(name):
    spec = models.get_spec(name)
    scale = None if spec.multi_scale else 3
    net = _hub_load(name.replace("-", "_"), scale=scale)
    assert not net.training
    assert type(net) is type(models.create(name, scale=scale))
    assert sum(p.numel() for p in net.parameters()) == spec.num_params(scale)


def test_options_and_weight_errors_reach_the_user(tmp_path, monkeypatch):
    net = _hub_load("edsr_baseline", scale=2, blocks=4)
    assert sum(1 for k in net.state_dict() if k.endswith("body.0.weight") and k.startswith("body.")) == 4
    with pytest.raises(WeightsMismatchError, match=r"did you mean create\('edsr-baseline', scale=2\)"):
        _hub_load("edsr", scale=2, weights=QUICK)  # strict: a baseline checkpoint into EDSR
    with pytest.raises(ValueError, match="single-scale model: pass scale="):
        _hub_load("edsr")
    # "official" is the published checkpoint of that model and scale; a wrong file under its official
    # name in the weights folder is refused before any download is tried
    (tmp_path / "edsr_baseline_x3-abf2a44e.pt").write_bytes(b"not the checkpoint")
    monkeypatch.setenv("SR_BENCH_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsDownloadError, match=r"edsr_baseline_x3-abf2a44e.pt: sha256 .* 'edsr-baseline-x3'"):
        _hub_load("edsr_baseline", scale=3, weights="official")


_IN_A_CLONE = """
import hashlib, json, sys
before = {m.split(".")[0] for m in sys.modules}
import torch
after_torch = {m.split(".")[0] for m in sys.modules}
net = torch.hub.load(sys.argv[1], "edsr_baseline", source="local", scale=2, weights=sys.argv[2])
import sr_bench
state = hashlib.sha256(b"".join(v.numpy().tobytes() for v in net.state_dict().values())).hexdigest()
new = sorted({m.split(".")[0] for m in sys.modules} - after_torch - set(sys.stdlib_module_names))
print(json.dumps({"package": sr_bench.__file__, "state": state, "imported": new}))
"""


def test_load_from_a_copy_of_the_clone_in_a_fresh_process(tmp_path):
    """What a user gets from a clone: its own sr_bench (not an installed one) and the same weights;
    hubconf brings in nothing beyond torch and sr_bench's own imports."""
    clone = tmp_path / "sr_bench_clone"
    shutil.copytree(REPO / "sr_bench", clone / "sr_bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "hubconf.py", clone / "hubconf.py")
    (clone / "results" / "weights").mkdir(parents=True)
    shutil.copy2(REPO / QUICK, clone / QUICK)
    done = subprocess.run([sys.executable, "-c", _IN_A_CLONE, str(clone), QUICK], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(out["package"]).parent == clone / "sr_bench"
    ref = models.create("edsr-baseline", scale=2)
    load_weights(ref, REPO / QUICK)
    assert out["state"] == hashlib.sha256(b"".join(v.numpy().tobytes() for v in ref.state_dict().values())).hexdigest()
    assert set(out["imported"]) <= {"sr_bench", "hubconf", "PIL", "safetensors", "numpy"}, out["imported"]


def test_hubconf_and_citation_stay_out_of_the_wheel(tmp_path):
    """They belong to a clone: a wheel built from the sources with both beside pyproject.toml
    (as in a checkout) holds neither, nor any other top-level module."""
    from importlib.metadata import PackageNotFoundError, version

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "hubconf.py", "CITATION.cff"):
        shutil.copy2(REPO / name, src / name)
    for name in ("sr_bench", "baselines"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    try:  # this interpreter's setuptools builds it when new enough (pyproject asks for >= 77)
        isolation = ["--no-build-isolation"] if int(version("setuptools").split(".")[0]) >= 77 else []
    except PackageNotFoundError:
        isolation = []
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *isolation, "-w",
                           str(tmp_path / "dist"), str(src)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    names = zipfile.ZipFile(next((tmp_path / "dist").glob("sr_bench-*.whl"))).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"sr_bench", next(t for t in top if t.endswith(".dist-info"))}, sorted(top)
    assert "sr_bench/models/__main__.py" in names
