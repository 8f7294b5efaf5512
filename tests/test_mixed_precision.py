"""Mixed-precision optimizer state (issue 12, item 2): ``mu_dtype`` on Adam/AdamW (optax's
semantics: m stored in mu_dtype, the step computed in the promoted dtype, v in the
parameters' dtype), ``accumulator_dtype`` on momentum/SGD, in the per-leaf and fused paths."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_fused import KERNEL_ULPS_PER_STEP

import jaxopt_lectures as jol
from _ulps import assert_within_drift, grow_drift
from jaxopt_lectures import _kernels
from jaxopt_lectures.fused import state_bytes

PARAMS = {"l1": {"w": jnp.full((4, 3), 0.5), "b": jnp.zeros(3)}, "l2": {"w": jnp.full((3, 2), -0.2), "b": jnp.zeros(2)}}


def grads_at(k, like=PARAMS):
    rng = np.random.default_rng(k)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), like)


def dtypes(tree):
    return {x.dtype for x in jax.tree.leaves(tree)}


def tree_bytes(tree):
    return sum(x.nbytes for x in jax.tree.leaves(tree))


@pytest.mark.parametrize(
    "make",
    [
        lambda d: jol.adam(1e-3, mu_dtype=d),
        lambda d: jol.adamw(1e-3, mu_dtype=d),
        lambda d: jol.scale_by_adam(mu_dtype=d),
    ],
)
def test_mu_dtype_sets_the_first_moment_only(make):
    state = make(jnp.bfloat16).init(PARAMS)
    adam_state = state if isinstance(state, jol.AdamState) else state[0]
    assert dtypes(adam_state.mu) == {jnp.dtype(jnp.bfloat16)}
    assert dtypes(adam_state.nu) == {jnp.dtype(jnp.float32)}  # as optax: nu keeps the params' dtype
    ref = optax.adam(1e-3, mu_dtype=jnp.bfloat16).init(PARAMS)[0]
    assert dtypes(ref.mu) == dtypes(adam_state.mu) and dtypes(ref.nu) == dtypes(adam_state.nu)


def test_accumulator_dtype_sets_the_momentum():
    for tx in (jol.sgd(0.1, 0.9, accumulator_dtype=jnp.bfloat16), jol.add_momentum(0.9, accumulator_dtype="bfloat16")):
        state = tx.init(PARAMS)
        assert dtypes(jol.get_state_field(state, "mu")) == {jnp.dtype(jnp.bfloat16)}
    assert dtypes(jol.get_state_field(jol.sgd(0.1, 0.9).init(PARAMS), "mu")) == {jnp.dtype(jnp.float32)}


def run(tx, params, steps=5):
    state = tx.init(params)

    @jax.jit
    def step(params, state, grads):
        u, state = tx.update(grads, state, params)
        return jol.apply_updates(params, u), state

    for k in range(steps):
        params, state = step(params, state, grads_at(k, params))
    return params, state


@pytest.mark.parametrize(
    "ours, ref",
    [
        (lambda: jol.adam(1e-2, mu_dtype=jnp.bfloat16), lambda: optax.adam(1e-2, mu_dtype=jnp.bfloat16)),
        (
            lambda: jol.adamw(1e-2, mu_dtype=jnp.bfloat16, weight_decay=0.1, mask=None),
            lambda: optax.adamw(1e-2, mu_dtype=jnp.bfloat16, weight_decay=0.1),
        ),
        (
            lambda: jol.adam(1e-2, mu_dtype=jnp.bfloat16, nesterov=True),
            lambda: optax.nadam(1e-2, mu_dtype=jnp.bfloat16),
        ),
        (
            lambda: jol.sgd(0.1, 0.9, accumulator_dtype=jnp.bfloat16),
            lambda: optax.sgd(0.1, 0.9, accumulator_dtype=jnp.bfloat16),
        ),
    ],
)
def test_equal_to_optax_with_a_bf16_moment(ours, ref):
    a, sa = run(ours(), PARAMS)
    b, sb = run(ref(), PARAMS)
    chex.assert_trees_all_close(a, b, rtol=1e-6, atol=2e-7)
    moment = "mu" if isinstance(sa[0], jol.AdamState) else "trace"
    chex.assert_trees_all_close(
        jol.get_state_field(sa, "mu"), optax.tree_utils.tree_get(sb, moment), rtol=1e-5, atol=2e-7
    )


def test_bf16_params_with_float32_first_moment_per_leaf_and_fused():
    p16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), PARAMS)
    ours, ref = (
        jol.adamw(1e-2, mu_dtype=jnp.float32, weight_decay=0.1),
        jol.fused_adamw(1e-2, mu_dtype=jnp.float32, weight_decay=0.1),
    )
    a, sa = run(ours, p16)
    assert dtypes(a) == {jnp.dtype(jnp.bfloat16)} and dtypes(sa[0].mu) == {jnp.dtype(jnp.float32)}
    fstate = ref.init(p16)
    assert {b.dtype for b in fstate.mu.buffers.values()} == {jnp.dtype(jnp.float32)}
    step = jax.jit(ref.step)
    for k in range(5):
        fstate = step(fstate, grads_at(k, p16))
    chex.assert_trees_all_equal(fstate.params.unpack(), a)  # the fused path is the chain, bit for bit
    chex.assert_trees_all_equal(fstate.mu.unpack(), sa[0].mu)
    # and optax agrees to bf16's rounding of the parameters
    b, _ = run(optax.adamw(1e-2, mu_dtype=jnp.float32, weight_decay=0.1, mask=jol.decay_matrices_only), p16)
    chex.assert_trees_all_close(
        jax.tree.map(lambda x: x.astype(jnp.float32), a), jax.tree.map(lambda x: x.astype(jnp.float32), b), atol=8e-3
    )


@pytest.mark.parametrize("mu_dtype", [jnp.bfloat16, jnp.float32])
def test_fused_mu_dtype_equals_the_chain(mu_dtype):
    """m bit for bit; θ bit for bit from the XLA backend and within the kernel's stated rounding
    budget (tests/test_fused.py's docstring) where the C++ kernel steps the float32 groups."""
    ours, fused = jol.adam(1e-2, mu_dtype=mu_dtype), jol.fused_adam(1e-2, mu_dtype=mu_dtype)
    ref_step = jax.jit(lambda p, s, g: (lambda u, s: (jol.apply_updates(p, u), s))(*ours.update(g, s, p)))
    params, state = PARAMS, ours.init(PARAMS)
    fstate = fused.init(PARAMS)
    step = jax.jit(fused.step)
    budget = [np.zeros(np.shape(p)) for p in jax.tree.leaves(PARAMS)]
    for k in range(5):
        before = params
        params, state = ref_step(params, state, grads_at(k))
        fstate = step(fstate, grads_at(k))
        budget = [
            grow_drift(b, p0, p1, KERNEL_ULPS_PER_STEP)
            for b, p0, p1 in zip(budget, jax.tree.leaves(before), jax.tree.leaves(params))
        ]
    if _kernels.available():
        for (path, want), have, b in zip(
            jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(fstate.params.unpack()), budget
        ):
            assert_within_drift(have, want, b, f"theta{jax.tree_util.keystr(path)}")
    else:
        chex.assert_trees_all_equal(fstate.params.unpack(), params)
    chex.assert_trees_all_equal(fstate.mu.unpack(), state[0].mu)
    sgd, fsgd = (
        jol.sgd(0.1, 0.9, accumulator_dtype=jnp.bfloat16),
        jol.fused_sgd(0.1, 0.9, accumulator_dtype=jnp.bfloat16),
    )
    a, _ = run(sgd, PARAMS)
    fs = fsgd.init(PARAMS)
    step = jax.jit(fsgd.step)
    for k in range(5):
        fs = step(fs, grads_at(k))
    chex.assert_trees_all_equal(fs.params.unpack(), a)


def mlp_tree(widths):
    """An MLP's parameter tree (float32 zeros; only shapes matter for the state's bytes)."""
    return {
        f"layer{i}": {"w": jnp.zeros((a, b), jnp.float32), "b": jnp.zeros((b,), jnp.float32)}
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))
    }


