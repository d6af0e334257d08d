"""Hostile networks and factories for ``outputs_sweep.py`` (imported by the commands it runs,
through ``PYTHONPATH``; never by pytest)."""

import torch
import torch.nn.functional as F

MODES = ("ok", "nan", "onenan", "inf", "short", "uint8", "int", "bool", "complex", "tuple", "dict", "list", "none",
         "3d", "channels1", "batch2", "meta", "f64", "raises")
NOT_A_FACTORY = 42


class Up(torch.nn.Module):
    """Nearest-neighbour upscaling times a learned scalar, with one way to misbehave."""

    def __init__(self, scale=2, mode="ok"):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.scale, self.mode = scale, mode

    def forward(self, x):
        y = F.interpolate(x, scale_factor=self.scale, mode="nearest") * self.w
        m = self.mode
        if m == "nan":
            return y * float("nan")
        if m == "onenan":
            y = y.clone()
            y[..., 3, 5] = float("nan")
            return y
        if m == "inf":
            return y + float("inf")
        if m == "short":
            return y[..., :-1, :]
        if m == "uint8":
            return (y * 255).round().to(torch.uint8)
        if m == "int":
            return (y * 255).round().long()
        if m == "bool":
            return y > 0.5
        if m == "complex":
            return y.to(torch.complex64)
        if m == "tuple":
            return y, y
        if m == "dict":
            return {"out": y}
        if m == "list":
            return [y]
        if m == "none":
            return None
        if m == "3d":
            return y[0]
        if m == "channels1":
            return y[:, :1]
        if m == "batch2":
            return torch.cat([y, y])
        if m == "meta":
            return torch.empty(y.shape, device="meta")
        if m == "f64":
            return y.double()
        if m == "raises":
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (64x3 and 4x4)")
        return y


def build(scale=2, mode="ok"):
    return Up(scale, mode)


for _mode in MODES:  # one factory per mode, for commands without --option (upscale)
    globals()[f"build_{_mode}"] = (lambda m: lambda scale=2: Up(scale, m))(_mode)


class Mutator(Up):
    """Halves its input in place after using it (as ``x -= mean`` style code does)."""

    def forward(self, x):
        y = super().forward(x)
        x.mul_(0.5)
        return y


def mutator(scale=2):
    return Mutator(scale)


class IntBuffer(Up):
    """An integer buffer beside the float parameter (a step counter)."""

    def __init__(self, scale=2):
        super().__init__(scale)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


def int_buffer(scale=2):
    return IntBuffer(scale)


def raises(scale=2):
    raise ValueError("width must be even")


def needs_width(width, scale=2):
    return Up(scale)


def returns_str(scale=2):
    return "not a network"


def returns_none(scale=2):
    return None


def returns_class(scale=2):
    return Up


def chatty(scale=2):
    print("building the network (a factory that prints)")
    return Up(scale)


class ThreeInputs(Up):
    """A forward that needs a third argument sr_bench never passes."""

    def forward(self, x, scale, mask):
        return super().forward(x * mask)


def three_inputs(scale=2):
    return ThreeInputs(scale)
