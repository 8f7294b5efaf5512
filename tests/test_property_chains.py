"""Issue 13's property: random chains of transformations on random pytrees, with the documented
eps, give finite updates from finite gradients (zeros included), jit equals no-jit, and the
state round-trips through a checkpoint exactly.

The gradients are drawn per leaf and per step from the edges the property is about (issue 25):
exact zeros (the 0/0 of the ``eps = 0`` members), huge values whose squares overflow float32
(the overflow-safe global norm, ``v = inf``), tiny ones whose squares underflow to 0, and a mask
of exact zeros over normal values. A coordinate whose gradients were all exactly 0 gets the
update exactly 0 from any chain of the members that do not read the parameters."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import example, given, settings, strategies as st

import jaxopt_lectures as jol
from jaxopt_lectures import schedules
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
READS_PARAMS = {"l2", "wd"}  # a zero gradient still gives λ·θ

shapes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)
trees = st.dictionaries(st.sampled_from("abcd"), shapes, min_size=1, max_size=3)
# how each leaf's gradient is drawn at one step: its magnitude (0 = exact zeros; 1e30 squares to inf
# in float32; 1e-30 squares to 0) and the fraction of its entries set to exactly 0
SCALES = (0.0, 1e-30, 1e-3, 1.0, 1e3, 1e30)
leaf_kinds = st.tuples(st.sampled_from(SCALES), st.sampled_from((0.0, 0.5, 1.0)))
chains = st.lists(st.sampled_from(sorted(MEMBERS)), min_size=1, max_size=3)


def _grads(rng, tree_shapes, kinds):
    """One step's gradients: ``kinds[i] = (scale, zero_fraction)`` for the i-th leaf (cycled)."""
    out = {}
    for i, (k, s) in enumerate(sorted(tree_shapes.items())):
        scale, zero_fraction = kinds[i % len(kinds)]
        g = rng.normal(size=s) * scale
        out[k] = jnp.asarray(np.where(rng.random(s) < zero_fraction, 0.0, g), jnp.float32)
    return out


@given(
    chains, trees, st.integers(0, 2**16), st.lists(st.lists(leaf_kinds, min_size=1, max_size=3), min_size=3, max_size=3)
)
# the edges drawn explicitly too, so that every run has them: the eps = 0 members on exact zeros
# (M10 of the mutation sample: 0/0 must be 0), and huge norms through the clip and the moments
@example(
    ["adam_eps0", "rms_first", "adagrad_eps0"], {"a": (3,), "b": ()}, 0, [[(0.0, 0.0)], [(1.0, 0.5)], [(0.0, 0.0)]]
)
@example(["clip", "adam", "momentum"], {"a": (2, 3), "b": (1,)}, 1, [[(1e30, 0.0)], [(1e30, 0.5)], [(1e-30, 0.0)]])
@example(["rms", "adagrad_eps0", "l2"], {"c": (2,)}, 2, [[(1e-30, 0.0)], [(0.0, 0.0)], [(1e30, 0.0)]])
def test_random_chains_are_finite_jit_stable_and_checkpointable(names, tree_shapes, seed, kinds):
    tx = jol.chain(*(MEMBERS[n]() for n in names), jol.scale_by_learning_rate(0.1))
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in tree_shapes.items()}

    state = tx.init(params)
    jit_update = jax.jit(tx.update)
    p_eager, p_jit, s_eager, s_jit = params, params, state, state
    zero_so_far = {k: np.ones(s, bool) for k, s in tree_shapes.items()}
    for step_kinds in kinds:
        g = _grads(rng, tree_shapes, step_kinds)
        u, s_eager = tx.update(g, s_eager, p_eager)
        uj, s_jit = jit_update(g, s_jit, p_jit)
        for k in tree_shapes:
            assert np.isfinite(np.asarray(u[k])).all(), (names, k, step_kinds)
            zero_so_far[k] &= np.asarray(g[k]) == 0
            if not READS_PARAMS & set(names):
                # the 0/0 rule and plain zeros: nothing moves a coordinate that never had a gradient
                assert (np.asarray(u[k])[zero_so_far[k]] == 0).all(), (names, k)
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(uj)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        p_eager, p_jit = jol.apply_updates(p_eager, u), jol.apply_updates(p_jit, uj)


@settings(max_examples=10)
@given(trees, st.integers(0, 2**16), st.lists(leaf_kinds, min_size=1, max_size=3), st.sampled_from((0.5, 1.0, 1e10)))
@example({"a": (3,), "b": (2,)}, 0, [(1e30, 0.0)], 1.0)  # squares overflow: the norm is still 1e30·‖z‖
@example({"a": (3,)}, 0, [(1e-30, 0.0)], 1e-31)  # squares underflow: the norm is still 1e-30·‖z‖
@example({"a": (3,)}, 0, [(0.0, 0.0)], 1.0)  # norm 0: nothing to clip, no 0/0
def test_clip_by_global_norm_gives_the_float64_norm_at_every_magnitude(tree_shapes, seed, kinds, max_norm):
    """``clip(g) = g · min(1, c/‖g‖)`` with ``‖g‖`` the float64 norm, from zeros to squares that
    overflow float32: the clipped norm is ``min(‖g‖, c)`` and the direction is kept."""
    rng = np.random.default_rng(seed)
    g = _grads(rng, tree_shapes, kinds)
    tx = jol.clip_by_global_norm(max_norm)
    u, _ = jax.jit(tx.update)(g, tx.init(g), None)
    g64 = {k: np.asarray(v, np.float64) for k, v in g.items()}
    norm = np.sqrt(sum(float(np.sum(np.square(v / 1e30))) for v in g64.values())) * 1e30
    np.testing.assert_allclose(float(jol.global_norm(g)), norm, rtol=1e-5)
    factor = 1.0 if norm <= max_norm else max_norm / norm
    for k in g:
        np.testing.assert_allclose(np.asarray(u[k], np.float64), g64[k] * factor, rtol=1e-5, atol=0)


@settings(max_examples=20)
@given(
    st.integers(1, 50),
    st.one_of(st.sampled_from(("0", "1", "b-1", "b", "b+1")), st.integers(0, 120)),
    st.floats(0.5, 2.0),
    st.floats(3.0, 5.0),
)
def test_join_hands_over_exactly_at_its_boundary(boundary, where, first, second):
    """``join([s0, s1], [b])``: ``s0(c)`` for ``c < b``, ``s1(c − b)`` from ``c = b`` on (the counts 0,
    1, b − 1, b, b + 1 always among those drawn), with a jump at ``b`` that an off-by-one shows."""
    count = {"0": 0, "1": 1, "b-1": boundary - 1, "b": boundary, "b+1": boundary + 1}.get(where, where)
    sched = schedules.join([schedules.constant(first), schedules.linear(second, 2 * second, 100)], [boundary])
    expected = first if count < boundary else second + second * min(count - boundary, 100) / 100
    np.testing.assert_allclose(float(sched(jnp.asarray(count, jnp.int32))), expected, rtol=1e-5)


@given(chains, trees)
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
