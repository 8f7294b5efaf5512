"""Adaptive learning rates: Adagrad, RMSProp and Adam (seeds 001, 003, 004).

Conventions shared by the three rules:

- **0/0 is 0.** A coordinate whose denominator is exactly 0 (with ``eps = 0``, the
  lecture forms, after only zero gradients) gets the update 0, as optax's Adagrad does;
  the formula is otherwise unchanged. A denominator that is 0 only because ``g²``
  underflowed (``ε = 0`` and ``|g|`` below ~1e-19 in float32, numerator not 0) is not this
  case: that step is redone in the frame ``g / s`` where it is representable (the lecture
  forms are scale-invariant). The state itself cannot hold such a ``g²``: once a stored
  moment is 0 by underflow, later steps of that coordinate start from that 0 (too large).
- **Low precision.** For float16/bfloat16 gradients the moments are computed in float32
  and stored back in their own dtype (float16's ``eps = 1e-8`` would round to 0).
- **Complex numbers** use ``|g|² = g·conj(g)`` in the second moment (optax's convention).
- A huge gradient (``g² = inf``) makes the second moment infinite for good, and the
  coordinate then never moves again; wrap the optimizer in ``apply_if_finite`` (which
  also skips steps whose *updates* or new state are not finite) to guard against it.
"""

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
    check_eps,
    check_flag,
    check_float_params,
    check_range,
    check_state,
    safe_increment,
    static_value,
    tree_full_like,
    tree_map_checked,
    tree_unzip,
    tree_zeros_like,
)

RMS_INITS = ("zeros", "first_grad")


def _compute_dtype(dtype):
    """The dtype the rules compute in: at least float32 (float16's range and eps are too small)."""
    return jnp.promote_types(dtype, jnp.float32)


def _abs_sq(g):
    """``|g|² = g·conj(g)``, real (``g²`` for a real ``g``)."""
    if jnp.issubdtype(g.dtype, jnp.complexfloating):
        return jnp.square(g.real) + jnp.square(g.imag)
    return jnp.square(g)


def _real(x):
    return x.real if jnp.issubdtype(x.dtype, jnp.complexfloating) else x


def _safe_sqrt(x):
    """``sqrt(x)`` whose derivative at ``x = 0`` is 0, not ``inf`` (the double-where pattern):
    the same forward numbers, and a meta-gradient (``jax.grad`` through ``update``) that
    stays finite where a coordinate's gradient is exactly 0 (audit v2 N23)."""
    zero = x == 0
    return jnp.where(zero, jnp.zeros_like(x), jnp.sqrt(jnp.where(zero, jnp.ones_like(x), x)))


def _may_underflow(*eps) -> bool:
    """Whether a denominator can be 0 while its numerator is not: only when every ε may be 0
    (a Python number > 0 rules it out at trace time)."""
    return not any((static_value(e) or 0.0) > 0 for e in eps)


def _scale_of(*xs):
    """A per-element scale ``s = max |x|`` (1 where all are 0), to redo a step in the frame
    ``x / s`` where squares neither underflow nor overflow."""
    s = jnp.abs(xs[0]).astype(jnp.float32)
    for x in xs[1:]:
        s = jnp.maximum(s, jnp.abs(x).astype(jnp.float32))
    return jnp.where(s == 0, jnp.ones_like(s), s)


def _rescaled_where_underflowed(u, num, denom, redo):
    """Where the denominator is 0 but the numerator is not, ``g²`` has underflowed (with
    ``ε = 0`` a non-zero numerator needs a non-zero gradient, so the true denominator is not
    0): the step is ``redo()``, the same rule in a rescaled frame (it is scale-invariant
    when ``ε = 0``). Elsewhere ``u`` is kept bit for bit (audit v2 N14)."""
    lost = (denom == 0) & (num != 0)
    return jnp.where(lost, redo().astype(u.dtype), u)


def _safe_div(num, denom):
    """``num / denom``, and 0 where ``denom == 0`` (the 0/0 of ``eps = 0`` with a zero gradient)."""
    zero = denom == 0
    return jnp.where(zero, jnp.zeros_like(num), num / jnp.where(zero, jnp.ones_like(denom), denom))


