"""The lab: networks, offline data, augmentation and a multi-seed trainer (needs Flax).

``from jaxopt_lectures import lab``; the optimizers themselves come from ``jaxopt_lectures``
(``jol``), which never imports Flax.
"""

from . import augment as augment
from . import checkpoints as checkpoints
from . import data as data
from . import models as models
from ._paths import cache_dir as cache_dir
from ._paths import enable_compilation_cache as enable_compilation_cache
from .data import DataError as DataError
from .data import Dataset as Dataset
from .data import from_arrays as from_arrays
from .data import linear_regression as linear_regression
from .data import load as load
from .data import load_digits as load_digits
from .data import load_mnist1d as load_mnist1d
from .data import load_npz as load_npz
from .models import CNN as CNN
from .models import CNN1D as CNN1D
from .models import MLP as MLP
from .models import Dropout as Dropout
from .models import PReLU as PReLU
from .models import ResNet as ResNet
from .models import count_params as count_params
from .models import layer_parameter_counts as layer_parameter_counts
from .models import maxout as maxout
from .probes import gradient_norms as gradient_norms
from .trainer import TRAINER_HPARAMS as TRAINER_HPARAMS
from .trainer import History as History
from .trainer import train as train
from .trainer import transfer_params as transfer_params
