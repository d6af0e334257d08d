"""The CUDA code paths that a CPU can check: backend flags scoped and restored (TF32, cuDNN's
autotuner), evaluation in IEEE float32 and its records saying so, ``amp auto`` timed as the run
trains (its device synchronised, emulated bf16 left out, its throwaway trainers freed), the bench's
peak for the math it ran and its end-to-end run in the same precision after a warm-up, Adam fused on
CUDA with no host synchronisation under fp16, and the self-ensemble's out-of-memory fallback.
Fakes stand in for the GPU (a device name, a compute capability, a simulated out-of-memory error);
the tests marked ``gpu`` at the end run the same paths on a real one."""

from __future__ import annotations

import json
import weakref
from pathlib import Path

import pytest
import torch
from tolerances import conv_depth_atol
from torch import nn

from sr_bench import bench, models, precision
from sr_bench.evaluate import evaluate, load_candidates
from sr_bench.inference import prepare_model, super_resolve
from sr_bench.train import loop as train_loop
from sr_bench.train import make_config, train
from sr_bench.train import trainer as trainer_mod
from sr_bench.train.trainer import Trainer, device_sync, make_optimizer, time_amp

TINY = {"blocks": 1, "filters": 8}


def _flags() -> tuple[bool, str, bool]:
    """(cuDNN TF32, matmul precision, cuDNN autotuner) as torch reads them now."""
    return (torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark)


@pytest.fixture(autouse=True)
def _restore_flags():
    """Every test starts from torch's defaults and leaves them so."""
    before = _flags()
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = before[0], before[2]
    torch.set_float32_matmul_precision(before[1])
    assert _flags() == before


# ---- flags: set inside, restored outside ------------------------------------------------------


def test_backend_flags_set_inside_and_restore_outside_even_after_an_error():
    torch.backends.cudnn.benchmark = False
    assert _flags() == (True, "highest", False)  # torch's defaults: cuDNN convolutions may use TF32
    with precision.ieee_float32():
        assert _flags() == (False, "highest", False)
        with precision.training_flags("cuda", tf32=True):
            assert _flags() == (True, "high", True)
        assert _flags() == (False, "highest", False)
    assert _flags() == (True, "highest", False)
    with pytest.raises(RuntimeError, match="inside"), precision.training_flags(torch.device("cuda", 1), tf32=False):
        assert _flags() == (False, "highest", True)
        raise RuntimeError("inside")
    assert _flags() == (True, "highest", False)
    with precision.training_flags("cpu", tf32=True):  # a CPU run changes nothing
        assert _flags() == (True, "highest", False)


def test_backend_flags_keep_to_the_per_operator_api_once_it_was_used():
    if not hasattr(torch.backends.cudnn, "conv"):
        pytest.skip("this torch has no per-operator fp32_precision settings")
    cudnn = torch.backends.cudnn
    cudnn.conv.fp32_precision = "ieee"  # now torch refuses to read cudnn.allow_tf32
    with pytest.raises(RuntimeError):
        _ = cudnn.allow_tf32
    try:
        with precision.training_flags("cuda", tf32=True):
            assert (cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision) == ("tf32", "tf32")
            assert precision.tf32_enabled()
        assert (cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision) == ("ieee", "tf32")
    finally:
        cudnn.allow_tf32 = True  # the boolean API puts both back in step


class _FlagSpy(nn.Module):
    """A x2 network that records the backend flags each forward ran under."""

    scales = (2,)
    receptive_field = 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.seen: list[tuple[bool, str, bool]] = []

    def forward(self, x, scale=None):
        self.seen.append(_flags())
        return self.conv(x).repeat_interleave(2, -1).repeat_interleave(2, -2)


def test_inference_runs_ieee_float32_without_autotuning_and_restores_the_flags():
    net = _FlagSpy().eval()
    with precision.training_flags("cuda", tf32=True):  # as during training, before a validation pass
        super_resolve(net, torch.rand(1, 3, 6, 6), 2, self_ensemble=True, batch_transforms=False)
        assert _flags() == (True, "high", True)
    assert net.seen == [(False, "highest", False)] * 8


def test_evaluation_records_say_which_math_they_ran_in(monkeypatch):
    monkeypatch.delenv("SR_BENCH_DATA", raising=False)
    from sr_bench.data import open_dataset

    ds = open_dataset("embedded")
    f32 = evaluate(load_candidates("edsr-baseline", [2], "random", options=TINY), ds, max_images=1, progress=False)
    assert [r.math_mode for r in f32] == ["fp32-ieee"]
    bf16 = evaluate(load_candidates("edsr-baseline", [2], "random", dtype="bfloat16", options=TINY), ds,
                    dtype="bfloat16", max_images=1, progress=False)
    assert [r.math_mode for r in bf16] == ["bf16"]
    assert json.loads(f32[0].to_json())["math_mode"] == "fp32-ieee"  # stored with the record