def _divide(g, second_moment, eps, eps_in_sqrt: bool):
    """``g / sqrt(r + δ)`` (δ inside the root) or ``g / (δ + sqrt(r))`` (outside); 0 where
    the denominator is 0."""
    r = _real(second_moment)
    eps = as_coefficient(eps, r.dtype)
    denom = _safe_sqrt(r + eps) if eps_in_sqrt else eps + _safe_sqrt(r)
    return _safe_div(g.astype(_compute_dtype(g.dtype)), denom).astype(g.dtype)


def _denominator(second_moment, eps, eps_in_sqrt: bool):
    r = _real(second_moment)
    eps = as_coefficient(eps, r.dtype)
    return _safe_sqrt(r + eps) if eps_in_sqrt else eps + _safe_sqrt(r)


def _scaled_square(r, s):
    """``r / s²`` computed as ``(√r / s)²``, so that ``s²`` cannot underflow."""
    return jnp.square(_safe_sqrt(_real(r)) / s.astype(_real(r).dtype)).astype(r.dtype)


# --- Adagrad ------------------------------------------------------------------------------


class AdagradState(NamedTuple):
    """``sum_of_squares``: the lecture's ``r_t = r_{t−1} + g ⊙ g``."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name; it shadows tuple.count
    sum_of_squares: object


def adagrad_leaf(g, r, eps, eps_in_sqrt: bool, _rescale: bool = True):
    """Seed 003: ``r_t = r_{t−1} + g⊙g``, step ``g / (δ + √r_t)`` (0 where ``δ + √r_t = 0``);
    returns ``(u, r_t)``. With ``δ = 0`` a tiny ``g`` whose square underflows still steps:
    the step is redone in the frame ``g / s`` (``_rescaled_where_underflowed``)."""
    ct = _compute_dtype(r.dtype)
    new_r = r.astype(ct) + _abs_sq(g.astype(_compute_dtype(g.dtype))).astype(ct)
    u = _divide(g, new_r, eps, eps_in_sqrt)
    if _rescale and _may_underflow(eps):

        def redo():
            s = _scale_of(g, _safe_sqrt(_real(r)))
            return adagrad_leaf(g / s.astype(g.dtype), _scaled_square(r, s), eps, eps_in_sqrt, False)[0]

        u = _rescaled_where_underflowed(u, g, _denominator(new_r, eps, eps_in_sqrt), redo)
    return u, new_r.astype(r.dtype)


def scale_by_adagrad(
    initial_accumulator_value: Scalar = 0.0, eps: Scalar = 1e-10, *, eps_in_sqrt: bool = False
) -> GradientTransformation:
    """Adagrad's per-coordinate scaling (seed 003; seed 001 is ``eps=0``); the arguments in
    the order of ``optax.scale_by_rss`` (whose defaults are 0.1 and 1e-7, ``eps`` in the root).

    ``x_{t+1} = x_t − η/(δ + √r_t) · g_t`` with ``r_t = r_{t−1} + g_t ⊙ g_t``,
    ``r_{−1} = initial_accumulator_value``. ``eps_in_sqrt=True`` gives ``g/√(r_t + δ)``.
    With ``eps=0`` a coordinate whose ``r_t`` is 0 (only zero gradients so far) gets the
    update 0 (as optax defines it), not 0/0.
    """
    check_eps("eps", eps, owner="scale_by_adagrad")
    check_range("initial_accumulator_value", initial_accumulator_value, 0.0, owner="scale_by_adagrad")
    check_flag("eps_in_sqrt", eps_in_sqrt, "scale_by_adagrad")

    def init(params):
        check_float_params(params, "scale_by_adagrad")
        return AdagradState(
            count=jnp.zeros([], jnp.int32),
            sum_of_squares=tree_full_like(params, initial_accumulator_value),
        )

    def update(grads, state, params=None, **extra):
        del params, extra
        check_state(state, AdagradState, "scale_by_adagrad")
        pairs = tree_map_checked(
            lambda g, r: adagrad_leaf(g, r, eps, eps_in_sqrt),
            grads,
            state.sum_of_squares,
            names=("grads", "state.sum_of_squares"),
        )
        updates, r = tree_unzip(grads, pairs, 2)
        return updates, AdagradState(count=safe_increment(state.count), sum_of_squares=r)

    return GradientTransformation(init, update)


# --- RMSProp ------------------------------------------------------------------------------


class RmsState(NamedTuple):
    """``nu``: the moving average of g² (seed 003's ``r_t``, seed 001's ``σ_t²``);
    ``mu``: the moving average of g when ``centered`` (else ``None``)."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name; it shadows tuple.count
    nu: object
    mu: object