def test_state_bytes_of_adam_on_a_10m_parameter_mlp(record_property):
    params = mlp_tree([1024, 2048, 2048, 1024, 1000])
    n = sum(x.size for x in jax.tree.leaves(params))
    assert 9e6 < n < 1.1e7
    measured = {}
    for name, d in (("float32", None), ("bfloat16", jnp.bfloat16)):
        state = jol.adam(1e-3, mu_dtype=d).init(params)
        measured[name] = tree_bytes(state)
        fused = jol.fused_adam(1e-3, mu_dtype=d).init(params)
        assert state_bytes(fused) == measured[name]  # the fused state holds the same moments
        ref = optax.adam(1e-3, mu_dtype=d).init(params)
        assert tree_bytes(ref) == measured[name]
    record_property("adam_state_bytes", measured)
    print(
        f"\nAdam state on a {n:,}-parameter MLP: float32 mu {measured['float32']:,} B, "
        f"bfloat16 mu {measured['bfloat16']:,} B"
    )
    # m is 2 bytes instead of 4 per parameter, v stays 4: (2 + 4) / (4 + 4) of the moments
    assert measured["float32"] - measured["bfloat16"] == 2 * n
    assert measured["bfloat16"] / measured["float32"] == pytest.approx(0.75, abs=1e-6)


def test_mu_dtype_must_be_a_floating_dtype():
    with pytest.raises(TypeError, match="mu_dtype must be a floating dtype"):
        jol.adam(1e-3, mu_dtype=jnp.int32)
    with pytest.raises(TypeError, match="mu_dtype must be None or a dtype, got str"):
        jol.adam(1e-3, mu_dtype="half-ish")
    with pytest.raises(TypeError, match="accumulator_dtype"):
        jol.sgd(0.1, 0.9, accumulator_dtype=3)
