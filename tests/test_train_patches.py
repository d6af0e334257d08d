"""The training data pipeline: decoded-image stores, patch batches as a pure function of
(seed, iteration), alignment of LR and HR patches, augmentation, workers, disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sr_bench.cli import DataError
from sr_bench.data import open_dataset
from sr_bench.resize import downscale
from sr_bench.train.patches import PatchBatches, load_images, make_loader, to_model_input


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, textured) -> Path:
    """5 colour images of varied sizes, one gray image, one too small for a 16px LR patch at x2."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("train_images")
    sizes = [(70, 90), (96, 64), (81, 77), (66, 100), (120, 72)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(textured(h, w, i)).save(folder / f"img{i}.png")
    Image.fromarray(textured(72, 68, 9)[..., 1]).save(folder / "gray.png")
    Image.fromarray(textured(20, 24, 7)).save(folder / "tiny.png")
    return folder


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SR_BENCH_CACHE", str(tmp_path / "cache"))


def _store(folder, scales=(2,), **kw):
    return load_images(open_dataset(str(folder)), scales, **kw)


def test_store_replicates_gray_and_matches_dataset(image_folder):
    ds = open_dataset(str(image_folder))
    store = load_images(ds, (2, 3))
    i = store.names.index("gray")
    assert store.hr(i).shape[2] == 3
    assert (store.hr(i)[..., 0] == store.hr(i)[..., 2]).all()
    j = store.names.index("img1")
    np.testing.assert_array_equal(store.hr(j), ds.hr(j))
    np.testing.assert_array_equal(store.lr(j, 3), ds.lr(j, 3))
    assert store.lr(j, 3).shape == (96 // 3, 64 // 3, 3)


def test_small_images_are_left_out_and_none_is_an_error(image_folder):
    store = _store(image_folder)
    b = PatchBatches(store, (2,), 16, 8, seed=0)
    assert store.names.index("tiny") not in set(b.eligible[2].tolist())
    assert len(b.eligible[2]) == len(store) - 1
    with pytest.raises(DataError, match="large enough"):  # bad data for the CLI: one line, exit 1
        PatchBatches(store, (2,), 64, 8, seed=0)


def test_batches_are_a_pure_function_of_seed_and_iteration(image_folder):
    store = _store(image_folder)
    a = PatchBatches(store, (2,), 16, 8, seed=3)
    b = PatchBatches(_store(image_folder), (2,), 16, 8, seed=3)
    for it in (0, 5, 12345):
        x, y = a[it], b[it]
        assert torch.equal(x["lr"], y["lr"]) and torch.equal(x["hr"], y["hr"])
    assert not torch.equal(a[0]["hr"], a[1]["hr"])
    assert not torch.equal(a[0]["hr"], PatchBatches(store, (2,), 16, 8, seed=4)[0]["hr"])
    # reading batch 7 first or after others changes nothing (no hidden sampler state)
    assert torch.equal(PatchBatches(store, (2,), 16, 8, seed=3)[7]["lr"], a[7]["lr"])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_lr_and_hr_patches_are_aligned_under_augmentation(image_folder, scale):
    """The interior of the MATLAB-bicubic shrink of each HR patch is the LR patch: positions,
    flips and rotations are applied identically to both."""
    store = _store(image_folder, (scale,))
    p = 16
    b = PatchBatches(store, (scale,), p, 16, seed=1)
    m = 3  # the bicubic taps of an LR pixel reach 2 LR pixels: the interior is exact up to rounding order
    for it in range(3):
        batch = b[it]
        lr, hr = batch["lr"].numpy(), batch["hr"].numpy()
        assert lr.shape == (16, p, p, 3) and hr.shape == (16, p * scale, p * scale, 3)
        for k in range(16):
            shrunk = downscale(np.ascontiguousarray(hr[k]), scale).astype(int)
            diff = np.abs(shrunk[m:-m, m:-m] - lr[k, m:-m, m:-m].astype(int))
            assert diff.max() <= 1, (it, k, diff.max())
            # a one-pixel misalignment would be far off on this texture
            off = np.abs(shrunk[m:-m, m:-m] - lr[k, m + 1 : p - m + 1, m:-m].astype(int))
            assert off.mean() > 3 * max(diff.mean(), 0.2)


def test_augmentation_covers_the_eight_transforms(image_folder):
    store = _store(image_folder)
    b = PatchBatches(store, (2,), 16, 16, seed=0)
    seen = set()
    for it in range(20):
        plan = b.plan(it)
        seen |= set(zip(plan["flip"].tolist(), plan["rot"].tolist(), strict=True))
    assert seen == {(f, r) for f in (0, 1) for r in range(4)}
    plain = PatchBatches(store, (2,), 16, 16, seed=0, hflip=False, rot90=False)
    assert all((plain.plan(it)["flip"] == 0).all() and (plain.plan(it)["rot"] == 0).all() for it in range(5))


def test_multi_scale_batches_have_one_random_scale(image_folder):
    store = _store(image_folder, (2, 3, 4))
    b = PatchBatches(store, (2, 3, 4), 16, 4, seed=0)
    scales = [b[it]["scale"] for it in range(60)]
    counts = {s: scales.count(s) for s in (2, 3, 4)}
    assert all(10 <= c <= 30 for c in counts.values()), counts
    batch = b[0]
    assert batch["hr"].shape[1] == 16 * batch["scale"]


def test_ranks_split_the_global_batch(image_folder):
    store = _store(image_folder)
    whole = PatchBatches(store, (2,), 16, 8, seed=5)[11]
    parts = [PatchBatches(store, (2,), 16, 8, seed=5, rank=r, world_size=2)[11] for r in (0, 1)]
    assert parts[0]["lr"].shape[0] == 4
    assert torch.equal(torch.cat([p["lr"] for p in parts]), whole["lr"])
    assert torch.equal(torch.cat([p["hr"] for p in parts]), whole["hr"])
    with pytest.raises(ValueError, match="split"):
        PatchBatches(store, (2,), 16, 8, seed=5, rank=0, world_size=3)


def test_loader_with_workers_gives_the_same_batches_in_order(image_folder):
    store = _store(image_folder, cache="disk")
    b = PatchBatches(store, (2,), 16, 4, seed=2)
    direct = [b[i] for i in range(5, 13)]
    for workers in (0, 2):
        got = list(make_loader(b, 5, 13, num_workers=workers, generator=torch.Generator().manual_seed(0)))
        assert [g["iteration"] for g in got] == list(range(5, 13))
        pairs = zip(got, direct, strict=True)
        assert all(torch.equal(g["hr"], d["hr"]) and torch.equal(g["lr"], d["lr"]) for g, d in pairs)


def test_disk_cache_is_reused_and_a_truncated_pack_is_rebuilt(image_folder, tmp_path):
    messages: list[str] = []
    mem = _store(image_folder)
    disk = _store(image_folder, cache="disk", cache_dir=tmp_path, log=messages.append)
    assert any("decoding" in m for m in messages)
    for i in range(len(mem)):
        np.testing.assert_array_equal(mem.hr(i), disk.hr(i))
        np.testing.assert_array_equal(mem.lr(i, 2), disk.lr(i, 2))
    messages.clear()
    again = _store(image_folder, cache="disk", cache_dir=tmp_path, log=messages.append)
    assert any("using cached" in m for m in messages) and not any("decoding" in m for m in messages)
    # cut the HR pack short: it must be detected and rebuilt, never read
    pack = again._pack / "hr.u8"
    data = pack.read_bytes()
    pack.write_bytes(data[: len(data) // 2])
    messages.clear()
    rebuilt = _store(image_folder, cache="disk", cache_dir=tmp_path, log=messages.append)
    assert any("decoding" in m for m in messages)
    np.testing.assert_array_equal(rebuilt.hr(len(mem) - 1), mem.hr(len(mem) - 1))


def test_to_model_input_is_float_channels_last(image_folder):
    batch = PatchBatches(_store(image_folder), (2,), 16, 4, seed=0)[0]
    x = to_model_input(batch["lr"], torch.device("cpu"), channels_last=True)
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    torch.testing.assert_close(x[1, :, 3, 5] * 255, batch["lr"][1, 3, 5].float())
    y = to_model_input(batch["lr"], torch.device("cpu"), channels_last=False)
    assert y.is_contiguous() and torch.equal(x, y)
