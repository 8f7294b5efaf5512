"""The wrappers: masked, apply_if_finite, accumulate_gradients, inject_hyperparams, flatten."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_lectures as jol

PARAMS = {"dense": {"w": jnp.arange(6.0).reshape(2, 3) / 6, "b": jnp.ones(3)}, "scale": jnp.array(2.0, jnp.float32)}


def grads_at(k):
    return jax.tree.map(lambda p: jnp.cos(p + k), PARAMS)


def run(tx, steps=4, grads=grads_at):
    params, state = PARAMS, tx.init(PARAMS)
    for k in range(steps):
        updates, state = tx.update(grads(k), state, params)
        params = jol.apply_updates(params, updates)
    return params, state


def test_masked_runs_inner_only_on_selected_leaves_like_optax():
    mask = {"dense": {"w": True, "b": False}, "scale": True}
    ours, state = run(jol.masked(jol.adam(0.1), mask))
    theirs, _ = run(optax.masked(optax.adam(0.1), mask))
    # optax jits its bias correction, so β^t may differ by an ulp: compare to 2e-5
    chex.assert_trees_all_close(ours, theirs, rtol=2e-5)
    # the unselected leaf received the raw gradient, no state kept for it
    assert jax.tree.structure(state.inner_state[0].mu) == jax.tree.structure(
        {"dense": {"w": 0, "b": jol.MaskedNode()}, "scale": 0}
    )


def test_masked_with_callable_mask():
    ours, _ = run(jol.masked(jol.sgd(0.1, momentum=0.9), jol.decay_matrices_only))
    chex.assert_trees_all_close(
        ours["dense"]["b"], PARAMS["dense"]["b"] + sum(grads_at(k)["dense"]["b"] for k in range(4))
    )


def test_apply_if_finite_skips_nan_steps_and_counts_them():
    tx = jol.apply_if_finite(jol.adam(0.1), max_consecutive_errors=2)
    state = tx.init(PARAMS)
    good = grads_at(0)
    bad = jax.tree.map(lambda g: g.at[...].set(jnp.nan) if g.ndim == 0 else g, good)
    step = jax.jit(tx.update)
    u, state1 = step(bad, state, PARAMS)
    assert all(not bool(jnp.any(x)) for x in jax.tree.leaves(u))
    chex.assert_trees_all_equal(state1.inner_state, state.inner_state)
    assert int(state1.notfinite_count) == 1 and int(state1.total_notfinite) == 1 and not bool(state1.last_finite)
    u, state2 = step(good, state1, PARAMS)
    assert int(state2.notfinite_count) == 0 and bool(state2.last_finite)
    assert int(jol.get_state_field(state2, "count")) == 1
    # more than max_consecutive_errors bad steps: applied anyway, so divergence shows
    s = state2
    for _ in range(3):
        u, s = step(bad, s, PARAMS)
    assert bool(jnp.isnan(u["scale"]))
    assert int(s.total_notfinite) == 4


def test_apply_if_finite_matches_optax():
    bad_at = {1, 2}

    def grads(k):
        g = grads_at(k)
        return jax.tree.map(lambda x: x * jnp.inf, g) if k in bad_at else g

    ours, _ = run(jol.apply_if_finite(jol.adam(0.1), 3), steps=5, grads=grads)
    theirs, _ = run(optax.apply_if_finite(optax.adam(0.1), 3), steps=5, grads=grads)
    chex.assert_trees_all_close(ours, theirs, rtol=2e-5)


@pytest.mark.parametrize("k", [1, 3])
def test_accumulate_gradients_equals_one_step_on_the_mean(k):
    inner = jol.sgd(0.1, momentum=0.9)
    acc_tx = jol.accumulate_gradients(inner, every_k=k)
    params_acc, state_acc = PARAMS, acc_tx.init(PARAMS)
    params_big, state_big = PARAMS, inner.init(PARAMS)
    step = jax.jit(acc_tx.update)
    for big in range(3):
        micro = [grads_at(big * k + i) for i in range(k)]
        for i, g in enumerate(micro):
            u, state_acc = step(g, state_acc, params_acc)
            if i < k - 1:
                assert all(not bool(jnp.any(x)) for x in jax.tree.leaves(u))
            params_acc = jol.apply_updates(params_acc, u)
        mean = jax.tree.map(lambda *g: sum(g) / k, *micro)
        u, state_big = inner.update(mean, state_big, params_big)
        params_big = jol.apply_updates(params_big, u)
        chex.assert_trees_all_close(params_acc, params_big, rtol=1e-6)
    assert int(state_acc.mini_step) == 0


def test_inject_hyperparams_reads_and_changes_without_recompiling():
    tx = jol.inject_hyperparams(jol.adam)(learning_rate=0.1, b1=0.9)
    state = tx.init(PARAMS)
    assert float(jol.get_state_field(state, "learning_rate")) == pytest.approx(0.1)

    @jax.jit
    def step(params, state, g):
        u, state = tx.update(g, state, params)
        return jol.apply_updates(params, u), state

    p1, s1 = step(PARAMS, state, grads_at(0))
    s1 = jol.set_state_field(s1, "learning_rate", 0.01)
    p2, s2 = step(p1, s1, grads_at(1))
    assert step._cache_size() == 1
    assert float(jol.get_state_field(s2, "learning_rate")) == pytest.approx(0.01)
    # same as optax's inject_hyperparams doing the same change
    otx = optax.inject_hyperparams(optax.adam)(learning_rate=0.1, b1=0.9)
    os_ = otx.init(PARAMS)
    u, os_ = otx.update(grads_at(0), os_, PARAMS)
    q1 = optax.apply_updates(PARAMS, u)
    os_.hyperparams["learning_rate"] = jnp.asarray(0.01)
    u, os_ = otx.update(grads_at(1), os_, q1)
    chex.assert_trees_all_close(p2, optax.apply_updates(q1, u), rtol=2e-5)


def test_inject_hyperparams_evaluates_schedules_each_step():
    sched = jol.schedules.linear(1.0, 0.0, 4)
    tx = jol.inject_hyperparams(jol.sgd)(learning_rate=sched, momentum=0.5)
    state = tx.init(PARAMS)
    seen = []
    for k in range(4):
        _, state = tx.update(grads_at(k), state, PARAMS)
        seen.append(float(state.hyperparams["learning_rate"]))
    np.testing.assert_allclose(seen, [1.0, 0.75, 0.5, 0.25])
    assert set(state.hyperparams) == {"learning_rate", "momentum"}


def test_inject_hyperparams_keeps_non_numeric_arguments_static():
    tx = jol.inject_hyperparams(jol.momentum)(learning_rate=0.1, beta=0.9, variant="ema", nesterov=True)
    state = tx.init(PARAMS)
    assert set(state.hyperparams) == {"learning_rate", "beta"}
    ours, _ = run(tx)
    ref, _ = run(jol.momentum(0.1, beta=0.9, variant="ema", nesterov=True))
    chex.assert_trees_all_close(ours, ref, rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: jol.adam(0.1),
        lambda: jol.sgd(0.1, momentum=0.9),
        lambda: jol.chain(jol.clip_by_global_norm(0.5), jol.rmsprop(0.1)),
    ],
    ids=["adam", "momentum", "clip_rmsprop"],
)
def test_flatten_gives_the_same_numbers_with_one_buffer_per_dtype(make):
    params = dict(PARAMS, half=jnp.ones((4,), jnp.bfloat16))
    grads = lambda k: jax.tree.map(lambda p: jnp.cos(p + k).astype(p.dtype), params)  # noqa: E731
    flat_tx, plain_tx = jol.flatten(make()), make()
    pf, sf = params, flat_tx.init(params)
    pp, sp = params, plain_tx.init(params)
    for k in range(3):
        u, sf = jax.jit(flat_tx.update)(grads(k), sf, pf)
        pf = jol.apply_updates(pf, u)
        u, sp = jax.jit(plain_tx.update)(grads(k), sp, pp)
        pp = jol.apply_updates(pp, u)
    chex.assert_trees_all_close(pf, pp, rtol=1e-6, atol=1e-7)
    buffers = [x for x in jax.tree.leaves(sf) if x.ndim == 1]
    assert sorted({str(b.dtype) for b in buffers}) == ["bfloat16", "float32"]


def test_state_fields_are_found_by_name_in_a_chain():
    tx = jol.chain(
        jol.clip_by_global_norm(1.0), jol.inject_hyperparams(jol.adamw)(learning_rate=1e-3, weight_decay=0.1)
    )
    state = tx.init(PARAMS)
    assert float(jol.get_state_field(state, "weight_decay")) == pytest.approx(0.1)
    assert len(jol.get_state_field(state, "count", all=True)) == 2
    mu = jol.get_state_field(state, "mu")
    chex.assert_trees_all_equal_shapes(mu, PARAMS)


def test_inject_hyperparams_takes_a_float_array_as_an_injected_value():
    """A float array hyper-parameter is injected like a float (stored in the state, same numbers)."""
    tx = jol.inject_hyperparams(jol.adam)(learning_rate=jnp.asarray(0.1), b1=np.float32(0.8))
    state = tx.init(PARAMS)
    assert set(state.hyperparams) >= {"learning_rate", "b1"}
    ref_tx = jol.adam(0.1, b1=0.8)
    grads = jax.tree.map(jnp.cos, PARAMS)
    u, _ = tx.update(grads, state, PARAMS)
    v, _ = ref_tx.update(grads, ref_tx.init(PARAMS), PARAMS)
    chex.assert_trees_all_close(u, v, rtol=1e-5)  # float32-stored b2: 1 − b2 rounds differently


def test_inject_hyperparams_keeps_its_dtype_through_a_jitted_step():
    """Under jit the state's values are traced (the check against the build's values is then an
    elementwise select): the stored hyper-parameters keep ``hyperparam_dtype`` step after step."""
    tx = jol.inject_hyperparams(jol.sgd, hyperparam_dtype=jnp.bfloat16)(learning_rate=0.1, momentum=0.5)
    state = tx.init(PARAMS)
    step = jax.jit(tx.update)
    for _ in range(2):
        _, state = step(jax.tree.map(jnp.cos, PARAMS), state, PARAMS)
        assert {str(v.dtype) for v in state.hyperparams.values()} == {"bfloat16"}
