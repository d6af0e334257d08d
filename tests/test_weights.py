"""Weights registry, strict loading in every accepted format, explained mismatches, warm start."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pandas as pd
import pytest
import torch
from tiny_nets import meta, tiny

from sr_bench import models, weights
from sr_bench.weights import (
    WeightsError,
    WeightsMismatchError,
    WeightsSpec,
    check_state_dict,
    describe_state_dict,
    export_safetensors,
    load_weights,
    partial_load,
    published,
    read_state_dict,
    resolve_weights,
    sha256_file,
)

BASELINES = Path(__file__).resolve().parents[1] / "baselines"


pytestmark = pytest.mark.usefixtures("one_thread")


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Registry


def test_official_registry_entries():
    names = weights.weights_names()
    assert names == sorted(
        ["edsr-baseline-x2", "edsr-baseline-x3", "edsr-baseline-x4", "edsr-x2", "edsr-x3", "edsr-x4",
         "mdsr-baseline", "mdsr"]
    )
    table3 = set(pd.read_csv(BASELINES / "table3.csv")["method"])
    table2 = set(pd.read_csv(BASELINES / "table2.csv")["method"])
    for n in names:
        w = weights.get_weights(n)
        assert w.urls == ("https://cv.snu.ac.kr/research/EDSR/models/" + w.file_name,)
        assert w.file_name.endswith(f"-{w.sha256_prefix}.pt") and len(w.sha256_prefix) == 8
        assert w.paper_column is None or w.paper_column in table3
        assert w.table2_column in table2
        assert w.protocol == "paper"
        assert set(w.scales) <= set(models.get_spec(w.arch).scales)
    assert weights.get_weights("edsr-x4").file_name == "edsr_x4-4f62e9ef.pt"
    assert weights.get_weights("edsr-x4").paper_column == "EDSR"
    assert weights.get_weights("mdsr").paper_column == "MDSR" and weights.get_weights("mdsr").scale is None
    assert weights.get_weights("edsr-baseline-x3").paper_column is None
    assert [w.name for w in weights.weights_for("edsr-baseline", 3)] == ["edsr-baseline-x3"]
    assert [w.name for w in weights.weights_for("mdsr", 4)] == ["mdsr"]


@pytest.mark.parametrize("name", weights.weights_names())
def test_registered_weights_fit_their_architecture(name):
    w = weights.get_weights(name)
    with torch.device("meta"):
        m = w.create_model()
    assert m.scales == w.scales


def test_unknown_weights_name_suggests():
    with pytest.raises(WeightsError, match="did you mean 'edsr-x2'"):
        resolve_weights("edsr_x2")


def test_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_weights(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError):
        resolve_weights("runs/nope.pt")


def test_published_weights_is_the_one_answer():
    assert weights.published_weights("edsr", 4).name == "edsr-x4"
    assert weights.published_weights("edsr-baseline", 3).file_name == "edsr_baseline_x3-abf2a44e.pt"
    assert weights.published_weights("mdsr", 3).name == weights.published_weights("mdsr").name == "mdsr"
    with pytest.raises(WeightsError, match=r"no published weights for srresnet x4 \(published: .*edsr x2.*mdsr x2/x3"):
        weights.published_weights("srresnet", 4)
    with pytest.raises(WeightsError, match="no published weights for edsr x8"):
        weights.published_weights("edsr", 8)


def test_unknown_weights_is_both_a_weights_and_a_lookup_error():
    from sr_bench.lookup import UnknownNameError

    with pytest.raises(UnknownNameError, match="did you mean 'mdsr'.*pass its path"):
        weights.get_weights("mdrs")
    with pytest.raises(WeightsError):
        weights.get_weights("mdrs")


# ---------------------------------------------------------------------------------------------
# Loading every format strictly


@pytest.mark.parametrize("fmt", ["state_dict", "legacy-pickle", "sr_bench-checkpoint", "safetensors"])
def test_load_formats(tmp_path, fmt):
    src = tiny(scale=3, seed=1)
    dst = tiny(scale=3, seed=2)
    x = torch.rand(1, 3, 6, 5)
    assert not torch.allclose(src(x), dst(x))
    if fmt == "state_dict":
        path = tmp_path / "w.pt"
        torch.save(src.state_dict(), path)
    elif fmt == "legacy-pickle":  # how the 2018 official files were written
        path = tmp_path / "old.pt"
        torch.save(src.state_dict(), path, _use_new_zipfile_serialization=False)
        fmt = "state_dict"
    elif fmt == "sr_bench-checkpoint":
        path = tmp_path / "ckpt.pt"
        torch.save({"model": src.state_dict(), "optimizer": {"lr": 1e-4}, "step": 1000, "arch": "edsr-baseline"}, path)
    else:
        path = export_safetensors(src, tmp_path / "w.safetensors", {"arch": "edsr-baseline"})
    info = load_weights(dst, path)
    assert info.format == fmt and info.sha256 == sha256(path) and info.path == path
    assert info.num_tensors == len(src.state_dict()) and info.spec is None
    assert torch.equal(src(x), dst(x))  # exact: loading copies every value; one class, the same kernels
    if fmt == "sr_bench-checkpoint":
        assert info.metadata == {"step": 1000, "arch": "edsr-baseline"}
    if fmt == "safetensors":
        assert info.metadata == {"arch": "edsr-baseline"}
    assert info.as_record()["weights_sha256"] == info.sha256


def test_load_identifies_registered_checkpoints_by_hash(tmp_path, monkeypatch):
    path = tmp_path / "renamed.pt"
    torch.save(tiny().state_dict(), path)
    spec = WeightsSpec("fake", "edsr-baseline", (2,), ("https://example.invalid/f.pt",), "f.pt", sha256(path)[:8], None)
    monkeypatch.setitem(published._WEIGHTS._items, "fake", spec)
    assert load_weights(tiny(), path).name == "fake"


def test_load_into_other_dtype_and_keeps_strictness(tmp_path):
    path = tmp_path / "w.pt"
    src = tiny()
    torch.save(src.state_dict(), path)
    dst = tiny(seed=3).to(torch.bfloat16)
    load_weights(dst, path)
    assert dst.head[0].weight.dtype == torch.bfloat16
    torch.testing.assert_close(dst.head[0].weight.float(), src.head[0].weight, rtol=1e-2, atol=1e-3)


def test_refuses_non_state_dicts(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"epoch": 3, "weights": [1, 2]}, p)
    with pytest.raises(WeightsError, match="not a state_dict"):
        read_state_dict(p)
    p2 = tmp_path / "evil.pt"
    with open(p2, "wb") as f:
        pickle.dump({"a": Path("/etc/passwd")}, f, protocol=2)  # an object weights_only=True must refuse
    with pytest.raises(WeightsError, match="weights_only"):
        read_state_dict(p2)
    p3 = tmp_path / "bad.safetensors"
    p3.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="safetensors"):
        read_state_dict(p3)


# ---------------------------------------------------------------------------------------------
# Mismatches are explained, and nothing is loaded


def test_wrong_architecture_is_explained_and_suggested():
    state = meta("edsr", scale=4).state_dict()
    with pytest.raises(WeightsMismatchError) as e:
        check_state_dict(meta("edsr-baseline", scale=2), state)
    msg = str(e.value)
    assert "checkpoint has 32 residual blocks x 256 filters, x4 upsampler" in msg
    assert "the model has 16 residual blocks x 64 filters, x2 upsampler" in msg
    assert "did you mean create('edsr', scale=4)?" in msg
    assert msg.count("\n") == 0 and len(msg) < 600  # a sentence, not a wall of keys


def test_wrong_scale_is_explained():
    with pytest.raises(WeightsMismatchError, match=r"x4 upsampler.*x2 upsampler.*create\('edsr-baseline', scale=4\)"):
        check_state_dict(meta("edsr-baseline", scale=2), meta("edsr-baseline", scale=4).state_dict())
    with pytest.raises(WeightsMismatchError, match=r"x3 upsampler.*create\('edsr', scale=3\)"):
        check_state_dict(meta("edsr", scale=2), meta("edsr", scale=3).state_dict())


def test_multi_scale_into_single_scale_is_explained():
    with pytest.raises(WeightsMismatchError, match=r"x2/x3/x4 upsamplers \(MDSR-style multi-scale, no BN\).*'mdsr'"):
        check_state_dict(meta("edsr-baseline", scale=2), meta("mdsr").state_dict())
    with pytest.raises(WeightsMismatchError, match=r"80 residual blocks.*16 residual blocks.*create\('mdsr'\)"):
        check_state_dict(meta("mdsr-baseline"), meta("mdsr").state_dict())


def test_ablation_checkpoint_suggests_the_options():
    hint = r"with BN.*create\('edsr-baseline', scale=2, blocks=16, filters=64, batch_norm=True\)"
    with pytest.raises(WeightsMismatchError, match=hint):
        check_state_dict(meta("edsr-baseline", scale=2), meta("edsr-baseline", scale=2, batch_norm=True).state_dict())
    with pytest.raises(WeightsMismatchError, match=r"SRResNet-style.*create\('srresnet', scale=4\)"):
        check_state_dict(meta("edsr-baseline", scale=4), meta("srresnet", scale=4).state_dict())


def test_describe_state_dict():
    assert str(describe_state_dict(meta("vdsr", in_channels=1).state_dict())) == (
        "VDSR-style, 20 conv layers x 64 filters, 1 channel(s)"
    )
    d = describe_state_dict(meta("mdsr-baseline").state_dict())
    assert (d.family, d.blocks, d.filters, d.scales, d.batch_norm) == ("mdsr", 16, 64, (2, 3, 4), False)
    d = describe_state_dict(meta("edsr-baseline", scale=8).state_dict())
    assert d.scales == (8,)


def test_failed_load_changes_nothing(tmp_path):
    path = tmp_path / "x4.pt"
    torch.save(tiny(scale=4, seed=5).state_dict(), path)
    model = tiny(scale=2, seed=6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsMismatchError, match=r"checkpoint x4\.pt has .*x4 upsampler.*scale=4"):
        load_weights(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_dataparallel_prefix_is_explained():
    state = {"module." + k: v for k, v in tiny().state_dict().items()}
    with pytest.raises(WeightsMismatchError, match="start with 'module.'"):
        check_state_dict(tiny(), state)


# ---------------------------------------------------------------------------------------------
# Warm start x2 -> x4


def test_partial_load_x2_to_x4(caplog):
    x2, x4 = tiny(scale=2, seed=7), tiny(scale=4, seed=8)
    tail_before = {k: v.clone() for k, v in x4.state_dict().items() if k.startswith("tail.")}
    with caplog.at_level("INFO", logger="sr_bench.weights"):
        report = partial_load(x4, x2.state_dict())
    s2, s4 = x2.state_dict(), x4.state_dict()
    assert set(report.loaded) == {k for k in s2 if not k.startswith("tail.")}
    assert all(torch.equal(s4[k], s2[k]) for k in report.loaded)
    assert set(report.skipped) == {k for k in s2 if k.startswith("tail.")}
    assert set(report.left) == set(tail_before)
    assert all(torch.equal(s4[k], v) for k, v in tail_before.items())
    text = str(report)
    assert f"loaded {len(report.loaded)} tensors" in text and "tail.0.2" in text and "tail.1" in text
    assert text in caplog.text


def test_partial_load_refuses_other_bodies():
    with pytest.raises(WeightsMismatchError, match="does not fit.*8 filters.*16 filters"):
        partial_load(tiny(scale=4, filters=16), tiny(scale=2).state_dict())
    with pytest.raises(WeightsMismatchError, match="missing from the checkpoint"):
        partial_load(tiny(scale=4, blocks=3), tiny(scale=2).state_dict())


def test_partial_load_from_file_and_mdsr(tmp_path):
    path = export_safetensors(tiny(scale=2), tmp_path / "x2.safetensors")
    report = partial_load(tiny(scale=3), path)
    assert report.loaded and all(not k.startswith("tail") for k in report.loaded)
    m1 = models.create("mdsr-baseline", blocks=2, filters=8)
    m2 = models.create("mdsr-baseline", blocks=2, filters=8)
    r = partial_load(m2, m1.state_dict(), exclude=("upsample", "pre_process"))
    assert all(k.startswith(("upsample", "pre_process")) for k in r.left) and "tail.0.weight" in r.loaded


def test_export_safetensors_is_atomic_and_complete(tmp_path):
    m = tiny()
    path = export_safetensors(m, tmp_path / "sub" / "m.safetensors")
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]  # no temp file left
    state, fmt, _ = read_state_dict(path)
    assert fmt == "safetensors" and set(state) == set(m.state_dict())
    assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())


def test_exported_weights_hash_the_same_in_every_process(tmp_path):
    """Records identify weights by sha256: metadata order must not change the bytes."""
    import subprocess
    import sys

    script = (
        "import sys, torch; from sr_bench.weights import export_safetensors;"
        "export_safetensors({'a': torch.arange(6.).reshape(2, 3), 'b': torch.ones(3)}, sys.argv[1],"
        " metadata={k: k * 2 for k in 'zyxwvutsrq'})"
    )
    digests = set()
    for i in range(3):
        out = tmp_path / f"w{i}.safetensors"
        subprocess.run([sys.executable, "-c", script, str(out)], check=True)
        digests.add(sha256_file(out))
        state, fmt, meta = read_state_dict(out)
        assert fmt == "safetensors" and meta["q"] == "qq" and state["a"][1, 2] == 5
    assert len(digests) == 1


def test_a_missing_weights_path_is_a_weights_error_and_a_file_not_found_error(tmp_path):
    missing = tmp_path / "none.pt"
    with pytest.raises(WeightsError, match="none.pt") as e:
        weights.resolve_weights(str(missing))
    assert isinstance(e.value, FileNotFoundError) and e.value.exit_code == 1


def test_bench_checks_eval_weights_before_benchmarking(tmp_path, capsys, monkeypatch):
    import sr_bench.bench as bench

    monkeypatch.setattr(bench, "time_updates", lambda *a, **k: pytest.fail("benchmarked before the check"))
    missing = tmp_path / "none.pt"
    assert bench.main(["--model", "edsr-baseline", "--scale", "2", "--device", "cpu", "--profile", "smoke",
                       "--eval-images", "1", "--eval-weights", str(missing), "--out", str(tmp_path / "b.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(missing) in err
