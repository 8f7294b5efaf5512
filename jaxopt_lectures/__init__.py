"""jaxopt_lectures: the optimizers of a lecture course as composable JAX gradient transformations.

``import jaxopt_lectures as jol`` gives the optimizer core; it imports neither Flax nor
optax. The lab (models, data, trainer, experiments) lives in ``jaxopt_lectures.lab``.
"""

from . import losses as losses, schedules as schedules, sharding as sharding
from ._core import (
    EmptyState as EmptyState,
    GradientTransformation as GradientTransformation,
    LeafDtypeError as LeafDtypeError,
    MaskedNode as MaskedNode,
    Scalar as Scalar,
    ScalarOrSchedule as ScalarOrSchedule,
    Schedule as Schedule,
    apply_updates as apply_updates,
    chain as chain,
    get_state_field as get_state_field,
    global_norm as global_norm,
    identity as identity,
    set_state_field as set_state_field,
)
from .fused import (
    FusedOptimizer as FusedOptimizer,
    FusedState as FusedState,
    Packed as Packed,
    fused_adam as fused_adam,
    fused_adamw as fused_adamw,
    fused_sgd as fused_sgd,
    jit_step as jit_step,
)
from .optimizers import (
    adagrad as adagrad,
    adam as adam,
    adamw as adamw,
    momentum as momentum,
    rmsprop as rmsprop,
    sgd as sgd,
)
from .transforms import (
    AccumulateState as AccumulateState,
    AdagradState as AdagradState,
    AdamState as AdamState,
    ApplyIfFiniteState as ApplyIfFiniteState,
    FlattenState as FlattenState,
    InjectHyperparamsState as InjectHyperparamsState,
    MaskedState as MaskedState,
    MomentumState as MomentumState,
    RmsState as RmsState,
    ScaleByScheduleState as ScaleByScheduleState,
    accumulate_gradients as accumulate_gradients,
    add_l1_regularization as add_l1_regularization,
    add_l2_regularization as add_l2_regularization,
    add_momentum as add_momentum,
    apply_if_finite as apply_if_finite,
    clip as clip,
    clip_by_global_norm as clip_by_global_norm,
    decay_matrices_only as decay_matrices_only,
    decoupled_weight_decay as decoupled_weight_decay,
    flatten as flatten,
    inject_hyperparams as inject_hyperparams,
    masked as masked,
    scale as scale,
    scale_by_adagrad as scale_by_adagrad,
    scale_by_adam as scale_by_adam,
    scale_by_learning_rate as scale_by_learning_rate,
    scale_by_rms as scale_by_rms,
    scale_by_schedule as scale_by_schedule,
    scale_by_stddev as scale_by_stddev,
)
from .transforms.partition import (
    PartitionState as PartitionState,
    freeze as freeze,
    partition as partition,
    set_to_zero as set_to_zero,
)

__version__ = "0.1.0"
