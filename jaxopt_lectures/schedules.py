"""Learning-rate schedules: pure, jit-safe functions ``count -> value`` (0-based count).

Argument names follow optax so users can switch. Values (``init_value``, ``end_value``,
``peak_value``, ...) must be finite and non-negative (these are learning rates); each
schedule lists its boundary counts in ``probe_counts``, where ``scale_by_learning_rate``
evaluates it once at construction. Seed 000 (learning-rate scheduling):
*decay* shrinks η as training approaches the minimum; *warm-up* grows η from small at
the start, while the adaptive statistics (σ of RMSProp/Adam) are still unreliable.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from ._core import Schedule, check_range, static_value


def _count(count):
    return jnp.asarray(count, jnp.float32)


# Counts are integers (int32 in the optimizers' states); float32 holds integers exactly only
# up to 2^24, so boundaries are compared and differences taken in integer arithmetic, and
# only the final ratio is converted (audit v2 N18).
_EXACT_F32 = 2**24


def _is_int(c) -> bool:
    return jnp.issubdtype(c.dtype, jnp.integer)


def _reached(count, boundary: int):
    """``count >= boundary``, exact for integer counts (a boundary beyond the count's dtype
    is never reached)."""
    c = jnp.asarray(count)
    if not _is_int(c):
        return _count(c) >= boundary
    if boundary > jnp.iinfo(c.dtype).max:
        return jnp.zeros(c.shape, bool)
    return c >= boundary


def _since(count, start: int):
    """``max(count − start, 0)``: an integer array for an integer count (exact), else float32."""
    c = jnp.asarray(count)
    if not _is_int(c):
        return jnp.maximum(_count(c) - start, 0.0)
    c = jnp.maximum(c, 0)
    return jnp.maximum(c - min(start, int(jnp.iinfo(c.dtype).max)), 0)


def _cap(x):
    """The largest value ``x``'s dtype holds (for clipping Python ints before integer arithmetic)."""
    return int(jnp.iinfo(x.dtype).max) if _is_int(x) else float("inf")


