"""The optimizers of the lectures: each one a chain of the transformations.

| alias     | chain                                                                      |
|-----------|----------------------------------------------------------------------------|
| sgd       | [add_momentum(classic)] → scale_by_learning_rate                           |
| momentum  | add_momentum(variant) → scale_by_learning_rate                             |
| adagrad   | scale_by_adagrad → scale_by_learning_rate                                  |
| rmsprop   | scale_by_rms → [add_momentum(classic)] → scale_by_learning_rate            |
| adam      | scale_by_adam → scale_by_learning_rate                                     |
| adamw     | scale_by_adam → decoupled_weight_decay → scale_by_learning_rate            |
"""

from __future__ import annotations

from ._core import GradientTransformation, chain, check_decay, check_learning_rate
from .transforms.adaptive import scale_by_adagrad, scale_by_adam, scale_by_rms
from .transforms.momentum import add_momentum
from .transforms.regularization import DEFAULT_MASK, decoupled_weight_decay
from .transforms.scaling import scale_by_learning_rate


def sgd(learning_rate, momentum=0.0, nesterov: bool = False) -> GradientTransformation:
    """Gradient descent (seed 003): ``θ_{t+1} = θ_t − η g_t``; with ``momentum=β``,
    ``m_t = β m_{t−1} + g_t``, ``θ_{t+1} = θ_t − η m_t`` (PyTorch's SGD, dampening 0)."""
    check_learning_rate(learning_rate, owner="sgd")
    check_decay("momentum", momentum, owner="sgd")
    txs = []
    if nesterov or (not isinstance(momentum, (int, float)) or momentum > 0):
        txs.append(add_momentum(momentum, "classic", nesterov))
    return chain(*txs, scale_by_learning_rate(learning_rate))


def momentum(learning_rate, beta=0.9, variant: str = "classic", nesterov: bool = False):
    """Gradient descent with momentum: ``θ_{t+1} = θ_t − η m_t``.

    ``variant`` picks the lecture's recurrence for ``m_t`` (``classic`` seed 003/004,
    ``ema`` and ``sum`` seed 001; formulas in ``add_momentum``).
    """
    check_learning_rate(learning_rate, owner="momentum")
    return chain(add_momentum(beta, variant, nesterov), scale_by_learning_rate(learning_rate))


def adagrad(learning_rate, initial_accumulator_value=0.0, eps=1e-10, eps_in_sqrt: bool = False):
    """Adagrad (seed 003): ``r_t = r_{t−1} + g⊙g``, ``θ_{t+1} = θ_t − η/(δ + √r_t) · g_t``."""
    check_learning_rate(learning_rate, owner="adagrad")
    return chain(
        scale_by_adagrad(eps, initial_accumulator_value, eps_in_sqrt),
        scale_by_learning_rate(learning_rate),
    )


def rmsprop(
    learning_rate,
    decay=0.9,
    eps=1e-8,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum=0.0,
    init: str = "zeros",
    nesterov: bool = False,
    initial_scale=0.0,
) -> GradientTransformation:
    """RMSProp (seed 003): ``r_t = p r_{t−1} + (1 − p) g⊙g``, ``θ_{t+1} = θ_t − η/√(δ + r_t) · g``.

    With ``momentum=β`` (PyTorch's order): ``b_t = β b_{t−1} + g/√(δ + r_t)``,
    ``θ_{t+1} = θ_t − η b_t``. ``init="first_grad"`` is seed 001's ``σ_0 = |g_0|``.
    """
    check_learning_rate(learning_rate, owner="rmsprop")
    check_decay("momentum", momentum, owner="rmsprop")
    txs = [scale_by_rms(decay, eps, eps_in_sqrt, initial_scale, centered, init)]
    if nesterov or (not isinstance(momentum, (int, float)) or momentum > 0):
        txs.append(add_momentum(momentum, "classic", nesterov))
    return chain(*txs, scale_by_learning_rate(learning_rate))


def adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, bias_correction: bool = True, eps_root=0.0):
    """Adam (seed 003, Kingma & Ba): RMSProp + momentum + bias correction,
    ``θ_t = θ_{t−1} − α m̂_t / (√v̂_t + ε)`` (formulas in ``adam_leaf``)."""
    check_learning_rate(learning_rate, owner="adam")
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, bias_correction),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    weight_decay=1e-2,
    mask=DEFAULT_MASK,
    bias_correction: bool = True,
    eps_root=0.0,
) -> GradientTransformation:
    """AdamW: Adam with decoupled weight decay,
    ``θ_t = θ_{t−1} − α (m̂_t / (√v̂_t + ε) + λ θ_{t−1})`` (seed 004's ``(1 − ηλ)θ``).

    The decay is multiplied by the learning rate (optax's and PyTorch's convention);
    by default only leaves with ``ndim >= 2`` are decayed (``mask=None``: all leaves).
    """
    check_learning_rate(learning_rate, owner="adamw")
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, bias_correction),
        decoupled_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