def rms_leaf(
    g,
    nu,
    mu,
    first,
    decay,
    eps,
    eps_in_sqrt: bool,
    centered: bool,
    first_grad: bool,
    t=None,
    bias_correction: bool = False,
    _rescale: bool = True,
):
    """One array's RMSProp rule; returns ``(u, nu_t, mu_t)``.

    ``r_t = p r_{t−1} + (1 − p) g⊙g`` (seed 003), or with ``first_grad`` seed 001's
    ``σ_0 = |g_0|``, ``σ_t = √(α σ_{t−1}² + (1 − α) g_t²)`` (so ``r = σ²``). The step is
    ``g / √(δ + r_t)``; ``centered`` subtracts the squared mean of g from ``r_t``. With
    ``bias_correction`` (optax's option) the step uses ``r_t / (1 − p^t)`` (and the mean
    ``m_t / (1 − p^t)``), ``t`` counting from 1.
    """
    ct = _compute_dtype(nu.dtype)
    decay = as_coefficient(decay, ct)
    gc = g.astype(_compute_dtype(g.dtype))
    sq = _abs_sq(gc).astype(ct)
    new_nu = decay * nu.astype(ct) + (1 - decay) * sq
    if first_grad:
        new_nu = jnp.where(first, sq, new_nu)
    correction = (1 - decay**t).astype(ct) if bias_correction else None
    second = new_nu if correction is None else new_nu / correction
    new_mu = mu
    if centered:
        mt = _compute_dtype(mu.dtype)
        mu_c = decay * mu.astype(mt) + (1 - decay) * gc.astype(mt)
        if first_grad:
            mu_c = jnp.where(first, gc.astype(mt), mu_c)
        mean = mu_c if correction is None else mu_c / correction.astype(_real(mu_c).dtype)
        second = second - _abs_sq(mean).astype(ct)
        new_mu = mu_c.astype(mu.dtype)
    u = _divide(g, second, eps, eps_in_sqrt)
    if _rescale and _may_underflow(eps):  # g² underflowed with ε = 0 (audit v2 N14)

        def redo():
            s = _scale_of(g, _safe_sqrt(_real(nu)), *((mu,) if centered else ()))
            m = mu / s.astype(mu.dtype) if centered else mu
            return rms_leaf(
                g / s.astype(g.dtype),
                _scaled_square(nu, s),
                m,
                first,
                decay,
                eps,
                eps_in_sqrt,
                centered,
                first_grad,
                t,
                bias_correction,
                False,
            )[0]

        u = _rescaled_where_underflowed(u, g, _denominator(second, eps, eps_in_sqrt), redo)
    return u, new_nu.astype(nu.dtype), new_mu


