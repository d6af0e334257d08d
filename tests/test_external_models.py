"""Your own network without editing sr_bench: import paths and the ``sr_bench.models`` entry
points resolve through get_spec/create, x-only networks are adapted, and evaluate takes them."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from sr_bench import models
from sr_bench.models import external
from sr_bench.weights import load_weights

pytestmark = pytest.mark.usefixtures("one_thread")

MODULE = "sr_bench_test_user_net"
NETWORK = textwrap.dedent(
    """
    import torch


    class XOnly(torch.nn.Module):
        '''A user's network: forward(x) only, works in 0..255, one scale per instance.'''

        def __init__(self, scale=2, width=4):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
            self.shuffle = torch.nn.PixelShuffle(scale)
            self.width = width

        def forward(self, x):
            return self.shuffle(self.conv(x))


    def factory(scale, width=4):
        return XOnly(scale, width)


    class MultiScale(torch.nn.Module):
        '''forward(x, scale): nearest-neighbour plus a learned 1x1 offset, any scale.'''

        def __init__(self, scales=(2, 3)):
            super().__init__()
            self.offset = torch.nn.Conv2d(3, 3, 1)

        def forward(self, x, scale):
            return torch.nn.functional.interpolate(self.offset(x), scale_factor=scale, mode="nearest")
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / f"{MODULE}.py").write_text(NETWORK)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    yield sys.modules.get(MODULE) or __import__(MODULE)
    sys.modules.pop(MODULE, None)


def reference(net, x, scale, rng):
    """What the adapted network must compute: the user's convolution on 0..255, shuffled, back to 0..1."""
    return F.pixel_shuffle(F.conv2d(x * rng, net.conv.weight, net.conv.bias, padding=1), scale) / rng


def test_import_path_resolves_through_the_registry(user_module):
    spec = models.get_spec(f"{MODULE}:factory")
    assert (spec.name, spec.family, spec.scales) == (f"{MODULE}:factory", "external", (2, 3, 4))
    assert not spec.multi_scale
    torch.manual_seed(0)
    net = models.create(f"{MODULE}:factory", scale=3, input_range=255)
    x = torch.rand(1, 3, 5, 7)
    with torch.no_grad():
        y = net(x, 3)
        assert torch.equal(net(x), y)  # scale may be left out: the instance serves x3 only
        torch.testing.assert_close(y, reference(net, x, 3, 255.0), rtol=0, atol=1e-6)
    assert y.shape == (1, 3, 15, 21) and net.scales == (3,) and net.in_channels == 3
    assert isinstance(net, user_module.XOnly) and list(net.state_dict()) == ["conv.weight", "conv.bias"]
    with pytest.raises(ValueError, match=r"serves scales \(3,\)"):
        net(x, 2)


def test_input_range_one_is_not_rescaled(user_module):
    net = models.create(f"{MODULE}:factory", scale=2)
    x = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(net(x, 2), reference(net, x, 2, 1.0), rtol=0, atol=1e-6)


def test_options_scales_width_and_errors(user_module):
    name = f"{MODULE}:factory"
    assert models.create(name, scale=2, width=7).width == 7  # forwarded to the factory
    with pytest.raises(ValueError, match=r"serves scales \(4,\)"):
        models.create(name, scale=2, scales=[4])
    assert models.create(name, scale=4, scales=[4]).scales == (4,)
    with pytest.raises(TypeError, match="unknown option.*'depth'.*width.*input_range"):
        models.create(name, scale=2, depth=3)
    with pytest.raises(ValueError, match="input_range must be 1"):
        models.create(name, scale=2, input_range=100)


def test_forward_with_scale_keeps_its_scales(user_module):
    net = models.create(f"{MODULE}:MultiScale", scale=2, scales=[2, 3], receptive_field=0)
    assert net.scales == (2, 3) and net.receptive_field == 0
    assert models.get_spec(f"{MODULE}:MultiScale").scales == (2, 3)  # the class's default
    x = torch.rand(1, 3, 4, 5)
    with torch.no_grad():
        want = F.interpolate(F.conv2d(x, net.offset.weight, net.offset.bias), scale_factor=3, mode="nearest")
        torch.testing.assert_close(net(x, 3), want, rtol=0, atol=1e-6)


