"""Clipping: bound the step when gradients explode."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._core import EmptyState, GradientTransformation, check_range, global_norm


def clip(max_delta) -> GradientTransformation:
    """Clips every coordinate into ``[−max_delta, max_delta]``."""
    check_range("max_delta", max_delta, 0.0, owner="clip")

    def init(params):
        del params
        return EmptyState()

    def update(grads, state, params=None, **extra):
        del params, extra
        return jax.tree.map(
            lambda g: jnp.clip(g, -jnp.asarray(max_delta, g.dtype), jnp.asarray(max_delta, g.dtype)),
            grads,
        ), state

    return GradientTransformation(init, update)


def clip_by_global_norm(max_norm) -> GradientTransformation:
    """Rescales the whole gradient when its norm is too large.

    ``g ← g · min(1, c / ‖g‖)`` with ``‖g‖ = √(Σ_leaves Σ g²)`` and ``c`` = ``max_norm``.
    """
    check_range("max_norm", max_norm, 0.0, low_open=True, owner="clip_by_global_norm")

    def init(params):
        del params
        return EmptyState()

    def update(grads, state, params=None, **extra):
        del params, extra
        norm = global_norm(grads)
        factor = jnp.where(norm > max_norm, max_norm / jnp.where(norm > 0, norm, 1.0), 1.0)
        return jax.tree.map(lambda g: (g * factor.astype(g.dtype)).astype(g.dtype), grads), state

    return GradientTransformation(init, update)