def test_math_mode_names():
    cuda = torch.device("cuda", 0)
    assert precision.math_mode(torch.bfloat16, "cpu", tf32=True) == "bf16"
    assert precision.math_mode("fp16", cuda, tf32=False) == "fp16"
    assert precision.math_mode("none", "cpu", tf32=True) == "fp32-ieee"  # a CPU has no TF32


def test_tf32_and_native_bf16_need_compute_capability_8(monkeypatch):
    cuda = torch.device("cuda", 1)
    asked = []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    for capability, native in [((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability",
                            lambda d=None, c=capability: asked.append(d) or c)
        assert precision.cuda_bf16_native(cuda) is native  # a V100/T4 emulates bf16: not a candidate
        assert trainer_mod.bf16_native(cuda) is native
        assert precision.math_mode("none", cuda, tf32=True) == ("tf32" if native else "fp32-ieee")
    assert set(asked) == {cuda}  # the run's device, not the current one


# ---- training: its flags for the run only -------------------------------------------------------


@pytest.fixture(scope="module")
def data(small_train_folders) -> dict[str, Path]:
    return small_train_folders


def _cfg(data, out, **changes):
    return make_config("smoke", "edsr-baseline", 2, **{
        "data.dataset": str(data["train"]), "val.dataset": str(data["val"]), "model.options": dict(TINY),
        "out": str(out), "runtime.progress": False, "runtime.device": "cpu", "optim.iterations": 3,
        "data.num_workers": 0, **changes})


def test_train_runs_inside_its_flags_and_restores_them(data, tmp_path, monkeypatch):
    monkeypatch.setenv("SR_BENCH_CACHE", str(data["cache"]))
    calls, inside = [], []
    real = train_loop.training_flags

    def spy(device, tf32):
        calls.append((torch.device(device), tf32))
        return real("cuda", tf32)  # what a CUDA run sets, observable on this CPU

    monkeypatch.setattr(train_loop, "training_flags", spy)
    torch.backends.cudnn.benchmark = False
    result = train(_cfg(data, tmp_path / "run", **{"runtime.tf32": False}),
                   callbacks=[lambda event: inside.append(_flags())])
    assert calls == [(torch.device("cpu"), False)]
    assert inside == [(False, "highest", True)] * 3  # every update under the run's flags
    assert _flags() == (True, "highest", False)  # and nothing leaks out of train()
    start = json.loads(result.log.read_text().splitlines()[0])
    assert start["math_mode"] == "fp32-ieee"


# ---- amp auto ------------------------------------------------------------------------------------


def test_amp_auto_times_as_the_run_trains_and_frees_its_trainers(data, tmp_path, monkeypatch):
    cfg = _cfg(data, tmp_path / "run", **{"runtime.channels_last": False})
    synced, built, during, formats = [], [], [], []
    monkeypatch.setattr(trainer_mod, "device_sync", lambda d: synced.append(d) or (lambda: None))
    monkeypatch.setattr(trainer_mod, "bf16_native", lambda d: True)

    class Spy(Trainer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            built.append(weakref.ref(self))

        def step(self, x, y, scale):
            during.append(_flags())
            formats.append(x.is_contiguous())
            return super().step(x, y, scale)

    monkeypatch.setattr(trainer_mod, "Trainer", Spy)
    monkeypatch.setattr(trainer_mod, "training_flags", lambda d, tf32: precision.training_flags("cuda", tf32))
    alive_at_empty_cache = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: alive_at_empty_cache.append([r() for r in built]))
    choice = time_amp(cfg, torch.device("cpu"), batch=2, steps=2)
    assert set(choice.ms_per_update) == {"none", "bf16"} and len(built) == 2
    assert synced == [torch.device("cpu")]
    assert during and set(during) == {(True, "high", True)}  # autotuner on, the run's TF32 setting
    assert all(formats)  # the run's memory format (channels_last off here), not always channels_last
    assert alive_at_empty_cache == [[None, None]]  # both trainers freed before the cache is emptied
    assert _flags() == (True, "highest", False)


def test_amp_auto_leaves_out_emulated_bf16(data, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_mod, "bf16_native", lambda d: False)
    choice = time_amp(_cfg(data, tmp_path / "run"), torch.device("cpu"), batch=2, steps=1)
    assert list(choice.ms_per_update) == ["none"] and choice.amp == "none"


def test_device_sync_waits_on_the_given_gpu(monkeypatch):
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    device_sync(torch.device("cuda", 1))()
    device_sync("cpu")()
    assert waited == [torch.device("cuda", 1)]


# ---- Adam ----------------------------------------------------------------------------------------


def test_adam_is_fused_on_cuda_only():
    params = [nn.Parameter(torch.zeros(3))]
    cfg = make_config("smoke", "edsr-baseline", 2)
    assert make_optimizer(params, cfg.optim, torch.device("cuda", 0)).param_groups[0]["fused"] is True
    assert not make_optimizer(params, cfg.optim, "cpu").param_groups[0]["fused"]


def test_fp16_updates_never_read_a_value_back_and_resume_keeps_the_fused_step(data, tmp_path, monkeypatch):
    cfg = _cfg(data, tmp_path / "run")
    plain = Trainer(cfg, "cpu")  # unfused (the CPU's default), as a checkpoint made on a CPU
    monkeypatch.setattr(trainer_mod, "fused_optimizer", lambda device: True)  # as on CUDA
    t = Trainer(cfg, "cpu", amp="fp16")
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 32, 32)
    t.step(x, y, 2)

    def no_sync(self):
        raise AssertionError("a host synchronisation (.item()) inside an update")

    monkeypatch.setattr(torch.Tensor, "item", no_sync)
    for _ in range(3):  # GradScaler's unfused step reads its overflow flag with .item() every update
        t.step(x, y, 2)
    monkeypatch.undo()
    t.load_state_dict(plain.state_dict())
    assert t.optimizer.param_groups[0]["fused"] is True  # the checkpoint's groups did not unfuse it
    t.step(x, y, 2)


# ---- bench --------------------------------------------------------------------------------------


def test_peak_is_the_one_of_the_math_the_step_ran(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H200")
    peaks = {mode: bench.peak_flops("cuda", None, mode)[0] / 1e12 for mode in ("fp32-ieee", "tf32", "bf16")}
    assert peaks == {"fp32-ieee": 67.0, "tf32": 494.5, "bf16": 989.5}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100 PCIe")
    assert bench.peak_flops("cuda", None, "bf16") == (756.5e12, "H100 PCIe dense bf16 data-sheet peak")


def test_measure_runs_end_to_end_in_the_steps_precision(monkeypatch):
    step = bench.StepTiming(0.010, 48, 16, "bf16", 10, (0.010,), "bf16")
    seen = {}
    monkeypatch.setattr(bench, "time_updates", lambda cfg, dev, **k: step)

    def fake_e2e(cfg, dev, updates, warmup, root):
        seen.update(amp=cfg.runtime.amp, warmup=warmup)
        return 90.0

    monkeypatch.setattr(bench, "_end_to_end", fake_e2e)
    monkeypatch.setattr(bench, "peak_flops", lambda dev, peak, mode: seen.update(mode=mode) or (1e15, "x"))
    r = bench.measure("edsr-baseline", 2, device="cpu", profile="gpu", updates=50, warmup_updates=7)
    assert seen == {"amp": "bf16", "warmup": 7, "mode": "bf16"}  # the config says amp auto: decided once
    assert r.math_mode == "bf16" and r.ratio == pytest.approx(0.9)


def test_end_to_end_is_timed_after_the_warm_up(monkeypatch):
    clock = {"now": 0.0}
    synced = []

    def fake_train(cfg, callbacks, log):
        for it in range(1, cfg.optim.iterations + 1):
            clock["now"] += 5.0 if it <= 3 else 0.01  # three slow updates: autotuning, compilation
            for cb in callbacks:
                cb({"iteration": it})
        raise AssertionError("the timing should have stopped the run")

    monkeypatch.setattr(bench, "train", fake_train)
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock["now"])
    monkeypatch.setattr(bench, "device_sync", lambda d: lambda: synced.append(clock["now"]))
    cfg = make_config("smoke", "edsr-baseline", 2)
    assert bench._end_to_end(cfg, "cpu", 20, 3, None) == pytest.approx(100.0)  # 20 updates in 0.2 s
    assert len(synced) == 2  # the device waited for at both ends


# ---- self-ensemble out of memory ------------------------------------------------------------------


class _NoBatches(nn.Module):
    """A x2 network that runs out of memory on a batch of more than one image (or on more than
    ``max_pixels`` pixels), recording every input shape."""

    scales = (2,)

    def __init__(self, max_pixels: int = 10**9) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = models.create("edsr-baseline", scale=2, **TINY)
        self.receptive_field = self.net.receptive_field
        self.max_pixels = max_pixels
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x, scale=None):
        self.shapes.append(tuple(x.shape))
        if x.shape[0] > 1 or x.shape[-1] * x.shape[-2] > self.max_pixels:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.net(x, scale)