def test_user_weights_load_strictly(user_module, tmp_path):
    torch.manual_seed(5)
    trained = user_module.XOnly(2)  # saved by the user's own code, without sr_bench
    path = tmp_path / "mine.pt"
    torch.save(trained.state_dict(), path)
    net = models.create(f"{MODULE}:factory", scale=2, input_range=255)
    info = load_weights(net, path)
    assert info.format == "state_dict"
    x = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(net(x), trained(x * 255) / 255, rtol=0, atol=1e-5)


def test_bad_import_paths_are_explained(user_module):
    with pytest.raises(external.ExternalModelError, match=r"cannot import module 'no_such_pkg_xyz\.mod'.*PYTHONPATH"):
        models.get_spec("no_such_pkg_xyz.mod:factory")
    with pytest.raises(external.ExternalModelError, match="has no attribute 'nope'"):
        models.create(f"{MODULE}:nope", scale=2)
    with pytest.raises(models.UnknownModelError, match="did you mean 'edsr-baseline'"):
        models.get_spec("edsr_baseline")


@pytest.fixture
def plugin(user_module, monkeypatch):
    """An installed package advertising ``my-net`` in the sr_bench.models entry-point group."""
    eps = [importlib.metadata.EntryPoint(name="my-net", value=f"{MODULE}:factory", group=external.GROUP)]
    real = importlib.metadata.entry_points

    def entry_points(**params):
        if params.get("group") == external.GROUP:
            return eps
        return real(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    return "my-net"


def test_entry_point_resolves_through_the_registry(plugin):
    assert external.entry_point_names() == ["my-net"]
    assert models.get_spec(plugin).family == "external"
    net = models.create(plugin, scale=4, input_range=255)
    assert net.scales == (4,) and net(torch.rand(1, 3, 3, 3)).shape == (1, 3, 12, 12)
    with pytest.raises(models.UnknownModelError, match="installed plugins: my-net"):
        models.get_spec("my-nett")


def test_evaluate_takes_an_import_path_with_a_weights_file(user_module, tmp_path, data_root):
    """``evaluate --model pkg.mod:factory --weights FILE --option input_range=255`` needs no change
    in evaluate.py: a network that is exactly nearest-neighbour upsampling scores as such."""
    from sr_bench.data import open_dataset
    from sr_bench.evaluate import evaluate, load_candidates

    net = user_module.XOnly(2)
    with torch.no_grad():  # output channel c*4 + k of the shuffle = input channel c: nearest neighbour
        net.conv.weight.zero_()
        net.conv.bias.zero_()
        for c in range(3):
            net.conv.weight[c * 4 : c * 4 + 4, c, 1, 1] = 1.0
    path = tmp_path / "nn.pt"
    torch.save(net.state_dict(), path)
    cands = load_candidates(f"{MODULE}:factory", [2], str(path), options={"input_range": 255})
    ds = open_dataset("Set5", data_root)
    (rec,) = evaluate(cands, ds, "paper", max_images=1, progress=False)
    lr = ds.read_lr(0, 2, *ds.read_hr(0))[0]
    assert rec.weights == cands[0].weights_sha256 and len(rec.per_image) == 1 and rec.model == cands[0].name
    nearest = torch.from_numpy(lr).permute(2, 0, 1)[None].float().repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(cands[0].module(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255, 2) * 255,
                               nearest, rtol=0, atol=1e-3)
    assert 20 < rec.psnr < 35  # nearest neighbour on Set5's first image at x2


CONSOLE_SCRIPT = "import sys; from sr_bench.evaluate import main; sys.exit(main())"


def test_console_scripts_find_an_import_path_in_the_current_folder(tmp_path):
    """``sr-bench-evaluate --model mymod:build`` run from the folder holding ``mymod.py``: a console
    script (here the same entry function under ``python -I``, which, as a console script, leaves
    the current folder off ``sys.path``) finds it as ``python -m`` does."""
    import subprocess

    (tmp_path / "mymod_cwd.py").write_text(NETWORK.replace("def factory(", "def build("))
    argv = [sys.executable, "-I", "-c", CONSOLE_SCRIPT, "--model", "mymod_cwd:build", "--weights", "random",
            "--option", "input_range=255", "--datasets", "embedded", "--scales", "2", "--max-images", "1",
            "--records", str(tmp_path / "r.jsonl"), "--no-progress", "-q"]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "mymod_cwd:build" in done.stdout
    missing = subprocess.run([*argv[:5], "no_such_mod:build", *argv[6:]], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
    assert missing.returncode == 2 and "cannot import module 'no_such_mod'" in missing.stderr
    assert "run from the folder that holds it" in missing.stderr and "Traceback" not in missing.stderr
