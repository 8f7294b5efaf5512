"""Momentum: remember past gradients (seeds 001, 003, 004)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._core import (
    as_coefficient,
    GradientTransformation,
    check_choice,
    check_float_params,
    check_state,
    check_decay,
    check_range,
    safe_increment,
    tree_map_checked,
    tree_unzip,
    tree_zeros_like,
)

MOMENTUM_VARIANTS = ("classic", "ema", "sum")


class MomentumState(NamedTuple):
    """``count``: updates made so far; ``mu``: the momentum m, one array per parameter."""

    count: jax.Array
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
    """
    beta = as_coefficient(beta, m.dtype)
    if variant == "classic":
        coeff, new_m = 1.0, beta * m + g
    elif variant == "sum":
        beta, coeff, new_m = 1.0, 1.0, m + g
    else:  # ema
        coeff = 1.0 - beta
        new_m = jnp.where(first, g, beta * m + coeff * g)
    new_m = new_m.astype(m.dtype)
    u = beta * new_m + coeff * g if nesterov else new_m
    return u.astype(g.dtype), new_m


def add_momentum(beta=0.9, variant: str = "classic", nesterov: bool = False) -> GradientTransformation:
    """Replaces the gradient by the momentum ``m_t`` (formulas in ``momentum_leaf``).

    Followed by ``scale_by_learning_rate(η)`` this is ``θ_{t+1} = θ_t − η m_t``.
    """
    check_choice("variant", variant, MOMENTUM_VARIANTS, owner="add_momentum")
    if variant == "sum":
        check_range("beta", beta, 0.0, 1.0, owner="add_momentum")
    else:
        check_decay("beta", beta, owner="add_momentum")

    def init(params):
        check_float_params(params, "add_momentum")
        return MomentumState(count=jnp.zeros([], jnp.int32), mu=tree_zeros_like(params))

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
