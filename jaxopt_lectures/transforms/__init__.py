"""The gradient transformations, one file per family."""

from .adaptive import (
    AdagradState as AdagradState,
    AdamState as AdamState,
    RmsState as RmsState,
    adagrad_leaf as adagrad_leaf,
    adam_leaf as adam_leaf,
    rms_leaf as rms_leaf,
    scale_by_adagrad as scale_by_adagrad,
    scale_by_adam as scale_by_adam,
    scale_by_rms as scale_by_rms,
    scale_by_stddev as scale_by_stddev,
)
from .clipping import clip as clip, clip_by_global_norm as clip_by_global_norm
from .momentum import MomentumState as MomentumState, add_momentum as add_momentum, momentum_leaf as momentum_leaf
from .partition import (
    PartitionState as PartitionState,
    freeze as freeze,
    partition as partition,
    set_to_zero as set_to_zero,
)
from .regularization import (
    add_l1_regularization as add_l1_regularization,
    add_l2_regularization as add_l2_regularization,
    decay_matrices_only as decay_matrices_only,
    decoupled_weight_decay as decoupled_weight_decay,
)
from .scaling import (
    ScaleByScheduleState as ScaleByScheduleState,
    scale as scale,
    scale_by_learning_rate as scale_by_learning_rate,
    scale_by_schedule as scale_by_schedule,
)
from .wrappers import (
    AccumulateState as AccumulateState,
    ApplyIfFiniteState as ApplyIfFiniteState,
    FlattenState as FlattenState,
    InjectHyperparamsState as InjectHyperparamsState,
    MaskedState as MaskedState,
    accumulate_gradients as accumulate_gradients,
    apply_if_finite as apply_if_finite,
    flatten as flatten,
    inject_hyperparams as inject_hyperparams,
    masked as masked,
)