def scale_by_rms(
    decay: Scalar = 0.9,
    eps: Scalar = 1e-8,
    initial_scale: Scalar = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    centered: bool = False,
    init: str = "zeros",
) -> GradientTransformation:
    """RMSProp's scaling: divide by the root of a moving average of squared gradients
    (``optax.scale_by_rms``'s arguments and order; ``centered=True`` is ``optax.scale_by_stddev``).

    Seed 003: ``r_t = p r_{t−1} + (1 − p) g⊙g``, ``x_{t+1} = x_t − η/√(δ + r_t) · g``
    (``p`` = ``decay``, ``δ`` = ``eps``; ``eps_in_sqrt=False`` gives ``δ + √r_t``).
    ``init="zeros"`` starts ``r_{−1} = initial_scale``; ``init="first_grad"`` is seeds
    000/001/004's ``σ_0 = |g_0|`` (the first step divides by ``|g_0|``). With ``eps=0`` a
    coordinate whose ``r_t`` is 0 gets the update 0, not 0/0.
    """
    owner = "scale_by_rms"
    check_decay("decay", decay, owner=owner)
    check_eps("eps", eps, owner=owner)
    check_range("initial_scale", initial_scale, 0.0, owner=owner)
    check_choice("init", init, RMS_INITS, owner=owner)
    check_flag("eps_in_sqrt", eps_in_sqrt, owner)
    check_flag("bias_correction", bias_correction, owner)
    check_flag("centered", centered, owner)
    first_grad = init == "first_grad"

    def init_fn(params):
        check_float_params(params, owner)
        return RmsState(
            count=jnp.zeros([], jnp.int32),
            nu=tree_full_like(params, initial_scale),
            mu=tree_zeros_like(params) if centered else None,
        )

    def update(grads, state, params=None, **extra):
        del params, extra
        check_state(state, RmsState, owner)
        first = state.count == 0
        t = safe_increment(state.count)
        mu = state.mu if centered else grads
        triples = tree_map_checked(
            lambda g, n, m: rms_leaf(g, n, m, first, decay, eps, eps_in_sqrt, centered, first_grad, t, bias_correction),
            grads,
            state.nu,
            mu,
            names=("grads", "state.nu", "state.mu"),
        )
        updates, nu, new_mu = tree_unzip(grads, triples, 3)
        return updates, RmsState(count=t, nu=nu, mu=new_mu if centered else None)

    return GradientTransformation(init_fn, update)


def scale_by_stddev(
    decay: Scalar = 0.9,
    eps: Scalar = 1e-8,
    initial_scale: Scalar = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    init: str = "zeros",
) -> GradientTransformation:
    """Centered RMSProp's scaling, ``g / √(r_t − m_t² + δ)`` (``optax.scale_by_stddev``'s
    name and arguments): ``scale_by_rms(..., centered=True)``."""
    return scale_by_rms(decay, eps, initial_scale, eps_in_sqrt, bias_correction, centered=True, init=init)


# --- Adam ---------------------------------------------------------------------------------


