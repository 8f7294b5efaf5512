"""optax's calling conventions (issue 12, item 5; docs/optax_differences.md): every alias
called positionally as optax's docs call it gives optax's numbers, lecture-only options are
keyword-only, wrappers take optax's argument names, chain passes extra arguments only to
members that accept them, get_state_field refuses ambiguous names, masks may be prefixes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_lectures as jol

PARAMS = {"dense": {"w": jnp.full((3, 2), 0.5), "b": jnp.full((2,), -0.3)}, "out": {"w": jnp.full((2, 2), 0.1)}}


def grads_at(k):
    rng = np.random.default_rng(k)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), PARAMS)


def run(tx, steps=4, params=PARAMS, **extra):
    state = tx.init(params)
    for k in range(steps):
        u, state = tx.update(grads_at(k), state, params, **extra)
        params = jol.apply_updates(params, u)
    return params, state


# Each pair: (jol, optax), called with the same positional arguments.
POSITIONAL = {
    "adam_5th_is_eps_root": (
        lambda: jol.adam(1e-2, 0.9, 0.999, 1e-8, 0.0),
        lambda: optax.adam(1e-2, 0.9, 0.999, 1e-8, 0.0),
    ),
    "adam_eps_root": (lambda: jol.adam(1e-2, 0.8, 0.99, 1e-6, 1e-4), lambda: optax.adam(1e-2, 0.8, 0.99, 1e-6, 1e-4)),
    "adam_mu_dtype": (
        lambda: jol.adam(1e-2, 0.9, 0.999, 1e-8, 0.0, jnp.bfloat16),
        lambda: optax.adam(1e-2, 0.9, 0.999, 1e-8, 0.0, jnp.bfloat16),
    ),
    "adam_nesterov": (lambda: jol.adam(1e-2, nesterov=True), lambda: optax.adam(1e-2, nesterov=True)),
    "nadam": (lambda: jol.adam(1e-2, 0.9, 0.999, 1e-8, nesterov=True), lambda: optax.nadam(1e-2, 0.9, 0.999, 1e-8)),
    "adamw_positional": (
        lambda: jol.adamw(1e-2, 0.9, 0.999, 1e-8, 0.0, None, 1e-3, None),
        lambda: optax.adamw(1e-2, 0.9, 0.999, 1e-8, 0.0, None, 1e-3, None),
    ),
    "adamw_default_decay_is_optax": (lambda: jol.adamw(1e-2, mask=None), lambda: optax.adamw(1e-2)),
    "rmsprop_4th_is_initial_scale": (
        lambda: jol.rmsprop(1e-2, 0.9, 1e-8, 0.1),
        lambda: optax.rmsprop(1e-2, 0.9, 1e-8, 0.1),
    ),
    "rmsprop_eps_outside": (
        lambda: jol.rmsprop(1e-2, 0.9, 1e-3, 0.0, False),
        lambda: optax.rmsprop(1e-2, 0.9, 1e-3, 0.0, False),
    ),
    "rmsprop_centered_momentum": (
        lambda: jol.rmsprop(1e-2, 0.9, 1e-8, 0.1, True, True, 0.9, True),
        lambda: optax.rmsprop(1e-2, 0.9, 1e-8, 0.1, True, True, 0.9, True),
    ),
    "rmsprop_bias_correction": (
        lambda: jol.rmsprop(1e-2, 0.9, 1e-8, 0.0, False, False, None, False, True),
        lambda: optax.rmsprop(1e-2, 0.9, 1e-8, 0.0, False, False, None, False, True),
    ),
    "rmsprop_centered_bias_correction": (
        lambda: jol.rmsprop(1e-2, 0.9, 1e-2, 0.0, True, True, None, False, True),
        lambda: optax.rmsprop(1e-2, 0.9, 1e-2, 0.0, True, True, None, False, True),
    ),
    "sgd_momentum_nesterov": (lambda: jol.sgd(0.1, 0.9, True), lambda: optax.sgd(0.1, 0.9, True)),
    "sgd_momentum_none": (lambda: jol.sgd(0.1, None), lambda: optax.sgd(0.1, None)),
    "sgd_accumulator_dtype": (
        lambda: jol.sgd(0.1, 0.9, False, jnp.bfloat16),
        lambda: optax.sgd(0.1, 0.9, False, jnp.bfloat16),
    ),
    "adagrad_optax_defaults": (
        lambda: jol.adagrad(0.1, 0.1, 1e-7, eps_in_sqrt=True),
        lambda: optax.adagrad(0.1, 0.1, 1e-7),
    ),
    "scale_by_adam": (
        lambda: jol.scale_by_adam(0.9, 0.99, 1e-6, 1e-8, jnp.bfloat16),
        lambda: optax.scale_by_adam(0.9, 0.99, 1e-6, 1e-8, jnp.bfloat16),
    ),
    "scale_by_rms": (
        lambda: jol.scale_by_rms(0.9, 1e-8, 0.1, False, True),
        lambda: optax.scale_by_rms(0.9, 1e-8, 0.1, False, True),
    ),
    "scale_by_stddev": (
        lambda: jol.scale_by_stddev(0.9, 1e-8, 0.1, True, True),
        lambda: optax.scale_by_stddev(0.9, 1e-8, 0.1, True, True),
    ),
    "scale_by_adagrad_is_rss": (
        lambda: jol.scale_by_adagrad(0.1, 1e-7, eps_in_sqrt=True),
        lambda: optax.scale_by_rss(0.1, 1e-7),
    ),
    "add_momentum_is_trace": (
        lambda: jol.add_momentum(0.9, True, jnp.bfloat16),
        lambda: optax.trace(0.9, True, jnp.bfloat16),
    ),
    "scale_by_schedule": (
        lambda: jol.scale_by_schedule(lambda c: 0.5 - 0.4 * c),
        lambda: optax.scale_by_schedule(lambda c: 0.5 - 0.4 * c),
    ),
    "masked_prefix": (
        lambda: jol.masked(jol.adam(1e-2), {"dense": True, "out": False}),
        lambda: optax.masked(optax.adam(1e-2), {"dense": True, "out": False}),
    ),
    "adamw_prefix_mask": (
        lambda: jol.adamw(1e-2, weight_decay=0.1, mask={"dense": False, "out": True}),
        lambda: optax.adamw(1e-2, weight_decay=0.1, mask={"dense": False, "out": True}),
    ),
    "l2_prefix_mask": (
        lambda: jol.chain(
            jol.add_l2_regularization(0.1, {"dense": {"w": True, "b": False}, "out": True}), jol.sgd(0.1)
        ),
        lambda: optax.chain(
            optax.add_decayed_weights(0.1, {"dense": {"w": True, "b": False}, "out": True}), optax.sgd(0.1)
        ),
    ),
}


# centered with bias correction: nu/c − (mu/c)² cancels to a few ulps of nu/c
ATOL = {"rmsprop_centered_bias_correction": 1e-5}


@pytest.mark.parametrize("name", sorted(POSITIONAL))
def test_positional_calls_give_optax_numbers(name):
    ours, ref = POSITIONAL[name]
    a, _ = run(ours())
    b, _ = run(ref())
    chex.assert_trees_all_close(a, b, rtol=2e-6, atol=ATOL.get(name, 1e-7))


def test_the_old_positional_trap_is_gone():
    # before: the 5th positional of adam was bias_correction, and 0.0 turned it off (0.093 off)
    a, _ = run(jol.adam(1e-2, 0.9, 0.999, 1e-8, 0.0), steps=3)
    off, _ = run(jol.adam(1e-2, bias_correction=False), steps=3)
    assert max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(off))) > 1e-2


@pytest.mark.parametrize(
    "call",
    [
        lambda: jol.adam(1e-2, 0.9, 0.999, 1e-8, 0.0, None, False),  # nesterov / bias_correction are keyword-only
        lambda: jol.adamw(1e-2, 0.9, 0.999, 1e-8, 0.0, None, 1e-4, None, True),
        lambda: jol.rmsprop(1e-2, 0.9, 1e-8, 0.0, True, False, None, False, False, "first_grad"),
        lambda: jol.adagrad(0.1, 0.0, 1e-10, True),
        lambda: jol.scale_by_adam(0.9, 0.999, 1e-8, 0.0, None, True),
        lambda: jol.scale_by_rms(0.9, 1e-8, 0.0, True, False, True),
        lambda: jol.add_momentum(0.9, False, None, "ema"),
        lambda: jol.fused_adam(1e-2, 0.9, 0.999, 1e-8, 0.0, None, 0.1),
        lambda: jol.fused_sgd(0.1, 0.9, False, None, "xla"),
    ],
)
def test_lecture_only_options_are_keyword_only(call):
    with pytest.raises(TypeError, match="positional"):
        call()


def test_wrappers_take_optax_argument_names():
    mask = {"dense": True, "out": False}
    for ours, ref in [
        (jol.masked(inner=jol.adam(1e-2), mask=mask), optax.masked(inner=optax.adam(1e-2), mask=mask)),
        (
            jol.apply_if_finite(inner=jol.adam(1e-2), max_consecutive_errors=2),
            optax.apply_if_finite(inner=optax.adam(1e-2), max_consecutive_errors=2),
        ),
        (jol.flatten(inner=jol.adam(1e-2)), optax.flatten(inner=optax.adam(1e-2))),
        (
            jol.inject_hyperparams(inner_factory=jol.adam)(learning_rate=1e-2),
            optax.inject_hyperparams(inner_factory=optax.adam)(learning_rate=1e-2),
        ),
    ]:
        chex.assert_trees_all_close(run(ours)[0], run(ref)[0], rtol=2e-6)


def test_inject_hyperparams_static_args_positional_ints_and_dtype():
    tx = jol.inject_hyperparams(jol.adamw, ("b1",))(learning_rate=1e-2, weight_decay=0)
    state = tx.init(PARAMS)
    assert "b1" not in state.hyperparams and "weight_decay" in state.hyperparams  # an int 0 is injected (C12b)
    assert state.hyperparams["learning_rate"].dtype == jnp.float32
    state16 = jol.inject_hyperparams(jol.adam, hyperparam_dtype=jnp.bfloat16)(learning_rate=1e-2, b2=0.99).init(PARAMS)
    assert state16.hyperparams["learning_rate"].dtype == jnp.bfloat16
    # the default b2=0.999 is 1.0 in bfloat16 (v would never learn): refused when built (issue 21, N15)
    with pytest.raises(ValueError, match=r"b2=1 .*hyperparam_dtype=bfloat16"):
        jol.inject_hyperparams(jol.adam, hyperparam_dtype=jnp.bfloat16)(learning_rate=1e-2)


def test_chain_passes_extra_args_only_to_members_that_take_them():
    seen = {}

    def recorder(*, kw_style):
        def init(params):
            return jol.EmptyState()

        if kw_style:

            def update(grads, state, params=None, **extra):
                seen["kwargs"] = dict(extra)
                return grads, state
        else:

            def update(grads, state, params=None, value=None):
                seen["named"] = value
                return grads, state

        return jol.GradientTransformation(init, update)

    tx = jol.chain(optax.clip(1.0), recorder(kw_style=True), recorder(kw_style=False), jol.sgd(0.1))
    ref = optax.chain(optax.clip(1.0), optax.sgd(0.1))
    ours, _ = run(tx, value=jnp.float32(3.0), other=1)
    chex.assert_trees_all_close(ours, run(ref)[0])
    assert float(seen["named"]) == 3.0 and set(seen["kwargs"]) == {"value", "other"}


def test_get_state_field_refuses_several_matches_and_takes_a_default():
    tx = jol.chain(jol.sgd(0.1, momentum=0.9), jol.scale_by_learning_rate(jol.schedules.constant_schedule(1.0)))
    state = tx.init(PARAMS)
    with pytest.raises(KeyError, match=r"Found multiple values for 'count'.*0\.0\.count.*1\.count"):
        jol.get_state_field(state, "count")
    with pytest.raises(KeyError, match="Found multiple values"):
        optax.tree_utils.tree_get(state, "count")  # optax refuses the same state
    assert len(jol.get_state_field(state, "count", all=True)) == 2
    assert jol.get_state_field(state, "learning_rate", None) is None
    assert jol.get_state_field(state, "learning_rate", default=0.5) == 0.5
    with pytest.raises(KeyError, match="fields present"):
        jol.get_state_field(state, "learning_rate")


def test_set_state_field_takes_optax_keyword_form():
    tx = jol.inject_hyperparams(jol.adam)(learning_rate=0.1, b1=0.9)
    state = jol.set_state_field(tx.init(PARAMS), learning_rate=1e-4, b1=0.5)
    ref = optax.tree_utils.tree_set(tx.init(PARAMS), learning_rate=1e-4, b1=0.5)
    chex.assert_trees_all_close(state, ref)
    with pytest.raises(ValueError, match="b1"):
        jol.set_state_field(state, b1=1.5)


@pytest.mark.parametrize(
    "ours, ref",
    [
        (lambda: jol.schedules.constant_schedule(0.3), lambda: optax.constant_schedule(0.3)),
        (lambda: jol.schedules.linear_schedule(0.1, 0.0, 20, 5), lambda: optax.linear_schedule(0.1, 0.0, 20, 5)),
        (
            lambda: jol.schedules.warmup_constant_schedule(0.0, 0.1, 10),
            lambda: optax.warmup_constant_schedule(0.0, 0.1, 10),
        ),
        (
            lambda: jol.schedules.piecewise_constant_schedule(0.1, {10: 0.5, 20: 0.1}),
            lambda: optax.piecewise_constant_schedule(0.1, {10: 0.5, 20: 0.1}),
        ),
        (
            lambda: jol.schedules.cosine_decay_schedule(0.1, 30, 0.1, 2.0),
            lambda: optax.cosine_decay_schedule(0.1, 30, 0.1, 2.0),
        ),
        (
            lambda: jol.schedules.warmup_cosine_decay_schedule(0.0, 0.1, 5, 40, 0.01),
            lambda: optax.warmup_cosine_decay_schedule(0.0, 0.1, 5, 40, 0.01),
        ),
        (
            lambda: jol.schedules.join_schedules(
                [jol.schedules.constant(0.1), jol.schedules.linear(0.1, 0.0, 10)], [5]
            ),
            lambda: optax.join_schedules([optax.constant_schedule(0.1), optax.linear_schedule(0.1, 0.0, 10)], [5]),
        ),
    ],
)
def test_schedules_under_optax_names(ours, ref):
    counts = jnp.arange(60)
    np.testing.assert_allclose(jax.vmap(ours())(counts), jax.vmap(ref())(counts), rtol=2e-6, atol=1e-7)


def test_losses_under_optax_names():
    assert jol.losses is __import__("jaxopt_lectures.losses").losses  # an attribute, as optax.losses
    assert callable(jol.sharding.init_sharded)
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
    labels = jnp.asarray([0, 3, 1, 2, 2])
    np.testing.assert_allclose(
        jol.losses.softmax_cross_entropy_with_integer_labels(logits, labels),
        optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        jol.losses.multiclass_hinge_loss(logits, labels), optax.losses.multiclass_hinge_loss(logits, labels), rtol=1e-6
    )
    s, t = jnp.asarray([0.3, -2.0, 1.5]), jnp.asarray([1.0, -1.0, -1.0])
    np.testing.assert_allclose(jol.losses.hinge_loss(s, t), optax.losses.hinge_loss(s, t))
    with pytest.raises(TypeError, match="integer dtype"):
        jol.losses.softmax_cross_entropy_with_integer_labels(logits, jax.nn.one_hot(labels, 4))


def test_accumulate_gradients_accumulates_bf16_in_float32_like_multisteps():
    p16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), PARAMS)
    tx = jol.accumulate_gradients(jol.sgd(0.1), 3)
    state = tx.init(p16)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.acc_grads))
    ref = optax.MultiSteps(optax.sgd(0.1), 3)
    a, b, sa, sb = p16, p16, state, ref.init(p16)
    for k in range(6):
        g = jax.tree.map(lambda x: x.astype(jnp.bfloat16), grads_at(k))
        u, sa = tx.update(g, sa, a)
        v, sb = ref.update(g, sb, b)
        a, b = jol.apply_updates(a, u), optax.apply_updates(b, v)
    chex.assert_trees_all_close(
        jax.tree.map(lambda x: x.astype(jnp.float32), a), jax.tree.map(lambda x: x.astype(jnp.float32), b), rtol=1e-2
    )
    s32 = jol.accumulate_gradients(
        jol.sgd(0.1), 3, accumulator_dtype=jnp.float64 if jax.config.x64_enabled else jnp.float16
    ).init(p16)
    assert all(x.dtype != jnp.bfloat16 for x in jax.tree.leaves(s32.acc_grads))


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (jol.scale_by_rms, optax.scale_by_rms),
        (jol.scale_by_adam, optax.scale_by_adam),
        (jol.scale_by_stddev, optax.scale_by_stddev),
    ],
    ids=["scale_by_rms", "scale_by_adam", "scale_by_stddev"],
)
def test_the_scalings_defaults_are_optaxs(ours, theirs):
    """Built with no argument, the same numbers as optax's (gradients of 1e-4: a wrong eps shows)."""
    params = {"w": jnp.zeros((3, 2))}
    rng = np.random.default_rng(3)
    a, b = ours(), theirs()
    sa, sb = a.init(params), b.init(params)
    for _ in range(3):
        g = {"w": jnp.asarray(rng.normal(size=(3, 2)) * 1e-4, jnp.float32)}
        ua, sa = a.update(g, sa, params)
        ub, sb = b.update(g, sb, params)
        np.testing.assert_allclose(np.asarray(ua["w"]), np.asarray(ub["w"]), rtol=5e-5)  # float32 rounding
