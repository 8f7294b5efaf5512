"""Adaptive learning rates: Adagrad, RMSProp and Adam (seeds 001, 003, 004)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._core import (
    as_coefficient,
    GradientTransformation,
    check_choice,
    check_decay,
    check_eps,
    check_range,
    safe_increment,
    tree_full_like,
    tree_map_checked,
    tree_unzip,
    tree_zeros_like,
)

RMS_INITS = ("zeros", "first_grad")


def _divide(g, second_moment, eps, eps_in_sqrt: bool):
    """``g / sqrt(r + δ)`` (δ inside the root) or ``g / (δ + sqrt(r))`` (outside)."""
    eps = as_coefficient(eps, second_moment.dtype)
    denom = jnp.sqrt(second_moment + eps) if eps_in_sqrt else eps + jnp.sqrt(second_moment)
    return (g / denom).astype(g.dtype)


# --- Adagrad ------------------------------------------------------------------------------


class AdagradState(NamedTuple):
    """``sum_of_squares``: the lecture's ``r_t = r_{t−1} + g ⊙ g``."""

    count: jax.Array
    sum_of_squares: object


def adagrad_leaf(g, r, eps, eps_in_sqrt: bool):
    """Seed 003: ``r_t = r_{t−1} + g⊙g``, step ``g / (δ + √r_t)``; returns ``(u, r_t)``."""
    r = (r + jnp.square(g)).astype(r.dtype)
    return _divide(g, r, eps, eps_in_sqrt), r


def scale_by_adagrad(eps=1e-10, initial_accumulator_value=0.0, eps_in_sqrt: bool = False):
    """Adagrad's per-coordinate scaling (seed 003; seed 001 is ``eps=0``).

    ``x_{t+1} = x_t − η/(δ + √r_t) · g_t`` with ``r_t = r_{t−1} + g_t ⊙ g_t``,
    ``r_{−1} = initial_accumulator_value``. ``eps_in_sqrt=True`` gives ``g/√(r_t + δ)``.
    """
    check_eps("eps", eps, owner="scale_by_adagrad")
    check_range("initial_accumulator_value", initial_accumulator_value, 0.0, owner="scale_by_adagrad")

    def init(params):
        return AdagradState(
            count=jnp.zeros([], jnp.int32),
            sum_of_squares=tree_full_like(params, initial_accumulator_value),
        )

    def update(grads, state, params=None, **extra):
        del params, extra
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

    count: jax.Array
    nu: object
    mu: object


def rms_leaf(g, nu, mu, first, decay, eps, eps_in_sqrt: bool, centered: bool, first_grad: bool):
    """One array's RMSProp rule; returns ``(u, nu_t, mu_t)``.

    ``r_t = p r_{t−1} + (1 − p) g⊙g`` (seed 003), or with ``first_grad`` seed 001's
    ``σ_0 = |g_0|``, ``σ_t = √(α σ_{t−1}² + (1 − α) g_t²)`` (so ``r = σ²``). The step is
    ``g / √(δ + r_t)``; ``centered`` subtracts the squared mean of g from ``r_t``.
    """
    decay = as_coefficient(decay, nu.dtype)
    sq = jnp.square(g).astype(nu.dtype)
    new_nu = decay * nu + (1 - decay) * sq
    if first_grad:
        new_nu = jnp.where(first, sq, new_nu)
    new_nu = new_nu.astype(nu.dtype)
    second = new_nu
    new_mu = mu
    if centered:
        new_mu = decay * mu + (1 - decay) * g.astype(mu.dtype)
        if first_grad:
            new_mu = jnp.where(first, g.astype(mu.dtype), new_mu)
        new_mu = new_mu.astype(mu.dtype)
        second = new_nu - jnp.square(new_mu)
    return _divide(g, second, eps, eps_in_sqrt), new_nu, new_mu


