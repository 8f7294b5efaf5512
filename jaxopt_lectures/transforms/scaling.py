"""Scaling by a constant or by the learning rate η (seed 003: x' = x − η ∇f(x))."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._core import (
    EmptyState,
    GradientTransformation,
    Scalar,
    ScalarOrSchedule,
    Schedule,
    as_coefficient,
    as_float,
    check_learning_rate,
    check_range,
    check_schedule,
    check_state,
    safe_increment,
)


class ScaleByScheduleState(NamedTuple):
    """``count``: how many updates have been made (the schedule's argument)."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name; it shadows tuple.count


def _scale_leaf(g, factor):
    """The per-array rule: ``factor · g`` in ``g``'s dtype (float32 for an integer ``g``)."""
    g = as_float(g)
    return (as_coefficient(factor, g.dtype) * g).astype(g.dtype)


def scale(step_size: Scalar) -> GradientTransformation:
    """Multiplies every update by a constant: ``u ← step_size · u`` (a finite number, any sign)."""
    check_range("step_size", step_size, owner="scale")

    def init(params):
        del params
        return EmptyState()

    def update(grads, state, params=None, **extra):
        del params, extra
        return jax.tree.map(lambda g: _scale_leaf(g, step_size), grads), state

    return GradientTransformation(init, update)


def scale_by_learning_rate(learning_rate: ScalarOrSchedule, *, flip_sign: bool = True) -> GradientTransformation:
    """The gradient-descent step: ``u ← −η · u`` (seed 003, eq. x' = x − η∇f(x)).

    ``learning_rate`` is a float or a schedule ``count -> η_t`` (see
    ``jaxopt_lectures.schedules``); with a schedule the state holds ``count`` (0-based).
    A schedule (or any callable) is evaluated at construction at counts 0 and 1 (and at
    its boundaries, for this package's schedules) and refused if a value is negative or
    not finite; values at other counts are not checked.
    """
    check_learning_rate(learning_rate, owner="scale_by_learning_rate")
    sign = -1.0 if flip_sign else 1.0
    if not callable(learning_rate):
        return scale(sign * learning_rate)

    def init(params):
        del params
        return ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(grads, state, params=None, **extra):
        del params, extra
        if not isinstance(state, ScaleByScheduleState):
            raise ValueError(
                f"scale_by_learning_rate got a state of type {type(state).__name__} where it "
                "expects ScaleByScheduleState; was the state made by this optimizer's init?"
            )
        eta = learning_rate(state.count)
        updates = jax.tree.map(lambda g: _scale_leaf(g, sign * eta), grads)
        return updates, ScaleByScheduleState(count=safe_increment(state.count))

    return GradientTransformation(init, update)


def scale_by_schedule(step_size_fn: Schedule) -> GradientTransformation:
    """``u ← s(t) · u`` for a schedule ``s: count -> factor`` (``optax.scale_by_schedule``):
    ``scale_by_learning_rate(s, flip_sign=False)``, except that the factor may be negative."""
    if not callable(step_size_fn):
        raise TypeError(
            f"scale_by_schedule: step_size_fn must be a schedule count -> value, got {type(step_size_fn).__name__}"
        )
    check_schedule("step_size_fn", step_size_fn, -math.inf, owner="scale_by_schedule")

    def init(params):
        del params
        return ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(grads, state, params=None, **extra):
        del params, extra
        check_state(state, ScaleByScheduleState, "scale_by_schedule")
        factor = step_size_fn(state.count)
        return jax.tree.map(lambda g: _scale_leaf(g, factor), grads), ScaleByScheduleState(
            count=safe_increment(state.count)
        )

    return GradientTransformation(init, update)
