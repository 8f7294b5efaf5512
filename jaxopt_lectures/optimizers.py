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

from jax.typing import DTypeLike

from ._core import GradientTransformation, Scalar, ScalarOrSchedule, chain, check_decay, check_flag, check_learning_rate
from .transforms.adaptive import scale_by_adagrad, scale_by_adam, scale_by_rms
from .transforms.momentum import add_momentum
from .transforms.regularization import DEFAULT_MASK, Mask, decoupled_weight_decay
from .transforms.scaling import scale_by_learning_rate

# Positional arguments follow optax's aliases (same names, same order, same meaning);
# the lectures' extra options (``bias_correction``, ``eps_in_sqrt`` where optax lacks it,
# ``init``, ``variant``) are keyword-only, so a call copied from optax cannot bind to them.


def _keeps_momentum(momentum: Scalar | None, nesterov: bool) -> bool:
    return nesterov or not (momentum is None or (isinstance(momentum, (int, float)) and momentum == 0))


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: Scalar | None = None,
    nesterov: bool = False,
    accumulator_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Gradient descent (seed 003): ``θ_{t+1} = θ_t − η g_t``; with ``momentum=β``,
    ``m_t = β m_{t−1} + g_t``, ``θ_{t+1} = θ_t − η m_t`` (PyTorch's SGD, dampening 0).

    .. math::

        \theta_{t+1} = \theta_t - \eta\, g_t,
        \qquad\text{with momentum } \beta:\quad
        m_t = \beta\, m_{t-1} + g_t,\quad \theta_{t+1} = \theta_t - \eta\, m_t

    ``optax.sgd``'s arguments: ``momentum=None`` (or 0) keeps no state; ``accumulator_dtype``
    is the dtype ``m`` is stored in.
    """
    check_learning_rate(learning_rate, owner="sgd")
    if momentum is not None:
        check_decay("momentum", momentum, owner="sgd")
    check_flag("nesterov", nesterov, "sgd")
    txs = []
    if _keeps_momentum(momentum, nesterov):
        txs.append(add_momentum(0.0 if momentum is None else momentum, nesterov, accumulator_dtype))
    return chain(*txs, scale_by_learning_rate(learning_rate))


def momentum(
    learning_rate: ScalarOrSchedule, beta: Scalar = 0.9, variant: str = "classic", nesterov: bool = False
) -> GradientTransformation:
    r"""Gradient descent with momentum: ``θ_{t+1} = θ_t − η m_t`` (no optax counterpart:
    ``optax.sgd(η, momentum=β)`` is ``variant="classic"``).

    .. math::

        \theta_{t+1} = \theta_t - \eta\, m_t,\qquad
        m_t = \begin{cases}
        \beta\, m_{t-1} + g_t & \text{classic},\\
        \beta\, m_{t-1} + (1 - \beta)\, g_t,\ m_0 = g_0 & \text{ema},\\
        g_0 + g_1 + \dots + g_t & \text{sum}
        \end{cases}

    ``variant`` picks the lecture's recurrence for ``m_t`` (``classic`` seed 003/004,
    ``ema`` and ``sum`` seed 001; formulas in ``add_momentum``).
    """
    check_learning_rate(learning_rate, owner="momentum")
    return chain(add_momentum(beta, nesterov, variant=variant), scale_by_learning_rate(learning_rate))


def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: Scalar = 0.0,
    eps: Scalar = 1e-10,
    *,
    eps_in_sqrt: bool = False,
) -> GradientTransformation:
    r"""Adagrad (seed 003): ``r_t = r_{t−1} + g⊙g``, ``θ_{t+1} = θ_t − η/(δ + √r_t) · g_t``.

    .. math::

        r_t = r_{t-1} + g_t \odot g_t,\qquad
        \theta_{t+1} = \theta_t - \frac{\eta}{\delta + \sqrt{r_t}} \odot g_t

    optax's argument order; the lecture's defaults (``r_{−1} = 0``, ``δ = 1e-10`` outside the
    root, as PyTorch). ``optax.adagrad(η)`` is ``adagrad(η, 0.1, 1e-7, eps_in_sqrt=True)``.
    """
    check_learning_rate(learning_rate, owner="adagrad")
    return chain(
        scale_by_adagrad(initial_accumulator_value, eps, eps_in_sqrt=eps_in_sqrt),
        scale_by_learning_rate(learning_rate),
    )


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: Scalar = 0.9,
    eps: Scalar = 1e-8,
    initial_scale: Scalar = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: Scalar | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
    *,
    init: str = "zeros",
) -> GradientTransformation:
    r"""RMSProp (seed 003): ``r_t = p r_{t−1} + (1 − p) g⊙g``, ``θ_{t+1} = θ_t − η/√(δ + r_t) · g``.

    .. math::

        r_t = p\, r_{t-1} + (1 - p)\, g_t \odot g_t,\qquad
        \theta_{t+1} = \theta_t - \frac{\eta}{\sqrt{\delta + r_t}} \odot g_t

    ``optax.rmsprop``'s arguments and order. With ``momentum=β`` (PyTorch's order):
    ``b_t = β b_{t−1} + g/√(δ + r_t)``, ``θ_{t+1} = θ_t − η b_t``. ``init="first_grad"``
    (keyword-only) is seed 001's ``σ_0 = |g_0|``.
    """
    check_learning_rate(learning_rate, owner="rmsprop")
    if momentum is not None:
        check_decay("momentum", momentum, owner="rmsprop")
    check_flag("nesterov", nesterov, "rmsprop")
    txs = [scale_by_rms(decay, eps, initial_scale, eps_in_sqrt, bias_correction, centered=centered, init=init)]
    if _keeps_momentum(momentum, nesterov):
        txs.append(add_momentum(0.0 if momentum is None else momentum, nesterov))
    return chain(*txs, scale_by_learning_rate(learning_rate))


def adam(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: DTypeLike | None = None,
    *,
    nesterov: bool = False,
    bias_correction: bool = True,
) -> GradientTransformation:
    r"""Adam (seed 003, Kingma & Ba): RMSProp + momentum + bias correction,
    ``θ_t = θ_{t−1} − α m̂_t / (√v̂_t + ε)`` (formulas in ``adam_leaf``).

    .. math::

        m_t = \beta_1 m_{t-1} + (1 - \beta_1)\, g_t,\qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2,

        \hat m_t = \frac{m_t}{1 - \beta_1^t},\qquad
        \hat v_t = \frac{v_t}{1 - \beta_2^t},

        \theta_t = \theta_{t-1} - \alpha\, \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{\mathrm{root}}} + \epsilon}

    ``optax.adam``'s arguments and order (``mu_dtype``: the dtype ``m`` is stored in;
    ``nesterov=True``: NAdam); ``bias_correction=False`` (keyword-only) is lecture 004's variant.
    """
    check_learning_rate(learning_rate, owner="adam")
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, bias_correction=bias_correction),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: DTypeLike | None = None,
    weight_decay: Scalar = 1e-4,
    mask: Mask = DEFAULT_MASK,
    *,
    nesterov: bool = False,
    bias_correction: bool = True,
) -> GradientTransformation:
    r"""AdamW: Adam with decoupled weight decay,
    ``θ_t = θ_{t−1} − α (m̂_t / (√v̂_t + ε) + λ θ_{t−1})`` (seed 004's ``(1 − ηλ)θ``).

    .. math::

        \theta_t = \theta_{t-1} - \alpha \left(\frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{\mathrm{root}}} + \epsilon}
        + \lambda\, \theta_{t-1}\right)

        \text{with } \hat m_t, \hat v_t \text{ as in adam, and } \lambda \text{ only where the mask is True}

    ``optax.adamw``'s arguments, order and ``weight_decay`` default (1e-4; PyTorch's is
    1e-2). The decay is multiplied by the learning rate (optax's and PyTorch's convention);
    by default only leaves with ``ndim >= 2`` are decayed (``mask=None``: all leaves, as
    optax's default; a mask may be a prefix of the params tree).
    """
    check_learning_rate(learning_rate, owner="adamw")
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, bias_correction=bias_correction),
        decoupled_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
