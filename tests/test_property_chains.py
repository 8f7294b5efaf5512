"""Issue 13's property: random chains of transformations on random pytrees, with the documented
eps, give finite updates from finite gradients (zeros included), jit equals no-jit, and the
state round-trips through a checkpoint exactly."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, strategies as st

import jaxopt_lectures as jol
from jaxopt_lectures.lab import checkpoints

MEMBERS = {
    "clip": lambda: jol.clip_by_global_norm(1.0),
    "adam": lambda: jol.scale_by_adam(),
    "adam_eps0": lambda: jol.scale_by_adam(eps=0.0),
    "rms": lambda: jol.scale_by_rms(),
    "rms_first": lambda: jol.scale_by_rms(eps=0.0, init="first_grad"),
    "adagrad_eps0": lambda: jol.scale_by_adagrad(eps=0.0),
    "momentum": lambda: jol.add_momentum(0.9),
    "l2": lambda: jol.add_l2_regularization(1e-2),
    "wd": lambda: jol.decoupled_weight_decay(1e-2),
}

shapes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)
trees = st.dictionaries(st.sampled_from("abcd"), shapes, min_size=1, max_size=3)


@given(
    st.lists(st.sampled_from(sorted(MEMBERS)), min_size=1, max_size=3),
    trees,
    st.integers(0, 2**16),
    st.floats(0.0, 1.0),
)
def test_random_chains_are_finite_jit_stable_and_checkpointable(names, tree_shapes, seed, zero_fraction):
    tx = jol.chain(*(MEMBERS[n]() for n in names), jol.scale_by_learning_rate(0.1))
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in tree_shapes.items()}

    def grads_at(i):
        g = {k: rng.normal(size=s) * 10.0 ** rng.integers(-3, 4) for k, s in tree_shapes.items()}
        return {
            k: jnp.asarray(np.where(rng.random(v.shape) < zero_fraction, 0.0, v), jnp.float32) for k, v in g.items()
        }

    state = tx.init(params)
    jit_update = jax.jit(tx.update)
    p_eager, p_jit, s_eager, s_jit = params, params, state, state
    for i in range(3):
        g = grads_at(i)
        u, s_eager = tx.update(g, s_eager, p_eager)
        uj, s_jit = jit_update(g, s_jit, p_jit)
        for leaf in jax.tree.leaves(u):
            assert np.isfinite(np.asarray(leaf)).all(), names
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(uj)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        p_eager, p_jit = jol.apply_updates(p_eager, u), jol.apply_updates(p_jit, uj)


@given(st.lists(st.sampled_from(sorted(MEMBERS)), min_size=1, max_size=3), trees)
def test_optimizer_states_round_trip_through_a_checkpoint_exactly(tmp_path_factory, names, tree_shapes):
    tx = jol.chain(*(MEMBERS[n]() for n in names))
    params = {k: jnp.full(s, 0.5, jnp.float32) for k, s in tree_shapes.items()}
    _, state = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    path = tmp_path_factory.mktemp("ck") / "state"  # an Orbax checkpoint directory
    back, epoch, _ = checkpoints.load(checkpoints.save(path, state, 3, fingerprint={"x": 1}), state, {"x": 1})
    assert epoch == 3 and jax.tree.structure(back) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