def _ratio(d, n):
    """``d / n`` in float32 for ``d`` from ``_since``: below 2^24 the plain quotient; above,
    ``d`` is split into a multiple of 256 and a remainder (both exact in float32), so counts
    that float32 cannot tell apart still give different ratios."""
    if not _is_int(d):
        return d / n
    plain = d.astype(jnp.float32) / n
    hi = (d // 256) * 256
    split = hi.astype(jnp.float32) / n + (d - hi).astype(jnp.float32) / n
    return jnp.where(d < _EXACT_F32, plain, split)


def _value(name, v, owner):
    """A schedule value: a finite number >= 0 (arrays and tracers pass unchecked)."""
    check_range(name, v, 0.0, owner=owner)


def _probed(schedule, *counts):
    """Records the counts where the schedule changes regime (checked at construction)."""
    top = int(jnp.iinfo(jnp.int32).max)  # the optimizers' counts are int32
    schedule.probe_counts = tuple(sorted({int(c) for c in counts if 0 <= c <= top}))
    return schedule


def constant(value) -> Schedule:
    """``η_t = value``."""
    _value("value", value, "constant")

    def schedule(count):
        return jnp.full([], value, jnp.float32) + 0 * _count(count)

    return schedule


def linear(init_value, end_value, transition_steps: int, transition_begin: int = 0) -> Schedule:
    """Straight line from ``init_value`` (until ``transition_begin``) to ``end_value``
    (after ``transition_begin + transition_steps`` steps), constant outside."""
    _value("init_value", init_value, "linear")
    _value("end_value", end_value, "linear")
    check_range("transition_steps", transition_steps, 0, owner="linear")
    check_range("transition_begin", transition_begin, 0, owner="linear")

    def schedule(count):
        if transition_steps == 0:
            return jnp.asarray(init_value, jnp.float32) + 0 * _count(count)
        frac = jnp.clip(_ratio(_since(count, transition_begin), transition_steps), 0.0, 1.0)
        return (init_value + frac * (end_value - init_value)).astype(jnp.float32)

    return _probed(schedule, transition_begin, transition_begin + transition_steps)


def linear_warmup(init_value, peak_value, warmup_steps: int) -> Schedule:
    """Warm-up: ``η`` grows linearly from ``init_value`` to ``peak_value`` over
    ``warmup_steps`` updates, then stays at ``peak_value``."""
    return linear(init_value, peak_value, warmup_steps)


def exponential_decay(
    init_value,
    transition_steps: int,
    decay_rate,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value=None,
) -> Schedule:
    """``η_t = init_value · decay_rate^((t − transition_begin) / transition_steps)``
    (floored exponent with ``staircase``), bounded by ``end_value`` if given. A growing
    schedule (``decay_rate > 1``) needs ``end_value`` as its cap (it would reach ``inf``)."""
    owner = "exponential_decay"
    _value("init_value", init_value, owner)
    check_range("transition_steps", transition_steps, 0, low_open=True, owner=owner)
    check_range("decay_rate", decay_rate, 0.0, low_open=True, owner=owner)
    check_range("transition_begin", transition_begin, 0, owner=owner)
    if end_value is not None:
        _value("end_value", end_value, owner)
    elif (static_value(decay_rate) or 0.0) > 1:
        raise ValueError(
            f"exponential_decay: decay_rate={decay_rate!r} > 1 grows without bound (inf after "
            "enough steps); pass end_value to cap it"
        )

    def schedule(count):
        d = _since(count, transition_begin)
        if staircase:
            p = (d // transition_steps).astype(jnp.float32) if _is_int(d) else jnp.floor(d / transition_steps)
        else:
            p = _ratio(d, transition_steps)
        v = init_value * jnp.power(jnp.float32(decay_rate), p)
        if end_value is not None:
            v = jnp.maximum(v, end_value) if decay_rate < 1 else jnp.minimum(v, end_value)
        return v.astype(jnp.float32)

    return _probed(schedule, transition_begin, transition_begin + transition_steps)


def piecewise_constant(init_value, boundaries_and_scales: dict[int, float] | None = None) -> Schedule:
    """Starts at ``init_value``; at each boundary step the value is multiplied by its scale."""
    _value("init_value", init_value, "piecewise_constant")
    raw = (boundaries_and_scales or {}).items()
    for b, s in raw:
        check_range("boundary", b, 0, owner="piecewise_constant")
        check_range("scale", s, 0.0, owner="piecewise_constant")
    items = sorted(raw)

    def schedule(count):
        v = jnp.asarray(init_value, jnp.float32)
        for b, s in items:
            v = v * jnp.where(_reached(count, b), jnp.float32(s), 1.0)
        return v

    return _probed(schedule, *(b for b, _ in items))


def step_decay(init_value, step_size: int, decay_rate=0.1) -> Schedule:
    """Step decay (PyTorch's StepLR): ``η_t = init_value · decay_rate^⌊t / step_size⌋``."""
    check_range("step_size", step_size, 0, low_open=True, owner="step_decay")
    return exponential_decay(init_value, step_size, decay_rate, staircase=True)


def cosine_decay(init_value, decay_steps: int, alpha=0.0, exponent=1.0) -> Schedule:
    """``η_t = init_value · ((1 − α) · (½(1 + cos(π · min(t, T)/T)))^exponent + α)``, ``T`` = ``decay_steps``."""
    _value("init_value", init_value, "cosine_decay")
    check_range("decay_steps", decay_steps, 0, low_open=True, owner="cosine_decay")
    check_range("alpha", alpha, 0.0, 1.0, owner="cosine_decay")
    check_range("exponent", exponent, 0.0, low_open=True, owner="cosine_decay")

    def schedule(count):
        d = _since(count, 0)
        frac = _ratio(jnp.minimum(d, min(decay_steps, _cap(d))), decay_steps)
        cos = 0.5 * (1 + jnp.cos(jnp.pi * frac))
        return (init_value * ((1 - alpha) * cos**exponent + alpha)).astype(jnp.float32)

    return _probed(schedule, decay_steps)


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Runs ``schedules[i]`` between ``boundaries[i−1]`` and ``boundaries[i]``; each one
    sees the count restarted at 0 from its boundary (optax's ``join_schedules``)."""
    for i, s in enumerate(schedules):
        if not callable(s):
            raise TypeError(f"join: schedules[{i}] is {type(s).__name__}, not a schedule count -> value")
    for b in boundaries:
        check_range("boundary", b, 0, owner="join")
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"join: boundaries has {len(boundaries)} entries; allowed: len(schedules) - 1 = {len(schedules) - 1}"
        )
    if list(boundaries) != sorted(boundaries):
        raise ValueError(f"join: boundaries={list(boundaries)!r} must be non-decreasing")

    def schedule(count):
        c = jnp.asarray(count)
        out = schedules[0](c)
        for b, s in zip(boundaries, schedules[1:]):
            out = jnp.where(_reached(c, b), s(c - min(b, _cap(c))), out)
        return out.astype(jnp.float32)

    counts = list(boundaries)
    for b, s in zip([0, *boundaries], schedules):
        counts += [b + c for c in getattr(s, "probe_counts", ())]
    return _probed(schedule, *counts)


def warmup_cosine_decay(
    init_value, peak_value, warmup_steps: int, decay_steps: int, end_value=0.0, exponent=1.0
) -> Schedule:
    """Linear warm-up from ``init_value`` to ``peak_value`` over ``warmup_steps``, then
    cosine decay to ``end_value`` at step ``decay_steps`` (which includes the warm-up);
    ``end_value`` must lie in ``[0, peak_value]``."""
    owner = "warmup_cosine_decay"
    _value("init_value", init_value, owner)
    _value("peak_value", peak_value, owner)
    _value("end_value", end_value, owner)
    end, peak = static_value(end_value), static_value(peak_value)
    if end is not None and peak is not None and end > peak:
        raise ValueError(
            f"warmup_cosine_decay: end_value={end_value!r} is out of range; allowed: [0, peak_value={peak_value!r}]"
        )
    check_range("warmup_steps", warmup_steps, 0, owner=owner)
    if decay_steps <= warmup_steps:
        raise ValueError(
            f"warmup_cosine_decay: decay_steps={decay_steps!r} is out of range; allowed: > warmup_steps={warmup_steps}"
        )
    alpha = 0.0 if peak_value == 0 else end_value / peak_value
    return join(
        [
            linear(init_value, peak_value, warmup_steps),
            cosine_decay(peak_value, decay_steps - warmup_steps, alpha=alpha, exponent=exponent),
        ],
        [warmup_steps],
    )


# optax's names for the same schedules (same arguments), so code moves both ways.
constant_schedule = constant
linear_schedule = linear
warmup_constant_schedule = linear_warmup
piecewise_constant_schedule = piecewise_constant
cosine_decay_schedule = cosine_decay
warmup_cosine_decay_schedule = warmup_cosine_decay
join_schedules = join


__all__ = [
    "constant",
    "linear",
    "linear_warmup",
    "exponential_decay",
    "piecewise_constant",
    "step_decay",
    "cosine_decay",
    "warmup_cosine_decay",
    "join",
    "constant_schedule",
    "linear_schedule",
    "warmup_constant_schedule",
    "piecewise_constant_schedule",
    "cosine_decay_schedule",
    "warmup_cosine_decay_schedule",
    "join_schedules",
]
