"""Published weights beside the models, and strict, explained loading.

One module per idea; this package re-exports the public names, so ``from sr_bench.weights import
load_weights`` is the way in:

* :mod:`~sr_bench.weights.published`: the :class:`WeightsSpec` registry of the official EDSR /
  MDSR checkpoints and :func:`published_weights`, which one serves (model, scale).
* :mod:`~sr_bench.weights.files`: :func:`resolve_weights` turns ``--weights NAME|PATH`` into a
  local, hash-checked file (weights folder, download cache, mirror, official server).
* :mod:`~sr_bench.weights.convert`: the :data:`CONVERTERS` table for foreign checkpoints
  (sr_bench training checkpoints, BasicSR, Lightning, DataParallel / ``torch.compile``
  prefixes); new formats are added there alone.
* :mod:`~sr_bench.weights.describe`: which architecture a state_dict describes, and the strict
  check that explains a mismatch ("checkpoint has 32 residual blocks x 256 filters, x4
  upsampler; the model has 16 x 64, x2: did you mean create('edsr', scale=4)?").
* :mod:`~sr_bench.weights.load`: :func:`load_weights` (strict), :func:`partial_load` (the x2 ->
  x3/x4 warm start, naming every key it loads and leaves), :func:`export_safetensors` (atomic).
* :mod:`~sr_bench.weights.errors`: :class:`WeightsError` and its kinds.

Dependencies run one way: errors <- published <- files <- load, convert <- load, describe <- load.
"""

from sr_bench.weights.convert import CONVERTERS, Converter, Unwrapped, convert_checkpoint, register_converter, to_format
from sr_bench.weights.describe import (
    ArchSummary,
    KeyDifferences,
    check_state_dict,
    describe_state_dict,
    key_differences,
)
from sr_bench.weights.errors import (
    MissingWeightsFileError,
    NonFiniteWeightsError,
    UnknownWeightsError,
    WeightsDownloadError,
    WeightsError,
    WeightsMismatchError,
    WeightsOptionError,
)
from sr_bench.weights.files import (
    DOWNLOAD_RETRIES_ENV,
    DOWNLOAD_TIMEOUT_ENV,
    WEIGHTS_DIR_ENV,
    WEIGHTS_URL_ENV,
    check_weights_path,
    current_weights_dir,
    default_cache_dir,
    download_settings,
    download_urls,
    resolve_weights,
    set_weights_dir,
    sha256_file,
)
from sr_bench.weights.load import (
    PartialLoad,
    WeightsInfo,
    check_finite,
    export_safetensors,
    load_weights,
    partial_load,
    read_state_dict,
)
from sr_bench.weights.published import (
    OFFICIAL_BASE_URL,
    WeightsSpec,
    get_weights,
    identify_weights,
    published_weights,
    register_weights,
    weights_for,
    weights_names,
)

__all__ = [
    "WeightsSpec",
    "WeightsInfo",
    "ArchSummary",
    "PartialLoad",
    "WeightsError",
    "MissingWeightsFileError",
    "check_weights_path",
    "WeightsMismatchError",
    "WeightsDownloadError",
    "WeightsOptionError",
    "UnknownWeightsError",
    "NonFiniteWeightsError",
    "Converter",
    "CONVERTERS",
    "register_converter",
    "convert_checkpoint",
    "check_finite",
    "Unwrapped",
    "to_format",
    "published_weights",
    "identify_weights",
    "set_weights_dir",
    "current_weights_dir",
    "default_cache_dir",
    "download_urls",
    "WEIGHTS_DIR_ENV",
    "WEIGHTS_URL_ENV",
    "DOWNLOAD_TIMEOUT_ENV",
    "DOWNLOAD_RETRIES_ENV",
    "download_settings",
    "register_weights",
    "get_weights",
    "weights_names",
    "weights_for",
    "resolve_weights",
    "read_state_dict",
    "describe_state_dict",
    "KeyDifferences",
    "key_differences",
    "check_state_dict",
    "load_weights",
    "partial_load",
    "export_safetensors",
    "sha256_file",
    "OFFICIAL_BASE_URL",
]
