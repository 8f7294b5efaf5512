"""The lab: networks, offline data, augmentation and a multi-seed trainer (needs Flax).

``from jaxopt_lectures import lab``; the optimizers themselves come from ``jaxopt_lectures``
(``jol``), which never imports Flax.
"""

from . import augment as augment, checkpoints as checkpoints, data as data, models as models
from ._paths import cache_dir as cache_dir, enable_compilation_cache as enable_compilation_cache
from .data import (
    DataError as DataError,
    Dataset as Dataset,
    from_arrays as from_arrays,
    linear_regression as linear_regression,
    load as load,
    load_digits as load_digits,
    load_mnist1d as load_mnist1d,
    load_npz as load_npz,
)
from .models import (
    CNN as CNN,
    CNN1D as CNN1D,
    MLP as MLP,
    Dropout as Dropout,
    PReLU as PReLU,
    ResNet as ResNet,
    count_params as count_params,
    layer_parameter_counts as layer_parameter_counts,
    maxout as maxout,
)
from .probes import gradient_norms as gradient_norms
from .trainer import (
    TRAINER_HPARAMS as TRAINER_HPARAMS,
    History as History,
    train as train,
    transfer_params as transfer_params,
)

# the lab's public API (the API reference documents each name)
__all__ = [
    "augment",
    "checkpoints",
    "data",
    "models",
    "cache_dir",
    "enable_compilation_cache",
    "DataError",
    "Dataset",
    "from_arrays",
    "linear_regression",
    "load",
    "load_digits",
    "load_mnist1d",
    "load_npz",
    "CNN",
    "CNN1D",
    "MLP",
    "Dropout",
    "PReLU",
    "ResNet",
    "count_params",
    "layer_parameter_counts",
    "maxout",
    "gradient_norms",
    "TRAINER_HPARAMS",
    "History",
    "train",
    "transfer_params",
]