def test_an_ensemble_batch_out_of_memory_runs_one_transform_at_a_time(caplog):
    m = prepare_model(_NoBatches())
    lr = torch.rand(1, 3, 20, 20)
    ref = super_resolve(m, lr, 2, self_ensemble=True, batch_transforms=False)
    m.shapes.clear()
    out = super_resolve(m, lr, 2, self_ensemble=True, batch_transforms=True)
    assert m.shapes == [(8, 3, 20, 20)] + [(1, 3, 20, 20)] * 8  # whole images, no tiles
    assert torch.equal(out, ref)  # the very forwards of the sequential ensemble
    assert "one at a time" in caplog.text


def test_then_tiles_when_one_transform_does_not_fit_either():
    m = prepare_model(_NoBatches(max_pixels=48 * 48))
    lr = torch.rand(1, 3, 64, 64)
    whole = super_resolve(prepare_model(_NoBatches()), lr, 2, self_ensemble=True, batch_transforms=False)
    out = super_resolve(m, lr, 2, self_ensemble=True, batch_transforms=True)
    assert m.shapes[:2] == [(8, 3, 64, 64), (1, 3, 64, 64)]  # the batch, then one whole transform
    assert max(h * w for *_, h, w in m.shapes[-8:]) <= 48 * 48  # then tiles
    torch.testing.assert_close(out, whole, rtol=0, atol=conv_depth_atol(m.net))


