"""Properties over random pytrees (hypothesis) in jit and non-jit modes (chex.variants)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

import jaxopt_lectures as jol

OPTIMIZERS = {
    "sgd": lambda: jol.sgd(0.1),
    "sgd_momentum": lambda: jol.sgd(0.1, momentum=0.9, nesterov=True),
    "momentum_ema": lambda: jol.momentum(0.1, variant="ema"),
    "momentum_sum": lambda: jol.momentum(0.1, variant="sum"),
    "adagrad": lambda: jol.adagrad(0.1),
    "rmsprop": lambda: jol.rmsprop(0.01, centered=True, momentum=0.5),
    "rmsprop_first_grad": lambda: jol.rmsprop(0.01, init="first_grad", eps=1e-6),
    "adam": lambda: jol.adam(1e-3),
    "adamw": lambda: jol.adamw(1e-3, weight_decay=0.1),
    "l1_l2_clip": lambda: jol.chain(
        jol.clip_by_global_norm(1.0), jol.add_l1_regularization(0.1), jol.add_l2_regularization(0.1), jol.sgd(0.1)
    ),
    "adam_schedule": lambda: jol.adam(jol.schedules.cosine_decay(1e-3, 100)),
    "injected_adam": lambda: jol.inject_hyperparams(jol.adam)(learning_rate=1e-3, b1=0.9),
    "flattened_adam": lambda: jol.flatten(jol.adam(1e-3)),
    "accumulated_sgd": lambda: jol.accumulate_gradients(jol.sgd(0.1, momentum=0.9), every_k=2),
    "finite_adam": lambda: jol.apply_if_finite(jol.adam(1e-3), 3),
    "masked_adam": lambda: jol.masked(jol.adam(1e-3), jol.decay_matrices_only),
}

STATELESS = {
    "identity": jol.identity,
    "scale": lambda: jol.scale(0.5),
    "sgd": lambda: jol.sgd(0.1),
    "clip": lambda: jol.clip(1.0),
    "clip_by_global_norm": lambda: jol.clip_by_global_norm(1.0),
    "l2_all_leaves": lambda: jol.add_l2_regularization(0.0, mask=None),
}

SHAPES = st.sampled_from([(), (0,), (1,), (3,), (2, 3), (1, 0, 2), (2, 2, 2)])
DTYPES = st.sampled_from([jnp.float32, jnp.bfloat16])


@st.composite
def pytrees(draw, dtypes=DTYPES):
    """Nested dicts and lists of arrays, with scalars and empty arrays among the leaves."""
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)

    def leaf():
        shape = draw(SHAPES)
        return jnp.asarray(rng.normal(size=shape), dtype=draw(dtypes))

    def node(depth):
        kind = draw(st.sampled_from(["leaf", "dict", "list"] if depth < 2 else ["leaf"]))
        if kind == "leaf":
            return leaf()
        n = draw(st.integers(1, 3))
        if kind == "dict":
            return {f"k{i}": node(depth + 1) for i in range(n)}
        return [node(depth + 1) for _ in range(n)]

    return {"root": node(0), "w": leaf()}


def grads_like(tree, seed=1):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), tree)


def assert_same_shapes_dtypes(a, b):
    chex.assert_trees_all_equal_structs(a, b)
    chex.assert_trees_all_equal_shapes_and_dtypes(a, b)


class PropertyTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @settings(max_examples=6)
    @given(params=pytrees())
    def test_shapes_and_dtypes_preserved(self, params):
        grads = grads_like(params)
        for name, make in OPTIMIZERS.items():
            tx = make()
            state = tx.init(params)
            update = self.variant(tx.update)
            updates, new_state = update(grads, state, params)
            assert_same_shapes_dtypes(updates, grads)
            assert_same_shapes_dtypes(new_state, state)
            new_params = jol.apply_updates(params, updates)
            assert_same_shapes_dtypes(new_params, params)
            for leaf in jax.tree.leaves(new_params):
                assert bool(jnp.all(jnp.isfinite(leaf.astype(jnp.float32)))), name

    @chex.variants(with_jit=True, without_jit=True)
    @settings(max_examples=4)
    @given(params=pytrees(dtypes=st.just(jnp.float32)))
    def test_zero_grads_give_zero_updates_for_stateless(self, params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        for name, make in STATELESS.items():
            tx = make()
            updates, _ = self.variant(tx.update)(zeros, tx.init(params), params)
            for u in jax.tree.leaves(updates):
                assert not bool(jnp.any(u)), name


@settings(max_examples=5)
@given(params=pytrees(dtypes=st.just(jnp.float32)))
def test_jit_and_eager_agree_over_several_steps(params):
    for make in OPTIMIZERS.values():
        tx = make()

        def step(p, s, g):
            u, s = tx.update(g, s, p)  # noqa: B023 (traced within this iteration)
            return jol.apply_updates(p, u), s

        jitted = jax.jit(step)
        pe, se = params, tx.init(params)
        pj, sj = params, tx.init(params)
        for k in range(3):
            g = grads_like(params, seed=k)
            pe, se = step(pe, se, g)
            pj, sj = jitted(pj, sj, g)
        chex.assert_trees_all_close(pe, pj, rtol=1e-5, atol=1e-6)


def test_float64_params_keep_their_dtype():
    with jax.enable_x64(True):
        params = {"w": jnp.ones((2, 3), jnp.float64), "b": jnp.zeros((3,), jnp.float64)}
        grads = jax.tree.map(lambda x: x + 0.5, params)
        for name, make in OPTIMIZERS.items():
            tx = make()
            state = tx.init(params)
            updates, new_state = jax.jit(tx.update)(grads, state, params)
            assert_same_shapes_dtypes(updates, grads)
            assert_same_shapes_dtypes(new_state, state)
            assert jol.apply_updates(params, updates)["w"].dtype == jnp.float64, name


def test_second_jitted_step_does_not_recompile():
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    grads = jax.tree.map(lambda x: x + 1.0, params)
    for name, make in OPTIMIZERS.items():
        tx = make()

        @jax.jit
        def step(p, s):
            u, s = tx.update(grads, s, p)  # noqa: B023 (traced within this iteration)
            return jol.apply_updates(p, u), s

        p, s = params, tx.init(params)
        for _ in range(3):
            p, s = step(p, s)
        assert step._cache_size() == 1, name


def test_vmap_over_a_batch_of_parameter_sets():
    batch = {"w": jnp.arange(24.0).reshape(4, 2, 3) / 10, "b": jnp.arange(12.0).reshape(4, 3) / 10}
    grads = jax.tree.map(lambda x: jnp.cos(x), batch)
    for make in OPTIMIZERS.values():
        tx = make()
        states = jax.vmap(tx.init)(batch)
        updates, _ = jax.jit(jax.vmap(tx.update))(grads, states, batch)
        for i in range(4):
            one = jax.tree.map(lambda x, i=i: x[i], batch)
            g1 = jax.tree.map(lambda x, i=i: x[i], grads)
            u1, _ = tx.update(g1, tx.init(one), one)
            chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], updates), u1, rtol=1e-5, atol=1e-7)
