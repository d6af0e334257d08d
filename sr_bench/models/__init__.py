"""The model zoo: a registry of small typed factories (see :mod:`sr_bench.models.registry`).

    >>> from sr_bench import models
    >>> models.names("edsr*")
    ['edsr', 'edsr-baseline']
    >>> net = models.create("edsr-baseline", scale=2)

Every model takes float (N, C, H, W) in 0..1 and returns (N, C, sH, sW) in about 0..1 (not
clamped); ``forward(x, scale=None)``; ``model.scales`` lists the scales it serves and
``model.receptive_field`` the radius in LR pixels one output pixel depends on.

Your own network needs no registration: ``create("my_pkg.my_module:factory", scale=4,
input_range=255)`` or an installed ``sr_bench.models`` entry point (see
:mod:`sr_bench.models.external`) resolve through the same :func:`get_spec` / :func:`create`.

Model modules are imported explicitly below; importing them only registers their factories (and,
for :mod:`~sr_bench.models.external`, the source of names outside the registry).
"""

from sr_bench.models import bicubic, edsr, external, srresnet, vdsr  # noqa: F401  (registration)
from sr_bench.models.bicubic import Bicubic
from sr_bench.models.edsr import EDSR, MDSR
from sr_bench.models.registry import (
    ModelSpec,
    UnknownModelError,
    create,
    get_factory,
    get_spec,
    names,
    options,
    parse_option,
    register_model,
)
from sr_bench.models.srresnet import SRResNet
from sr_bench.models.vdsr import VDSR

__all__ = [
    "ModelSpec",
    "UnknownModelError",
    "register_model",
    "create",
    "names",
    "get_spec",
    "get_factory",
    "options",
    "parse_option",
    "EDSR",
    "MDSR",
    "SRResNet",
    "VDSR",
    "Bicubic",
]