def scale_by_rms(
    decay=0.9,
    eps=1e-8,
    eps_in_sqrt: bool = True,
    initial_scale=0.0,
    centered: bool = False,
    init: str = "zeros",
) -> GradientTransformation:
    """RMSProp's scaling: divide by the root of a moving average of squared gradients.

    Seed 003: ``r_t = p r_{t−1} + (1 − p) g⊙g``, ``x_{t+1} = x_t − η/√(δ + r_t) · g``
    (``p`` = ``decay``, ``δ`` = ``eps``; ``eps_in_sqrt=False`` gives ``δ + √r_t``).
    ``init="zeros"`` starts ``r_{−1} = initial_scale``; ``init="first_grad"`` is seeds
    000/001/004's ``σ_0 = |g_0|`` (the first step divides by ``|g_0|``).
    """
    owner = "scale_by_rms"
    check_decay("decay", decay, owner=owner)
    check_eps("eps", eps, owner=owner)
    check_range("initial_scale", initial_scale, 0.0, owner=owner)
    check_choice("init", init, RMS_INITS, owner=owner)
    first_grad = init == "first_grad"

    def init_fn(params):
        return RmsState(
            count=jnp.zeros([], jnp.int32),
            nu=tree_full_like(params, initial_scale),
            mu=tree_zeros_like(params) if centered else None,
        )

    def update(grads, state, params=None, **extra):
        del params, extra
        first = state.count == 0
        mu = state.mu if centered else grads
        triples = tree_map_checked(
            lambda g, n, m: rms_leaf(
                g, n, m, first, decay, eps, eps_in_sqrt, centered, first_grad
            ),
            grads,
            state.nu,
            mu,
            names=("grads", "state.nu", "state.mu"),
        )
        updates, nu, new_mu = tree_unzip(grads, triples, 3)
        return updates, RmsState(
            count=safe_increment(state.count), nu=nu, mu=new_mu if centered else None
        )

    return GradientTransformation(init_fn, update)


# --- Adam ---------------------------------------------------------------------------------


class AdamState(NamedTuple):
    """``mu``: first moment m_t; ``nu``: second raw moment v_t; ``count``: t."""

    count: jax.Array
    mu: object
    nu: object


def adam_leaf(g, m, v, t, b1, b2, eps, eps_root, bias_correction: bool):
    """Seed 003 (Kingma & Ba, Algorithm 1); returns ``(u, m_t, v_t)``.

    ``m_t = β1 m_{t−1} + (1 − β1) g_t``, ``v_t = β2 v_{t−1} + (1 − β2) g_t²``,
    ``m̂_t = m_t / (1 − β1^t)``, ``v̂_t = v_t / (1 − β2^t)``, ``u = m̂_t / (√(v̂_t + ε_root) + ε)``.
    """
    b1 = as_coefficient(b1, m.dtype)
    b2 = as_coefficient(b2, v.dtype)
    m = (b1 * m + (1 - b1) * g.astype(m.dtype)).astype(m.dtype)
    v = (b2 * v + (1 - b2) * jnp.square(g).astype(v.dtype)).astype(v.dtype)
    if bias_correction:
        m_hat = m / (1 - b1**t).astype(m.dtype)
        v_hat = v / (1 - b2**t).astype(v.dtype)
    else:
        m_hat, v_hat = m, v
    root = jnp.sqrt(v_hat + as_coefficient(eps_root, v.dtype))
    u = m_hat / (root + as_coefficient(eps, v.dtype))
    return u.astype(g.dtype), m, v


def scale_by_adam(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, bias_correction: bool = True):
    """Adam = momentum (β1) + RMSProp (β2) + bias correction (seed 003, seed 004).

    The formula is in ``adam_leaf``; chain with ``scale_by_learning_rate(α)``.
    """
    owner = "scale_by_adam"
    check_decay("b1", b1, owner=owner)
    check_decay("b2", b2, owner=owner)
    check_eps("eps", eps, owner=owner)
    check_eps("eps_root", eps_root, owner=owner)

    def init(params):
        return AdamState(
            count=jnp.zeros([], jnp.int32), mu=tree_zeros_like(params), nu=tree_zeros_like(params)
        )

    def update(grads, state, params=None, **extra):
        del params, extra
        t = safe_increment(state.count)
        triples = tree_map_checked(
            lambda g, m, v: adam_leaf(g, m, v, t, b1, b2, eps, eps_root, bias_correction),
            grads,
            state.mu,
            state.nu,
            names=("grads", "state.mu", "state.nu"),
        )
        updates, mu, nu = tree_unzip(grads, triples, 3)
        return updates, AdamState(count=t, mu=mu, nu=nu)

    return GradientTransformation(init, update)
