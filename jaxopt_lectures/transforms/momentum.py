"""Momentum: remember past gradients (seeds 001, 003, 004)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .._core import (
    GradientTransformation,
    Scalar,
    as_coefficient,
    check_choice,
    check_decay,
    check_dtype,
    check_flag,
    check_float_params,
    check_range,
    check_state,
    safe_increment,
    tree_map_checked,
    tree_unzip,
    tree_zeros_like,
)

MOMENTUM_VARIANTS = ("classic", "ema", "sum")


class MomentumState(NamedTuple):
    """``count``: updates made so far; ``mu``: the momentum m, one array per parameter."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name; it shadows tuple.count
    mu: object


def momentum_leaf(g, m, first, beta, variant: str, nesterov: bool):
    """One array's momentum rule; returns ``(update, new_m)``.

    - classic (seed 003 ``v_t = γ v_{t−1} + η∇f``, seed 004 movement): ``m_t = β m_{t−1} + g_t``,
      ``m_{−1} = 0``.
    - ema (seed 001, "not the classic momentum"): ``m_0 = g_0``,
      ``m_t = β m_{t−1} + (1 − β) g_t``.
    - sum (seed 001): ``m_t = g_0 + g_1 + … + g_t`` (β is ignored).

    With ``nesterov`` the step looks ahead: ``u = β m_t + c g_t`` where ``c`` is the
    gradient's own coefficient in the recurrence (1, or 1 − β for ema).

    The recurrence runs in the promoted dtype of ``m`` and ``g``; the step uses ``m_t``
    unrounded and ``m_t`` is stored in ``m``'s dtype (``accumulator_dtype``, as optax.trace).
    """
    store = m.dtype
    ct = jnp.promote_types(m.dtype, g.dtype)
    beta = as_coefficient(beta, m.dtype)
    g_m = g.astype(ct)
    if variant == "classic":  # β·m in m's dtype, then the sum in ct (optax.trace's rounding)
        coeff, new_m = 1.0, (beta * m).astype(ct) + g_m
    elif variant == "sum":
        beta, coeff, new_m = 1.0, 1.0, m.astype(ct) + g_m
    else:  # ema
        coeff = 1.0 - beta
        new_m = jnp.where(first, g_m, (beta * m).astype(ct) + coeff * g_m)
    new_m = new_m.astype(ct)
    u = beta * new_m + coeff * g_m if nesterov else new_m
    return u.astype(g.dtype), new_m.astype(store)


def add_momentum(
    beta: Scalar = 0.9, nesterov: bool = False, accumulator_dtype: DTypeLike | None = None, *, variant: str = "classic"
) -> GradientTransformation:
    """Replaces the gradient by the momentum ``m_t`` (formulas in ``momentum_leaf``).

    Followed by ``scale_by_learning_rate(η)`` this is ``θ_{t+1} = θ_t − η m_t``. The
    arguments in ``optax.trace``'s order (its ``decay`` is our β); ``accumulator_dtype``
    is the dtype ``m`` is stored in (default: the parameters'); ``variant`` picks the
    lecture's recurrence (``"classic"`` is optax.trace's).
    """
    check_choice("variant", variant, MOMENTUM_VARIANTS, owner="add_momentum")
    check_flag("nesterov", nesterov, "add_momentum")
    accumulator_dtype = check_dtype("accumulator_dtype", accumulator_dtype, "add_momentum")
    if variant == "sum":
        check_range("beta", beta, 0.0, 1.0, owner="add_momentum")
    else:
        check_decay("beta", beta, owner="add_momentum")

    def init(params):
        check_float_params(params, "add_momentum")
        return MomentumState(count=jnp.zeros([], jnp.int32), mu=tree_zeros_like(params, accumulator_dtype))

    def update(grads, state, params=None, **extra):
        del params, extra
        check_state(state, MomentumState, "add_momentum")
        first = state.count == 0
        pairs = tree_map_checked(
            lambda g, m: momentum_leaf(g, m, first, beta, variant, nesterov),
            grads,
            state.mu,
            names=("grads", "state.mu"),
        )
        updates, mu = tree_unzip(grads, pairs, 2)
        return updates, MomentumState(count=safe_increment(state.count), mu=mu)

    return GradientTransformation(init, update)