# ---- on a GPU ------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_cuda_float32_evaluation_matches_the_cpu_to_float32_rounding():
    """TF32 (torch's default for cuDNN convolutions) misses these bounds by far: ~1e-3 on 0..1."""
    torch.manual_seed(0)
    net = models.create("edsr-baseline", scale=2).eval()
    gpu = prepare_model(models.create("edsr-baseline", scale=2), "cuda")
    gpu.load_state_dict(net.state_dict())
    lr = torch.rand(1, 3, 64, 56)
    assert torch.backends.cudnn.allow_tf32  # the process default stays; evaluation sets its own
    ref = super_resolve(prepare_model(net), lr, 2)
    out = super_resolve(gpu, lr.cuda(), 2).cpu()
    torch.testing.assert_close(out, ref, rtol=0, atol=conv_depth_atol(net))
    tiled = super_resolve(gpu, lr.cuda(), 2, tile=24).cpu()
    assert (tiled - out).abs().max() < 1e-4
    quantised = lambda t: (t.clamp(0, 1) * 255).round()  # noqa: E731
    assert (quantised(out) != quantised(ref)).float().mean() < 1e-4  # uint8 pixels: rounding ties only


@pytest.mark.gpu
@needs_cuda
def test_cuda_training_flags_fused_adam_and_no_sync_under_fp16(data, tmp_path, monkeypatch):
    monkeypatch.setenv("SR_BENCH_CACHE", str(data["cache"]))
    before = _flags()
    result = train(_cfg(data, tmp_path / "run", **{"runtime.device": "cuda", "runtime.amp": "auto"}))
    assert _flags() == before
    start = json.loads(result.log.read_text().splitlines()[0])
    assert start["math_mode"] in ("tf32", "bf16") and start["amp"]["math_mode"]["none"] == "tf32"
    t = Trainer(_cfg(data, tmp_path / "x"), "cuda", amp="fp16")
    assert t.optimizer.param_groups[0]["fused"] is True
    x, y = torch.rand(2, 3, 16, 16, device="cuda"), torch.rand(2, 3, 32, 32, device="cuda")
    t.step(x, y, 2)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            t.step(x, y, 2)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
@needs_cuda
def test_cuda_amp_auto_returns_the_memory_it_used(data, tmp_path):
    device = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.synchronize()
    before = torch.cuda.memory_reserved(device)
    choice = time_amp(_cfg(data, tmp_path / "run"), device, batch=16, steps=2)
    assert set(choice.ms_per_update) == {"none", "bf16"}  # native bf16 on compute capability 8+
    assert torch.cuda.memory_reserved(device) <= before