class AdamState(NamedTuple):
    """``mu``: first moment m_t; ``nu``: second raw moment v_t; ``count``: t."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name; it shadows tuple.count
    mu: object
    nu: object


def adam_leaf(g, m, v, t, b1, b2, eps, eps_root, bias_correction: bool, nesterov: bool = False, _rescale: bool = True):
    """Seed 003 (Kingma & Ba, Algorithm 1); returns ``(u, m_t, v_t)``.

    ``m_t = β1 m_{t−1} + (1 − β1) g_t``, ``v_t = β2 v_{t−1} + (1 − β2) g_t²``,
    ``m̂_t = m_t / (1 − β1^t)``, ``v̂_t = v_t / (1 − β2^t)``, ``u = m̂_t / (√(v̂_t + ε_root) + ε)``
    (0 where the denominator is 0, i.e. ``ε = ε_root = 0`` and only zero gradients so far).
    With ``nesterov`` (NAdam, optax's form) ``m̂_t = β1 m_t / (1 − β1^{t+1}) + (1 − β1) g_t / (1 − β1^t)``.

    The moments are computed in the promoted dtype of the stored moment, the gradient and
    float32 (float16/bfloat16 are too coarse; ``β1 m_{t−1}`` itself is rounded to m's dtype,
    as optax does), the step uses them unrounded, and they are stored back in their own
    dtypes: a bfloat16 ``m`` (``mu_dtype``) is rounded when it is stored, as in optax.
    Complex ``g`` uses ``|g|²`` in ``v_t``. With ``ε = ε_root = 0`` (the lecture's form) a
    step whose ``v_t`` underflowed to 0 (``|g|`` below ~1e-19 in float32) is redone in the
    frame ``g / s`` where it is representable, instead of taking the 0-denominator rule.
    """
    m_prev, v_prev, g_in = m, v, g
    m_store, v_store = m.dtype, v.dtype
    mt = jnp.promote_types(_compute_dtype(m.dtype), _compute_dtype(g.dtype))
    vt = _compute_dtype(v.dtype)
    b1 = as_coefficient(b1, m.dtype)
    # β1·m_{t−1} in m's own dtype (optax's rounding with a bfloat16 mu_dtype), the sum in mt
    m = ((b1 * m).astype(mt) + (1 - b1) * g.astype(mt)).astype(mt)
    v = v.astype(vt)
    b2 = as_coefficient(b2, v.dtype)
    v = (b2 * v + (1 - b2) * _abs_sq(g.astype(_compute_dtype(g.dtype))).astype(v.dtype)).astype(v.dtype)
    rm = _real(m).dtype
    if bias_correction:
        m_hat = m / (1 - b1**t).astype(rm)
        v_hat = v / (1 - b2**t).astype(_real(v).dtype)
    else:
        m_hat, v_hat = m, v
    if nesterov:
        t_next = safe_increment(t)
        c_next = (1 - b1**t_next).astype(rm) if bias_correction else 1.0
        c_now = (1 - b1**t).astype(rm) if bias_correction else 1.0
        m_hat = (b1 * (m / c_next) + (1 - b1) * (g.astype(m.dtype) / c_now)).astype(m.dtype)
    root = _safe_sqrt(_real(v_hat) + as_coefficient(eps_root, _real(v).dtype))
    denom = root + as_coefficient(eps, _real(v).dtype)
    u = _safe_div(m_hat, denom)
    if _rescale and _may_underflow(eps, eps_root):

        def redo():
            s = _scale_of(g_in, m_prev, _safe_sqrt(_real(v_prev)))
            return adam_leaf(
                g_in / s.astype(g_in.dtype),
                m_prev / s.astype(m_prev.dtype),
                _scaled_square(v_prev, s),
                t,
                b1,
                b2,
                eps,
                eps_root,
                bias_correction,
                nesterov,
                False,
            )[0]

        u = _rescaled_where_underflowed(u, m_hat, denom, redo)
    return u.astype(g.dtype), m.astype(m_store), v.astype(v_store)


def scale_by_adam(
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: DTypeLike | None = None,
    *,
    nesterov: bool = False,
    bias_correction: bool = True,
) -> GradientTransformation:
    """Adam = momentum (β1) + RMSProp (β2) + bias correction (seed 003, seed 004).

    The formula is in ``adam_leaf``; chain with ``scale_by_learning_rate(α)``. Arguments in
    ``optax.scale_by_adam``'s order. ``mu_dtype`` (optax's option): the dtype ``m`` is
    stored in (e.g. ``jnp.bfloat16`` halves it; the step is computed in the promoted dtype);
    ``v`` keeps the parameters' dtype. ``nesterov=True`` is NAdam; ``bias_correction=False``
    drops the ``1 − β^t`` factors (lecture 004's comparison).
    """
    owner = "scale_by_adam"
    check_decay("b1", b1, owner=owner)
    check_decay("b2", b2, owner=owner)
    check_eps("eps", eps, owner=owner)
    check_eps("eps_root", eps_root, owner=owner)
    mu_dtype = check_dtype("mu_dtype", mu_dtype, owner)
    check_flag("nesterov", nesterov, owner)
    check_flag("bias_correction", bias_correction, owner)

    def init(params):
        check_float_params(params, owner)
        return AdamState(
            count=jnp.zeros([], jnp.int32),
            mu=tree_zeros_like(params, mu_dtype),
            nu=tree_zeros_like(params),
        )

    def update(grads, state, params=None, **extra):
        del params, extra
        check_state(state, AdamState, owner)
        t = safe_increment(state.count)
        triples = tree_map_checked(
            lambda g, m, v: adam_leaf(g, m, v, t, b1, b2, eps, eps_root, bias_correction, nesterov),
            grads,
            state.mu,
            state.nu,
            names=("grads", "state.mu", "state.nu"),
        )
        updates, mu, nu = tree_unzip(grads, triples, 3)
        return updates, AdamState(count=t, mu=mu, nu=nu)

    return GradientTransformation(init, update)
