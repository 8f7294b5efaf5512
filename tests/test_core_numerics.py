"""Every optimizer, step by step, against the lecture's formula (numpy, float64) and optax."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import _reference as ref
import jaxopt_lectures as jol

STEPS = 12
RNG = np.random.default_rng(0)
A = RNG.uniform(0.5, 2.0, size=(3, 4))
B = RNG.normal(size=(3, 4))
THETA0 = RNG.normal(size=(3, 4))


def np_grad(theta):
    """Gradient of a smooth non-quadratic loss: Σ ½Aθ² + Bθ + 0.3 sin θ."""
    return A * theta + B + 0.3 * np.cos(theta)


def jax_grad(params):
    w = params["w"]
    return {"w": jnp.asarray(A, jnp.float32) * w + jnp.asarray(B, jnp.float32) + 0.3 * jnp.cos(w)}


def run(tx, steps=STEPS, theta0=THETA0, grad=jax_grad):
    params = {"w": jnp.asarray(theta0, jnp.float32)}
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(grad(params), state, params)
        return jol.apply_updates(params, updates), state

    out = []
    for _ in range(steps):
        params, state = step(params, state)
        out.append(np.asarray(params["w"], np.float64))
    return out


def assert_paths_close(ours, theirs, rtol=2e-5, atol=2e-6):
    assert len(ours) == len(theirs)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"step {t + 1}")


# --- against the lecture's formulas --------------------------------------------------------

LECTURE_CASES = {
    "gd": (jol.sgd(0.05), functools.partial(ref.gd, eta=0.05)),
    "momentum_classic": (
        jol.momentum(0.05, beta=0.9),
        functools.partial(ref.momentum_classic, eta=0.05, gamma=0.9),
    ),
    "sgd_momentum": (jol.sgd(0.05, momentum=0.8), functools.partial(ref.momentum_classic, eta=0.05, gamma=0.8)),
    "momentum_nesterov": (
        jol.sgd(0.05, momentum=0.9, nesterov=True),
        functools.partial(ref.momentum_classic, eta=0.05, gamma=0.9, nesterov=True),
    ),
    "momentum_ema_nesterov": (  # mutation sample M13: the gradient's coefficient must be 1 − β, not 1
        jol.momentum(0.1, beta=0.7, variant="ema", nesterov=True),
        functools.partial(ref.momentum_ema_nesterov, eta=0.1, beta=0.7),
    ),
    "momentum_ema": (
        jol.momentum(0.1, beta=0.7, variant="ema"),
        functools.partial(ref.momentum_ema, eta=0.1, beta=0.7),
    ),
    "momentum_sum": (jol.momentum(0.01, variant="sum"), functools.partial(ref.momentum_sum, eta=0.01)),
    "adagrad": (jol.adagrad(0.3, eps=1e-10), functools.partial(ref.adagrad, eta=0.3, delta=1e-10)),
    "adagrad_lecture_001_no_delta": (jol.adagrad(0.3, eps=0.0), functools.partial(ref.adagrad, eta=0.3, delta=0.0)),
    "adagrad_r0_in_sqrt": (
        jol.adagrad(0.3, initial_accumulator_value=0.1, eps=1e-3, eps_in_sqrt=True),
        functools.partial(ref.adagrad, eta=0.3, delta=1e-3, r0=0.1, delta_in_sqrt=True),
    ),
    "rmsprop": (jol.rmsprop(0.01, decay=0.9, eps=1e-6), functools.partial(ref.rmsprop, eta=0.01, p=0.9, delta=1e-6)),
    "rmsprop_eps_outside": (
        jol.rmsprop(0.01, decay=0.9, eps=1e-6, eps_in_sqrt=False),
        functools.partial(ref.rmsprop, eta=0.01, p=0.9, delta=1e-6, delta_in_sqrt=False),
    ),
    "rmsprop_first_grad": (
        jol.rmsprop(0.01, decay=0.8, eps=0.0, init="first_grad"),
        functools.partial(ref.rmsprop_first_grad, eta=0.01, alpha=0.8),
    ),
    "rmsprop_torch_centered_momentum": (
        jol.rmsprop(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False, centered=True, momentum=0.9),
        functools.partial(ref.rmsprop_torch, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.9, centered=True),
    ),
    "adam": (jol.adam(0.01), functools.partial(ref.adam, alpha=0.01, b1=0.9, b2=0.999, eps=1e-8)),
    "adam_no_bias_correction": (
        jol.adam(0.01, b1=0.8, b2=0.99, bias_correction=False),
        functools.partial(ref.adam, alpha=0.01, b1=0.8, b2=0.99, eps=1e-8, bias_correction=False),
    ),
    "adamw": (
        jol.adamw(0.01, weight_decay=0.1),
        functools.partial(ref.adam, alpha=0.01, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.1),
    ),
    "l2_sgd_is_weight_decay": (
        jol.chain(jol.add_l2_regularization(0.5), jol.sgd(0.05)),
        functools.partial(ref.gd_l2, eta=0.05, lam=0.5),
    ),
    "decoupled_sgd_is_weight_decay": (
        jol.chain(jol.decoupled_weight_decay(0.5), jol.sgd(0.05)),
        functools.partial(ref.gd_l2, eta=0.05, lam=0.5),
    ),
    "l1_sgd": (
        jol.chain(jol.add_l1_regularization(0.5), jol.sgd(0.05)),
        functools.partial(ref.gd_l1, eta=0.05, lam=0.5),
    ),
}


@pytest.mark.parametrize("name", sorted(LECTURE_CASES))
def test_matches_lecture_formula(name):
    tx, formula = LECTURE_CASES[name]
    expected = formula(THETA0.copy(), np_grad, STEPS)
    assert_paths_close(run(tx), expected)


def test_lecture_weight_decay_factor_two_lambda():
    """Penalty λ‖θ‖² (no ½) gives (1 − 2ηλ)θ: the same as coeff = 2λ."""
    eta, lam = 0.05, 0.25
    ours = run(jol.chain(jol.add_l2_regularization(2 * lam), jol.sgd(eta)), steps=3)
    theta, expected = THETA0.copy(), []
    for _ in range(3):
        theta = (1 - 2 * eta * lam) * theta - eta * np_grad(theta)
        expected.append(theta)
    assert_paths_close(ours, expected)


# --- against optax, where the semantics coincide ----------------------------------------

OPTAX_CASES = {
    "sgd": (jol.sgd(0.05), optax.sgd(0.05)),
    "sgd_momentum": (jol.sgd(0.05, momentum=0.9), optax.sgd(0.05, momentum=0.9)),
    "sgd_nesterov": (jol.sgd(0.05, momentum=0.9, nesterov=True), optax.sgd(0.05, momentum=0.9, nesterov=True)),
    "momentum_sum_is_trace_one": (jol.momentum(0.01, variant="sum"), optax.sgd(0.01, momentum=1.0)),
    # optax.adagrad: eps inside the root, accumulator starting at 0.1.
    "adagrad": (
        jol.adagrad(0.3, initial_accumulator_value=0.1, eps=1e-7, eps_in_sqrt=True),
        optax.adagrad(0.3, initial_accumulator_value=0.1, eps=1e-7),
    ),
    "rmsprop": (jol.rmsprop(0.01, decay=0.9, eps=1e-8), optax.rmsprop(0.01, decay=0.9, eps=1e-8)),
    "rmsprop_eps_outside": (
        jol.rmsprop(0.01, eps=1e-6, eps_in_sqrt=False),
        optax.rmsprop(0.01, eps=1e-6, eps_in_sqrt=False),
    ),
    "rmsprop_initial_scale": (
        jol.rmsprop(0.01, initial_scale=1.0),
        optax.rmsprop(0.01, initial_scale=1.0),
    ),
    "rmsprop_centered": (
        jol.rmsprop(0.01, eps=1e-6, centered=True),
        optax.rmsprop(0.01, eps=1e-6, centered=True),
    ),
    "rmsprop_momentum": (
        jol.rmsprop(0.01, momentum=0.9),
        optax.rmsprop(0.01, momentum=0.9),
    ),
    "adam": (jol.adam(0.01), optax.adam(0.01)),
    "adam_eps_root": (jol.adam(0.01, eps=1e-6, eps_root=1e-8), optax.adam(0.01, eps=1e-6, eps_root=1e-8)),
    "adamw": (
        jol.adamw(0.01, weight_decay=0.1),
        optax.adamw(0.01, weight_decay=0.1, mask=jol.decay_matrices_only),
    ),
    "l2_then_adam": (
        jol.chain(jol.add_l2_regularization(0.1, mask=None), jol.adam(0.01)),
        optax.chain(optax.add_decayed_weights(0.1), optax.adam(0.01)),
    ),
    "clip_then_sgd": (
        jol.chain(jol.clip_by_global_norm(1.0), jol.sgd(0.1)),
        optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1)),
    ),
    "clip_elementwise": (
        jol.chain(jol.clip(0.5), jol.sgd(0.1)),
        optax.chain(optax.clip(0.5), optax.sgd(0.1)),
    ),
    "adam_schedule": (
        jol.adam(jol.schedules.warmup_cosine_decay(0.0, 0.02, 3, 10)),
        optax.adam(optax.warmup_cosine_decay_schedule(0.0, 0.02, 3, 10)),
    ),
}


@pytest.mark.parametrize("name", sorted(OPTAX_CASES))
def test_matches_optax(name):
    ours, theirs = OPTAX_CASES[name]
    assert_paths_close(run(ours), run(theirs), rtol=1e-6, atol=1e-7)


SCHEDULE_CASES = {
    "constant": (jol.schedules.constant(0.3), optax.constant_schedule(0.3)),
    "linear": (jol.schedules.linear(1.0, 0.1, 10, 5), optax.linear_schedule(1.0, 0.1, 10, 5)),
    "exponential": (jol.schedules.exponential_decay(1.0, 4, 0.5), optax.exponential_decay(1.0, 4, 0.5)),
    "exponential_staircase_end": (
        jol.schedules.exponential_decay(1.0, 3, 0.5, transition_begin=2, staircase=True, end_value=0.2),
        optax.exponential_decay(1.0, 3, 0.5, transition_begin=2, staircase=True, end_value=0.2),
    ),
    "piecewise": (
        jol.schedules.piecewise_constant(1.0, {5: 0.5, 10: 0.1}),
        optax.piecewise_constant_schedule(1.0, {5: 0.5, 10: 0.1}),
    ),
    "cosine": (jol.schedules.cosine_decay(1.0, 12, alpha=0.1), optax.cosine_decay_schedule(1.0, 12, alpha=0.1)),
    "warmup_cosine": (
        jol.schedules.warmup_cosine_decay(0.0, 1.0, 4, 20, end_value=0.05),
        optax.warmup_cosine_decay_schedule(0.0, 1.0, 4, 20, end_value=0.05),
    ),
    "join": (
        jol.schedules.join([jol.schedules.constant(0.1), jol.schedules.linear(0.1, 1.0, 5)], [3]),
        optax.join_schedules([optax.constant_schedule(0.1), optax.linear_schedule(0.1, 1.0, 5)], [3]),
    ),
}


@pytest.mark.parametrize("name", sorted(SCHEDULE_CASES))
def test_schedules_match_optax(name):
    ours, theirs = SCHEDULE_CASES[name]
    counts = np.arange(25)
    np.testing.assert_allclose(
        [float(ours(c)) for c in counts], [float(theirs(c)) for c in counts], rtol=1e-6, atol=1e-7
    )
    jitted = jax.jit(ours)
    np.testing.assert_allclose(jitted(jnp.int32(7)), ours(7), rtol=1e-6)


def test_linear_warmup_and_step_decay_formulas():
    warm = jol.schedules.linear_warmup(0.0, 1.0, 4)
    np.testing.assert_allclose([float(warm(c)) for c in range(7)], [0, 0.25, 0.5, 0.75, 1, 1, 1])
    step = jol.schedules.step_decay(1.0, step_size=3, decay_rate=0.1)
    np.testing.assert_allclose([float(step(c)) for c in range(7)], [1, 1, 1, 0.1, 0.1, 0.1, 0.01], rtol=1e-6)


def test_join_switches_at_its_boundary_not_a_step_late():
    """Mutation sample M31: ``join`` hands over at count == boundary (a jump there shows it), so
    ``warmup_cosine_decay(..., warmup_steps=0)`` starts at the peak, not at ``init_value``."""
    s = jol.schedules.join([jol.schedules.constant(1.0), jol.schedules.constant(5.0)], [3])
    assert [float(s(c)) for c in range(5)] == [1.0, 1.0, 1.0, 5.0, 5.0]
    w = jol.schedules.warmup_cosine_decay(0.0, 0.1, 0, 100)
    assert float(w(0)) == pytest.approx(0.1) and float(w(1)) < 0.1
    w = jol.schedules.warmup_cosine_decay(0.0, 0.1, 4, 100)
    assert [float(w(c)) for c in range(5)] == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1])


def test_schedules_list_the_counts_where_their_regime_changes():
    """``probe_counts`` (where ``scale_by_learning_rate`` checks a schedule at construction): the
    begin and end of each ramp, each boundary, and in ``join`` the parts' counts shifted by their
    start; the value there is the next regime's."""
    s = jol.schedules
    lin = s.linear(1.0, 0.5, 5, 10)
    assert lin.probe_counts == (10, 15)
    assert float(lin(15)) == 0.5 and float(lin(14)) > 0.5 and float(lin(10)) == 1.0
    assert s.exponential_decay(1.0, 4, 0.5, 3).probe_counts == (3, 7)
    assert s.piecewise_constant(1.0, {8: 0.5, 2: 0.1}).probe_counts == (2, 8)
    assert s.cosine_decay(1.0, 6).probe_counts == (6,)
    assert s.join([s.linear(0.0, 1.0, 4), s.cosine_decay(1.0, 6)], [4]).probe_counts == (0, 4, 10)
    assert s.warmup_cosine_decay(0.0, 1.0, 3, 10).probe_counts == (0, 3, 10)
