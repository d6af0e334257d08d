"""Run folders: a new run never writes over another run's files; --resume needs a matching
checkpoint and names what differs; --overwrite clears only sr_bench's files; a failed start
leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sr_bench.cli import DataError
from sr_bench.train import make_config, train
from sr_bench.train.__main__ import main
from sr_bench.train.run_dir import RunFolderError

TINY = {"blocks": 2, "filters": 16}
OTHER = {"blocks": 1, "filters": 8}


@pytest.fixture(scope="module")
def data(tmp_path_factory, textured) -> dict[str, Path]:
    from PIL import Image

    root = tmp_path_factory.mktemp("run_dir_data")
    for sub in ("train", "val", "tiny"):
        (root / sub).mkdir()
    for i, (h, w) in enumerate([(96, 100), (120, 96)]):
        Image.fromarray(textured(h, w, i)).save(root / "train" / f"t{i}.png")
    Image.fromarray(textured(48, 60, 99)).save(root / "val" / "v0.png")
    Image.fromarray(textured(24, 24, 5)).save(root / "tiny" / "s0.png")  # its x2 LR is under a 16px patch
    return {"train": root / "train", "val": root / "val", "tiny": root / "tiny", "cache": root / "cache"}


@pytest.fixture(autouse=True)
def _env(data, monkeypatch):
    monkeypatch.setenv("SR_BENCH_CACHE", str(data["cache"]))
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)


def _cfg(data, out, options=TINY, **changes):
    return make_config(
        "smoke", "edsr-baseline", 2,
        **{"data.dataset": str(data["train"]), "val.dataset": str(data["val"]), "model.options": dict(options),
           "out": str(out), "runtime.progress": False, "runtime.device": "cpu", "optim.iterations": 2, **changes},
    )


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_a_finished_run_without_its_checkpoint_is_never_overwritten(data, tmp_path, capsys):
    out = tmp_path / "run"
    train(_cfg(data, out))
    (out / "checkpoint.pt").unlink()
    before = _snapshot(out)
    assert {"final.safetensors", "config.json", "log.jsonl"} <= set(before)

    with pytest.raises(RunFolderError, match=r"not empty \(config.json, final.safetensors, log.jsonl"):
        train(_cfg(data, out, OTHER))  # another model into the same folder
    with pytest.raises(RunFolderError, match="no checkpoint.pt"):
        train(_cfg(data, out, OTHER), resume=True)
    args = ["--model", "edsr-baseline", "--scale", "2", "--profile", "smoke", "--data", str(data["train"]),
            "--val-data", str(data["val"]), "--out", str(out), "--no-progress", "--device", "cpu"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--overwrite" in err[0], err
    assert _snapshot(out) == before  # not one byte changed


def test_resume_names_the_fields_that_differ(data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(data, out, **{"optim.iterations": 4}))
    with pytest.raises(ValueError, match=r"model\.options: checkpoint .*'blocks': 2.*now .*'blocks': 1") as e:
        train(_cfg(data, out, OTHER, **{"optim.iterations": 4}), resume=True)
    assert "optim.lr" not in str(e.value)
    with pytest.raises(ValueError, match=r"optim\.lr: checkpoint 0\.0001, now 0\.0003") as e:
        train(_cfg(data, out, **{"optim.iterations": 4, "optim.lr": 3e-4}), resume=True)
    assert "model.options" not in str(e.value)


def test_overwrite_clears_only_sr_bench_files_and_starts_again(data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(data, out))
    (out / "notes.txt").write_text("mine")
    old = load_file(out / "final.safetensors")
    res = train(_cfg(data, out, OTHER), overwrite=True)
    assert res.resumed_from is None and res.iterations == 2
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "config.json").read_text())["model"]["options"] == OTHER
    new = load_file(out / "final.safetensors")
    assert set(new) != set(old) or any(new[k].shape != old[k].shape for k in new)
    events = [json.loads(line)["event"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert events.count("start") == 1  # the old run's log is gone, not appended to
    with pytest.raises(ValueError, match="pass one of them"):
        train(_cfg(data, out), resume=True, overwrite=True)


def test_a_failed_start_leaves_no_run_folder(data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(DataError, match="large enough"):
        train(_cfg(data, out, **{"data.dataset": str(data["tiny"])}))
    assert not out.exists()

    def boom(event):
        raise RuntimeError("failed in update 1")

    out.mkdir()
    with pytest.raises(RuntimeError, match="update 1"):
        train(_cfg(data, out), callbacks=[boom])
    assert list(out.iterdir()) == []  # an existing folder stays, empty
    train(_cfg(data, out))  # and the next start needs no --overwrite
    assert torch.load(out / "checkpoint.pt", weights_only=True)["iteration"] == 2
