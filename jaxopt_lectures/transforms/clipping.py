"""Clipping: bound the step when gradients explode."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._core import EmptyState, GradientTransformation, Scalar, as_float, check_range, global_norm_parts


def clip(max_delta: Scalar) -> GradientTransformation:
    """Clips every coordinate into ``[−max_delta, max_delta]``."""
    check_range("max_delta", max_delta, 0.0, owner="clip")

    def init(params):
        del params
        return EmptyState()

    def update(grads, state, params=None, **extra):
        del params, extra

        def leaf(g):
            g = as_float(g)
            return jnp.clip(g, -jnp.asarray(max_delta, g.dtype), jnp.asarray(max_delta, g.dtype))

        return jax.tree.map(leaf, grads), state

    return GradientTransformation(init, update)


def clip_by_global_norm(max_norm: Scalar) -> GradientTransformation:
    """Rescales the whole gradient when its norm is too large.

    ``g ← g · min(1, c / ‖g‖)`` with ``‖g‖ = √(Σ_leaves Σ g²)`` and ``c`` = ``max_norm``.
    The norm is computed without overflow (``global_norm`` scales by the largest
    ``|g|`` first), so ``[1e20, 1]`` is clipped to ``[1, 1e-20]``, not zeroed. Where
    ``c / ‖g‖`` would be below the smallest normal number (float32 norms above ~8.5e37,
    where the CPU flushes it to 0) the gradient is scaled in two steps,
    ``(g / s) · (c / sqrt(Σ (g/s)²))`` with ``s`` the largest ``|g|``, so ``[1e38, 1]``
    becomes ``[1, 1e-38]``, not ``[0, 0]``.
    """
    check_range("max_norm", max_norm, 0.0, low_open=True, owner="clip_by_global_norm")

    def init(params):
        del params
        return EmptyState()

    def update(grads, state, params=None, **extra):
        del params, extra
        scale, total, finite = global_norm_parts(grads)
        norm = jnp.where(finite, scale * jnp.sqrt(total), jnp.sqrt(total))
        factor = jnp.where(norm > max_norm, max_norm / jnp.where(norm > 0, norm, 1.0), 1.0)
        # c / ‖g‖ below the smallest normal number (a subnormal, flushed to 0 on the CPU)
        tiny = jnp.finfo(norm.dtype).tiny
        huge = finite & (norm * tiny > max_norm)
        second = max_norm / jnp.sqrt(jnp.where(huge, total, 1.0))

        def leaf(g):
            g = as_float(g)
            one_step = (g * factor.astype(g.dtype)).astype(g.dtype)
            dt = jnp.promote_types(g.dtype, norm.dtype)  # float32 at least; complex stays complex
            two_steps = (g.astype(dt) / scale.astype(dt) * second.astype(dt)).astype(g.dtype)
            return jnp.where(huge, two_steps, one_step)

        return jax.tree.map(leaf, grads), state

    return GradientTransformation(init, update)
