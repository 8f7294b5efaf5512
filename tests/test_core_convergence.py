"""Each optimizer drives a quadratic and the Rosenbrock function to their optimum (±1e-3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_lectures as jol

START = jnp.array([-1.2, 1.0])  # the classic Rosenbrock start


def rosenbrock(p):
    x, y = p["xy"][0], p["xy"][1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


QUAD_SCALES, QUAD_OPT = jnp.array([1.0, 10.0]), jnp.array([1.0, -2.0])


def quadratic(p):
    return 0.5 * jnp.sum(QUAD_SCALES * (p["xy"] - QUAD_OPT) ** 2)


def minimize(tx, loss, steps):
    def body(_, carry):
        p, s = carry
        u, s = tx.update(jax.grad(loss)(p), s, p)
        return jol.apply_updates(p, u), s

    params = {"xy": START}
    final, _ = jax.jit(lambda p: jax.lax.fori_loop(0, steps, body, (p, tx.init(p))))(params)
    return np.asarray(final["xy"])


# (optimizer for Rosenbrock, 20k steps; optimizer for the quadratic, 2k steps)
CASES = {
    "sgd": (jol.sgd(1e-3), jol.sgd(0.1)),
    "momentum": (jol.sgd(5e-4, momentum=0.9), jol.sgd(0.05, momentum=0.9)),
    "nesterov": (jol.sgd(5e-4, momentum=0.9, nesterov=True), jol.sgd(0.05, momentum=0.9, nesterov=True)),
    "momentum_ema": (jol.momentum(2e-3, 0.9, variant="ema"), jol.momentum(0.1, 0.9, variant="ema")),
    "adagrad": (jol.adagrad(0.5), jol.adagrad(1.0)),
    # RMSProp's steps stay about η long near the optimum: decay η to settle.
    "rmsprop": (jol.rmsprop(jol.schedules.cosine_decay(2e-3, 20_000)), jol.rmsprop(0.01)),
    "rmsprop_first_grad": (
        jol.rmsprop(jol.schedules.cosine_decay(2e-3, 20_000), init="first_grad"),
        jol.rmsprop(0.01, init="first_grad"),
    ),
    "adam": (jol.adam(0.01), jol.adam(0.05)),
    "adamw": (jol.adamw(0.01, weight_decay=0.0), jol.adamw(0.05, weight_decay=0.0)),
    "clipped_adam_flat": (
        jol.flatten(jol.chain(jol.clip_by_global_norm(10.0), jol.adam(0.01))),
        jol.flatten(jol.adam(0.05)),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_converges_on_rosenbrock_and_quadratic(name):
    rosen_tx, quad_tx = CASES[name]
    np.testing.assert_allclose(minimize(rosen_tx, rosenbrock, 20_000), [1.0, 1.0], atol=1e-3)
    np.testing.assert_allclose(minimize(quad_tx, quadratic, 2_000), QUAD_OPT, atol=1e-3)


def test_adamw_weight_decay_pulls_the_optimum_towards_zero():
    """With decoupled decay λ on the quadratic the fixed point is where ∇f = −λθ·(√v̂+ε)/…;
    simplest visible consequence: the optimum moves strictly towards the origin."""
    tx = jol.adamw(0.05, weight_decay=0.1, mask=None)
    end = minimize(tx, quadratic, 2_000)
    assert np.all(np.abs(end) < np.abs(np.asarray(QUAD_OPT)))
